"""The driver of ``--engine ray``: requests into a Ray Dataset, results back in input order.

:func:`rerank_dataset` reads the requests (already stripped of finished ones by ``--resume``)
into ``ray.data.from_items`` rows of JSON text, one block per batch, and reranks them with
``map_batches`` over a pool of :class:`~rerank.distributed.actor.RerankActor`. Batches come back
as they finish; a buffer puts them back in input order, so that the one writer of a run
(:func:`rerank.run_writer.write_run`) writes the same bytes as one process would. The new cache
entries that come back with each batch are merged into the run's cache at once
(:func:`rerank.cache_admin.merge_entries`, as ``rerank cache merge`` does), so a killed run keeps
what it paid for, and a rerun, in one process or on Ray, pays for nothing already answered.
"""

from __future__ import annotations

import logging
import os
import json
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from ..cache_admin import MergeReport, is_cache, merge_entries
from ..errors import BackendError, ConfigError
from ..types import Request
from .codec import request_to_json, result_from_json

INSTALL_HINT = "--engine ray needs Ray: pip install 'rerank-llm[ray]'"


@dataclass(frozen=True)
class RayOptions:
    """How a run is spread over Ray.

    Attributes
    ----------
    actors : int
        Actors in the pool, each with one reranker (``--actors``).
    address : str or None
        The cluster to join (``--ray-address``; ``auto``: the one running on this machine);
        None starts a local one, unless Ray is already initialised in this process.
    base_urls : tuple of str
        Endpoints, round robin over the actors (actor ``i`` uses ``i mod count``); empty: the
        config's ``base_url``.
    batch_size : int or None
        Requests per batch (default: half the reranker's concurrency).
    batches_per_actor : int
        Batches one actor runs at once: a batch ending does not leave the calls' slots idle.
    workdir : str or None
        The folder where actors keep their caches (default: the system's temporary folder);
        it must be local to each machine.
    """

    actors: int = 2
    address: str | None = None
    base_urls: tuple[str, ...] = ()
    batch_size: int | None = None
    batches_per_actor: int = 4
    workdir: str | None = None

    def __post_init__(self):
        if self.actors < 1:
            raise ConfigError(f"--actors must be at least 1, got {self.actors}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"the batch size must be at least 1, got {self.batch_size}")


@dataclass
class RayStats:
    """What a Ray run took and merged (filled while :func:`rerank_dataset` runs).

    Attributes
    ----------
    init_seconds : float
        Starting (or joining) the Ray cluster.
    started : float or None
        When the dataset started (``time.time()``).
    first_ready, last_ready : float or None
        When the first and the last actor that answered had started.
    finished : float or None
        When the last result came back.
    merged : MergeReport
        The actors' new cache entries merged into the run's cache.
    """

    init_seconds: float = 0.0
    started: float | None = None
    first_ready: float | None = None
    last_ready: float | None = None
    finished: float | None = None
    merged: MergeReport = field(default_factory=MergeReport)

    def format(self, actors: int, cache: str | None) -> str:
        """One line for stderr: the start-up, and what was merged into ``cache``."""
        startup = self.init_seconds + max((self.last_ready or 0) - (self.started or 0), 0.0)
        line = f"ray: {actors} actors, start-up {startup:.1f} s (cluster {self.init_seconds:.1f} s)"
        if cache:
            line += (f"; {self.merged.added:,} new cache entries merged into {cache} "
                     f"({self.merged.duplicates:,} duplicates, {self.merged.conflicts:,} conflicts)")
        return line


def require_ray():
    """Import Ray, or raise a one-line :class:`~rerank.errors.ConfigError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the data extra
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def rerank_dataset(config, requests: Iterable[Request], *, actors: int = 2, address: str | None = None,
                   base_urls: Iterable[str] = (), labels: bool = False,
                   on_error: Callable[[Request, BackendError], None] | None = None,
                   options: RayOptions | None = None, stats: RayStats | None = None) -> Iterator:
    """Rerank requests on Ray; results in input order.

    Parameters
    ----------
    config : RerankerConfig
        The reranker each actor rebuilds (``backend="vllm"`` gives each actor one GPU). Its
        ``cache``, when set, seeds the actors' caches and receives their new entries.
    requests : iterable of Request
        Read at once into a Ray Dataset.
    actors, address, base_urls
        See :class:`RayOptions` (ignored when ``options`` is given).
    labels : bool
        Yield ``(result, example)`` pairs of training examples (``config`` is the teacher's,
        :func:`rerank.labels.teacher_config`).
    on_error : callable, optional
        ``on_error(request, error)`` for a query whose calls failed for good (the request holds
        its query only); without it, such a failure raises.
    options : RayOptions, optional
    stats : RayStats, optional
        Filled with timings and the merge's counts.

    Yields
    ------
    Result, or (Result, TrainingExample) with ``labels``

    Raises
    ------
    ConfigError
        When Ray is not installed.
    BackendError
        For a failed query without ``on_error``, or an actor that could not start.

    Examples
    --------
    >>> from rerank.distributed import rerank_dataset        # doctest: +SKIP
    >>> config = RerankerConfig(model="qwen", base_url="http://gpu1:8000/v1", concurrency=64)
    >>> for result in rerank_dataset(config, requests, actors=8, address="auto"):
    ...     print(result.query.qid, result.candidates[0].docid)
    """
    options = options or RayOptions(actors=actors, address=address, base_urls=tuple(base_urls))
    stats = stats if stats is not None else RayStats()
    ray = require_ray()
    queries, items = [], []
    for index, request in enumerate(requests):
        queries.append(request.query)
        items.append({"index": index, "request": request_to_json(request)})
    if not items:
        return
    started_here = start_ray(options, stats)
    try:
        yield from _stream(ray, config, items, queries, options, labels, on_error, stats)
    finally:
        if started_here:
            ray.shutdown()


def start_ray(options: RayOptions, stats: RayStats) -> bool:
    """Start or join the cluster of ``options`` unless this process already did.

    Parameters
    ----------
    options : RayOptions
    stats : RayStats
        Its ``init_seconds`` is set.

    Returns
    -------
    bool
        Whether it started (or joined) one: then the caller shuts it down (``ray.shutdown()``).
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    began = time.perf_counter()
    local = {} if options.address else {"num_cpus": max(os.cpu_count() or 1, options.actors + 1)}
    # The workers import this very rerank, wherever it is installed or checked out.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    ray.init(address=options.address, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": path}}, **local)
    stats.init_seconds = time.perf_counter() - began
    return True


def _stream(ray, config, items: list[dict], queries: list, options: RayOptions, labels: bool,
            on_error, stats: RayStats) -> Iterator:
    from ..cache import CallCache
    from .actor import ActorCounter, RerankActor

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    batch = options.batch_size or max(1, (config.concurrency + 1) // 2)
    dataset = _from_items(ray, items, blocks=-(-len(items) // batch))
    counter = ray.remote(ActorCounter).options(num_cpus=0).remote()
    seed = _snapshot(ray, config.cache)
    dataset = dataset.map_batches(
        RerankActor, batch_size=batch, batch_format="numpy",
        fn_constructor_kwargs=dict(config=config.flat(), base_urls=list(options.base_urls), counter=counter,
                                   seed=seed, labels=labels, workdir=options.workdir),
        **_pool(ray, options), **({"num_gpus": 1} if config.backend == "vllm" else {}))
    cache = CallCache(config.cache) if config.cache else None
    stats.started = time.time()
    waiting: dict[int, tuple[str, str]] = {}
    following = 0
    try:
        for rows in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            _note_ready(stats, rows["ready_at"])
            for entries in rows["entries"]:
                if entries and cache is not None:
                    stats.merged.add(merge_entries(cache, map(tuple, json.loads(entries))))
            for index, result, error, fatal in zip(rows["index"], rows["result"], rows["error"], rows["fatal"]):
                if fatal:
                    raise BackendError(f"a Ray actor could not start: {error}")
                waiting[int(index)] = (result, error)
            while following in waiting:
                result, error = waiting.pop(following)
                if error:
                    failure = BackendError(error)
                    if on_error is None:
                        raise failure
                    on_error(Request(queries[following], []), failure)
                else:
                    result, example = result_from_json(result)
                    yield (result, example) if labels else result
                following += 1
        stats.finished = time.time()
    finally:
        if cache is not None:
            cache.close()


def _pool(ray, options: RayOptions) -> dict:
    """``map_batches``'s arguments for a fixed pool of actors, each running several batches."""
    try:
        # Several batches in one actor at once, truly (each only waits on the actor's event loop),
        # and no more queued on it: a batch waits for whichever actor has room.
        return {"compute": ray.data.ActorPoolStrategy(size=options.actors,
                                                      max_concurrent_calls_per_actor=options.batches_per_actor,
                                                      max_tasks_in_flight_per_actor=options.batches_per_actor,
                                                      enable_true_multi_threading=True)}
    except TypeError:  # Ray before 2.51: the actor's own max_concurrency
        return {"concurrency": options.actors, "max_concurrency": options.batches_per_actor}


def _from_items(ray, items: list[dict], blocks: int):
    try:
        return ray.data.from_items(items, override_num_blocks=blocks)
    except TypeError:  # Ray before 2.10 named it parallelism
        return ray.data.from_items(items, parallelism=blocks)


def _snapshot(ray, path: str | None) -> list:
    """The run's cache as one object in Ray's store (a consistent copy, WAL included), or none."""
    if not path or not is_cache(path):
        return []
    with tempfile.TemporaryDirectory(prefix="rerank-seed-") as folder:
        copy = os.path.join(folder, "calls.sqlite")
        source, target = sqlite3.connect(path, timeout=30.0), sqlite3.connect(copy)
        try:
            source.backup(target)
            # One file, no -wal: what the actor writes is the whole database.
            target.execute("PRAGMA journal_mode=DELETE")
            try:
                target.execute("DELETE FROM claims")
            except sqlite3.OperationalError:  # a cache from before claims had none
                pass
            target.commit()
        finally:
            source.close()
            target.close()
        with open(copy, "rb") as file:
            return [ray.put(file.read())]


def _note_ready(stats: RayStats, ready) -> None:
    for when in map(float, ready):
        stats.first_ready = when if stats.first_ready is None else min(stats.first_ready, when)
        stats.last_ready = when if stats.last_ready is None else max(stats.last_ready, when)
