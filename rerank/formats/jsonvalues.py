"""Decoding JSON the way every reader of this package does, and naming what was decoded.

Integers too long for Python to convert (:func:`json_int`) are read as :class:`HugeInt` rather
than raising, so that the field holding one can be named; the field checks of
:mod:`rerank.formats.fields` refuse it in whatever field it sits.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rerank.errors import InvalidJSON


class HugeInt:
    """A JSON integer with more digits than Python converts (``sys.get_int_max_str_digits``).

    :func:`json_int` returns it instead of raising, so that the field holding the number can
    be named; every field check refuses it.

    Parameters
    ----------
    digits : int
        How many digits the literal has.
    """

    __slots__ = ("digits",)

    def __init__(self, digits: int):
        self.digits = digits

    def __repr__(self) -> str:
        return f"HugeInt(digits={self.digits})"


def json_int(text: str) -> int | HugeInt:
    """Convert a JSON integer literal (the ``parse_int`` hook of the JSON decoders here).

    Parameters
    ----------
    text : str
        The literal, e.g. ``"-12"``.

    Returns
    -------
    int or HugeInt
        The integer, or a :class:`HugeInt` when it has more digits than Python's
        integer-string conversion limit allows.
    """
    digits = len(text) - text.startswith("-")
    limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    if limit and digits > limit:
        return HugeInt(digits)
    return int(text)


def load_json_line(line: str, path: str | os.PathLike, number: int) -> Any:
    """Parse one line of JSON.

    An integer too long to convert becomes a :class:`HugeInt` (see :func:`json_int`); NaN
    and Infinity literals become floats, which the field checks refuse.

    Parameters
    ----------
    line : str
        The line's text.
    path : str or path-like
        The JSON lines file the line comes from.
    number : int
        The line's 1-based number there.

    Returns
    -------
    Any
        The decoded value.

    Raises
    ------
    InputError
        When the line is not valid JSON.
    """
    try:
        return json.loads(line, parse_int=json_int)
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"invalid JSON: {exc.msg} at column {exc.colno}", path,
                         number) from None
    except RecursionError:
        raise InvalidJSON("invalid JSON: nested too deeply", path, number) from None


def json_type(value: Any) -> str:
    """Name the JSON type of a decoded value, as error messages say it ("got a list").

    Parameters
    ----------
    value : Any
        A decoded JSON value; a :class:`HugeInt` is a number.

    Returns
    -------
    str
        One of ``null``, ``a boolean``, ``a number``, ``a string``, ``a list``, ``an object``.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, HugeInt)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
