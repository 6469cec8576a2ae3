"""One worker thread that runs the call cache's operations in order, off the event loop.

A hit costs one trip to the thread and back, a miss one more to store the answer, which the
caller does not wait for. Operations queued while the thread is busy run in one batch, and the
event loop is woken once per batch rather than once per operation: under concurrency the trips
are shared. One thread, because SQLite serialises a connection's operations anyway, and so that
the cache never takes the default executor's threads (which count tokens).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable


class CacheThread:
    """Runs callables in one worker thread, in order of submission.

    The thread is a one-worker :class:`~concurrent.futures.ThreadPoolExecutor`, started on first
    use, so that writes still queued when the interpreter exits are finished first.
    """

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._queue: list[tuple] = []
        self._lock = threading.Lock()
        self._draining = False

    def run(self, function: Callable, *args) -> asyncio.Future:
        """Run ``function(*args)`` after everything submitted before; await its result.

        Parameters
        ----------
        function : callable
            Runs in the worker thread; what it returns or raises goes to the future.
        *args
            Its arguments.

        Returns
        -------
        asyncio.Future
            Of the running event loop.
        """
        future = asyncio.get_running_loop().create_future()
        self._enqueue(function, args, future)
        return future

    def submit(self, function: Callable, *args) -> None:
        """Run ``function(*args)`` after everything submitted before, without waiting for it.

        Parameters
        ----------
        function : callable
            Runs in the worker thread; what it raises is lost, so it should raise nothing.
        *args
            Its arguments.
        """
        self._enqueue(function, args, None)

    def shutdown(self) -> None:
        """Let the thread end once the queue is done (a later call starts a new one)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def _enqueue(self, function: Callable, args: tuple, future: asyncio.Future | None) -> None:
        with self._lock:
            self._queue.append((function, args, future))
            if self._draining:
                return
            self._draining = True
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="rerank-cache")
        self._executor.submit(self._drain)

    def _drain(self) -> None:
        """In the worker: run the queued calls, then settle their futures, once per loop."""
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._draining = False
                    return
            settled: dict[asyncio.AbstractEventLoop, list] = {}
            for function, args, future in batch:
                try:
                    outcome = (function(*args), None)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    outcome = (None, exc)
                if future is not None:
                    settled.setdefault(future.get_loop(), []).append((future, outcome))
            for loop, outcomes in settled.items():
                try:
                    loop.call_soon_threadsafe(_settle, outcomes)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass


def _settle(outcomes: list) -> None:
    """On the event loop: hand each call's result or exception to its future."""
    for future, (result, exc) in outcomes:
        if future.cancelled():
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
