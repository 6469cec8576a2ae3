"""The field checks every reader shares: ids, texts, scores and required keys.

:func:`parse_id` serves every format (JSON fields, TSV and TREC columns): an id must be one word
of visible characters (no whitespace, control or format character, no lone surrogate) or an
integer of at most :data:`MAX_ID_DIGITS` digits. :func:`parse_str` and :func:`parse_score`
serve the JSON formats: a text must have a UTF-8 form, and a score must be a finite number or
null. A :class:`~rerank.formats.jsonvalues.HugeInt` is refused in every field.

Each check takes the value and where it sits: ``path`` (the file), ``line`` (1-based, or None
for a value without a line) and ``field`` (the JSON field path, e.g. ``candidates[3].docid``,
or the column name), which the error it raises names.
"""

from __future__ import annotations

import math
import os
import unicodedata
from typing import Any

from rerank.errors import InvalidId, InvalidJSON, InvalidText, MissingField
from rerank.formats.jsonvalues import HugeInt, json_type

#: The most digits an integer id may have.
MAX_ID_DIGITS = 100

# Unicode categories an id may not hold besides whitespace: control, format, surrogate.
_ID_CATEGORIES = {"Cc": "a control character", "Cf": "a format character",
                  "Cs": "a lone surrogate"}


def require(mapping: dict, key: str, path: str | os.PathLike, line: int, field: str) -> Any:
    """Return ``mapping[key]``, or raise an :class:`InputError` naming ``field`` as missing.

    Parameters
    ----------
    mapping : dict
        A decoded JSON object.
    key : str
        The key wanted.
    path, line, field
        Where the key should be (see the module docstring).

    Returns
    -------
    Any
        The value.
    """
    try:
        return mapping[key]
    except KeyError:
        raise MissingField("missing", path, line, field) from None


def parse_id(value: Any, path: str | os.PathLike, line: int, field: str) -> str:
    """Check a query or document id: a non-empty string, or an integer (made a string).

    The one id check of every reader (JSON fields, TSV and TREC columns): an id must stay one
    column of a TREC run and be printable, so it may not hold whitespace (any that
    :meth:`str.isspace` knows: NBSP, ``\\x1c``-``\\x1f``, ``\\x85``, ``\\u2028``, ...), a
    control character (category Cc), a format character (Cf: ``\\u200b``, ``\\ufeff``) or a
    lone surrogate (Cs); an integer id may have at most :data:`MAX_ID_DIGITS` digits.

    Parameters
    ----------
    value : Any
        A decoded JSON value, or the text of a column.
    path, line, field
        Where the id sits (see the module docstring).

    Returns
    -------
    str
        The id.

    Raises
    ------
    InvalidJSON
        When the value is not a string or an integer, or is empty.
    InvalidId
        When the integer is too long or the string holds a character an id cannot hold.
    """
    if isinstance(value, HugeInt):
        raise InvalidId(f"an integer of {value.digits} digits is too long for an id (at most"
                        f" {MAX_ID_DIGITS} digits)", path, line, field)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidJSON(f"expected a string or an integer, got {json_type(value)}", path, line,
                         field)
    if isinstance(value, int):
        # The bit length bounds the digits before converting (which is slow for huge ints).
        text = str(value) if value.bit_length() <= 4 * MAX_ID_DIGITS else ""
        if not text or len(text) - text.startswith("-") > MAX_ID_DIGITS:
            raise InvalidId(f"an integer of more than {MAX_ID_DIGITS} digits is too long for"
                            " an id", path, line, field)
        return text
    if not value:
        raise InvalidJSON("empty id", path, line, field)
    if not value.isprintable() or " " in value:
        for index, char in enumerate(value):
            what = "whitespace" if char.isspace() else _ID_CATEGORIES.get(
                unicodedata.category(char))
            if what:
                raise InvalidId(f"{quoted(value)} holds {what} ({char!r}, U+{ord(char):04X}) at"
                                f" character {index + 1}: an id must be one word of visible"
                                " characters", path, line, field)
    return value


def parse_str(value: Any, path: str | os.PathLike, line: int, field: str) -> str:
    """Check that a value is a string.

    Parameters
    ----------
    value : Any
        The decoded JSON value of a text: a query, a passage, a title.
    path, line, field
        Where the text sits (see the module docstring).

    Returns
    -------
    str
        The value.

    Raises
    ------
    InvalidJSON
        When the value is not a string.
    InvalidText
        When the string holds a lone surrogate (from a ``\\ud800``-style JSON escape without
        its pair): it has no UTF-8 form, so it could be neither sent nor written.
    """
    if not isinstance(value, str):
        raise InvalidJSON(f"expected a string, got {json_type(value)}", path, line, field)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidText(f"a lone surrogate ({value[exc.start]!r}) at character"
                              f" {exc.start + 1}: a \\ud800-style escape without its pair is"
                              " text with no UTF-8 form", path, line, field) from None
    return value


def parse_score(value: Any, path: str | os.PathLike, line: int, field: str) -> float | None:
    """Check an optional score: null or a number.

    Parameters
    ----------
    value : Any
        The decoded JSON value (None when absent).
    path, line, field
        Where the score sits (see the module docstring).

    Returns
    -------
    float or None
        The score, finite.

    Raises
    ------
    InputError
        When the value is neither null nor a number, is NaN or infinite (``NaN``,
        ``Infinity``, ``1e999``), or is too large for a float.
    """
    if value is None:
        return None
    if isinstance(value, HugeInt):
        raise InvalidJSON(f"number too large ({value.digits} digits)", path, line, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidJSON(f"expected a number or null, got {json_type(value)}", path, line, field)
    try:
        score = float(value)
    except OverflowError:
        raise InvalidJSON("number too large", path, line, field) from None
    if math.isnan(score):
        raise InvalidJSON("NaN is not a score: a score must be a finite number or null", path,
                          line, field)
    if math.isinf(score):
        raise InvalidJSON(f"{score} (Infinity, or a number too large for a float such as"
                          " 1e999) is not a score: a score must be a finite number or null",
                          path, line, field)
    return score


def quoted(text: str, limit: int = 40) -> str:
    """A string's ``repr`` for an error message: printable, one line, cut after ``limit``.

    Parameters
    ----------
    text : str
        Any string, e.g. a column of a bad line.
    limit : int
        The most characters of ``text`` shown.

    Returns
    -------
    str
        ``repr(text)``, or the repr of its first ``limit`` characters followed by
        ``... (N characters)``; control characters and lone surrogates appear as escapes.
    """
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
