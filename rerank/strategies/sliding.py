"""Sliding-window listwise reranking (RankGPT): windows from the bottom of the list to the top."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..answers import PERMUTATION, AnswerKind
from ..errors import ConfigError
from ..options import Option
from .base import Rounds, Window


#: The options every sliding strategy shares.
WINDOW = Option("window", int, 20, "passages per call (sliding windows, tdpart)")
STEP = Option("step", int, None, "how far each window moves up (sliding windows; default: half the window, "
                                  "RankGPT's 20/10)")


def default_step(window: int) -> int:
    """The step when none is given: half the window (RankGPT's 20/10), at least 1.

    Examples
    --------
    >>> default_step(20), default_step(10), default_step(3), default_step(2)
    (10, 5, 1, 1)
    """
    return max(window // 2, 1)


def window_schedule(n: int, window: int, step: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` slices of one back-to-front pass over ``n`` candidates.

    The first window covers the last ``window`` candidates; each next one moves ``step`` towards
    the top; the last one starts at 0 and may be shorter (RankGPT's reference loop stops before
    the top when ``n - window`` is not a multiple of ``step``; this one always reaches it).
    A list of at most one candidate needs no window.

    Examples
    --------
    >>> window_schedule(100, 20, 10)[:2], len(window_schedule(100, 20, 10))
    ([(80, 100), (70, 90)], 9)
    >>> window_schedule(25, 20, 10)
    [(5, 25), (0, 15)]
    """
    if n <= 1:
        return []
    slices = []
    end = n
    while True:
        start = max(end - window, 0)
        slices.append((start, end))
        if start == 0:
            return slices
        end -= step


@dataclass(frozen=True)
class SlidingWindow:
    """RankGPT's sliding window.

    Parameters
    ----------
    window : int
        Passages per call (20).
    step : int or None
        How far each window moves up; must be smaller than ``window`` so that the best
        passages carry over from one window to the next. None (the default): half the window
        (:func:`default_step`), so 10 for the default window of 20, 5 for ``--window 10``.
    passes : int
        Number of back-to-front passes; one pass sorts the top ``window - step`` exactly.
    """

    window: int = 20
    step: int | None = None
    passes: int = 1
    name: str = "sliding"
    #: What each window asks for, and the prompt used unless one is named.
    answer_kind: ClassVar[AnswerKind] = PERMUTATION
    default_prompt: ClassVar[str] = "rankgpt"
    options: ClassVar[tuple[Option, ...]] = (WINDOW, STEP, Option("passes", int, 1, "back-to-front passes"))

    def __post_init__(self):
        if self.window < 2:
            raise ConfigError(f"--window must be at least 2, got {self.window}")
        if self.step is None:
            # Frozen: the resolved step is stored once, so settings and summaries name it.
            object.__setattr__(self, "step", default_step(self.window))
        if not 1 <= self.step < self.window:
            raise ConfigError(f"--step must be at least 1 and smaller than --window "
                              f"({self.window}), got {self.step}")
        if self.passes < 1:
            raise ConfigError(f"--passes must be at least 1, got {self.passes}")

    def largest_window(self, n: int) -> int:
        """The most passages one call shows: a window."""
        return min(self.window, n)

    def rounds(self, n: int) -> Rounds:
        """One round per window: each window depends on the one below it."""
        order = list(range(n))
        for _ in range(self.passes):
            for start, end in window_schedule(n, self.window, self.step):
                window = Window(order[start:end], self.answer_kind)
                (answer,) = yield [window]
                order[start:end] = window.ranked(answer)
        return order
