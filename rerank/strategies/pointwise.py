"""Pointwise reranking: each passage judged alone, all in one round, sorted by P(yes).

The way cross-encoder rerankers work, with an LLM as the judge (monoT5's "true/false",
Qwen3-Reranker's "yes/no"): every candidate is a window of one asking for a
:class:`~rerank.answers.Relevance` answer, scored by the yes/no log-probabilities of its first
token (or the word, where a backend returns none). Calls are one per candidate, but all in a single
round, so wall time under concurrency is one call's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ..answers import AnswerKind, Relevance
from .base import Ranking, Rounds, Window


@dataclass(frozen=True)
class Pointwise:
    """Every candidate judged alone in one round; ranked by the probability of relevance.

    An answer that cannot be read scores below every judged one; ties keep the first-stage order.
    """

    name: str = "pointwise"
    answer_kind: ClassVar[AnswerKind] = Relevance()
    default_prompt: ClassVar[str] = "pointwise"
    options: ClassVar[tuple] = ()

    def largest_window(self, n: int) -> int:
        """One passage a call."""
        return min(n, 1)

    def rounds(self, n: int) -> Rounds:
        """One round of ``n`` windows of one."""
        if n == 0:
            return []
        answers = yield [Window((i,), self.answer_kind) for i in range(n)]
        scores = [answer.scores[0] if answer.scores else -math.inf for answer in answers]
        order = sorted(range(n), key=lambda i: (-scores[i], i))
        return Ranking(order, [scores[i] for i in order])
