"""``--engine ray`` for the commands: what ``write_run`` takes, from a reranker and its requests.

:func:`ray_engine` gives the reranker ``write_run`` prepares and closes on the driver, and the
``results(on_error)`` stream, which runs :func:`~rerank.distributed.driver.rerank_dataset` in a
thread (Ray's iteration blocks) and hands its results to the event loop one at a time.
"""

from __future__ import annotations

import asyncio
import sys
from typing import AsyncIterator, Callable, Iterable

from .driver import RayOptions, RayStats, require_ray, rerank_dataset, start_ray

_END = object()


class DriverReranker:
    """The driver's side of a reranker whose calls run in Ray actors.

    ``write_run`` prepares the reranker it is given: with an endpoint this checks it once on the
    driver, before Ray starts (a wrong URL is one line, at once); an in-process model (vLLM) is
    loaded by the actors only, so the driver opens the cache and loads nothing.

    Parameters
    ----------
    reranker : Reranker
        The run's reranker: its config, settings and backend name go into the summary.
    """

    def __init__(self, reranker):
        self.reranker = reranker

    def __getattr__(self, name: str):
        return getattr(self.reranker, name)

    async def prepare(self) -> None:
        """Check the endpoint (not for an in-process model) and open the cache."""
        if self.reranker.config.backend == "vllm":
            await self.reranker.cached_calls.prepare()
        else:
            await self.reranker.prepare()

    async def aclose(self) -> None:
        """Close the reranker."""
        await self.reranker.aclose()


def ray_engine(reranker, requests: Iterable, options: RayOptions, *, labels: bool = False,
               report: bool = True) -> tuple[DriverReranker, Callable[..., AsyncIterator]]:
    """A run on Ray, as ``write_run`` takes it.

    Parameters
    ----------
    reranker : Reranker
        The run's reranker (for labels, the teacher); the actors rebuild it from its config.
    requests : iterable of Request
        What is left to do (after ``--resume``).
    options : RayOptions
    labels : bool
        Yield ``(result, example)`` pairs (``rerank labels``).
    report : bool
        Print the start-up and the merged cache entries on stderr at the end.

    Returns
    -------
    (DriverReranker, callable)
        The reranker to hand ``write_run``, and ``results(on_error)``.
    """
    stats = RayStats()

    async def results(on_error=None) -> AsyncIterator:
        # In the main thread, where Ray sets its signal handlers; nothing else runs meanwhile.
        started_here = start_ray(options, stats)
        # Labels stop at a query that failed for good, as in one process.
        stream = rerank_dataset(reranker.config, requests, labels=labels, on_error=None if labels else on_error,
                                options=options, stats=stats)
        try:
            while (item := await asyncio.to_thread(next, stream, _END)) is not _END:
                yield item
        finally:
            try:
                await asyncio.to_thread(stream.close)
            except ValueError:  # still running in its thread (interrupted): it ends with the process
                pass
            if started_here:
                require_ray().shutdown()
            if report and stats.started is not None:
                print(stats.format(options.actors, reranker.config.cache), file=sys.stderr)

    return DriverReranker(reranker), results
