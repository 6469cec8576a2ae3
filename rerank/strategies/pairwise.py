"""Pairwise ranking prompting (PRP, Qin et al., NAACL 2024): which of two passages is better.

Each window is a :class:`~rerank.answers.Choice` of one over two passages, shown with
``prompts/pairwise.yaml`` (``Output Passage A or Passage B:``). A pair is asked in both orders
(``A, B`` and ``B, A``, two windows of one round) so that a model's preference for the first (or
second) position cancels out: one passage wins when both answers pick it; when they disagree or
one cannot be read, the pair is a tie. With ``both_orders`` off, a pair is one window.

``allpair``
    Every pair in one round; a win is a point, a tie half a point to each. Candidates are ranked
    by points (ties in first-stage order); the points are the run's scores.
``heapsort`` / ``bubblesort``
    The top ``k`` by sorting (:mod:`rerank.strategies.sorting`, as llm-rankers'
    ``llmrankers/pairwise.py``): a binary heap whose node is compared with each child in turn
    (the child shown first), or ``k`` bubble passes of adjacent pairs from the bottom up
    (PRP-Sliding-K; the lower shown first). A tie keeps the current order, as the reference's
    ``a > b`` is false unless both orders say so. One comparison a round; the top ``k`` found,
    then the other candidates in first-stage order. Here both orders keep a position-biased
    model from promoting the worse passage, but the bias still costs: it turns into ties, so
    missed promotions (about what one order loses when its bias favours the holder).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import ClassVar

from ..answers import AnswerKind, Choice
from ..errors import ConfigError
from ..options import Option
from .base import Ranking, Rounds, Window
from .sorting import bubble_top, chosen, heap_top, top_then_rest

PAIR = Choice(1)
METHODS = ("allpair", "heapsort", "bubblesort")


@dataclass(frozen=True)
class Pairwise:
    """PRP: all pairs in one round, or a sort for the top ``k`` one comparison a round.

    All pairs take ``n (n - 1)`` calls (both orders) or ``n (n - 1) / 2`` (one). A sort's
    comparison is two calls in one round (both orders) or one.

    Parameters
    ----------
    method : {"allpair", "heapsort", "bubblesort"}
        How pairs are chosen.
    both_orders : bool
        Ask each pair in both orders (PRP's default), or only once: in first-stage order for
        all pairs, the challenger (child, lower passage) first for the sorts.
    pair_prompt : str
        The prompt of a pair.
    k : int
        How many of the best the sorts find (all pairs ranks everything).
    """

    method: str = "allpair"
    both_orders: bool = True
    pair_prompt: str = "pairwise"
    k: int = 10
    name: str = "pairwise"
    answer_kind: ClassVar[AnswerKind] = PAIR
    default_prompt: ClassVar[str] = "rankgpt"
    options: ClassVar[tuple[Option, ...]] = (
        Option("method", str, "allpair", "pairwise: all pairs, or a sort for the top k; setwise: heapsort or "
               "bubblesort", choices=METHODS),
        Option("both_orders", bool, True, "pairwise: ask each pair in both orders, against position bias (a "
               "passage wins when both agree)"),
        Option("pair_prompt", str, "pairwise", "pairwise: the prompt template of a pair"),
        Option("k", int, 10, "pairwise heapsort/bubblesort, setwise: how many of the best are sorted"),
    )

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method}: pairwise knows {', '.join(METHODS)}")
        if self.k < 1:
            raise ConfigError(f"--k {self.k}: must be at least 1")

    def largest_window(self, n: int) -> int:
        """Two passages a call."""
        return min(n, 2)

    def rounds(self, n: int) -> Rounds:
        """All pairs in one round, or one comparison a round of a sort."""
        if self.method == "allpair":
            return (yield from self._all_pairs(n))
        if self.method == "heapsort":
            top = yield from heap_top(n, self.k, 2, self._knockout)
        else:
            top = yield from bubble_top(n, self.k, 1, self._knockout)
        return top_then_rest(top, n)

    def _all_pairs(self, n: int) -> Rounds:
        """Every pair, in one or both orders, scored by points."""
        pairs = list(combinations(range(n), 2))
        if not pairs:
            return list(range(n))
        windows = [Window((i, j), PAIR, self.pair_prompt) for i, j in pairs]
        if self.both_orders:
            windows += [Window((j, i), PAIR, self.pair_prompt) for i, j in pairs]
        answers = yield windows
        winners = [chosen(window, answer) for window, answer in zip(windows, answers)]
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

    def _knockout(self, shown: tuple[int, ...]):
        """The best of ``shown`` (a node and its children, or an upper and a lower passage): each
        challenger in turn against the one holding; the position of the last holder."""
        holder = 0
        for challenger in range(1, len(shown)):
            if (yield from self._beats(shown[challenger], shown[holder])):
                holder = challenger
        return holder

    def _beats(self, challenger: int, holder: int):
        """Whether ``challenger`` wins over ``holder``: in both orders when asked so (a tie,
        disagreeing or unreadable, keeps the holder)."""
        windows = [Window((challenger, holder), PAIR, self.pair_prompt)]
        if self.both_orders:
            windows.append(Window((holder, challenger), PAIR, self.pair_prompt))
        answers = yield windows
        return all(chosen(window, answer) == challenger for window, answer in zip(windows, answers))
