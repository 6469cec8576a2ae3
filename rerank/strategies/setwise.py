"""Setwise ranking (Zhuang et al., SIGIR 2024): sorting by which of a few passages is the most relevant.

A comparison shows ``num_child + 1`` passages (``prompts/setwise.yaml``, ``Passage A`` ...) and asks
for the most relevant one; a heapsort (a heap of ``num_child`` children a node) or bubble passes
(windows of ``num_child + 1`` moving up by ``num_child``) over those comparisons find the top ``k``
(:mod:`rerank.strategies.sorting`, following llm-rankers' ``llmrankers/setwise.py``). Each
comparison depends on the one before, so each round is one window. The answer is read either as
generated text (``scoring=generation``, a :class:`~rerank.answers.Choice` of one) or from the
log-probabilities of the labels as the first answer token after ``Passage `` (``likelihood``, a
first-token answer asked with the same question), the best label winning. An answer that names
no passage of the window keeps the first shown, as the reference does.

The final order is the top ``k`` found, best first, then the other candidates in first-stage
order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..answers import AnswerKind, Choice, MostRelevantFirstToken
from ..errors import ConfigError
from ..options import Option
from .base import Rounds, Window
from .sorting import bubble_top, chosen, heap_top, top_then_rest

CHOICE = Choice(1)
METHODS = ("heapsort", "bubblesort")
SCORINGS = ("generation", "likelihood")


LIKELIHOOD = MostRelevantFirstToken()


@dataclass(frozen=True)
class Setwise:
    """Setwise heapsort or bubble sort for the top ``k``; one window of ``num_child + 1`` a round.

    Parameters
    ----------
    method : {"heapsort", "bubblesort"}
        Heapsort (build the heap, then ``k`` extractions) or ``k`` bubble passes.
    num_child : int
        Children of a heap node, and how far a bubble window moves; a window shows
        ``num_child + 1`` passages.
    k : int
        How many of the best are sorted; the rest follow in first-stage order.
    scoring : {"generation", "likelihood"}
        Read the generated label, or the labels' first-token log-probabilities (the backend must
        return them).
    """

    method: str = "heapsort"
    num_child: int = 3
    k: int = 10
    scoring: str = "generation"
    name: str = "setwise"
    default_prompt: ClassVar[str] = "setwise"
    options: ClassVar[tuple[Option, ...]] = (
        Option("method", str, "heapsort", "setwise: heapsort or bubblesort for the top k", choices=METHODS),
        Option("num_child", int, 3, "setwise: children of a heap node; a window shows num_child + 1 passages"),
        Option("k", int, 10, "setwise: how many of the best are sorted"),
        Option("scoring", str, "generation", "setwise: read the generated label, or the labels' first-token "
               "log-probabilities", choices=SCORINGS),
    )

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method}: setwise knows {' and '.join(METHODS)}")
        if self.scoring not in SCORINGS:
            raise ConfigError(f"--scoring {self.scoring}: setwise knows {' and '.join(SCORINGS)}")
        if self.num_child < 1:
            raise ConfigError(f"--num-child {self.num_child}: must be at least 1")
        if self.k < 1:
            raise ConfigError(f"--k {self.k}: must be at least 1")

    @property
    def answer_kind(self) -> AnswerKind:
        """A choice of one, or (``likelihood``) a first-token answer to the same question."""
        return CHOICE if self.scoring == "generation" else LIKELIHOOD

    def largest_window(self, n: int) -> int:
        """``num_child + 1`` passages a call (fewer when there are fewer)."""
        return min(n, self.num_child + 1)

    def rounds(self, n: int) -> Rounds:
        """One comparison a round, in the sort's order; returns the top ``k``, then the rest."""
        sort = heap_top if self.method == "heapsort" else bubble_top
        top = yield from sort(n, self.k, self.num_child, self._most_relevant)
        return top_then_rest(top, n)

    def _most_relevant(self, shown: tuple[int, ...]):
        """One window; the position of the passage it picks, the first shown when none."""
        window = Window(shown, self.answer_kind)
        (answer,) = yield [window]
        pick = chosen(window, answer)
        return 0 if pick is None else shown.index(pick)
