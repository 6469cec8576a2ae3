"""Shrinking sliding windows: complete listwise labels (Liu et al., 2024, as the paper describes).

One back-to-front sliding pass puts the best ``window - step`` candidates at the top in order.
Pass 1 ranks all candidates and fixes that top; pass 2 ranks only the rest and fixes the next
ones; and so on, until the last pass fits in one window and ranks everything left. Over 100
candidates with windows of 20 moving by 10 that is 9 passes and 9 + 8 + ... + 1 = 45 calls, and a
perfect judge yields the complete order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..options import Option

from .base import Rounds, Window
from .sliding import STEP, WINDOW, SlidingWindow, window_schedule


@dataclass(frozen=True)
class ShrinkingWindow(SlidingWindow):
    """Sliding passes over a shrinking list: each pass fixes its top and leaves it out of the next.

    Parameters
    ----------
    window, step : int
        As for :class:`SlidingWindow`. Each pass fixes ``min(step, window - step)`` candidates,
        the most one pass sorts for certain.
    passes : int
        Most passes; the list is complete after ``ceil((n - window) / fixed) + 1`` of them, and
        with fewer, the unfixed rest keeps the last pass's order.
    """

    passes: int = 9
    name: str = "shrinking"
    options: ClassVar[tuple[Option, ...]] = (
        WINDOW, STEP, Option("passes", int, 9, "most passes (the list is complete after enough of them)"))

    def rounds(self, n: int) -> Rounds:
        """One round per window, pass after pass, each pass over the candidates not yet fixed."""
        order = list(range(n))
        fixed = 0
        per_pass = min(self.step, self.window - self.step)
        for _ in range(self.passes):
            remaining = n - fixed
            for start, end in window_schedule(remaining, self.window, self.step):
                window = Window(order[fixed + start:fixed + end], self.answer_kind)
                (answer,) = yield [window]
                order[fixed + start:fixed + end] = window.ranked(answer)
            if remaining <= self.window:
                break  # the pass was one window over everything left: all ranked
            fixed += per_pass
        return order
