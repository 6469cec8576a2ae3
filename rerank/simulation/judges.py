"""Judges built from qrels that answer a window directly, with no prompt and no model.

A simulated judge sees a window's candidates by index, knows their grades, and answers what the
window asks (:mod:`rerank.answers`): a ranking, the best ``k``, the first token's order, or a
relevance score. Written as ``--judge`` specs:

``perfect``
    Orders by grade; ties keep the order shown (as the test server's oracle does).
``noise:SIGMA``
    Each grade gets Gaussian noise of standard deviation ``SIGMA`` in every call.
``bias:P``
    With probability ``P`` a call puts the first passage shown first (position bias); otherwise
    it answers as ``perfect``. A window of one is judged without bias.
``identity``
    The order shown (relevance scores all equal).

Randomness comes from a seed per call, made of the run's seed, the query and the window, so the
same window asked twice gets the same answer (as a call cache would give) and answers do not
depend on the order calls are made in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from ..answers import OK, Answer, AnswerKind, Choice, FirstToken, Reasoned, Relevance
from ..errors import ConfigError

JUDGE_NAMES = ("perfect", "noise", "bias", "identity")


@dataclass(frozen=True, slots=True)
class SimulatedJudge:
    """A judge that answers from grades.

    Attributes
    ----------
    name : str
        One of :data:`JUDGE_NAMES`.
    level : float
        ``noise``'s standard deviation or ``bias``'s probability (0 for the others).
    """

    name: str = "perfect"
    level: float = 0.0

    @property
    def spec(self) -> str:
        """How it is written on the command line (``noise:0.5``)."""
        return self.name if self.name in ("perfect", "identity") else f"{self.name}:{self.level:g}"

    @property
    def random(self) -> bool:
        """Whether its answers depend on the seed."""
        return self.name in ("noise", "bias") and self.level > 0

    def answer(self, kind: AnswerKind, grades: Sequence[float], seed: str) -> Answer:
        """The answer to a window whose candidates, in the order shown, have ``grades``.

        Parameters
        ----------
        kind : AnswerKind
            What the window asks for (a :class:`~rerank.answers.Reasoned` kind is answered as
            its inner kind).
        grades : sequence of float
            The qrels grade of each passage shown, in order (0 when unjudged).
        seed : str
            This call's seed.
        """
        while isinstance(kind, Reasoned):
            kind = kind.inner
        rng = random.Random(seed) if self.random else None
        if isinstance(kind, Relevance):
            grade = grades[0] + (rng.gauss(0.0, self.level) if self.name == "noise" else 0.0)
            return Answer((0,), OK, (0.0 if self.name == "identity" else float(grade),))
        order = self.order(grades, rng)
        if isinstance(kind, Choice):
            order = order[: min(kind.k, len(order))]
        if isinstance(kind, FirstToken):  # log-probabilities falling with the rank
            scores = [0.0] * len(order)
            for rank, position in enumerate(order):
                scores[position] = -float(rank)
            return Answer(tuple(order), OK, tuple(scores))
        return Answer(tuple(order), OK)

    def order(self, grades: Sequence[float], rng: random.Random | None) -> list[int]:
        """Window positions best first, as this judge sees them."""
        positions = list(range(len(grades)))
        if self.name == "identity":
            return positions
        if self.name == "noise" and rng is not None:
            seen = [grade + rng.gauss(0.0, self.level) for grade in grades]
        else:
            seen = list(grades)
        order = sorted(positions, key=lambda i: -seen[i])  # stable: ties keep the order shown
        if self.name == "bias" and rng is not None and len(order) > 1 and rng.random() < self.level:
            order.remove(0)
            order.insert(0, 0)
        return order


def parse_judge(spec: str) -> SimulatedJudge:
    """A judge from its spec: ``perfect``, ``noise:SIGMA``, ``bias:P`` or ``identity``.

    Raises
    ------
    ConfigError
        For an unknown name or a level out of range.
    """
    name, _, level_text = spec.partition(":")
    if name not in JUDGE_NAMES:
        raise ConfigError(f"--judge {spec}: unknown judge '{name}' (choose from perfect, noise:SIGMA, "
                          "bias:P, identity)")
    if name in ("perfect", "identity"):
        if level_text:
            raise ConfigError(f"--judge {spec}: {name} takes no level")
        return SimulatedJudge(name)
    try:
        level = float(level_text)
    except ValueError:
        raise ConfigError(f"--judge {spec}: expected {name}:NUMBER, e.g. {name}:0.5") from None
    if level < 0 or (name == "bias" and level > 1) or level != level:
        raise ConfigError(f"--judge {spec}: {'a probability in [0, 1]' if name == 'bias' else 'a standard deviation >= 0'} "
                          "is needed")
    return SimulatedJudge(name, level)
