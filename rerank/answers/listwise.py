"""Decoded listwise answers: a ranking of the whole window, or the best ``k`` of it.

Both are written in the ranking format of :mod:`rerank.answers.ranking` (``[3] > [1]``); a choice
may also name its passages as setwise prompts ask (``Passage C``, or just ``C``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ..fitting import answer_tokens
from .base import OK, REPAIRED, UNPARSEABLE, Answer, Ask, CallSettings
from .constraints import Constraint
from .ranking import extract_ids, format_ranking, parse_ranking, strip_thinking

_BRACKETED_LABEL = re.compile(r"\[\s*([A-Za-z]{1,2}|[0-9]{1,18})\s*\]")
_PASSAGE_LABEL = re.compile(r"\bpassage(?:\s+|\s*\[\s*)([A-Za-z]{1,2}|[0-9]{1,18})\b", re.IGNORECASE)
_LONE_LABEL = re.compile(r"(?<![A-Za-z0-9_])([A-Z]{1,2}|[0-9]{1,18})(?![A-Za-z0-9_])")


def _plain_params(settings: CallSettings, tokens: int) -> dict:
    """Sampling parameters of a decoded answer of ``tokens`` tokens."""
    temperature = 0.0 if settings.temperature is None else settings.temperature
    return {"temperature": temperature, "max_tokens": tokens}


def _cut_by_limit(completion) -> bool:
    return completion.finish_reason == "length"


@dataclass(frozen=True, slots=True)
class Permutation:
    """A ranking of every passage of the window, best first (RankGPT, RankZephyr, full ranking)."""

    name: str = "permutation"

    def ask(self, labels: Sequence[str], settings: CallSettings) -> Ask:
        """``max_tokens`` for ``len(labels)`` identifiers; constrained to a permutation on request."""
        tokens = answer_tokens(settings.max_tokens, len(labels), settings.context)
        constraint = Constraint(len(labels), len(labels)) if settings.constrained else None
        return Ask(_plain_params(settings, tokens), tokens, constraint)

    def parse(self, completion, labels: Sequence[str]) -> Answer:
        """Read the ranking, repaired into a permutation (see :func:`parse_ranking`)."""
        parsed = parse_ranking(completion.text, len(labels))
        return Answer(parsed.order, parsed.status, None, completion.text, completion.reasoning)

    def cacheable(self, completion) -> bool:
        """An answer cut by its token limit is not the model's whole ranking."""
        return not _cut_by_limit(completion)

    def instructions(self, labels: Sequence[str]) -> str:
        """RankGPT's closing instruction for ``len(labels)`` passages."""
        return (f"Rank the {len(labels)} passages above based on their relevance to the search query. "
                "The passages should be listed in descending order using identifiers. The most relevant "
                f"passages should be listed first. The output format should be [] > [], e.g., "
                f"{format_ranking(labels[:2])}. Only respond with the ranking results, do not say any "
                "word or explain.")

    def target(self, order: Sequence[int], labels: Sequence[str]) -> str:
        """``[a] > [b] > ...`` for positions ``order``."""
        return format_ranking(labels[i] for i in order)


@dataclass(frozen=True, slots=True)
class Choice:
    """The best ``k`` passages of the window, best first (setwise: k=1; tournaments: k=m;
    pairwise: a window of two, k=1).

    Parameters
    ----------
    k : int
        Passages to choose.
    """

    k: int = 1

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"a choice names at least one passage, got k={self.k}")

    @property
    def name(self) -> str:
        """``choice-K``."""
        return f"choice-{self.k}"

    def ask(self, labels: Sequence[str], settings: CallSettings) -> Ask:
        """``max_tokens`` for ``k`` identifiers; constrained (numbered passages) on request."""
        k = min(self.k, len(labels))
        tokens = answer_tokens(settings.max_tokens, k, settings.context)
        numbered = all(label.isdigit() for label in labels)
        constraint = Constraint(len(labels), k) if settings.constrained and numbered else None
        return Ask(_plain_params(settings, tokens), tokens, constraint)

    def parse(self, completion, labels: Sequence[str]) -> Answer:
        """The first ``k`` distinct passages the answer names, in its order.

        Read as ``[C]`` (or ``[3]``) when the answer brackets any label, else as ``Passage C``,
        else as lone labels. Status ``ok`` when exactly ``k`` distinct labels and nothing else
        were named, ``repaired`` when fewer, more, repeated or unknown ones were, ``unparseable``
        when none could be read (``order`` is then empty).
        """
        found, noise = read_labels(strip_thinking(completion.text), labels)
        k = min(self.k, len(labels))
        chosen = tuple(found[:k])
        if not chosen:
            status = UNPARSEABLE
        elif len(chosen) < k or len(found) > k or noise:
            status = REPAIRED
        else:
            status = OK
        return Answer(chosen, status, None, completion.text, completion.reasoning)

    def cacheable(self, completion) -> bool:
        """An answer cut by its token limit may miss its last choices."""
        return not _cut_by_limit(completion)

    def instructions(self, labels: Sequence[str]) -> str:
        """Setwise's question for ``k = 1``; a best-``k`` ranking instruction otherwise."""
        if self.k == 1:
            return "Output only the passage label of the most relevant passage:"
        return (f"Select the {self.k} passages most relevant to the search query, most relevant first. "
                f"The output format should be [] > [], e.g., {format_ranking(labels[:2])}. Only respond "
                "with the identifiers, do not say any word or explain.")

    def target(self, order: Sequence[int], labels: Sequence[str]) -> str:
        """``Passage C`` for ``k = 1``, else ``[a] > [b]`` for the first ``k`` of ``order``."""
        if self.k == 1:
            return f"Passage {labels[order[0]]}"
        return format_ranking(labels[i] for i in order[: self.k])


def read_labels(text: str, labels: Sequence[str]) -> tuple[list[int], int]:
    """The window positions an answer names, distinct, in its order; and how many other names
    (repeats, unknown labels) it held.

    Parameters
    ----------
    text : str
        The answer, reasoning removed.
    labels : sequence of str
        The window's identifiers as shown (``1``, ``2``, ... or ``A``, ``B``, ...).

    Returns
    -------
    tuple of (list of int, int)
    """
    position = {label.upper(): i for i, label in enumerate(labels)}
    if all(label.isdigit() for label in labels):
        names = extract_ids(text)
    else:
        names = (_BRACKETED_LABEL.findall(text) or _PASSAGE_LABEL.findall(text)
                 or ([text.strip(" \t\r\n.:;,!\"'()*`")] if text.strip(" \t\r\n.:;,!\"'()*`").upper() in position
                     else _LONE_LABEL.findall(text)))
    found: list[int] = []
    noise = 0
    for name in names:
        index = position.get(name.upper().lstrip("0") if name.isdigit() else name.upper())
        if index is None or index in found:
            noise += 1
        else:
            found.append(index)
    return found, noise
