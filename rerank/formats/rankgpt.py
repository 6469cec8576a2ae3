"""RankGPT JSON: one JSON list of ``{"query": str, "hits": [...]}`` entries, read as a stream.

An entry reads::

    {"query": "how long is life cycle of flea",
     "hits": [{"content": "...", "qid": 264014, "docid": "5611210", "rank": 1,
               "score": 15.78}]}

The qid is taken from the hits (all hits of an entry share it); an optional ``title`` may sit
in a hit. The list is decoded one element at a time from chunks of the file, so memory stays
bounded by one element however large the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from rerank.errors import InputError, InvalidJSON, NoCandidates, NotUTF8
from rerank.formats.detect import UTF8_BOM, OnBadLine, open_input
from rerank.formats.rankllm import (HugeInt, check_new_qid, check_request, json_int, json_type,
                                    parse_id, parse_score, parse_str, require)
from rerank.types import Candidate, Query, Request

#: Bytes read from the file at a time.
DEFAULT_CHUNK_SIZE = 64 * 1024

_NOT_WHITESPACE = re.compile(r"[^ \t\n\r]")
# Where the next list element may start after a broken one: a '{' after a ','.
_RESYNC = re.compile(r",[ \t\n\r]*\{")
# A JSON token (a number, a literal like -Infinity, a \uXXXX escape) is judged from at most
# this many characters, so a decoding error further than this from the end of the buffer
# cannot be caused by the buffer ending early.
_TOKEN_LOOKAHEAD = 16


def read_rankgpt(path: str | os.PathLike, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 on_bad_line: OnBadLine | None = None, validate: bool = False,
                 keep_duplicate_qids: bool = False) -> Iterator[Request]:
    """Stream the requests of a RankGPT JSON file.

    Parameters
    ----------
    path : str or path-like
        The file: a JSON list of ``{"query", "hits"}`` objects.
    chunk_size : int
        Bytes read at a time (a larger element is read in growing chunks).
    on_bad_line : callable or None
        When given, a bad list element is passed to it as its :class:`InputError` and
        skipped. An element that parses but has a bad field is simply skipped. After a JSON
        syntax error (a truncated or garbled element) reading resumes at the next ``{``
        that follows a ``,`` and decodes to an object with a ``"query"`` or ``"hits"``
        key, which is taken as the next element; the element indexes in later messages
        then count the broken stretch as one element. When no such object follows, or
        after a stray character between elements is not followed by one, or when the
        list is not closed, the error is reported and reading ends. Bytes that are not
        UTF-8 stop the file even then (the decoder cannot tell where the element ends).
        None stops at the first bad element.
    validate : bool
        Also reject requests that parse but cannot be reranked (see
        :func:`~rerank.formats.rankllm.check_request`), and an element whose qid an earlier
        element already has (:class:`~rerank.errors.DuplicateId`, naming the line of both).
    keep_duplicate_qids : bool
        With ``validate``, keep an element whose qid repeats an earlier one instead.

    Yields
    ------
    Request
        One per list element, candidates in the order of the hits.

    Raises
    ------
    InputError
        When the file is not a JSON list, is not valid JSON or UTF-8, or an element lacks a
        field; the error names the line where the element (or the JSON error) starts and the
        field path, e.g. ``[3].hits[5].docid`` for hit 5 of element 3 (both 0-based).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    def report(error: InputError) -> None:
        if on_bad_line is None:
            raise error
        on_bad_line(error)

    with open_input(path) as fh:
        stream = _JsonStream(fh, path, chunk_size)
        char = stream.peek()
        if not char:
            raise InvalidJSON('empty file: expected a JSON list of {"query", "hits"} objects',
                              path)
        if char != "[":
            raise InvalidJSON(f'expected a JSON list of {{"query", "hits"}} objects, found {char!r}',
                              path, stream.line())
        stream.skip()
        if stream.peek() == "]":
            stream.skip()
        else:
            index = 0
            first_lines: dict[str, int] = {}
            while True:
                stream.peek()
                line = stream.line()
                try:
                    value = stream.decode_value()
                except InvalidJSON as error:
                    report(error)
                    if not stream.resync(stream.pos + 1):
                        return
                    index += 1
                    continue
                try:
                    request = _parse_entry(value, path, line, f"[{index}]")
                    if validate:
                        check_request(request, path, line, query_field=f"[{index}].query",
                                      candidates_field=f"[{index}].hits", text_field="content")
                        if not keep_duplicate_qids:
                            check_new_qid(request.query.qid, first_lines, path, line,
                                          f"[{index}].qid" if "qid" in value
                                          else f"[{index}].hits[0].qid")
                except InputError as error:
                    report(error)
                else:
                    yield request
                index += 1
                char = stream.peek()
                if char == ",":
                    stream.skip()
                elif char == "]":
                    stream.skip()
                    break
                elif not char:
                    report(InvalidJSON("unexpected end of file: the list is not closed by ']'",
                                       path, stream.line()))
                    return
                else:
                    report(InvalidJSON(f"invalid JSON: expected ',' or ']' after list element"
                                       f" {index - 1}, found {char!r}", path, stream.line()))
                    if not stream.resync(stream.pos):
                        return
        if stream.peek():
            report(InvalidJSON("invalid JSON: extra data after the list", path, stream.line()))


class _JsonStream:
    """The decoded text of a binary file, read chunk by chunk, with line numbers.

    ``text`` holds the part not yet consumed (from ``pos`` on) plus what was consumed since
    the last read; ``first_line`` is the line number of ``text[0]``.
    """

    def __init__(self, fh: BinaryIO, path: str | os.PathLike, chunk_size: int):
        self.path = path
        self.text = ""
        self.pos = 0
        self.first_line = 1
        self.dropped = 0  # characters dropped from the front of ``text`` so far
        self._fh = fh
        self._chunk_size = chunk_size
        self._pending = b""
        self._started = False
        self._eof = False
        self._decoder = json.JSONDecoder(parse_int=json_int)

    def line(self, pos: int | None = None) -> int:
        """The 1-based line of ``text[pos]`` (default: the current position)."""
        return self.first_line + self.text.count("\n", 0, self.pos if pos is None else pos)

    def peek(self) -> str:
        """Skip JSON whitespace; return the next character, or '' at the end of the file."""
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


def _parse_entry(entry: Any, path: str | os.PathLike, line: int, field: str) -> Request:
    """Build a request from one list element; ``field`` is its path, e.g. ``[3]``."""
    if not isinstance(entry, dict):
        raise InvalidJSON(f'expected an object {{"query", "hits"}}, got {json_type(entry)}',
                         path, line, field)
    text = parse_str(require(entry, "query", path, line, f"{field}.query"), path, line,
                     f"{field}.query")
    hits = require(entry, "hits", path, line, f"{field}.hits")
    if not isinstance(hits, list):
        raise InvalidJSON(f"expected a list, got {json_type(hits)}", path, line, f"{field}.hits")
    qid = None
    if "qid" in entry:
        qid = parse_id(entry["qid"], path, line, f"{field}.qid")
    elif not hits:
        raise NoCandidates("empty, and the entry has no 'qid': the qid is taken from the hits",
                         path, line, f"{field}.hits")
    candidates = []
    for index, hit in enumerate(hits):
        hit_field = f"{field}.hits[{index}]"
        if not isinstance(hit, dict):
            raise InvalidJSON(f"expected an object, got {json_type(hit)}", path, line, hit_field)
        hit_qid = parse_id(require(hit, "qid", path, line, f"{hit_field}.qid"), path, line,
                           f"{hit_field}.qid")
        if qid is None:
            qid = hit_qid
        elif hit_qid != qid:
            raise InvalidJSON(f"is {hit_qid!r} but the entry's qid is {qid!r}: all hits of an"
                             " entry must share one qid", path, line, f"{hit_field}.qid")
        candidates.append(_parse_hit(hit, path, line, hit_field))
    return Request(Query(qid, text), candidates)


def _parse_hit(hit: dict, path: str | os.PathLike, line: int, field: str) -> Candidate:
    """One hit as a candidate; ``field`` is its path, e.g. ``[3].hits[5]``."""
    docid = parse_id(require(hit, "docid", path, line, f"{field}.docid"), path, line,
                     f"{field}.docid")
    text = parse_str(require(hit, "content", path, line, f"{field}.content"), path, line,
                     f"{field}.content")
    title = hit.get("title")
    if title is not None:
        title = parse_str(title, path, line, f"{field}.title")
    score = parse_score(hit.get("score"), path, line, f"{field}.score")
    return Candidate(docid, text, title, score)
