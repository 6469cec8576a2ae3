"""Pairwise ranking prompting (PRP, Qin et al., NAACL 2024): which of two passages is better.

All-pairs variant: every pair of candidates in one round, each asked in both orders (``A, B`` and
``B, A``) so that a model's preference for the first (or second) position cancels out; a pair
whose two answers agree gives its winner a point, a pair whose answers disagree or cannot be read
is a tie (half a point each). Candidates are ranked by points; the points are the run's scores.
Each window is a :class:`~rerank.answers.Choice` of one over two passages, shown with
``prompts/pairwise.yaml`` (``Output Passage A or Passage B:``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import ClassVar

from ..answers import AnswerKind, Choice
from ..errors import ConfigError
from ..options import Option
from .base import Ranking, Rounds, Window

PAIR = Choice(1)


@dataclass(frozen=True)
class Pairwise:
    """PRP all pairs: ``n (n - 1)`` calls (both orders) or ``n (n - 1) / 2`` (one), in one round.

    Parameters
    ----------
    method : str
        ``allpair`` (the only one so far).
    both_orders : bool
        Ask each pair in both orders (PRP's default), or only in first-stage order.
    pair_prompt : str
        The prompt of a pair.
    """

    method: str = "allpair"
    both_orders: bool = True
    pair_prompt: str = "pairwise"
    name: str = "pairwise"
    answer_kind: ClassVar[AnswerKind] = PAIR
    default_prompt: ClassVar[str] = "rankgpt"
    options: ClassVar[tuple[Option, ...]] = (
        Option("method", str, "allpair", "pairwise: how pairs are chosen", choices=("allpair",)),
        Option("both_orders", bool, True, "pairwise: ask each pair in both orders, so position bias cancels"),
        Option("pair_prompt", str, "pairwise", "pairwise: the prompt template of a pair"),
    )

    def __post_init__(self):
        if self.method != "allpair":
            raise ConfigError(f"--method {self.method}: pairwise knows allpair")

    def largest_window(self, n: int) -> int:
        """Two passages a call."""
        return min(n, 2)

    def rounds(self, n: int) -> Rounds:
        """One round: every pair, in one or both orders."""
        pairs = list(combinations(range(n), 2))
        if not pairs:
            return list(range(n))
        windows = [Window((i, j), PAIR, self.pair_prompt) for i, j in pairs]
        if self.both_orders:
            windows += [Window((j, i), PAIR, self.pair_prompt) for i, j in pairs]
        answers = yield windows
        winners = [window.ranked(answer)[0] if answer.order else None for window, answer in zip(windows, answers)]
        points = [0.0] * n
        for k, (i, j) in enumerate(pairs):
            first = winners[k]
            agreed = first if not self.both_orders or first == winners[k + len(pairs)] else None
            if agreed is None:  # unreadable, or the two orders disagree: a tie
                points[i] += 0.5
                points[j] += 0.5
            else:
                points[agreed] += 1.0
        order = sorted(range(n), key=lambda i: (-points[i], i))
        return Ranking(order, [points[i] for i in order])
