"""Corpus and query files: the texts a TREC run refers to by id.

Each file is JSON lines or tab-separated, told apart by its first non-blank line (``{`` starts
JSON lines):

- corpus: BEIR ``corpus.jsonl`` (``{"_id", "title", "text"}``), JSON lines with ``id`` or
  ``docid`` and ``text`` or ``contents``, or ``docid<TAB>text``;
- queries: ``qid<TAB>text`` (TREC topics, BEIR ``*.tsv``) or BEIR ``queries.jsonl``
  (``{"_id", "text"}``).

In TSV the text is everything after the first tab (a passage may hold tabs). Ids are checked
as in every reader (:func:`~rerank.formats.fields.parse_id`: one word of visible characters).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator

from rerank.errors import BadLine, DuplicateId, InputError, InvalidJSON, MissingField
from rerank.formats.fields import parse_id, parse_str
from rerank.formats.jsonvalues import load_json_line
from rerank.formats.reading import OnBadLine, report, text_lines

#: Keys that may hold a document id, a query id, and a text, in order of preference.
DOCID_KEYS = ("_id", "docid", "id")
QID_KEYS = ("_id", "qid", "id")
TEXT_KEYS = ("text", "contents", "segment")


def read_corpus(path: str | os.PathLike, wanted: Collection[str] | None = None, *,
                on_bad_line: OnBadLine | None = None) -> dict[str, tuple[str | None, str]]:
    """Read a corpus file into a mapping from docid to (title, text).

    Parameters
    ----------
    path : str or path-like
        BEIR ``corpus.jsonl``, other JSON lines with an id and a text, or ``docid<TAB>text``.
    wanted : collection of str or None
        Keep only these docids (to bound memory on a large corpus); None keeps all.
    on_bad_line : callable or None
        When given, a bad line is passed to it as its :class:`InputError` and skipped (a
        repeated docid keeps the first); None stops at the first.

    Returns
    -------
    dict
        ``docid -> (title, text)``; the title is None when absent or empty (always in TSV).

    Raises
    ------
    InputError
        When a line is malformed, or a kept docid appears twice; the error names the line and
        the field.
    """
    corpus: dict[str, tuple[str | None, str]] = {}
    for number, docid, title, text in _records(path, DOCID_KEYS, "docid", True, on_bad_line):
        if wanted is not None and docid not in wanted:
            continue
        if docid in corpus:
            report(DuplicateId(f"docid {docid!r} appears twice", path, number, "docid"),
                   on_bad_line)
            continue
        corpus[docid] = (title, text)
    return corpus


def read_queries(path: str | os.PathLike, *,
                 on_bad_line: OnBadLine | None = None) -> dict[str, str]:
    """Read a queries file into a mapping from qid to query text.

    Parameters
    ----------
    path : str or path-like
        ``qid<TAB>text`` lines or BEIR ``queries.jsonl`` (``{"_id", "text"}``).
    on_bad_line : callable or None
        As for :func:`read_corpus`: bad lines are passed to it and skipped (a repeated qid
        keeps the first).

    Returns
    -------
    dict
        ``qid -> text``, in the order of the file.

    Raises
    ------
    InputError
        When a line is malformed or a qid appears twice; the error names the line and the
        field.
    """
    queries: dict[str, str] = {}
    for number, qid, _, text in _records(path, QID_KEYS, "qid", False, on_bad_line):
        if qid in queries:
            report(DuplicateId(f"qid {qid!r} appears twice", path, number, "qid"), on_bad_line)
            continue
        queries[qid] = text
    return queries


def _records(path: str | os.PathLike, id_keys: tuple[str, ...], id_name: str,
             with_title: bool,
             on_bad_line: OnBadLine | None = None) -> Iterator[tuple[int, str, str | None, str]]:
    """Stream (line, id, title, text) from JSON lines or TSV, chosen by the first line."""
    is_json = None
    for number, line in text_lines(path, on_bad_line):
        if not line.strip():
            continue
        if is_json is None:
            is_json = line.lstrip().startswith("{")
        try:
            if is_json:
                record = _json_record(line, path, number, id_keys, with_title)
            else:
                record = _tsv_record(line, path, number, id_name)
        except InputError as error:
            report(error, on_bad_line)
            continue
        yield (number, *record)


def _json_record(line: str, path: str | os.PathLike, number: int, id_keys: tuple[str, ...],
                 with_title: bool) -> tuple[str, str | None, str]:
    """(id, title, text) of one JSON line."""
    record = load_json_line(line, path, number)
    if not isinstance(record, dict):
        raise InvalidJSON("expected a JSON object like the first line", path, number)
    id_key = _first_key(record, id_keys, path, number)
    text_key = _first_key(record, TEXT_KEYS, path, number)
    title = None
    if with_title and record.get("title") is not None:
        title = parse_str(record["title"], path, number, "title") or None
    return (parse_id(record[id_key], path, number, id_key), title,
            parse_str(record[text_key], path, number, text_key))


def _first_key(record: dict, keys: tuple[str, ...], path: str | os.PathLike, number: int) -> str:
    """The first of ``keys`` present in ``record``."""
    for key in keys:
        if key in record:
            return key
    raise MissingField("missing: expected one of the keys " + ", ".join(map(repr, keys)), path,
                     number, keys[0])


def _tsv_record(line: str, path: str | os.PathLike, number: int,
                id_name: str) -> tuple[str, None, str]:
    """(id, None, text) of one ``id<TAB>text`` line."""
    ident, tab, text = line.partition("\t")
    if not tab:
        raise BadLine(f"expected '{id_name}<TAB>text' (no tab on this line)", path, number,
                         "text")
    ident = ident.strip()
    if not ident:
        raise BadLine("empty id", path, number, id_name)
    return parse_id(ident, path, number, id_name), None, text
