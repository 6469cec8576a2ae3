"""LLM calls through the call cache: off the event loop, each call paid once, never stopping a run.

:meth:`CachedCalls.complete` is the one entry point: it answers a call from the cache or pays
for it and stores the answer. Around it:

* **Off the event loop.** Every read and write of the SQLite file runs in a thread of its own,
  in order (:mod:`rerank.cache_thread`): a hit is one trip there; a miss one more, to store the
  answer and release the claim, not waited for (a later lookup of the key runs after it).
* **Paid once.** Identical calls in flight in this process share one future; across processes
  (and rerankers) sharing the file, the key is claimed first (:mod:`rerank.cache_claims`) and the
  others poll, with backoff, for the value. A claim is renewed every ``RENEW_S`` while its call
  runs and lapses ``LEASE_S`` after its owner stops; a dead owner's claim on this host is taken
  over at once. When the owner fails, its claim is dropped and one waiter pays instead.
* **Never trusting a bad entry.** A stored value that is not JSON, fails
  :meth:`~rerank.backends.Completion.from_json` or would not have been stored (``cacheable``) is a
  miss: counted, reported once on stderr, and replaced by the fresh answer. Only answers that are
  ``cacheable`` and survive their own JSON round trip are stored.
* **Never stopping a run.** A path that can never be a cache (a directory, not a database, no
  permission) is a :class:`~rerank.errors.ConfigError`, from :meth:`prepare` or the first call. A
  cache that fails while running (locked by another process beyond ``BUSY_TIMEOUT_S``, disk full,
  I/O error, corrupt) is turned off with one warning line, and the calls go on without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sqlite3
from dataclasses import dataclass, replace
from typing import Awaitable, Callable

from . import cache_claims
from .backends.base import Completion
from .cache import CallCache, NullCache, config_problem
from .cache_claims import CLAIMED, HIT
from .cache_thread import CacheThread
from .errors import ConfigError

#: Seconds a claim lives unless renewed, and how often its owner renews it.
LEASE_S = 30.0
RENEW_S = 10.0
#: Seconds a cache operation waits for another process's lock before the cache is turned off.
BUSY_TIMEOUT_S = 5.0
#: Waiting for another process's call: the first poll after this many seconds, then 1.5 times
#: longer each time, up to the maximum.
POLL_FIRST_S, POLL_MAX_S = 0.02, 0.5

_LOG = logging.getLogger("rerank")
_OFF = object()  # what a storage operation returns once the cache is off


@dataclass(slots=True)
class Answer:
    """What :meth:`CachedCalls.complete` got.

    Attributes
    ----------
    completion : Completion
        The answer; from the cache (or a call shared in flight), its latency and attempts are 0.
    cached : bool
        Whether it was not paid for by this call: stored, or shared with an identical call.
    bad_entries : int
        Malformed cache entries met (and replaced) on the way.
    """

    completion: Completion
    cached: bool
    bad_entries: int = 0


class CachedCalls:
    """Calls answered from a call cache, or paid for once and stored.

    Parameters
    ----------
    cache : CallCache or NullCache
        The storage; with a :class:`~rerank.cache.NullCache` every call is simply made.

    Attributes
    ----------
    enabled : bool
        Whether there is a cache to use (keys are worth computing); stays True after the cache
        was turned off by a failure.
    bad_entries : int
        Malformed entries met so far.
    """

    def __init__(self, cache: CallCache | NullCache):
        self.cache = cache
        self.enabled = isinstance(cache, CallCache)
        self.bad_entries = 0
        self._pid = os.getpid()
        self._owner = f"{cache_claims.HOST}:{self._pid}:{secrets.token_hex(6)}"
        self._opened = False
        self._off: str | None = None
        self._in_flight: dict[str, asyncio.Future] = {}
        self._held = 0
        self._renewer: asyncio.Task | None = None
        self._thread = CacheThread()

    def __getstate__(self) -> dict:
        return {"cache": self.cache}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["cache"])

    @property
    def off(self) -> str | None:
        """Why the cache was turned off during the run, or None while it works."""
        return self._off

    async def prepare(self) -> None:
        """Open the cache now, so that a path that cannot be a cache is refused before any call.

        Raises
        ------
        ConfigError
            When the path is a directory, not an SQLite database, not writable, or its folder
            cannot be created. A failure of the moment (a lock, a full disk) turns the cache
            off instead, with a warning.
        """
        if self.enabled and not self._opened:
            await self._run(_nothing)

    async def complete(self, key: str | None, call: Callable[[], Awaitable[Completion]],
                       cacheable: Callable[[Completion], bool]) -> Answer:
        """Answer one call from the cache, from an identical call in flight, or by paying for it.

        Parameters
        ----------
        key : str or None
            The call's key (:func:`rerank.cache.call_key`); None: no cache, just call.
        call : callable
            Makes the call: returns an awaitable of the backend's completion. Its exceptions
            propagate (after the claim is dropped, so that a waiter takes over).
        cacheable : callable
            Whether a completion may be stored, and so trusted when read back.

        Returns
        -------
        Answer
        """
        if key is None or self._off is not None:
            return Answer(await call(), False)
        while (shared := self._in_flight.get(key)) is not None:
            completion = await asyncio.shield(shared)
            if completion is not None:  # not paid for here: no latency, no attempt
                return Answer(replace(completion, latency=0.0, attempts=0), True)
        future = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        answer, shared = None, False
        try:
            answer, shared = await self._own(key, call, cacheable)
            return answer
        finally:
            del self._in_flight[key]
            # None sends waiters to pay themselves: the call failed or its answer may not be kept.
            future.set_result(answer.completion if shared else None)

    async def _own(self, key: str, call, cacheable) -> tuple[Answer, bool]:
        """The call of ``key`` for this process: from the cache, after another's, or paid; and
        whether identical calls in flight may share the answer."""
        bad, discard, delay = 0, None, POLL_FIRST_S
        while True:
            try:
                found = await self._run(cache_claims.claim, key, self.owner, LEASE_S, discard)
            except asyncio.CancelledError:  # the claim may still be made: drop it after
                self._submit(cache_claims.release, key, self.owner)
                raise
            if found is _OFF:
                completion = await call()
                return Answer(completion, False, bad), _storable(completion, cacheable)
            state, text = found
            discard = None
            if state == HIT:
                completion = self._trusted(text, cacheable)
                if completion is not None:
                    return Answer(completion, True, bad), True
                bad, discard = bad + 1, text
            elif state == CLAIMED:
                return await self._pay(key, call, cacheable, bad)
            else:  # another process is making this call: wait for its answer
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, POLL_MAX_S)

    async def _pay(self, key: str, call, cacheable, bad: int) -> tuple[Answer, bool]:
        self._held += 1
        renewer = self._renewer
        if renewer is None or renewer.done() or renewer.get_loop() is not asyncio.get_running_loop():
            # A renewer left on another loop (a synchronous call's) renews nothing while it waits.
            self._renewer = asyncio.ensure_future(self._renew())
        storable = False
        try:
            completion = await call()
            storable = _storable(completion, cacheable)
            if storable:
                self._submit(cache_claims.put_claimed, key, completion.to_json(), self.owner)
            return Answer(completion, False, bad), storable
        finally:
            self._held -= 1
            if not storable:  # failed, or not to be kept: a waiter takes over
                self._submit(cache_claims.release, key, self.owner)

    async def _renew(self) -> None:
        """Keep this process's claims alive while it holds any."""
        while self._held and self._off is None:
            await asyncio.sleep(RENEW_S)
            if self._held:
                await self._run(cache_claims.renew, self.owner, LEASE_S)

    @property
    def owner(self) -> str:
        """This process's claim token: host, pid and a random part (new after a fork)."""
        if os.getpid() != self._pid:
            self.__init__(self.cache)
        return self._owner

    def _trusted(self, text, cacheable) -> Completion | None:
        """The stored answer, or None (counted, and reported once) when it cannot be trusted."""
        try:
            completion = Completion.from_json(json.loads(text))
            if cacheable(completion):
                return completion
            reason = "an answer that is never stored (cut off, or without what the call needs)"
        except (ValueError, TypeError, RecursionError) as exc:
            reason = str(exc)[:200]
        self.bad_entries += 1
        if self.bad_entries == 1:
            _LOG.warning("warning: call cache %s: malformed entry ignored and replaced (%s); such entries "
                         "are counted as cache_bad_entries", self.cache.path, reason)
        return None

    def _run(self, operation: Callable, *args) -> asyncio.Future:
        """Run ``operation(cache, *args)`` in the cache's thread; await its result (``_OFF`` once off)."""
        return self._worker().run(self._storage, operation, *args)

    def _submit(self, operation: Callable, *args) -> None:
        """Queue ``operation(cache, *args)`` on the cache's thread, not waiting for it."""
        self._worker().submit(self._storage, operation, *args)

    def _worker(self) -> CacheThread:
        if os.getpid() != self._pid:  # forked: a new owner token, thread and connection
            self.__init__(self.cache)
        return self._thread

    def _storage(self, operation: Callable, *args):
        """Run one operation on the cache (in its thread); ``_OFF`` once the cache is off."""
        if self._off is not None:
            return _OFF
        try:
            if not self._opened:
                self._open()
            return operation(self.cache, *args)
        except (sqlite3.Error, OSError) as exc:
            self._turn_off(exc)
            return _OFF

    def _open(self) -> None:
        try:
            self.cache.check()
        except (sqlite3.Error, OSError) as exc:
            problem = config_problem(self.cache.path, exc)
            if problem is not None:
                raise ConfigError(f"--cache {self.cache.path}: {problem}") from None
            raise
        self._opened = True

    def _turn_off(self, exc: BaseException) -> None:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            why = f"locked by another process for more than {self.cache.busy_timeout:g} s"
        else:
            why = str(exc) or type(exc).__name__
        self._off = why
        _LOG.warning("warning: call cache %s: %s; running without the cache", self.cache.path, why)

    async def flush(self) -> None:
        """Wait until every write queued so far has reached the cache file (the Ray engine reads
        an actor's new entries from it after each batch)."""
        if self._opened:
            await self._run(_nothing)

    async def release_loop(self) -> None:
        """Stop the running loop's claim renewer when no claim is held, and wait for the queued
        writes: the next calls may come from another event loop (:meth:`Reranker.release_loop`),
        and a renewer left asleep on an idle loop would only be destroyed with it."""
        if self._renewer is not None and not self._renewer.done() and not self._held and \
                self._renewer.get_loop() is asyncio.get_running_loop():
            self._renewer.cancel()
        await self.flush()

    async def aclose(self) -> None:
        """Finish the queued writes, drop this process's remaining claims and close the cache."""
        if self._renewer is not None and not self._renewer.done():
            self._renewer.cancel()
        self._renewer = None
        if self._opened:  # runs after every write queued before
            await self._run(cache_claims.release, None, self.owner)
        self._thread.shutdown()
        self.cache.close()


def _nothing(cache: CallCache) -> None:
    """An operation that only opens the cache (see :meth:`CachedCalls.prepare`)."""


def _storable(completion: Completion, cacheable: Callable[[Completion], bool]) -> bool:
    """Whether an answer may be stored: ``cacheable``, and read back as it was written."""
    if not cacheable(completion):
        return False
    try:
        Completion.from_json(completion.to_json())
    except ValueError:
        return False
    return True
