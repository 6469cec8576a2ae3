"""The strategy protocol: a reranking algorithm as rounds of independent LLM calls.

A strategy never calls an LLM itself. Its :meth:`Strategy.rounds` generator yields a *round*, a
list of windows that do not depend on one another (each window a list of candidate indices in the
order they are shown), receives the ranked windows (the same indices, best first) and finally
returns the new order of all candidates. One runner serves every strategy: the async reranker
runs a round's windows concurrently and many queries at once; a batch-file runner can send one
file per round.
"""

from __future__ import annotations

from typing import Generator, Protocol

Window = list[int]
Rounds = Generator[list[Window], list[Window], list[int]]


class Strategy(Protocol):
    """A reranking algorithm over ``n`` candidates, written as rounds of windows.

    A strategy may set ``reads = "first-token"`` to have each window ranked by the first answer
    token's identifier log-probabilities (one decoding step) instead of a decoded ranking.
    """

    name: str

    @classmethod
    def from_options(cls, **options) -> "Strategy":
        """Build the strategy from the reranker's options, taking those it uses."""

    def largest_window(self, n: int) -> int:
        """The most passages one call shows when ranking ``n`` candidates (for fitting checks)."""

    def rounds(self, n: int) -> Rounds:
        """Yield rounds of windows, receive their rankings, return the final order of ``range(n)``."""


def run_with_judge(strategy: Strategy, n: int, judge) -> tuple[list[int], int, int]:
    """Drive ``strategy`` synchronously with ``judge(window) -> ranked window``.

    For tests and simulations; returns ``(order, calls, rounds)``.
    """
    generator = strategy.rounds(n)
    calls = rounds = 0
    try:
        windows = next(generator)
        while True:
            rounds += 1
            calls += len(windows)
            windows = generator.send([judge(w) for w in windows])
    except StopIteration as stop:
        return stop.value, calls, rounds
