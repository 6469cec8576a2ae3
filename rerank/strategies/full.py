"""Full ranking: all candidates in one long-context call (Liu et al., 2024)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Rounds


@dataclass(frozen=True)
class FullRanking:
    """Rank every candidate in a single window; passages are shortened to fit the context."""

    name: str = "full"

    @classmethod
    def from_options(cls, **_) -> "FullRanking":
        """Build from the reranker's options (full ranking uses none of them)."""
        return cls()

    def largest_window(self, n: int) -> int:
        """The most passages one call shows: all ``n``."""
        return n

    def rounds(self, n: int) -> Rounds:
        """One round of one window holding all ``n`` candidates."""
        if n <= 1:
            return list(range(n))
        (ranked,) = yield [list(range(n))]
        return ranked
