"""rank_llm JSON lines: one request per line, read as a stream and written one line per result.

A line reads::

    {"query": {"text": "...", "qid": "19335"},
     "candidates": [{"docid": "8412684", "score": 12.5,
                     "doc": {"contents": "...", "title": "..."}}]}

The passage text sits in ``doc`` under ``contents``, ``text`` or ``segment`` (the first present
wins), with an optional ``title``; ``doc`` may also be the text itself. Ids may be integers in
the file; they become strings.

The field checks here (:func:`parse_id`, :func:`parse_str`, :func:`parse_score`) are shared
with the RankGPT reader and, for ids, with the TREC, corpus and queries readers: an id must be
one word of visible characters (no whitespace, control or format character, no lone
surrogate) or an integer of at most :data:`MAX_ID_DIGITS` digits, a text must have a UTF-8
form, and a score must be a finite number or null. Integers too long for Python to convert
(:func:`json_int`) are read as :class:`HugeInt` and refused in whatever field they sit.
"""

from __future__ import annotations

import json
import math
import os
import sys
import unicodedata
from collections.abc import Iterator
from typing import Any

from rerank.errors import (DuplicateId, EmptyPassage, InputError, InvalidId, InvalidJSON,
                           InvalidText, MissingField, NoCandidates)
from rerank.formats.detect import OnBadLine, text_lines
from rerank.types import Candidate, Query, Request, Result

#: Keys of ``doc`` that may hold the passage text, in order of preference.
TEXT_KEYS = ("contents", "text", "segment")

#: The most digits an integer id may have.
MAX_ID_DIGITS = 100

# Unicode categories an id may not hold besides whitespace: control, format, surrogate.
_ID_CATEGORIES = {"Cc": "a control character", "Cf": "a format character",
                  "Cs": "a lone surrogate"}


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
            if on_bad_line is None:
                raise
            on_bad_line(error)
            continue
        yield request


def check_request(request: Request, path: str | os.PathLike, line: int, *,
                  query_field: str = "query.text", candidates_field: str = "candidates",
                  text_field: str = "doc") -> None:
    """Reject a well-formed request that cannot be reranked.

    Parameters
    ----------
    request : Request
        The parsed request.
    path : str or path-like
        The file, for the error message.
    line : int
        The request's 1-based line, for the error message.
    query_field, candidates_field, text_field : str
        How the format names the query text, the candidate list and a candidate's passage
        (rank_llm: ``query.text``, ``candidates``, ``doc``; RankGPT: ``[3].query``,
        ``[3].hits``, ``content``).

    Raises
    ------
    MissingField
        When the query text is empty or blank.
    NoCandidates
        When there are no candidates.
    DuplicateId
        When a docid appears twice (the request is rejected, not de-duplicated: which copy
        to keep is the user's call); the field is the second occurrence.
    EmptyPassage
        When a candidate has neither passage text nor title (blank counts as empty).
    """
    if not request.query.text.strip():
        raise MissingField("the query text is empty", path, line, query_field)
    if not request.candidates:
        raise NoCandidates("no candidates: nothing to rerank", path, line, candidates_field)
    first: dict[str, int] = {}
    for index, candidate in enumerate(request.candidates):
        field = f"{candidates_field}[{index}]"
        if candidate.docid in first:
            raise DuplicateId(
                f"docid {candidate.docid!r} appears twice in one request (first as"
                f" {candidates_field}[{first[candidate.docid]}]); remove the duplicate",
                path, line, f"{field}.docid")
        first[candidate.docid] = index
        if not candidate.text.strip() and not (candidate.title or "").strip():
            raise EmptyPassage(f"empty passage for docid {candidate.docid!r}", path, line,
                               f"{field}.{text_field}")


def check_new_qid(qid: str, first_lines: dict[str, int], path: str | os.PathLike, line: int,
                  field: str) -> None:
    """Reject a request whose qid an earlier request of the file has; else remember it.

    Parameters
    ----------
    qid : str
        The request's qid.
    first_lines : dict
        ``qid -> line`` of the requests accepted so far; the qid is added when new.
    path : str or path-like
        The file, for the error message.
    line : int
        The request's 1-based line, for the error message.
    field : str
        The field holding the qid, for the error message.

    Raises
    ------
    DuplicateId
        When the qid is in ``first_lines``; the message gives the line of the first.
    """
    if qid in first_lines:
        raise DuplicateId(f"qid {qid!r} appears twice (first on line {first_lines[qid]}):"
                          " remove the duplicate, or keep both with --keep-duplicate-qids",
                          path, line, field)
    first_lines[qid] = line


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
        The file, for the error message.
    number : int
        The 1-based line number, for the error message.

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


def parse_request(record: Any, path: str | os.PathLike, line: int) -> Request:
    """Build a request from one decoded rank_llm record.

    Parameters
    ----------
    record : Any
        The decoded JSON value of one line.
    path : str or path-like
        The file, for error messages.
    line : int
        The record's 1-based line, for error messages.

    Returns
    -------
    Request

    Raises
    ------
    InputError
        When a field is missing or of the wrong type.
    """
    if not isinstance(record, dict):
        raise InvalidJSON(f"expected a JSON object, got {json_type(record)}", path, line)
    query = require(record, "query", path, line, "query")
    if not isinstance(query, dict):
        raise InvalidJSON(f'expected an object {{"qid": ..., "text": ...}}, got {json_type(query)}',
                         path, line, "query")
    qid = parse_id(require(query, "qid", path, line, "query.qid"), path, line, "query.qid")
    text = parse_str(require(query, "text", path, line, "query.text"), path, line, "query.text")
    candidates = require(record, "candidates", path, line, "candidates")
    if not isinstance(candidates, list):
        raise InvalidJSON(f"expected a list, got {json_type(candidates)}", path, line, "candidates")
    return Request(Query(qid, text),
                   [_parse_candidate(item, path, line, f"candidates[{index}]")
                    for index, item in enumerate(candidates)])


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


def require(mapping: dict, key: str, path: str | os.PathLike, line: int, field: str) -> Any:
    """Return ``mapping[key]``, or raise an :class:`InputError` naming ``field`` as missing.

    Parameters
    ----------
    mapping : dict
        A decoded JSON object.
    key : str
        The key wanted.
    path : str or path-like
        The file, for the error message.
    line : int
        The 1-based line, for the error message.
    field : str
        The field path reported, e.g. ``candidates[3].docid``.

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
        The decoded JSON value.
    path : str or path-like
        The file, for the error message.
    line : int
        The 1-based line, for the error message.
    field : str
        The field path, for the error message.

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
        The decoded JSON value.
    path : str or path-like
        The file, for the error message.
    line : int
        The 1-based line, for the error message.
    field : str
        The field path, for the error message.

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
    path : str or path-like
        The file, for the error message.
    line : int
        The 1-based line, for the error message.
    field : str
        The field path, for the error message.

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


def json_type(value: Any) -> str:
    """Name the JSON type of a decoded value, for error messages.

    Parameters
    ----------
    value : Any
        A decoded JSON value.

    Returns
    -------
    str
        ``"null"``, ``"a boolean"``, ``"a number"``, ``"a string"``, ``"a list"`` or
        ``"an object"``.
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


class RankLLMWriter:
    """Write reranked results as rank_llm JSON lines, one line per result, flushed per line.

    The output reads back with :func:`read_rankllm` to the same queries and candidates (with
    the new scores).

    Parameters
    ----------
    path : str or path-like
        The output file, created or truncated.
    append : bool
        Add to an existing file instead (resuming a run).

    Examples
    --------
    >>> with RankLLMWriter("out.jsonl") as writer:  # doctest: +SKIP
    ...     for result in results:
    ...         writer.write(result)
    """

    def __init__(self, path: str | os.PathLike, append: bool = False):
        self.path = str(path)
        self._file = open(path, "ab" if append else "wb")

    def write(self, result: Result | Request) -> None:
        """Write one result as a line and flush it.

        Parameters
        ----------
        result : Result or Request
            The query and its candidates, in their new order with their new scores.
        """
        record = {
            "query": {"text": result.query.text, "qid": result.query.qid},
            "candidates": [_candidate_record(candidate) for candidate in result.candidates],
        }
        self._file.write(_json_line(record))
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> RankLLMWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _candidate_record(candidate: Candidate) -> dict:
    """The JSON object of one written candidate."""
    doc = {"contents": candidate.text}
    if candidate.title is not None:
        doc["title"] = candidate.title
    return {"docid": candidate.docid, "score": candidate.score, "doc": doc}


def _json_line(record: dict) -> bytes:
    """One JSON line as UTF-8 bytes: readable non-ASCII text where possible."""
    line = json.dumps(record, ensure_ascii=False)
    try:
        return line.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # Lone surrogates (from \ud800-style escapes in the input) have no UTF-8 form;
        # ASCII escapes keep them intact.
        return json.dumps(record).encode("ascii") + b"\n"
