"""RankGPT JSON: one JSON list of ``{"query": str, "hits": [...]}`` entries, read as a stream.

An entry reads::

    {"query": "how long is life cycle of flea",
     "hits": [{"content": "...", "qid": 264014, "docid": "5611210", "rank": 1,
               "score": 15.78}]}

The qid is taken from the hits (all hits of an entry share it); an optional ``title`` may sit
in a hit. The list is decoded one element at a time from chunks of the file, so memory stays
bounded by one element however large the file.

rank_llm's ``.json`` output is a JSON list too, of rank_llm records (``{"query": {"text",
"qid"}, "candidates": [...]}``): such an element is read as rank_llm reads a line
(:func:`~rerank.formats.rankllm.parse_request`), its fields named from the element
(``[3].candidates[5].docid``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from rerank.errors import InputError, InvalidJSON, NoCandidates
from rerank.formats.checks import check_new_qid, check_request
from rerank.formats.fields import parse_id, parse_score, parse_str, require
from rerank.formats.jsonstream import JsonStream
from rerank.formats.jsonvalues import json_type
from rerank.formats.rankllm import is_rankllm_record, parse_request
from rerank.formats.reading import OnBadLine, open_input, report
from rerank.types import Candidate, Query, Request

#: Bytes read from the file at a time.
DEFAULT_CHUNK_SIZE = 64 * 1024


def read_rankgpt(path: str | os.PathLike, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 on_bad_line: OnBadLine | None = None, validate: bool = False,
                 keep_duplicate_qids: bool = False) -> Iterator[Request]:
    """Stream the requests of a RankGPT JSON file.

    Parameters
    ----------
    path : str or path-like
        The file: a JSON list of ``{"query", "hits"}`` objects, or of rank_llm records (its
        ``.json`` output).
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
        :func:`~rerank.formats.checks.check_request`), and an element whose qid an earlier
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
    with open_input(path) as fh:
        stream = JsonStream(fh, path, chunk_size)
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
                    report(error, on_bad_line)
                    if not stream.resync(stream.pos + 1):
                        return
                    index += 1
                    continue
                try:
                    if is_rankllm_record(value):
                        request = parse_request(value, path, line, f"[{index}].")
                        fields = (f"[{index}].query.text", f"[{index}].candidates", "doc",
                                  f"[{index}].query.qid")
                    else:
                        request = _parse_entry(value, path, line, f"[{index}]")
                        fields = (f"[{index}].query", f"[{index}].hits", "content",
                                  f"[{index}].qid" if "qid" in value else f"[{index}].hits[0].qid")
                    if validate:
                        check_request(request, path, line, query_field=fields[0],
                                      candidates_field=fields[1], text_field=fields[2])
                        if not keep_duplicate_qids:
                            check_new_qid(request.query.qid, first_lines, path, line, fields[3])
                except InputError as error:
                    report(error, on_bad_line)
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
                                       path, stream.line()), on_bad_line)
                    return
                else:
                    report(InvalidJSON(f"invalid JSON: expected ',' or ']' after list element"
                                       f" {index - 1}, found {char!r}", path, stream.line()),
                           on_bad_line)
                    if not stream.resync(stream.pos):
                        return
        if stream.peek():
            report(InvalidJSON("invalid JSON: extra data after the list", path, stream.line()),
                   on_bad_line)


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
    return Request(Query(qid=qid, text=text), candidates)


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
