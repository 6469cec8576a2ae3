"""Opening input files, decoding them line by line, and telling their format apart.

The readers of this package share :func:`open_input` and :func:`text_lines`, so that a missing
file or a non-UTF-8 byte is reported the same way everywhere: as an :class:`InputError` naming
the file and the 1-based line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import BinaryIO

from rerank.errors import InputError, InvalidJSON, NotUTF8, UnreadableFile

#: A callback that receives a skipped bad line's error (``--skip-bad-lines``).
OnBadLine = Callable[[InputError], None]

#: The format names :func:`detect_format` returns.
FORMATS = ("rankllm", "rankgpt", "trec")

UTF8_BOM = b"\xef\xbb\xbf"

_PEEK_SIZE = 64 * 1024
_JSON_WHITESPACE = b" \t\r\n"
_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def open_input(path: str | os.PathLike) -> BinaryIO:
    """Open an input file for binary reading.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    BinaryIO
        The open file.

    Raises
    ------
    InputError
        When the file cannot be opened (missing, a directory, no permission).
    """
    try:
        return open(path, "rb")
    except OSError as exc:
        raise UnreadableFile(f"cannot open: {exc.strerror or exc}", path) from None


def decode_line(raw: bytes, path: str | os.PathLike, line: int) -> str:
    """Decode one line of bytes as UTF-8.

    Parameters
    ----------
    raw : bytes
        The line's bytes.
    path : str or path-like
        The file, for the error message.
    line : int
        The 1-based line number, for the error message.

    Returns
    -------
    str
        The decoded line.

    Raises
    ------
    InputError
        When the bytes are not valid UTF-8; the message gives the byte and its column.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[:exc.start].decode("utf-8", "replace")) + 1
        raise NotUTF8(
            f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at column {column} ({exc.reason});"
            " save the file as UTF-8", path, line) from None


def text_lines(path: str | os.PathLike,
               on_bad_line: OnBadLine | None = None) -> Iterator[tuple[int, str]]:
    """Stream the lines of a UTF-8 text file with their numbers.

    Lines are split on ``\\n`` only (a JSON string may hold other line separators), the line
    ending (``\\n`` or ``\\r\\n``) is removed, and a UTF-8 byte order mark is skipped.

    Parameters
    ----------
    path : str or path-like
        The file.
    on_bad_line : callable or None
        When given, a line that is not valid UTF-8 is passed to it as a :class:`NotUTF8`
        error and skipped, instead of stopping the file.

    Yields
    ------
    tuple of (int, str)
        The 1-based line number and the line's text.

    Raises
    ------
    InputError
        When the file cannot be opened or a line is not valid UTF-8.
    """
    with open_input(path) as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM):]
            try:
                text = decode_line(raw, path, number)
            except NotUTF8 as error:
                if on_bad_line is None:
                    raise
                on_bad_line(error)
                continue
            yield number, text.rstrip("\r\n")


def detect_format(path: str | os.PathLike) -> str:
    """Tell the format of a request file from its first characters.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    str
        ``"rankgpt"`` when the first non-blank character is ``[`` (a JSON list),
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
