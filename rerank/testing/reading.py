"""Reading a prompt as a model would: its passages, its identifiers and the question it asks.

Nothing about a template is assumed beyond what a reader of the prompt sees.

Passages (in the user messages, at the start of a line; the first kind found wins):

``[3] text`` / ``[C] text`` (*brackets*)
    RankGPT, RankZephyr, FIRST, TourRank as adapted to ``[] > []``. A number, or one uppercase
    letter (``[A]`` is passage 1). Lines whose text starts with ``>`` are format examples
    (``[2] > [1]``), not passages.
``Passage C: "text"`` / ``Document 3: text`` (*labelled*)
    Setwise and pairwise (PRP) prompts, TourRank's ``Document 3:``; the quotes are optional.
``Passage: text`` / ``Document: text`` (*single*)
    A pointwise prompt: one passage, no identifier.

A prompt names its passages one way, that of its first passage line (numbers or letters); the
first occurrence of an identifier wins. The question, read from the rest of the text (system
and user messages without the passage lines), case-insensitively:

``relevance``
    A single passage, or one passage and a ``'Yes' or 'No'`` (``true or false``) question. The
    answer words are those the prompt names, as it writes them (default ``Yes`` / ``No``).
``best`` (k)
    ``select|choose|pick|identify|output|return|find [only] [the] [top] K [most relevant]
    passages|documents`` with ``1 <= K < n``: the K best, best first, as ``[3] > [1]`` (labelled
    passages without ``[]`` in the prompt: ``Document 3, Document 1``, TourRank's form). Also
    K = 1 for bracketed passages and a prompt asking for the ``label`` of the ``most relevant
    passage`` (setwise's question).
``choice``
    Labelled passages, and either the ``most relevant passage`` (``document``, ``one``; not
    ``passages``) or no ``rank`` at all (PRP's ``Output Passage A or Passage B``): the best one,
    ``Passage C``; the bare label ``C`` when the prompt asks for the ``label`` (setwise's
    ``Output only the passage label of the most relevant passage``).
``ranking``
    Anything else: all passages, best first (``[3] > [1] > [2]``; labelled passages without
    ``[]`` in the prompt: ``Passage 3 > Passage 1 > Passage 2``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

_BRACKET_LINE = re.compile(r"^\[(\d+|[A-Z])\] (.*)$", re.MULTILINE)
_LABEL_LINE = re.compile(r"^(Passage|Document) (\d+|[A-Z]) ?: ?(.*)$", re.MULTILINE | re.IGNORECASE)
_SINGLE_LINE = re.compile(r"^<?(Passage|Document)>? ?: ?(.*)$", re.MULTILINE | re.IGNORECASE)
_BEST_K = re.compile(r"\b(?:select|choose|pick|identify|output|return|find)\s+(?:only\s+)?(?:the\s+)?"
                     r"(?:top\s+)?(\d+)\s+(?:most\s+relevant\s+)?(?:passages|documents)\b", re.IGNORECASE)
_YES_NO = re.compile(r"\b(yes|true)\b\W{0,3}\s*or\s*\W{0,3}\b(no|false)\b", re.IGNORECASE)
_RANK = re.compile(r"\brank\b", re.IGNORECASE)
_SINGULAR = re.compile(r"\bmost relevant (?:passage|document|one)\b(?!s)", re.IGNORECASE)
_LABEL_WORD = re.compile(r"\blabel\b", re.IGNORECASE)

#: Question kinds, see the module docstring.
QUESTIONS = ("ranking", "best", "choice", "relevance")


@dataclass
class Question:
    """What a prompt asks.

    Attributes
    ----------
    kind : {"ranking", "best", "choice", "relevance"}
    k : int or None
        How many passages ``best`` asks for.
    words : tuple of str
        The answers of a ``relevance`` question, positive first (``("Yes", "No")``).
    bare_label : bool
        A ``choice`` answered by the label alone (``C``) rather than ``Passage C``.
    brackets : bool
        Lists of labelled passages written ``[C] > [A]`` (the prompt shows ``[]``).
    """

    kind: str = "ranking"
    k: int | None = None
    words: tuple[str, str] = ("Yes", "No")
    bare_label: bool = False
    brackets: bool = True


@dataclass
class Prompt:
    """A prompt as read.

    Attributes
    ----------
    passages : dict
        Identifier (1, 2, ...) -> passage text, in order of first appearance.
    user_text : str
        All user contents, joined by newlines.
    outside_text : str
        ``user_text`` without the passage lines (where the query is looked for first).
    digest : str
        sha256 of the messages (seeds the noisy judge per prompt).
    letters : bool
        Passages named by letters (``[A]``, ``Passage A``) rather than numbers.
    style : {"brackets", "labelled", "single"}
        How the passages are shown.
    word : str
        ``Passage`` or ``Document``: how labelled passages are named.
    question : Question
    """

    passages: dict[int, str]
    user_text: str
    outside_text: str
    digest: str
    letters: bool = False
    style: str = "brackets"
    word: str = "Passage"
    question: Question = field(default_factory=Question)


def _is_letter(label: str) -> bool:
    return len(label) == 1 and "A" <= label <= "Z"


def _passages(pattern: re.Pattern, text: str, group: int) -> tuple[dict[int, str], bool, str]:
    """Passages of the lines ``pattern`` matches (label in ``group``, text in the next group):
    (identifier -> text, letters, the word of the first line)."""
    passages: dict[int, str] = {}
    letters: bool | None = None
    word = "Passage"
    for match in pattern.finditer(text):
        name, body = match.group(group).upper(), match.group(group + 1).strip()
        if group == 1 and body.startswith(">"):   # a format example such as "[1] > [2]"
            continue
        if letters is None:
            letters = _is_letter(name)
            word = match.group(1).capitalize() if group == 2 else word
        if _is_letter(name) != letters:
            continue
        if len(body) >= 2 and body[0] == body[-1] == '"':
            body = body[1:-1]
        passages.setdefault(ord(name) - ord("A") + 1 if letters else int(name), body)
    return passages, bool(letters), word


def read_question(instructions: str, style: str, n: int) -> Question:
    """The question of a prompt whose text outside the passages is ``instructions``.

    Parameters
    ----------
    instructions : str
        System and user text without the passage lines.
    style : {"brackets", "labelled", "single"}
    n : int
        Number of passages.

    Returns
    -------
    Question
    """
    brackets = style == "brackets" or "[]" in instructions
    yes_no = _YES_NO.search(instructions)
    if style == "single" or (n == 1 and yes_no):
        words = (yes_no.group(1), yes_no.group(2)) if yes_no else ("Yes", "No")
        return Question("relevance", words=words)
    best = _BEST_K.search(instructions)
    if best and 1 <= int(best.group(1)) < n:
        return Question("best", k=int(best.group(1)), brackets=brackets)
    singular, label_asked = _SINGULAR.search(instructions), bool(_LABEL_WORD.search(instructions))
    if style == "labelled" and (singular or not _RANK.search(instructions)):
        return Question("choice", bare_label=label_asked, brackets=brackets)
    if singular and label_asked:     # setwise's question over [A] lines
        return Question("best", k=1, brackets=brackets)
    return Question("ranking", brackets=brackets)


def read_prompt(messages: list[dict]) -> Prompt:
    """Read a chat request's messages (without a continued assistant start).

    Parameters
    ----------
    messages : list of dict
        ``{"role", "content"}`` with text contents.

    Returns
    -------
    Prompt
    """
    user = "\n".join(m["content"] for m in messages if m.get("role") == "user")
    system = "\n".join(m["content"] for m in messages if m.get("role") == "system")
    style, pattern = "brackets", _BRACKET_LINE
    passages, letters, word = _passages(_BRACKET_LINE, user, 1)
    if not passages:
        style, pattern = "labelled", _LABEL_LINE
        passages, letters, word = _passages(_LABEL_LINE, user, 2)
    if not passages:
        single = _SINGLE_LINE.search(user)
        if single:
            style, pattern = "single", _SINGLE_LINE
            passages, word = {1: single.group(2).strip().strip('"')}, single.group(1).capitalize()
    outside = pattern.sub("", user)
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
    question = read_question(f"{system}\n{outside}", style, len(passages))
    return Prompt(passages, user, outside, digest, letters, style, word, question)
