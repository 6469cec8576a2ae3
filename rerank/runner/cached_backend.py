"""A backend behind the call cache: the key of a call, and answers kept only when whole."""

from __future__ import annotations

from ..answers import AnswerKind, Ask
from ..backends import Backend
from ..cache import call_key
from ..cached_calls import Answer as CachedAnswer
from ..cached_calls import CachedCalls


class CachedBackend:
    """Calls a backend through :class:`~rerank.cached_calls.CachedCalls`.

    The key covers the model, the messages as sent and every request parameter; a constrained
    answer may differ from a free one, so they are cached apart. What may be stored is the answer
    kind's call (:meth:`~rerank.answers.AnswerKind.cacheable`): never an answer cut by its token
    limit.

    Parameters
    ----------
    backend : Backend
    calls : CachedCalls
    """

    __slots__ = ("backend", "calls")

    def __init__(self, backend: Backend, calls: CachedCalls):
        self.backend = backend
        self.calls = calls

    def key(self, messages: list[dict], ask: Ask) -> str:
        """The cache key of a call (:func:`rerank.cache.call_key`): the model, the messages as
        sent and every request parameter, a constrained call apart from a free one, and the
        backend's ``extra_body`` when it has one (provider fields change answers)."""
        params = {**ask.params, "constrained": True} if ask.constraint is not None else ask.params
        extra_body = getattr(self.backend, "extra_body", None)
        if extra_body:
            params = {**params, "extra_body": extra_body}
        return call_key(self.backend.model, messages, params)

    async def complete(self, messages: list[dict], ask: Ask, kind: AnswerKind) -> CachedAnswer:
        """Answer one call from the cache, from an identical call in flight, or by paying for it.

        Raises what the backend raises (:class:`~rerank.errors.BackendError`,
        :class:`~rerank.errors.ContextOverflow`).
        """
        key = self.key(messages, ask) if self.calls.enabled else None  # no key to compute without a cache
        return await self.calls.complete(
            key, lambda: self.backend.complete(messages, ask.params, constraint=ask.constraint,
                                               first_token_labels=ask.first_token_labels),
            kind.cacheable)
