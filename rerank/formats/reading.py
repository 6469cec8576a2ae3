"""Opening input files and decoding them line by line, for every reader of this package.

The readers share :func:`open_input` and :func:`text_lines`, so that a missing file or a
non-UTF-8 byte is reported the same way everywhere: as an :class:`InputError` naming the file
and the 1-based line; and :func:`report`, so that ``--skip-bad-lines`` skips the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import BinaryIO

from rerank.errors import InputError, NotUTF8, UnreadableFile

#: A callback that receives a skipped bad line's error (``--skip-bad-lines``).
OnBadLine = Callable[[InputError], None]

#: The byte order mark that may start a UTF-8 file; every reader skips it.
UTF8_BOM = b"\xef\xbb\xbf"


def report(error: InputError, on_bad_line: OnBadLine | None) -> None:
    """Raise ``error``, or pass it to ``on_bad_line`` when given (the caller then skips).

    Parameters
    ----------
    error : InputError
        What is wrong with one line, element or query.
    on_bad_line : callable or None
        The ``--skip-bad-lines`` callback; None makes every bad line fatal.

    Raises
    ------
    InputError
        ``error`` itself, when ``on_bad_line`` is None.
    """
    if on_bad_line is None:
        raise error
    on_bad_line(error)


def open_input(path: str | os.PathLike) -> BinaryIO:
    """Open an input file for binary reading.

    Parameters
    ----------
    path : str or path-like
        Any input file of a reader.

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
    path, line
        The file and the 1-based line number, named in the error.

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
                report(error, on_bad_line)
                continue
            yield number, text.rstrip("\r\n")


def column_lines(path: str | os.PathLike,
                 on_bad_line: OnBadLine | None = None) -> Iterator[tuple[int, list[str]]]:
    """Stream the whitespace-separated columns of the non-blank lines of a text file.

    Parameters
    ----------
    path : str or path-like
        A run, qrels or other column file.
    on_bad_line : callable or None
        As for :func:`text_lines`.

    Yields
    ------
    tuple of (int, list of str)
        The 1-based line number and the line's columns (at least one).

    Raises
    ------
    InputError
        When the file cannot be opened or a line is not valid UTF-8.
    """
    for number, line in text_lines(path, on_bad_line):
        columns = line.split()
        if columns:
            yield number, columns
