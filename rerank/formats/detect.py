"""Telling the format of a request file from its first characters (:func:`detect_format`).

The file access every reader shares (opening, decoding line by line) is in
:mod:`rerank.formats.reading`.
"""

from __future__ import annotations

import os
import re

from rerank.errors import InvalidJSON
from rerank.formats.reading import UTF8_BOM, open_input, text_lines

#: The format names :func:`detect_format` returns.
FORMATS = ("rankllm", "rankgpt", "trec")

_PEEK_SIZE = 64 * 1024
_JSON_WHITESPACE = b" \t\r\n"
_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def detect_format(path: str | os.PathLike) -> str:
    """Tell the format of a request file from its first characters.

    Parameters
    ----------
    path : str or path-like
        A request file in any of the :data:`FORMATS`.

    Returns
    -------
    str
        ``"rankgpt"`` when the first non-blank character is ``[`` (a JSON list: RankGPT's,
        or rank_llm's ``.json`` output, which the list reader tells apart element by element),
        ``"rankllm"`` when it is ``{`` (JSON lines), ``"trec"`` when the first non-blank line
        has the six columns of a TREC run (``qid Q0 docid rank score tag``, with ``Q0`` in the
        second column or a numeric rank and score).

    Raises
    ------
    InputError
        When the file cannot be read, is empty, is not UTF-8, or matches none of the formats.
    """
    first = _first_significant_byte(path)
    if first is None:
        raise InvalidJSON("empty file: expected a rank_llm JSONL file, a RankGPT JSON list or"
                         " a TREC run", path)
    if first == ord("["):
        return "rankgpt"
    if first == ord("{"):
        return "rankllm"
    for number, line in text_lines(path):
        columns = line.split()
        if not columns:
            continue
        if _looks_like_run_line(columns):
            return "trec"
        raise InvalidJSON(
            "unrecognised format: expected a RankGPT JSON list (starting with '['), rank_llm"
            " JSON lines (starting with '{') or a TREC run (6 columns: qid Q0 docid rank score"
            " tag); or give the format explicitly", path, number)
    # Only whitespace that is not JSON's (a form feed, NBSP, U+2028, ...).
    raise InvalidJSON("blank file: only whitespace; expected a rank_llm JSONL file, a RankGPT"
                      " JSON list or a TREC run", path)


def is_blank(path: str | os.PathLike) -> bool:
    """Whether a file holds nothing but JSON whitespace (after a BOM): an empty run, say.

    Raises
    ------
    InputError
        When the file cannot be read.
    """
    return _first_significant_byte(path) is None


def _first_significant_byte(path: str | os.PathLike) -> int | None:
    """The first byte that is not JSON whitespace (after a BOM), or None for a blank file."""
    with open_input(path) as fh:
        chunk = fh.read(_PEEK_SIZE)
        if chunk.startswith(UTF8_BOM):
            chunk = chunk[len(UTF8_BOM):]
        while chunk:
            stripped = chunk.lstrip(_JSON_WHITESPACE)
            if stripped:
                return stripped[0]
            chunk = fh.read(_PEEK_SIZE)
    return None


def _looks_like_run_line(columns: list[str]) -> bool:
    """Whether whitespace-split columns have the shape of a TREC run line."""
    if len(columns) != 6:
        return False
    if columns[1] == "Q0":
        return True
    return _INTEGER.fullmatch(columns[3]) is not None and _FLOAT.fullmatch(columns[4]) is not None
