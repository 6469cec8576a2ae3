"""Single-token ranking (FIRST, Reddy et al., 2024): sliding windows, each ranked in one step.

Instead of decoding a whole permutation, each call asks for one token, the first identifier of
the answer, and orders the window by the log-probabilities of its identifiers there. The
windows follow RankGPT's sliding schedule; the reranker makes the call (``max_tokens=1`` with
``top_logprobs``) because the strategy says it reads the first token.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Rounds
from .sliding import SlidingWindow


@dataclass(frozen=True)
class SingleToken:
    """Sliding windows ranked by the first answer token's identifier log-probabilities.

    Parameters
    ----------
    window, step, passes : int
        As :class:`~rerank.strategies.sliding.SlidingWindow`. A window's identifiers must each
        be one token: letters (the ``first`` prompt) for up to 26 passages, numbers for up to 9.
    """

    window: int = 20
    step: int = 10
    passes: int = 1
    name: str = "single-token"
    #: How a window's answer is read: its first token's alternatives, not a decoded ranking.
    reads: str = "first-token"

    def __post_init__(self):
        SlidingWindow(self.window, self.step, self.passes)  # the same checks of the options

    @classmethod
    def from_options(cls, *, window: int, step: int, passes: int, **_) -> "SingleToken":
        """Build from the reranker's options."""
        return cls(window=window, step=step, passes=passes)

    def rounds(self, n: int) -> Rounds:
        """The sliding schedule's rounds."""
        return (yield from SlidingWindow(self.window, self.step, self.passes).rounds(n))
