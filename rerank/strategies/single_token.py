"""Single-token ranking (FIRST, Reddy et al., 2024): sliding windows, each ranked in one step.

Instead of decoding a whole permutation, each call asks for one token, the first identifier of
the answer, and orders the window by the log-probabilities of its identifiers there. The
windows follow RankGPT's sliding schedule; the reranker makes the call (``max_tokens=1`` with
``top_logprobs``) because each window asks for a :class:`~rerank.answers.FirstToken` answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..answers import FIRST_TOKEN, AnswerKind

from .sliding import SlidingWindow


@dataclass(frozen=True)
class SingleToken(SlidingWindow):
    """Sliding windows ranked by the first answer token's identifier log-probabilities.

    Parameters
    ----------
    window, step, passes : int
        As :class:`~rerank.strategies.sliding.SlidingWindow`. A window's identifiers must each
        be one token: letters (the ``first`` prompt) for up to 26 passages, numbers for up to 9.
    """

    name: str = "single-token"
    #: Each window is read from its first token's alternatives, not a decoded ranking; FIRST's
    #: prompt names passages by letters, one token each.
    answer_kind: ClassVar[AnswerKind] = FIRST_TOKEN
    default_prompt: ClassVar[str] = "first"
