"""rank_llm JSON lines: one request per line, read as a stream.

rank_llm's ``.json`` output (a JSON list of the same records) is read by the list reader of
:mod:`rerank.formats.rankgpt`, which tells the two shapes apart element by element
(:func:`is_rankllm_record`).

A line reads::

    {"query": {"text": "...", "qid": "19335"},
     "candidates": [{"docid": "8412684", "score": 12.5,
                     "doc": {"contents": "...", "title": "..."}}]}

The passage text sits in ``doc`` under ``contents``, ``text`` or ``segment`` (the first present
wins), with an optional ``title``; ``doc`` may also be the text itself. Ids may be integers in
the file; they become strings.

The field checks (:mod:`rerank.formats.fields`), the JSON decoding
(:mod:`rerank.formats.jsonvalues`), the request checks (:mod:`rerank.formats.checks`) and the
writer (:class:`~rerank.formats.writers.RankLLMWriter`) are shared with the other formats and
stay importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from rerank.errors import InputError, InvalidJSON, MissingField
from rerank.formats.checks import check_new_qid, check_request
from rerank.formats.fields import (MAX_ID_DIGITS, parse_id, parse_score, parse_str, quoted,
                                   require)
from rerank.formats.jsonvalues import HugeInt, json_int, json_type, load_json_line
from rerank.formats.reading import OnBadLine, report, text_lines
from rerank.formats.writers import RankLLMWriter
from rerank.types import Candidate, Query, Request

__all__ = [
    "MAX_ID_DIGITS", "TEXT_KEYS", "HugeInt", "RankLLMWriter", "check_new_qid", "check_request",
    "is_rankllm_record", "json_int", "json_type", "load_json_line", "parse_id", "parse_request", "parse_score",
    "parse_str", "quoted", "read_rankllm", "require",
]

#: Keys of ``doc`` that may hold the passage text, in order of preference.
TEXT_KEYS = ("contents", "text", "segment")


def read_rankllm(path: str | os.PathLike, *, on_bad_line: OnBadLine | None = None,
                 validate: bool = False, keep_duplicate_qids: bool = False) -> Iterator[Request]:
    """Stream the requests of a rank_llm JSONL file.

    Parameters
    ----------
    path : str or path-like
        The file; blank lines are skipped.
    on_bad_line : callable or None
        When given, a bad line (not JSON, truncated, not UTF-8, a missing or malformed field,
        or failing ``validate``) is passed to it as its :class:`InputError` and skipped, and
        reading goes on with the next line. None stops at the first bad line.
    validate : bool
        Also reject requests that parse but cannot be reranked (see :func:`check_request`):
        a blank query text, no candidates, a docid twice, an empty passage; and a request
        whose qid an earlier request of the file already has (see :func:`check_new_qid`).
    keep_duplicate_qids : bool
        With ``validate``, keep a request whose qid repeats an earlier one instead.

    Yields
    ------
    Request
        One per non-blank line, candidates in the order of the file.

    Raises
    ------
    InputError
        When a line is not valid JSON or UTF-8, or a field is missing or of the wrong type; the
        error names the line and the field path (``candidates[3].doc``).
    """
    first_lines: dict[str, int] = {}
    for number, line in text_lines(path, on_bad_line):
        if not line.strip():
            continue
        try:
            request = parse_request(load_json_line(line, path, number), path, number)
            if validate:
                check_request(request, path, number)
                if not keep_duplicate_qids:
                    check_new_qid(request.query.qid, first_lines, path, number, "query.qid")
        except InputError as error:
            report(error, on_bad_line)
            continue
        yield request


def parse_request(record: Any, path: str | os.PathLike, line: int, prefix: str = "") -> Request:
    """Build a request from one decoded rank_llm record.

    Parameters
    ----------
    record : Any
        The decoded JSON value of one line (or one element of rank_llm's ``.json`` list).
    path : str or path-like
        The file, for error messages.
    line : int
        The record's 1-based line, for error messages.
    prefix : str
        Put before every field path in error messages: ``[3].`` for element 3 of a list.

    Returns
    -------
    Request

    Raises
    ------
    InputError
        When a field is missing or of the wrong type.
    """
    if not isinstance(record, dict):
        raise InvalidJSON(f"expected a JSON object, got {json_type(record)}", path, line,
                          prefix.rstrip(".") or None)
    query = require(record, "query", path, line, f"{prefix}query")
    if not isinstance(query, dict):
        raise InvalidJSON(f'expected an object {{"qid": ..., "text": ...}}, got {json_type(query)}',
                         path, line, f"{prefix}query")
    qid = parse_id(require(query, "qid", path, line, f"{prefix}query.qid"), path, line, f"{prefix}query.qid")
    text = parse_str(require(query, "text", path, line, f"{prefix}query.text"), path, line,
                     f"{prefix}query.text")
    candidates = require(record, "candidates", path, line, f"{prefix}candidates")
    if not isinstance(candidates, list):
        raise InvalidJSON(f"expected a list, got {json_type(candidates)}", path, line, f"{prefix}candidates")
    return Request(Query(qid=qid, text=text),
                   [_parse_candidate(item, path, line, f"{prefix}candidates[{index}]")
                    for index, item in enumerate(candidates)])


def is_rankllm_record(value: Any) -> bool:
    """Whether a decoded JSON object is shaped as a rank_llm request (its ``query`` an object,
    or ``candidates`` present) rather than a RankGPT entry (``query`` a string, ``hits``)."""
    return isinstance(value, dict) and (isinstance(value.get("query"), dict) or
                                        ("candidates" in value and "hits" not in value))


def _parse_candidate(item: Any, path: str | os.PathLike, line: int, field: str) -> Candidate:
    """One entry of ``candidates``; ``field`` is its path, e.g. ``candidates[3]``."""
    if not isinstance(item, dict):
        raise InvalidJSON(f"expected an object, got {json_type(item)}", path, line, field)
    docid = parse_id(require(item, "docid", path, line, f"{field}.docid"), path, line,
                     f"{field}.docid")
    score = parse_score(item.get("score"), path, line, f"{field}.score")
    title, text = _parse_doc(require(item, "doc", path, line, f"{field}.doc"), path, line,
                             f"{field}.doc")
    return Candidate(docid, text, title, score)


def _parse_doc(doc: Any, path: str | os.PathLike, line: int,
               field: str) -> tuple[str | None, str]:
    """The (title, text) of a ``doc`` value: a string, or an object with a text key."""
    if isinstance(doc, str):
        return None, parse_str(doc, path, line, field)
    if not isinstance(doc, dict):
        raise InvalidJSON(f"expected an object or a string, got {json_type(doc)}", path, line,
                         field)
    for key in TEXT_KEYS:
        if key in doc:
            text = parse_str(doc[key], path, line, f"{field}.{key}")
            break
    else:
        raise MissingField("no passage text: expected one of the keys "
                         + ", ".join(repr(key) for key in TEXT_KEYS), path, line, field)
    title = doc.get("title")
    if title is not None:
        title = parse_str(title, path, line, f"{field}.title")
    return title, text

