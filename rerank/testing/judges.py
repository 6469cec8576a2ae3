"""Judges: answer any question a prompt asks (see :mod:`rerank.testing.reading`) without a model.

``oracle``
    Perfect: it identifies the query and the passages in a :class:`~rerank.testing.dataset.Dataset`
    and orders the passages by grade (ties by identifier).
``identity`` / ``reverse``
    The passages in the order shown, or reversed.
``garbage``
    Text with nothing to parse: no digit or bracket; no uppercase letter where passages are named
    by letters; no yes/no/true/false word for a relevance question.
``noisy``
    The oracle's order with adjacent swaps (probability ``noise`` each, deterministic per prompt);
    a relevance grade moves one step with probability ``noise``.
``reasoning``
    The oracle's answers, written after a ``<think>`` block by the server (see
    :mod:`rerank.testing.completions`).

An answer is a :class:`Verdict`: its text, and the answers the judge would have given instead,
best first, from which the server derives the first token's log-probabilities.
"""

from __future__ import annotations

import math
import random
import re
import string
import threading
from dataclasses import dataclass, field

from .dataset import Dataset
from .reading import Prompt

JUDGES = ("oracle", "identity", "reverse", "garbage", "noisy", "reasoning")
NOISY_SWAP_PROBABILITY = 0.25

_GARBAGE_TEXTS = ("I'm sorry, I can't rank these passages.", "", "Passages ranked: alpha > beta > gamma")
_GARBAGE_ALPHABET = string.ascii_letters + " .,;:!?-'\"()"
_ANSWER_WORDS = re.compile(r"yes|no|true|false", re.IGNORECASE)


def label(ident: int, letters: bool = False) -> str:
    """How an answer names passage ``ident``: ``"3"``, or ``"C"`` with letters."""
    return chr(ord("A") + ident - 1) if letters else str(ident)


def format_ranking(order: list[int], letters: bool = False) -> str:
    """``[3] > [1] > [2]`` (``[C] > [A] > [B]`` with letters)."""
    return " > ".join(f"[{label(i, letters)}]" for i in order)


@dataclass
class Verdict:
    """A judge's answer.

    Attributes
    ----------
    text : str
        The whole answer.
    options : list of (str, float or None)
        Whole answers the judge would give instead, best first (``text`` among them), each with
        a log-probability, or None for "the next best" (logits 0, -1, -2, ... by rank).
    order : list of int or None
        For a list ``[3] > [1] > ...``: the judge's order of all identifiers, best first.
    letters : bool
        The list names passages by letters.
    word : str or None
        For a choice: the word before the label (``Passage``), so that a start of the answer
        ending with it (``Passage:``) is continued with the label.
    """

    text: str
    options: list[tuple[str, float | None]] = field(default_factory=list)
    order: list[int] | None = None
    letters: bool = False
    word: str | None = None

    def continuation(self, text: str, prefill: str) -> str | None:
        """What follows ``prefill`` when the answer is ``text``; None when it does not fit."""
        if text.startswith(prefill):
            return text[len(prefill):]
        if self.word and prefill.rstrip(" :").lower().endswith(self.word.lower()) \
                and text.startswith(self.word + " "):
            rest = text[len(self.word) + 1:]
            return rest if prefill[-1:].isspace() else " " + rest
        return None

    def bare(self) -> "Verdict":
        """The same choice answered by the label alone (``C`` for ``Passage C``)."""
        cut = len(self.word) + 1 if self.word else 0
        return Verdict(self.text[cut:], [(text[cut:], weight) for text, weight in self.options])

    def alternatives(self, prefill: str) -> list[tuple[str, float | None]]:
        """The options that fit ``prefill``, for the position being written after it.

        In a list (``[3] > [1] > ...``) that is the slot ``prefill`` ends in: each identifier not
        yet written there, in the judge's order.
        """
        if self.order is None:
            return [option for option in self.options if self.continuation(option[0], prefill) is not None]
        names = re.findall(r"\[([^\]]+)\]", self.text)
        begin = 0
        for slot, name in enumerate(names):
            end = begin + len(name) + 2
            if end > len(prefill):
                break
            begin = end + len(" > ")
        else:
            return []
        written = set(names[:slot])
        rest = [n for n in (label(i, self.letters) for i in self.order) if n not in written]
        texts = [f"{self.text[:begin]}[{n}]{self.text[end:]}" for n in rest]
        return [(t, None) for t in texts if t.startswith(prefill)]


class Judge:
    """Answers prompts; thread-safe.

    Parameters
    ----------
    name : {"oracle", "identity", "reverse", "garbage", "noisy", "reasoning"}
    dataset : Dataset or None
        Required by ``oracle``, ``noisy`` and ``reasoning``.
    seed : int
        Seeds the garbage answers and the noisy judge.
    noise : float
        The noisy judge's probability of swapping an adjacent pair.

    Raises
    ------
    ValueError
        For an unknown name, or a judge that needs a dataset without one.
    """

    def __init__(self, name: str, dataset: Dataset | None = None, seed: int = 0,
                 noise: float = NOISY_SWAP_PROBABILITY) -> None:
        if name not in JUDGES:
            raise ValueError(f"unknown judge {name!r}; choose from {', '.join(JUDGES)}")
        if name in ("oracle", "noisy", "reasoning") and dataset is None:
            raise ValueError(f"the {name} judge needs a data directory")
        self.name = name
        self.dataset = dataset
        self.seed = seed
        self.noise = noise
        self._garbage_rng = random.Random(f"garbage:{seed}")
        self._lock = threading.Lock()

    def judge(self, prompt: Prompt) -> tuple[Verdict, dict[str, int]]:
        """The answer to ``prompt``, and counts of what could not be matched.

        Returns
        -------
        verdict : Verdict
        notes : dict
            ``unidentified_queries`` and ``unmatched_passages``.
        """
        notes = {"unidentified_queries": 0, "unmatched_passages": 0}
        question = prompt.question
        if self.name == "garbage":
            text = self._garbage(prompt)
            return Verdict(text, [(text, None)]), notes
        if question.kind == "relevance":
            return self._relevance(prompt, notes), notes
        order = self._order(prompt, notes)
        if question.kind == "choice":
            names = [self._choice_name(prompt, i) for i in order]
            word = None if question.bare_label else prompt.word
            return Verdict(names[0], [(n, None) for n in names], word=word), notes
        shown = order[:question.k] if question.kind == "best" else order
        if prompt.style == "brackets" or question.brackets:
            return Verdict(format_ranking(shown, prompt.letters), order=order, letters=prompt.letters), notes
        separator = ", " if question.kind == "best" else " > "
        text = separator.join(f"{prompt.word} {label(i, prompt.letters)}" for i in shown)
        return Verdict(text, [(text, None)]), notes

    @staticmethod
    def _choice_name(prompt: Prompt, ident: int) -> str:
        name = label(ident, prompt.letters)
        return name if prompt.question.bare_label else f"{prompt.word} {name}"

    def _order(self, prompt: Prompt, notes: dict[str, int]) -> list[int]:
        ids = sorted(prompt.passages)
        if self.name in ("identity", "reverse"):
            return ids if self.name == "identity" else ids[::-1]
        grades = self._grades(prompt, notes)
        order = sorted(ids, key=lambda i: (-grades.get(i, 0), i))
        if self.name == "noisy":
            rng = random.Random(f"{self.seed}:{prompt.digest}")
            i = 0
            while i < len(order) - 1:
                if rng.random() < self.noise:
                    order[i], order[i + 1] = order[i + 1], order[i]
                    i += 1
                i += 1
        return order

    def _grades(self, prompt: Prompt, notes: dict[str, int]) -> dict[int, int]:
        """Each passage's grade (empty when the query is unknown)."""
        if not prompt.passages:
            return {}
        qid = self.dataset.identify(prompt.outside_text, prompt.user_text)
        if qid is None:
            notes["unidentified_queries"] += 1
            return {}
        grades = {}
        for ident, text in prompt.passages.items():
            grades[ident], matched = self.dataset.grade(qid, text)
            notes["unmatched_passages"] += 0 if matched else 1
        return grades

    def _relevance(self, prompt: Prompt, notes: dict[str, int]) -> Verdict:
        """Yes or No; the probability of yes rises with the grade, ``(g + 0.5) / (max + 1)``."""
        if self.name in ("identity", "reverse"):
            top, grade = 1, (1 if self.name == "identity" else 0)
        else:
            top = self.dataset.max_grade
            grade = next(iter(self._grades(prompt, notes).values()), 0)
            rng = random.Random(f"{self.seed}:{prompt.digest}")
            if self.name == "noisy" and rng.random() < self.noise:
                grade = min(max(grade + rng.choice((-1, 1)), 0), top)
        p_yes = (grade + 0.5) / (top + 1)
        yes, no = prompt.question.words
        options = sorted([(yes, math.log(p_yes)), (no, math.log(1 - p_yes))], key=lambda o: -o[1])
        return Verdict(options[0][0], options)

    def _garbage(self, prompt: Prompt) -> str:
        with self._lock:
            while True:
                kind = self._garbage_rng.randrange(len(_GARBAGE_TEXTS) + 1)
                if kind < len(_GARBAGE_TEXTS):
                    text = _GARBAGE_TEXTS[kind]
                else:
                    length = self._garbage_rng.randint(5, 80)
                    text = "".join(self._garbage_rng.choice(_GARBAGE_ALPHABET) for _ in range(length))
                if prompt.letters:
                    text = text.lower()
                if prompt.question.kind != "relevance" or not _ANSWER_WORDS.search(text):
                    return text
