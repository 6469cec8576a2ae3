"""The ranking format ``[3] > [1] > [2]``, in one place: writing it, and reading an answer.

:func:`format_ranking` writes it (training targets, test judges, prompts' examples). Reading
turns an LLM's ranking answer into a permutation of the passages of its window. The answer names passages by their 1-based identifiers in the prompt (``[3] > [1] > [2]``).
Parsing is lenient, because models wrap, abbreviate and pad their answers, and repairing,
because a reranker needs a full permutation whatever the model said:

1. reasoning in ``<think>...</think>`` (or ``<thinking>``) blocks is removed first: a complete
   block anywhere, everything before a closing tag that has no opening one, and everything
   after an opening tag that is never closed;
   then, when an answer is wrapped in ``<answer>...</answer>`` (ReasonRank, REARANK), only the
   first such block counts (without a closing tag: what follows the last opening one), and the
   text around it is reasoning too;
2. if what remains holds bracketed identifiers (``[12]``), only those count, so numbers in
   chatter ("Here are the 20 passages ranked") are ignored; otherwise every standalone run of
   ASCII digits counts (``3 > 1 > 2``, ``3, 1, 2``, one per line);
3. the first occurrence of each identifier in ``1..n`` is kept in answer order; repeats and
   identifiers out of range (``0``, above ``n``) are dropped and counted; passages the answer
   never names are appended in window order and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

#: Between two identifiers of a ranking.
SEPARATOR = " > "

_THINK_BLOCK = re.compile(r"<think(?:ing)?\s*>.*?</think(?:ing)?\s*>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<think(?:ing)?\s*>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think(?:ing)?\s*>", re.IGNORECASE)
_ANSWER_BLOCK = re.compile(r"<answer\s*>(.*?)</answer\s*>", re.IGNORECASE | re.DOTALL)
_ANSWER_OPEN = re.compile(r"<answer\s*>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer\s*>", re.IGNORECASE)
_BRACKETED_ID = re.compile(r"\[\s*([0-9]+)\s*\]")
# ASCII-only boundaries: a digit run glued to a letter ("passage3", "3rd") is not an id, but
# one next to non-Latin text ("第3") still is.
_BARE_ID = re.compile(r"(?<![0-9A-Za-z_])[0-9]+(?![0-9A-Za-z_])")
# Longer digit runs are out of range for any window; skipping int() on them also avoids
# Python's limit on converting huge digit strings.
_MAX_ID_DIGITS = 18


def format_ranking(labels: Iterable[object]) -> str:
    """Write identifiers as a ranking, best first.

    Examples
    --------
    >>> format_ranking([3, 1, 2])
    '[3] > [1] > [2]'
    """
    return SEPARATOR.join(f"[{label}]" for label in labels)


def identifier_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the bracketed identifiers of a ranking, in order.

    Examples
    --------
    >>> identifier_spans("[4] > [12]")
    [(0, 3), (6, 10)]
    """
    return [match.span() for match in _BRACKETED_ID.finditer(text)]


@dataclass(frozen=True, slots=True)
class ParsedRanking:
    """A parsed (and if needed repaired) ranking of one window.

    Attributes
    ----------
    order : tuple of int
        0-based positions into the window, best first; always a permutation of ``range(n)``.
    status : str
        ``"ok"`` when the answer named every passage exactly once and nothing else,
        ``"repaired"`` when ids were missing, repeated or out of range but at least one valid
        id was found, ``"unparseable"`` when no valid id was found (``order`` is then the
        window order).
    missing : int
        Passages the answer never named, appended to ``order`` in window order.
    repeated : int
        Occurrences of an id after its first one (dropped).
    out_of_range : int
        Ids outside ``1..n`` (dropped).
    """

    order: tuple[int, ...]
    status: str
    missing: int
    repeated: int
    out_of_range: int


def strip_thinking(text: str) -> str:
    """Remove reasoning blocks from a model's answer.

    Parameters
    ----------
    text : str
        The raw answer.

    Returns
    -------
    str
        The answer without complete ``<think>...</think>`` blocks (also ``<thinking>``, any
        case), without anything before a leftover closing tag, and without anything from an
        unclosed opening tag on (an answer that opens a block and never closes it is all
        reasoning, so nothing is left); of what remains, only the inside of an
        ``<answer>...</answer>`` block where there is one.
    """
    return split_thinking(text)[0]


def split_thinking(text: str) -> tuple[str, str | None]:
    """Split an answer into what it says and the reasoning written before it.

    Parameters
    ----------
    text : str
        The raw answer.

    Returns
    -------
    tuple of (str, str or None)
        The answer as :func:`strip_thinking` leaves it, and the reasoning (the text of the
        ``<think>`` blocks, tags removed, and any text around an ``<answer>`` block), or None
        when there was none.

    Examples
    --------
    >>> split_thinking("<think>first [2]</think> <answer>[2] > [1]</answer>")
    ('[2] > [1]', 'first [2]')
    >>> split_thinking("Passage [2] says most. <answer> [2] > [1]")
    (' [2] > [1]', 'Passage [2] says most.')
    """
    if "<" not in text:
        return text, None
    parts = [match.group(0) for match in _THINK_BLOCK.finditer(text)]
    # A space, not "", so digits on both sides of a block do not merge into one number.
    rest = _THINK_BLOCK.sub(" ", text)
    close = None
    for close in _THINK_CLOSE.finditer(rest):
        pass
    if close is not None:  # everything before a leftover closing tag is reasoning
        parts.append(rest[:close.start()])
        rest = rest[close.end():]
    opening = _THINK_OPEN.search(rest)
    if opening is not None:  # everything after an unclosed opening tag is reasoning
        parts.append(rest[opening.end():])
        rest = rest[:opening.start()]
    rest = _answer_only(rest, parts)
    if not parts:
        return rest, None
    reasoning = "\n".join(_THINK_CLOSE.sub("", _THINK_OPEN.sub("", part)).strip() for part in parts)
    return rest, reasoning.strip() or None


def _answer_only(text: str, parts: list[str]) -> str:
    """The inside of ``text``'s answer block (``text`` when it has none); the text around the
    block is appended to ``parts``, the reasoning."""
    if "<" not in text:
        return text
    block = _ANSWER_BLOCK.search(text)
    if block is not None:
        before, inside, after = text[:block.start()], block.group(1), text[block.end():]
    else:
        opening = None
        for opening in _ANSWER_OPEN.finditer(text):
            pass
        if opening is not None:  # cut by the token limit inside the answer, or never closed
            before, inside, after = text[:opening.start()], text[opening.end():], ""
        else:
            closing = _ANSWER_CLOSE.search(text)
            if closing is None:
                return text
            before, inside, after = "", text[:closing.start()], text[closing.end():]
    around = f"{before.strip()}\n{_ANSWER_CLOSE.sub('', _ANSWER_OPEN.sub('', after)).strip()}".strip()
    if around:
        parts.append(around)
    return inside


def extract_ids(text: str) -> list[str]:
    """Return the identifier strings of an answer, in order, before any validation.

    Parameters
    ----------
    text : str
        An answer with reasoning already removed (see :func:`strip_thinking`).

    Returns
    -------
    list of str
        The digits of every bracketed id (``[3]``) if there is at least one, else every
        standalone ASCII digit run.
    """
    if "[" in text:
        ids = _BRACKETED_ID.findall(text)
        if ids:
            return ids
    return _BARE_ID.findall(text)


def parse_ranking(text: str, n: int) -> ParsedRanking:
    """Parse a model's ranking of a window of ``n`` passages into a full permutation.

    Parameters
    ----------
    text : str
        The model's answer, e.g. ``"[3] > [1] > [2]"``; variants such as ``3 > 1 > 2``,
        ``[3], [1], [2]``, one id per line, chatter around the ranking and reasoning blocks
        are accepted (see the module docstring for the rules).
    n : int
        Number of passages in the window; valid ids are ``1..n``.

    Returns
    -------
    ParsedRanking
        ``order`` is always a permutation of ``range(n)``; for ``n == 0`` it is empty and the
        status is ``"ok"``.

    Raises
    ------
    ValueError
        If ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"window size must be non-negative, got {n}")
    if n == 0:
        return ParsedRanking((), "ok", 0, 0, 0)
    seen = bytearray(n + 1)
    order: list[int] = []
    repeated = out_of_range = 0
    for digits in extract_ids(strip_thinking(text)):
        if len(digits) > _MAX_ID_DIGITS:
            out_of_range += 1
            continue
        ident = int(digits)
        if ident < 1 or ident > n:
            out_of_range += 1
        elif seen[ident]:
            repeated += 1
        else:
            seen[ident] = 1
            order.append(ident - 1)
    found = len(order)
    missing = n - found
    if missing:
        order.extend(pos for pos in range(n) if not seen[pos + 1])
    if found == 0:
        status = "unparseable"
    elif missing or repeated or out_of_range:
        status = "repaired"
    else:
        status = "ok"
    return ParsedRanking(tuple(order), status, missing, repeated, out_of_range)


def rank_by_first_token(alternatives, labels: list[str]) -> ParsedRanking:
    """Rank a window by the log-probabilities of its identifiers as the answer's first token.

    Single-token ranking (FIRST, Reddy et al., 2024): the model's preference for starting its
    ranking with each identifier orders the whole window in one decoding step.

    Parameters
    ----------
    alternatives : sequence of (str, float)
        The first token's alternatives with their log-probabilities. A token names an
        identifier when, stripped of spaces and brackets, it equals one of ``labels`` (so
        ``" C"`` and ``"[C"`` count for ``C``); a label's best log-probability counts.
    labels : list of str
        The window's identifiers in presented order (``["A", "B", ...]`` or ``["1", "2", ...]``).

    Returns
    -------
    ParsedRanking
        Identifiers by decreasing log-probability, ties and identifiers absent from the
        alternatives in presented order after them; status ``"ok"`` when every identifier was
        among the alternatives, ``"repaired"`` when some were, ``"unparseable"`` when none was.
    """
    position = {label: i for i, label in enumerate(labels)}
    best: dict[int, float] = {}
    for token, logprob in alternatives:
        index = position.get(token.strip().strip("[]").strip())
        if index is not None and logprob > best.get(index, float("-inf")):
            best[index] = logprob
    found = sorted(best, key=lambda i: (-best[i], i))
    missing = [i for i in range(len(labels)) if i not in best]
    status = "ok" if not missing else ("repaired" if found else "unparseable")
    return ParsedRanking(tuple(found + missing), status, len(missing), 0, 0)
