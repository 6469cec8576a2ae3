"""The context budget of a reranker's calls: one object owns it, and what refusals teach it."""

from __future__ import annotations

from typing import Callable

from ..errors import ContextOverflow


class ContextBudget:
    """Tokens one call may use, prompt and answer together.

    ``--context-size``, or the model's context when the backend knows a smaller one; lowered
    for every later call when a server refuses a prompt as too long (:meth:`shrink`).

    Parameters
    ----------
    configured : int
        ``--context-size``.
    backend_limit : callable
        Returns the backend's context in tokens, or None when unknown; asked once, on first use.
    """

    __slots__ = ("configured", "_backend_limit", "_size")

    def __init__(self, configured: int, backend_limit: Callable[[], int | None]):
        self.configured = configured
        self._backend_limit = backend_limit
        self._size: int | None = None

    def size(self) -> int:
        """The budget now."""
        if self._size is None:
            limit = self._backend_limit()
            self._size = min(self.configured, limit or self.configured)
        return self._size

    def shrink(self, overflow: ContextOverflow, prompt_tokens: int, answer_tokens: int) -> None:
        """Learn a smaller budget from a server's refusal, for the retry and all later calls.

        Parameters
        ----------
        overflow : ContextOverflow
            The refusal, with the server's limit and count of the prompt when it gave them.
        prompt_tokens : int
            The refused prompt in our count.
        answer_tokens : int
            What the call left for the answer.

        Notes
        -----
        When the server gave its limit and the prompt's size in its own tokens, the new budget
        scales ours by their ratio (with 5% slack, as tokenizers differ); otherwise it takes a
        quarter off.
        """
        if overflow.limit and overflow.actual:
            budget = int(prompt_tokens * (overflow.limit - answer_tokens) / overflow.actual * 0.95)
        else:
            budget = int(prompt_tokens * 0.75)
        self._size = min(self.size(), max(budget, 64) + answer_tokens)
