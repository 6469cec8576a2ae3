"""The decoded text of a binary JSON file, read chunk by chunk, with line numbers.

:class:`JsonStream` lets the RankGPT reader decode one list element at a time however large
the file, report the line of every element and error, and find the next element after a
broken stretch.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, BinaryIO

from rerank.errors import InvalidJSON, NotUTF8
from rerank.formats.jsonvalues import HugeInt, json_int
from rerank.formats.reading import UTF8_BOM

_NOT_WHITESPACE = re.compile(r"[^ \t\n\r]")
# Where the next list element may start after a broken one: a '{' after a ','.
_RESYNC = re.compile(r",[ \t\n\r]*\{")
# A JSON token (a number, a literal like -Infinity, a \uXXXX escape) is judged from at most
# this many characters, so a decoding error further than this from the end of the buffer
# cannot be caused by the buffer ending early.
_TOKEN_LOOKAHEAD = 16


class JsonStream:
    """The decoded text of a binary file, read chunk by chunk, with line numbers.

    Parameters
    ----------
    fh : BinaryIO
        The open file, at its start (a UTF-8 byte order mark is skipped).
    path : str or path-like
        The file, named in errors.
    chunk_size : int
        Bytes read at a time (a value cut by the end of the buffer is read in growing
        chunks).

    Attributes
    ----------
    text : str
        The part not yet consumed (from ``pos`` on) plus what was consumed since the last
        read.
    pos : int
        The current position in ``text``.
    first_line : int
        The 1-based line number of ``text[0]``.
    dropped : int
        Characters dropped from the front of ``text`` so far.
    """

    def __init__(self, fh: BinaryIO, path: str | os.PathLike, chunk_size: int):
        self.path = path
        self.text = ""
        self.pos = 0
        self.first_line = 1
        self.dropped = 0
        self._fh = fh
        self._chunk_size = chunk_size
        self._pending = b""
        self._started = False
        self._eof = False
        self._decoder = json.JSONDecoder(parse_int=json_int)

    def line(self, pos: int | None = None) -> int:
        """The 1-based line of a position.

        Parameters
        ----------
        pos : int or None
            A position in ``text``; None means the current position.

        Returns
        -------
        int
            The line number.
        """
        return self.first_line + self.text.count("\n", 0, self.pos if pos is None else pos)

    def peek(self) -> str:
        """Skip JSON whitespace and look at the next character.

        Returns
        -------
        str
            The next character, or ``""`` at the end of the file.
        """
        while True:
            match = _NOT_WHITESPACE.search(self.text, self.pos)
            if match:
                self.pos = match.start()
                return self.text[self.pos]
            self.pos = len(self.text)
            if not self._read(self._chunk_size):
                return ""

    def skip(self) -> None:
        """Consume the character :meth:`peek` returned."""
        self.pos += 1

    def decode_value(self) -> Any:
        """Decode the JSON value at the current position, reading more of the file as needed.

        Returns
        -------
        Any
            The value; the position moves past it.

        Raises
        ------
        InputError
            When the text is not valid JSON.
        """
        while True:
            try:
                value, end = self._decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if self._may_be_cut(exc) and self._read(self._grow_size()):
                    continue
                raise InvalidJSON(f"invalid JSON: {exc.msg}", self.path,
                                 self.line(exc.pos)) from None
            except RecursionError:
                raise InvalidJSON("invalid JSON: nested too deeply", self.path,
                                 self.line()) from None
            # A number that ends the buffer may go on in the next chunk.
            if (end == len(self.text) and isinstance(value, (int, float, HugeInt))
                    and self._read(self._chunk_size)):
                continue
            self.pos = end
            return value

    def resync(self, start: int) -> bool:
        """Move to the next list element after a broken stretch of the list.

        The next element is taken to be the first ``{`` after a ``,`` (from ``start`` on) that
        decodes to an object with a ``"query"`` or ``"hits"`` key (a hit has neither).

        Parameters
        ----------
        start : int
            The position in ``text`` to search from.

        Returns
        -------
        bool
            True when positioned at such an element, False when the file ends first.
        """
        self.pos = start
        while True:
            match = _RESYNC.search(self.text, self.pos)
            if match is None:
                comma = self.text.rfind(",", self.pos)
                if comma >= 0 and not self.text[comma + 1:].strip(" \t\n\r"):
                    self.pos = comma  # a ',' at the end may be followed by '{' in the next chunk
                else:
                    self.pos = len(self.text)
                if not self._read(self._chunk_size):
                    return False
                continue
            brace = self.dropped + match.end() - 1
            self.pos = match.end() - 1
            try:
                value = self.decode_value()
            except InvalidJSON:
                self.pos = brace - self.dropped + 1
                continue
            if isinstance(value, dict) and ("query" in value or "hits" in value):
                self.pos = brace - self.dropped
                return True

    def _may_be_cut(self, exc: json.JSONDecodeError) -> bool:
        """Whether a decoding error may come from the buffer ending inside the value."""
        return (exc.msg.startswith("Unterminated string")
                or exc.pos >= len(self.text) - _TOKEN_LOOKAHEAD)

    def _grow_size(self) -> int:
        # Reading at least as much as is buffered doubles the buffer on each retry, which
        # keeps re-decoding a large element linear in its size.
        return max(self._chunk_size, len(self.text) - self.pos)

    def _read(self, size: int) -> bool:
        """Append the next chunk's text (dropping consumed text); False at the end of file."""
        if self._eof:
            return False
        data = self._fh.read(size if self._started else max(size, len(UTF8_BOM)))
        if not self._started:
            self._started = True
            if data.startswith(UTF8_BOM):
                data = data[len(UTF8_BOM):] or self._fh.read(size)
        if not data:
            self._eof = True
            if self._pending:
                raise NotUTF8("not valid UTF-8: the file ends inside a multi-byte character",
                                 self.path, self.line(len(self.text)))
            return False
        self.first_line = self.line()
        self.dropped += self.pos
        self.text = self.text[self.pos:]
        self.pos = 0
        self.text += self._decode(self._pending + data)
        return True

    def _decode(self, data: bytes) -> str:
        """Decode bytes, keeping a multi-byte character cut by the chunk end for later."""
        try:
            self._pending = b""
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data" and exc.end == len(data):
                self._pending = data[exc.start:]
                return data[:exc.start].decode("utf-8")
            line = self.line(len(self.text)) + data.count(b"\n", 0, exc.start)
            raise NotUTF8(f"not valid UTF-8: byte 0x{data[exc.start]:02x} ({exc.reason});"
                             " save the file as UTF-8", self.path, line) from None
