"""The rerankers behind ``rerank serve``: one per served model name, one backend, one cache.

Every served model is a :class:`~rerank.reranker.Reranker` with its own strategy and options,
built over the same backend object (so one concurrency limit towards the LLM holds for all of
them) and the same call cache. Requests are coroutines on one event loop, so the windows of
concurrent requests interleave in the backend's queue; identical requests in flight share one
ranking, which is cancelled only when every client waiting for it has gone.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

from ..errors import BackendError, ConfigError, InputError
from ..types import Candidate, Query, Request
from .metrics import Metrics
from .requests import ApiError, RerankCall


@dataclass(frozen=True)
class Ranked:
    """The outcome of one ranking.

    Attributes
    ----------
    order : tuple of int
        Indices of the request's documents, best first (all of them).
    prompt_tokens, completion_tokens, calls, cache_hits : int
        What the LLM calls of this ranking took (answers from the cache included).
    billed_prompt_tokens, billed_completion_tokens : int
        The tokens spent now: those of the calls the cache did not answer.
    """

    order: tuple[int, ...]
    prompt_tokens: int
    completion_tokens: int
    calls: int
    cache_hits: int
    billed_prompt_tokens: int = 0
    billed_completion_tokens: int = 0


@dataclass
class _InFlight:
    task: asyncio.Task
    waiters: int = 0


@dataclass
class RerankService:
    """Served model names, their rerankers, and the rankings in flight.

    Parameters
    ----------
    rerankers : dict of str to Reranker
        Each served model name and the reranker answering it (sharing one backend).
    default_model : str
        The model of a v1 request that names none.
    metrics : Metrics
    """

    rerankers: dict
    default_model: str
    metrics: Metrics = field(default_factory=Metrics)
    _in_flight: dict = field(default_factory=dict)

    def reranker(self, model: str | None):
        """The reranker of a model name (the default for None).

        Raises
        ------
        ApiError
            404 for a name the server does not serve.
        """
        name = model or self.default_model
        reranker = self.rerankers.get(name)
        if reranker is None:
            raise ApiError(404, f"model '{name}' not found: this server serves {', '.join(sorted(self.rerankers))}")
        return reranker

    async def prepare(self) -> None:
        """Check the backend and every reranker before the first request (endpoint check, the
        token counter, whether the largest window can fit), so that mistakes stop the start."""
        for reranker in self.rerankers.values():
            await reranker.prepare()

    async def rank(self, call: RerankCall) -> Ranked:
        """Rank a request's documents; an identical request already in flight is not ranked again.

        Cancelling this coroutine (a client that went away) cancels the ranking itself when no
        other client waits for it.

        Raises
        ------
        ApiError
            404 for an unknown model, 400 for documents the model cannot rank (they cannot fit
            its context), 502 when the LLM fails for good.
        """
        reranker = self.reranker(call.model)
        key = (call.model or self.default_model, *call.key()[1:])
        entry = self._in_flight.get(key)
        if entry is None:
            entry = self._in_flight[key] = _InFlight(asyncio.ensure_future(self._rank(reranker, call)))
            entry.task.add_done_callback(lambda _, key=key, entry=entry: self._forget(key, entry))
        else:
            self.metrics.deduplicated += 1
        entry.waiters += 1
        try:
            return await asyncio.shield(entry.task)
        except asyncio.CancelledError:
            if not entry.task.done() and entry.waiters == 1:
                entry.task.cancel()
                # A cancelled ranking ends a few steps later: an identical request arriving
                # meanwhile must start its own, not join this one and be cancelled with it.
                self._forget(key, entry)
                self.metrics.cancelled += 1
            raise
        finally:
            entry.waiters -= 1

    def _forget(self, key: tuple, entry: _InFlight) -> None:
        if self._in_flight.get(key) is entry:
            del self._in_flight[key]

    async def _rank(self, reranker, call: RerankCall) -> Ranked:
        started = time.perf_counter()
        documents = call.documents
        if any(len(text) > call.max_tokens_per_doc for text in documents):
            # Counting tokens takes a while: not on the event loop (and no thread hop when no
            # document is long enough to need it: a token holds at least one character).
            documents = await asyncio.to_thread(_cut, reranker, documents, call.max_tokens_per_doc)
        qid = "serve-" + hashlib.blake2b(call.query.encode("utf-8"), digest_size=8).hexdigest()
        request = Request(Query(qid=qid, text=call.query),
                          [Candidate(str(index), text) for index, text in enumerate(documents)])
        try:
            result = await reranker.rerank(request)
        except (ConfigError, InputError) as exc:
            raise ApiError(400, f"invalid request: {exc}") from None
        except BackendError as exc:
            self.metrics.llm_failures += 1
            raise ApiError(502, f"the LLM behind this server failed: {exc}") from None
        usage = result.usage
        self.metrics.add_ranking(usage, time.perf_counter() - started)
        paid = [record for record in result.calls if not record.cached]
        return Ranked(tuple(int(candidate.docid) for candidate in result.candidates), usage.prompt_tokens,
                      usage.completion_tokens, usage.calls, usage.cache_hits,
                      sum(record.prompt_tokens for record in paid), sum(record.completion_tokens for record in paid))

    async def aclose(self) -> None:
        """Cancel what is in flight and close the rerankers (their backend and cache)."""
        for entry in list(self._in_flight.values()):
            entry.task.cancel()
        closed = set()
        for reranker in self.rerankers.values():  # they share one backend and one cache: close each once
            for part in (reranker.backend, reranker.cached_calls):
                if id(part) not in closed:
                    closed.add(id(part))
                    await part.aclose()


def _cut(reranker, documents: tuple[str, ...], max_tokens: int) -> list[str]:
    """Each document cut to ``max_tokens`` tokens of the reranker's counter (run in a thread:
    counting a thousand long documents takes a while)."""
    counter = None
    cut = []
    for text in documents:
        # A token holds at least one character: a text of at most max_tokens characters fits.
        if len(text) > max_tokens:
            counter = counter or reranker.backend.token_counter()
            text = counter.truncate(text, max_tokens)
        cut.append(text)
    return cut


def relevance_scores(count: int) -> list[float]:
    """Scores of ranks ``1..count``: ``(count - rank + 1) / count``, 1.0 for the first, strictly
    decreasing, in (0, 1] (a listwise ranking gives an order, not calibrated scores)."""
    return [(count - rank) / count for rank in range(count)]
