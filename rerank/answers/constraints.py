"""Constraining an answer to a ranking of a window's identifiers: ``[3] > [1] > [2]``.

A :class:`Constraint` (``count`` distinct identifiers of ``1..size``: all of them for a
permutation, the best ``k`` for a choice) gives backends that can constrain decoding:

- :meth:`Constraint.grammar`, a GBNF grammar (llama.cpp's format) admitting exactly ``count``
  identifiers in ``1..size`` joined by ``" > "``, and :meth:`Constraint.regex` the same as a
  regular expression (vLLM, SGLang); neither can forbid repeats without listing every
  permutation, so
- :class:`RankingPrefix` tracks what has been generated and tells which next pieces of text keep
  the answer a prefix of a ranking without repeats, so a logits processor can ban the rest.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .ranking import SEPARATOR

# Everything a ranking is written with: a token using any other character is never needed.
RANKING_CHARACTERS = frozenset("[]0123456789> ")


def ranking_grammar(n: int, count: int | None = None) -> str:
    """GBNF admitting ``[a] > [b] > ...`` with exactly ``count`` (default ``n``) identifiers from ``1..n``.

    Examples
    --------
    >>> print(ranking_grammar(2))
    root ::= id " > " id
    id ::= "[" ("1" | "2") "]"
    """
    count = _count(n, count)
    ids = " | ".join(f'"{i}"' for i in range(1, n + 1))
    return "root ::= " + ' " > " '.join(["id"] * count) + "\n" + f'id ::= "[" ({ids}) "]"'


def ranking_regex(n: int, count: int | None = None) -> str:
    r"""A regular expression admitting ``[a] > [b] > ...`` with exactly ``count`` (default ``n``)
    identifiers in ``1..n``.

    For structured-output engines that take a regex (vLLM); like :func:`ranking_grammar`, it
    cannot forbid repeats, which the parser repairs.

    Examples
    --------
    >>> print(ranking_regex(2))
    \[(?:2|1)\](?: > \[(?:2|1)\]){1}
    """
    count = _count(n, count)
    # Longer numbers first, so that no alternative is cut short by a prefix of it.
    identifier = r"\[(?:" + "|".join(str(i) for i in range(n, 0, -1)) + r")\]"
    return identifier + (f"(?:{SEPARATOR}{identifier}){{{count - 1}}}" if count > 1 else "")


def _count(n: int, count: int | None) -> int:
    if n < 1:
        raise ValueError(f"a ranking needs at least one passage, got {n}")
    count = n if count is None else count
    if not 1 <= count <= n:
        raise ValueError(f"a ranking of {n} passages names 1 to {n} of them, not {count}")
    return count


@dataclass(frozen=True, slots=True)
class Constraint:
    """An answer held to ``count`` distinct identifiers of ``1..size``, written ``[a] > [b]``.

    Attributes
    ----------
    size : int
        Passages in the window.
    count : int
        Identifiers the answer names: ``size`` for a permutation, ``k`` for the best ``k``.
    """

    size: int
    count: int

    def grammar(self) -> str:
        """The GBNF grammar (llama.cpp)."""
        return ranking_grammar(self.size, self.count)

    def regex(self) -> str:
        """The regular expression (vLLM, SGLang)."""
        return ranking_regex(self.size, self.count)

    def prefix(self) -> "RankingPrefix":
        """The automaton of an answer not yet started, for a logits processor."""
        return RankingPrefix(self.size, count_wanted=self.count)


# Phases of the ranking automaton.
_OPEN, _DIGITS, _SEP1, _SEP2, _SEP3, _DONE = range(6)


@dataclass(frozen=True, slots=True)
class RankingPrefix:
    """The state of a partly generated ranking of ``n`` identifiers.

    Attributes
    ----------
    n : int
        Passages in the window.
    count_wanted : int
        Identifiers that complete the answer (0: all ``n``).
    used : int
        Bit mask of the identifiers already written (bit ``i`` for identifier ``i``).
    count : int
        Identifiers completed so far.
    phase : int
        Where in the format the next character goes.
    digits : str
        Digits of the identifier being written.
    """

    n: int
    used: int = 0
    count: int = 0
    phase: int = _OPEN
    digits: str = ""
    count_wanted: int = 0  # identifiers that complete the answer; 0: all n

    @property
    def complete(self) -> bool:
        """Whether all the identifiers wanted have been written."""
        return self.phase == _DONE

    def advance(self, text: str) -> "RankingPrefix | None":
        """The state after ``text``, or None when ``text`` cannot continue a permutation."""
        state: RankingPrefix | None = self
        for char in text:
            state = state._step(char)
            if state is None:
                return None
        return state

    def _step(self, char: str) -> "RankingPrefix | None":
        phase = self.phase
        if phase == _OPEN:
            return RankingPrefix(self.n, self.used, self.count, _DIGITS, "", self.count_wanted) if char == "[" else None
        if phase == _DIGITS:
            if char.isdigit() and char.isascii():
                digits = self.digits + char
                if not _can_finish(self.n, self.used, digits):
                    return None
                return RankingPrefix(self.n, self.used, self.count, _DIGITS, digits, self.count_wanted)
            if char == "]" and self.digits:
                ident = int(self.digits)
                if not 1 <= ident <= self.n or self.used >> ident & 1:
                    return None
                count = self.count + 1
                return RankingPrefix(self.n, self.used | 1 << ident, count,
                                     _DONE if count == (self.count_wanted or self.n) else _SEP1, "",
                                     self.count_wanted)
            return None
        if phase == _SEP1:
            return RankingPrefix(self.n, self.used, self.count, _SEP2, "", self.count_wanted) if char == " " else None
        if phase == _SEP2:
            return RankingPrefix(self.n, self.used, self.count, _SEP3, "", self.count_wanted) if char == ">" else None
        if phase == _SEP3:
            return RankingPrefix(self.n, self.used, self.count, _OPEN, "", self.count_wanted) if char == " " else None
        return None  # nothing may follow the last identifier


@functools.lru_cache(maxsize=1 << 16)
def _can_finish(n: int, used: int, digits: str) -> bool:
    # Some unused identifier starts with these digits (no leading zeros: str() has none).
    return any(not used >> i & 1 and str(i).startswith(digits) for i in range(1, n + 1))
