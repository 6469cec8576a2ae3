"""Answers read from log-probabilities: the first token's identifiers, and yes/no relevance."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from .base import OK, REPAIRED, UNPARSEABLE, Answer, Ask, CallSettings
from .listwise import Choice, Permutation
from .ranking import rank_by_first_token, strip_thinking

#: Alternatives asked for the first token: OpenAI's maximum.
MAX_TOP_LOGPROBS = 20
#: The answer words of a relevance judgment: Qwen3-Reranker's and most prompts' yes/no, monoT5's
#: true/false.
_POSITIVE, _NEGATIVE = ("yes", "true"), ("no", "false")
_GRADE = re.compile(r"^\s*([0-9])\b")


@dataclass(frozen=True, slots=True)
class FirstToken:
    """The window ranked by its identifiers' log-probabilities as the answer's first token
    (FIRST, Reddy et al., 2024; setwise's likelihood variant): one decoding step."""

    name: str = "first-token"

    def ask(self, labels: Sequence[str], settings: CallSettings) -> Ask:
        """One token with its alternatives, after the template's answer start (``[``)."""
        temperature = 0.0 if settings.temperature is None else settings.temperature
        params = {"temperature": temperature, "max_tokens": 1, "logprobs": True,
                  "top_logprobs": min(len(labels), MAX_TOP_LOGPROBS)}
        return Ask(params, 1, None, settings.answer_prefix, list(labels))

    def parse(self, completion, labels: Sequence[str]) -> Answer:
        """Identifiers by decreasing log-probability (see :func:`rank_by_first_token`); the
        scores are those log-probabilities (absent identifiers: -inf)."""
        parsed = rank_by_first_token(completion.top_logprobs or (), list(labels))
        best = {i: float("-inf") for i in range(len(labels))}
        position = {label: i for i, label in enumerate(labels)}
        for token, logprob in completion.top_logprobs or ():
            index = position.get(token.strip().strip("[]").strip())
            if index is not None:
                best[index] = max(best[index], logprob)
        return Answer(parsed.order, parsed.status, tuple(best[i] for i in range(len(labels))),
                      completion.text, completion.reasoning)

    def cacheable(self, completion) -> bool:
        """One token is asked for on purpose: what matters is that the alternatives came."""
        return completion.top_logprobs is not None

    def instructions(self, labels: Sequence[str]) -> str:
        """As a ranking: the first token of a ranking is what is read."""
        return Permutation().instructions(labels)

    def target(self, order: Sequence[int], labels: Sequence[str]) -> str:
        """The ranking whose first token is read."""
        return Permutation().target(order, labels)


@dataclass(frozen=True, slots=True)
class MostRelevantFirstToken(FirstToken):
    """A first-token answer to setwise's question: the labels' log-probabilities as the first token
    of the answer to "the label of the most relevant passage" (the setwise paper's likelihood
    scoring), rather than as the start of a ranking."""

    def instructions(self, labels: Sequence[str]) -> str:
        """Setwise's question, as a :class:`~rerank.answers.Choice` of one asks it."""
        return Choice(1).instructions(labels)

    def target(self, order: Sequence[int], labels: Sequence[str]) -> str:
        """``Passage C``: the label whose first token is read."""
        return Choice(1).target(order, labels)


@dataclass(frozen=True, slots=True)
class Relevance:
    """A pointwise judgment of one passage: ``Yes``/``No`` (scored by their log-probabilities when
    the backend returns them), or a graded label ``0``-``9``."""

    name: str = "relevance"

    def ask(self, labels: Sequence[str], settings: CallSettings) -> Ask:
        """A few tokens, with the first token's alternatives."""
        temperature = 0.0 if settings.temperature is None else settings.temperature
        params = {"temperature": temperature, "max_tokens": 4, "logprobs": True,
                  "top_logprobs": 5}
        return Ask(params, 4)

    def parse(self, completion, labels: Sequence[str]) -> Answer:
        """The probability of relevance: P(yes) / (P(yes) + P(no)) from the first token's
        alternatives when both or one are there (``true``/``false`` count as yes/no), else 1 or 0
        from the text (``Yes``/``No``, ``true``/``false``), or the grade written (``2``);
        unparseable when neither."""
        text = strip_thinking(completion.text)
        score = _yes_probability(completion.top_logprobs)
        status = OK
        if score is None:
            word = text.strip().strip(".:!\"'*`").lower()
            grade = _GRADE.match(text)
            if word.startswith(_POSITIVE):
                score = 1.0
            elif word.startswith(_NEGATIVE):
                score = 0.0
            elif grade is not None:
                score = float(grade.group(1))
            else:
                return Answer((0,), UNPARSEABLE, None, completion.text, completion.reasoning)
            status = OK if completion.top_logprobs is None else REPAIRED
        return Answer((0,), status, (score,), completion.text, completion.reasoning)

    def cacheable(self, completion) -> bool:
        """A judgment is read from its first token: a cut answer is whole enough."""
        return True

    def instructions(self, labels: Sequence[str]) -> str:
        """The yes/no question."""
        return "Does the passage answer the query? Answer 'Yes' or 'No'."

    def target(self, order: Sequence[int], labels: Sequence[str]) -> str:
        """``Yes``: a judged passage is the relevant one of its window of one."""
        return "Yes"


def _yes_probability(alternatives) -> float | None:
    """P(yes) normalised over yes and no (or true and false), from the first token's
    alternatives; None without any of them."""
    best: dict[bool, float] = {}
    for token, logprob in alternatives or ():
        word = token.strip().lower()
        if word in _POSITIVE or word in _NEGATIVE:
            positive = word in _POSITIVE
            best[positive] = max(logprob, best.get(positive, float("-inf")))
    if not best:
        return None
    yes, no = best.get(True), best.get(False)
    if yes is None or no is None:
        return 1.0 if no is None else 0.0
    return 1.0 / (1.0 + math.exp(min(no - yes, 700.0)))
