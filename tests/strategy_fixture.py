"""A strategy written outside the package, as a user would: every pair asked in both orders.

It proves the redesign's promise: a method that asks "which of these two?" (a Choice of one
over a window of two, with a prompt of its own), treats an unreadable answer as a tie and
returns points as scores, runs through the CLI as ``--strategy strategy_fixture:BestOfPairs``
with no change anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rerank.answers import Choice
from rerank.options import Option
from rerank.strategies import Ranking, Window


@dataclass(frozen=True)
class BestOfPairs:
    """All pairs of the top candidates, both orders, in one round; a point per win, half a point
    each for an answer that cannot be read.

    Parameters
    ----------
    pair_prompt : str
        The prompt template of each pair.
    """

    pair_prompt: str = "pairwise"
    name: str = "best-of-pairs"
    answer_kind: ClassVar = Choice(1)
    default_prompt: ClassVar[str] = "rankgpt"
    options: ClassVar[tuple] = (Option("pair_prompt", str, "pairwise", "the prompt of each pair"),)

    def largest_window(self, n: int) -> int:
        """Two passages a call."""
        return min(n, 2)

    def rounds(self, n: int):
        """One round: every ordered pair."""
        windows = [Window((i, j), Choice(1), self.pair_prompt) for i in range(n) for j in range(n) if i != j]
        if not windows:
            return list(range(n))
        answers = yield windows
        points = [0.0] * n
        for window, answer in zip(windows, answers):
            if answer.order:
                points[window.indices[answer.order[0]]] += 1.0
            else:  # unreadable: a tie, not "the first shown wins"
                for index in window.indices:
                    points[index] += 0.5
        order = sorted(range(n), key=lambda i: (-points[i], i))
        return Ranking(order, [points[i] for i in order])
