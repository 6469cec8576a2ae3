"""Full ranking: all candidates in one long-context call (Liu et al., 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..answers import PERMUTATION, AnswerKind
from .base import Rounds, Window


@dataclass(frozen=True)
class FullRanking:
    """Rank every candidate in a single window; passages are shortened to fit the context."""

    name: str = "full"
    answer_kind: ClassVar[AnswerKind] = PERMUTATION
    default_prompt: ClassVar[str] = "rankgpt"
    options: ClassVar[tuple] = ()

    def largest_window(self, n: int) -> int:
        """The most passages one call shows: all ``n``."""
        return n

    def rounds(self, n: int) -> Rounds:
        """One round of one window holding all ``n`` candidates."""
        if n <= 1:
            return list(range(n))
        window = Window(range(n))
        (answer,) = yield [window]
        return window.ranked(answer)
