"""The Ray actor of ``--engine ray``: one async reranker, its own call cache, batches of requests.

Ray Data builds one :class:`RerankActor` per pool slot and calls it with batches of rows
(``index``, ``request``: JSON text). The actor holds one :class:`~rerank.reranker.Reranker`
rebuilt from the run's config, on an event loop of its own that lives as long as the actor, so
connections and the cache stay open across batches; Ray may call it from several threads at
once (``max_concurrency``), and every batch runs on that one loop, its queries concurrently, the
backend's ``--concurrency`` bounding the calls in flight.

Its call cache is an SQLite file in a local temporary folder (SQLite does not belong on a
network filesystem), seeded with a snapshot of the run's cache. After each batch, the entries it
stored since the last batch go back to the driver with the results (column ``entries``), which
merges them into the run's cache: nothing paid for stays on a worker's disk. A query whose calls
failed for good comes back as data (column ``error``), as one process lists it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import weakref

from ..errors import BackendError, RerankError
from ..labels import student_reranker, training_example
from ..reranker import Reranker, RerankerConfig
from .codec import request_from_json, result_to_json


class ActorCounter:
    """Numbers the actors as they start (a Ray actor itself): actor ``i`` uses base URL
    ``i mod count``."""

    def __init__(self) -> None:
        self._next = 0

    def next(self) -> int:
        """The next actor's number.

        Returns
        -------
        int
        """
        number, self._next = self._next, self._next + 1
        return number


class RerankActor:
    """What ``map_batches`` calls: reranks a batch of requests; see the module docstring.

    Parameters
    ----------
    config : dict
        The reranker's config, flat (:meth:`RerankerConfig.flat`).
    base_urls : list of str
        Endpoints; actor ``i`` uses ``base_urls[i % len(base_urls)]`` (none: the config's).
    counter : ray.actor.ActorHandle
        An :class:`ActorCounter`, which gives this actor its number.
    seed : list
        Empty, or one Ray object reference to the bytes of the run's cache file (a snapshot).
    labels : bool
        Return training examples with the results (``rerank labels``).
    workdir : str or None
        Where the actor's folder goes (default: the system's temporary folder).
    """

    def __init__(self, config: dict, base_urls: list[str], counter, seed: list, labels: bool,
                 workdir: str | None = None):
        import ray

        self.number = ray.get(counter.next.remote())
        self._folder = tempfile.mkdtemp(prefix=f"rerank-actor-{self.number}-", dir=workdir)
        weakref.finalize(self, shutil.rmtree, self._folder, True)
        flat = dict(config)
        if base_urls:
            flat["base_url"] = base_urls[self.number % len(base_urls)]
        self.cache_path = None
        if flat.get("cache"):
            self.cache_path = flat["cache"] = os.path.join(self._folder, "calls.sqlite")
            if seed:
                with open(self.cache_path, "wb") as file:
                    file.write(ray.get(seed[0]))
        self.reranker = Reranker(RerankerConfig.from_dict(flat))
        self.labels = labels
        self._student = None
        # Entries stored from now on are this actor's: sent back once each.
        self._since = time.time()
        self._sent: set[str] = set()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name=f"rerank-actor-{self.number}", daemon=True).start()
        self._prepared = asyncio.run_coroutine_threadsafe(self._prepare(), self._loop)
        self._reading = asyncio.run_coroutine_threadsafe(_make_lock(), self._loop).result()
        self.ready_at = time.time()

    def __call__(self, batch: dict) -> dict:
        """Rerank one batch (columns ``index`` and ``request``); returns the columns ``index``,
        ``result`` (JSON, or empty when the query failed), ``error``, ``entries`` (the new cache
        entries, as a JSON list on the first row), ``fatal`` (the actor could not start: ``error``
        says why) and ``ready_at`` (when the actor started)."""
        return asyncio.run_coroutine_threadsafe(self._rerank(batch), self._loop).result()

    def __del__(self) -> None:
        # Ray Data deletes the callable when the pool shuts down gracefully: connections close
        # (no "unclosed" warnings), queued cache writes finish, the folder goes.
        loop = getattr(self, "_loop", None)
        if loop is None or loop.is_closed() or not loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.reranker.aclose(), loop).result(timeout=30)
        except Exception:  # noqa: BLE001 - shutting down: nothing left to report to
            pass
        loop.call_soon_threadsafe(loop.stop)
        shutil.rmtree(self._folder, ignore_errors=True)

    async def _prepare(self) -> None:
        await self.reranker.prepare()
        if self.labels:
            self._student = student_reranker(self.reranker)

    async def _rerank(self, batch: dict) -> dict:
        import numpy as np

        n = len(batch["request"])
        try:
            await asyncio.wrap_future(self._prepared)
        except RerankError as error:  # the endpoint check or the model: the driver stops the run
            outcomes, fatal = [("", f"{type(error).__name__}: {error}")] * n, True
        else:
            outcomes, fatal = await asyncio.gather(*(self._one(text) for text in batch["request"])), False
        entries = await self._new_entries()
        return {"index": np.asarray(batch["index"]),
                "result": np.array([result for result, _ in outcomes], dtype=object),
                "error": np.array([error for _, error in outcomes], dtype=object),
                "entries": np.array([json.dumps(entries)] + [""] * (n - 1), dtype=object),
                "fatal": np.full(n, fatal), "ready_at": np.full(n, self.ready_at)}

    async def _one(self, text: str) -> tuple[str, str]:
        request = request_from_json(text)
        try:
            result = await self.reranker.rerank(request)
        except BackendError as error:
            return "", str(error) or type(error).__name__
        example = training_example(self._student, request, result) if self.labels else None
        return result_to_json(result, example), ""

    async def _new_entries(self) -> list:
        """The cache entries stored since the last batch asked (each sent once)."""
        if self.cache_path is None:
            return []
        async with self._reading:
            await self.reranker.cached_calls.flush()
            rows = await asyncio.to_thread(_entries_since, self.cache_path, self._since)
            fresh = [row for row in rows if row[0] not in self._sent]
            self._sent.update(key for key, _, _ in fresh)
            if rows:
                self._since = max(created for _, _, created in rows)
            return fresh


async def _make_lock() -> asyncio.Lock:
    return asyncio.Lock()


def _entries_since(path: str, since: float) -> list:
    # Writes go through one thread in order, their times never decrease: what is new is at or after
    # the last time seen (equal times are told apart by key).
    if not os.path.exists(path):
        return []
    conn = sqlite3.connect(path, timeout=30.0)
    try:
        return [list(row) for row in conn.execute("SELECT key, value, created FROM calls WHERE created >= ?",
                                                  (since,))]
    finally:
        conn.close()
