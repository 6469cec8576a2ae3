"""The strategy protocol: a reranking algorithm as rounds of independent LLM calls.

A strategy never calls an LLM itself. Its :meth:`Strategy.rounds` generator yields a *round*, a
list of :class:`Window` objects that do not depend on one another (each the candidate indices in
the order they are shown, and the kind of answer it asks for), receives their
:class:`~rerank.answers.Answer` objects in the same order, and finally returns the new order of
all candidates (a list of indices, or a :class:`Ranking` with scores). One runner serves every
strategy: the async reranker runs a round's windows concurrently and many queries at once; a
batch-file runner can send one file per round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generator, Protocol, Sequence

from ..answers import PERMUTATION, Answer, AnswerKind
from ..options import Option

#: The option of every strategy that draws at random (tourrank's groups, jointrank's blocks):
#: one name, so that ``--seed`` means the same everywhere.
SEED = Option("seed", int, 0, "seeds a strategy's random choices (tourrank: each group's order; "
              "jointrank: the block design)")


@dataclass(frozen=True, slots=True)
class Window:
    """One call of a round: which candidates it shows, in which order, and what it asks.

    Attributes
    ----------
    indices : tuple of int
        Candidate indices, in the order the prompt shows them.
    kind : AnswerKind
        The answer asked for (a ranking of the window by default).
    prompt : str or None
        A prompt template for this window instead of the reranker's (e.g. a pairwise prompt).
    """

    indices: tuple[int, ...]
    kind: AnswerKind = PERMUTATION
    prompt: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "indices", tuple(self.indices))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)

    def ranked(self, answer: Answer) -> list[int]:
        """The candidate indices ``answer`` orders (all of them, or the chosen ones), best first."""
        return [self.indices[i] for i in answer.order]


@dataclass(frozen=True, slots=True)
class Ranking:
    """A strategy's final order, with the scores the method gives where it has them.

    Attributes
    ----------
    order : list of int
        Every candidate index, best first.
    scores : list of float or None
        One score per entry of ``order`` (decreasing), which reach the TREC run instead of
        rank-based scores: tournament points, relevance probabilities.
    """

    order: list[int]
    scores: list[float] | None = field(default=None)


Rounds = Generator[list[Window], list[Answer], "list[int] | Ranking"]


class Strategy(Protocol):
    """A reranking algorithm over ``n`` candidates, written as rounds of windows.

    A new strategy is one module with such a class, plus one line in the registry
    (:data:`rerank.strategies.STRATEGIES`); or, without the line, ``--strategy module:Class``.
    """

    name: str
    #: The answer its windows ask for (the main one, where windows mix kinds), and the prompt
    #: template used unless one is named (``rankgpt``).
    answer_kind: AnswerKind
    default_prompt: str
    #: The options it takes, declared once (:class:`~rerank.options.Option`); it is built as
    #: ``cls(**values)`` of those options.
    options: tuple

    def largest_window(self, n: int) -> int:
        """The most passages one call shows when ranking ``n`` candidates (for fitting checks)."""

    def rounds(self, n: int) -> Rounds:
        """Yield rounds of windows, receive their answers, return the final order of ``range(n)``."""


def as_ranking(result: "list[int] | Ranking") -> Ranking:
    """A strategy's return value as a :class:`Ranking`."""
    return result if isinstance(result, Ranking) else Ranking(list(result))


def run_with_judge(strategy: Strategy, n: int,
                   judge: Callable[[Window], "Answer | Sequence[int]"]) -> tuple[list[int], int, int]:
    """Drive ``strategy`` synchronously with a judge, for tests and simulations.

    Parameters
    ----------
    strategy : Strategy
    n : int
        Candidates.
    judge : callable
        Given a window, returns its :class:`~rerank.answers.Answer`, or (for windows asking for
        a ranking) the window's candidate indices best first.

    Returns
    -------
    tuple of (list of int, int, int)
        ``(order, calls, rounds)``.
    """
    generator = strategy.rounds(n)
    calls = rounds = 0
    try:
        windows = next(generator)
        while True:
            rounds += 1
            calls += len(windows)
            windows = generator.send([_as_answer(w, judge(w)) for w in windows])
    except StopIteration as stop:
        return as_ranking(stop.value).order, calls, rounds


def _as_answer(window: Window, judged) -> Answer:
    if isinstance(judged, Answer):
        return judged
    position = {index: i for i, index in enumerate(window.indices)}
    return Answer(tuple(position[index] for index in judged), "ok")
