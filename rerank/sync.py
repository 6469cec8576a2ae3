"""Running rerank's coroutines from synchronous code: scripts, and notebooks whose loop runs.

A :class:`LoopRunner` owns one event loop, kept between calls, and runs each coroutine to
completion on it: in the calling thread when no event loop runs there (a plain script), else in
a worker thread while the caller waits (Jupyter, or synchronous code called from a coroutine),
since a thread can run only one loop at a time. Keeping the loop means that what a backend binds
to it (an engine's background task, a lock) stays valid from one call to the next.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


class LoopRunner:
    """Runs coroutines to completion on an event loop of its own, from any synchronous code.

    Calls from several threads take turns (a loop runs one coroutine at a time here). The loop
    is made on first use; :meth:`close` ends it (a later call makes a new one).

    Examples
    --------
    >>> runner = LoopRunner()
    >>> runner.run(asyncio.sleep(0, "done"))
    'done'
    >>> runner.close()
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {}  # a loop belongs to this process: a copy makes its own

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` to completion and return its result (or raise its exception).

        Parameters
        ----------
        coroutine : coroutine
            What to run; it runs on this runner's loop, whatever loop the caller is in.

        Returns
        -------
        object
            The coroutine's result.
        """
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
            loop = self._loop
            task = loop.create_task(coroutine)  # the loop is not running: safe from this thread
            if not _loop_runs_here():
                return _complete(loop, task)
            with ThreadPoolExecutor(1, thread_name_prefix="rerank-sync") as worker:
                done = worker.submit(_complete, loop, task)
                try:
                    return done.result()
                except BaseException:
                    if not done.done():  # interrupted while waiting (a notebook's stop button)
                        loop.call_soon_threadsafe(task.cancel)
                    raise

    def close(self) -> None:
        """Cancel what is left on the loop, finish its async generators and threads, close it."""
        with self._lock:
            loop, self._loop = self._loop, None
            if loop is None or loop.is_closed():
                return
            if not _loop_runs_here():
                _shut_down(loop)
                return
            with ThreadPoolExecutor(1, thread_name_prefix="rerank-sync") as worker:
                worker.submit(_shut_down, loop).result()


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion on a loop made for it, closed after it.

    Like :func:`asyncio.run`, but also from inside a running event loop (a notebook), where it
    runs in a worker thread while the caller waits.

    Parameters
    ----------
    coroutine : coroutine
        What to run.

    Returns
    -------
    object
        The coroutine's result.
    """
    runner = LoopRunner()
    try:
        return runner.run(coroutine)
    finally:
        runner.close()


def _loop_runs_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _complete(loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> Any:
    """Run ``task`` on ``loop`` in this thread; cancelled (and waited for) if interrupted."""
    try:
        return loop.run_until_complete(task)
    except BaseException:
        if not task.done():  # Ctrl-C while it ran: leave nothing half done on the loop
            task.cancel()
            try:
                loop.run_until_complete(task)
            except BaseException:  # noqa: BLE001 - the first exception is the one to raise
                pass
        raise


def _shut_down(loop: asyncio.AbstractEventLoop) -> None:
    """What :func:`asyncio.run` does after its coroutine: cancel the tasks left, then close."""
    try:
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
