"""What every answer kind shares: the question it asks a backend, and the answer it reads back.

An *answer kind* is the vocabulary between a strategy and a model: a strategy asks each window
for a kind of answer (a ranking, the best k, the first token's log-probabilities, a relevance
judgment, any of these after reasoning), and gets an :class:`Answer` back. The kind owns
everything in between that depends on it: the request's parameters (:class:`Ask`), the
constraint on decoding, the parser, the prompt's answer instructions and the training target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:
    from ..backends.base import Completion
    from .constraints import Constraint

#: An answer's status: as asked, repaired (some identifiers missing, repeated or unknown), not
#: readable at all, or cut by its token limit (never cached).
OK, REPAIRED, UNPARSEABLE, TRUNCATED = "ok", "repaired", "unparseable", "truncated"


@dataclass(frozen=True, slots=True)
class Answer:
    """A window's answer, as its kind reads it.

    Attributes
    ----------
    order : tuple of int
        Positions in the window (0-based, in the order shown), best first: every position for a
        ranking (repaired into a permutation when needed), the chosen ones for a choice (empty
        when none could be read), ``(0,)`` for a relevance judgment.
    status : str
        ``"ok"``, ``"repaired"``, ``"unparseable"`` or ``"truncated"``.
    scores : tuple of float, or None
        One score per window position (in the order shown), where the kind has them: the
        identifiers' log-probabilities (first token), the probability of relevance (relevance).
    text : str
        The answer as the model wrote it, reasoning removed.
    reasoning : str or None
        The reasoning the model wrote (or the API returned) before its answer.
    """

    order: tuple[int, ...]
    status: str
    scores: tuple[float, ...] | None = None
    text: str = ""
    reasoning: str | None = None


@dataclass(frozen=True, slots=True)
class CallSettings:
    """The reranker's settings an answer kind builds its request from.

    Attributes
    ----------
    context : int
        The context budget in tokens (prompt and answer).
    temperature : float or None
        ``--temperature``; None: 0 for plain answers, the server's default after reasoning.
    max_tokens : int or None
        ``--max-tokens``: the answer's token limit instead of the kind's own estimate.
    constrained : bool
        Whether to hold the answer to its format where the backend can.
    answer_prefix : str
        The prompt template's start of the answer, for answers read from their first token.
    """

    context: int
    temperature: float | None = None
    max_tokens: int | None = None
    constrained: bool = False
    answer_prefix: str = ""


@dataclass(frozen=True, slots=True)
class Ask:
    """What one call sends for a window, as its answer kind decides.

    Attributes
    ----------
    params : dict
        Sampling parameters for the backend (``temperature``, ``max_tokens`` or
        ``max_completion_tokens``, ``logprobs``, ``top_logprobs``, ``reasoning_effort``).
    answer_tokens : int
        Tokens the answer may take (reasoning included): what the prompt must leave free.
    constraint : Constraint or None
        The format decoding is held to, where the backend can.
    answer_start : str
        The start of the answer, sent as a last assistant message for the model to continue.
    first_token_labels : list of str or None
        Identifiers whose first-token log-probabilities the backend should return.
    """

    params: dict
    answer_tokens: int
    constraint: "Constraint | None" = None
    answer_start: str = ""
    first_token_labels: list[str] | None = None


class AnswerKind(Protocol):
    """A kind of answer: how to ask for it, and how to read it.

    Attributes
    ----------
    name : str
        Recorded with each call (``permutation``, ``choice-1``, ``first-token``, ...).
    """

    name: str

    def ask(self, labels: Sequence[str], settings: CallSettings) -> Ask:
        """The request for a window whose passages are shown with ``labels``."""

    def parse(self, completion: "Completion", labels: Sequence[str]) -> Answer:
        """Read a completion into an :class:`Answer`; never raises on what a model may write."""

    def cacheable(self, completion: "Completion") -> bool:
        """Whether a completion is the whole answer asked for, so that it may be cached."""

    def instructions(self, labels: Sequence[str]) -> str:
        """The prompt's answer instructions (the ``{instructions}`` of a template)."""

    def target(self, order: Sequence[int], labels: Sequence[str]) -> str:
        """The answer a perfect model would write for window positions ``order`` (training)."""
