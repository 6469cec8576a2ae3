"""TREC runs and qrels: reading runs and judgments, and joining a run with its texts.

A run line is ``qid Q0 docid rank score tag`` (whitespace-separated); a qrels line is
``qid 0 docid grade`` (``Q0`` also accepted in the second column). A run holds ids only:
:func:`read_run_requests` joins it with a corpus and a queries file into requests. The column
checks are in :mod:`rerank.formats.columns`; :class:`~rerank.formats.writers.TrecRunWriter`,
which writes runs, stays importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from rerank.errors import DuplicateId, EmptyPassage, InputError, MissingField, UnknownId
from rerank.formats.beir import read_corpus, read_queries
from rerank.formats.columns import MAX_INT_COLUMN, check_shape, parse_float, parse_int
from rerank.formats.fields import parse_id
from rerank.formats.reading import OnBadLine, column_lines, report
from rerank.formats.writers import TrecRunWriter
from rerank.types import Candidate, Query, Request

__all__ = ["MAX_INT_COLUMN", "QRELS_COLUMNS", "RUN_COLUMNS", "RunLines", "TrecRunWriter", "join_run",
           "read_qrels", "read_run", "read_run_lines", "read_run_requests"]

#: The columns of a run line and of a qrels line, named in errors.
RUN_COLUMNS = ("qid", "Q0", "docid", "rank", "score", "tag")
QRELS_COLUMNS = ("qid", "iteration", "docid", "grade")

#: A run in memory: qid -> its (docid, score, line) entries, best first (line None where the run
#: has no lines, as a dataset's first stage).
RunLines = dict[str, list[tuple[str, float, int | None]]]


def read_run(path: str | os.PathLike, *,
             on_bad_line: OnBadLine | None = None) -> Iterator[tuple[str, list[tuple[str, float]]]]:
    """Read a TREC run, query by query.

    The whole run is read first (run files are small), so a qid whose lines are split across
    the file is merged.

    Parameters
    ----------
    path : str or path-like
        The run: ``qid Q0 docid rank score tag`` lines; blank lines are skipped.
    on_bad_line : callable or None
        When given, a bad line is passed to it as its :class:`InputError` and skipped;
        None stops at the first.

    Yields
    ------
    tuple of (str, list of (str, float))
        A qid, in order of first appearance, and its ``(docid, score)`` pairs by decreasing
        score; ties keep the order of the file (the rank column is checked but not used).

    Raises
    ------
    InputError
        When a line does not have the six columns, an id holds a character an id cannot
        (see :func:`~rerank.formats.fields.parse_id`), the rank is not an integer, the score
        is not a finite number, or a docid appears twice for one qid.
    """
    for qid, lines in read_run_lines(path, on_bad_line).items():
        yield qid, [(docid, score) for docid, score, _ in lines]


def read_run_lines(path: str | os.PathLike, on_bad_line: OnBadLine | None = None) -> RunLines:
    """Read a TREC run: the candidates of each qid, sorted by score, with the line of each.

    Parameters
    ----------
    path : str or path-like
        The run (see :func:`read_run`).
    on_bad_line : callable or None
        When given, a bad line is passed to it as its :class:`InputError` and skipped;
        None stops at the first.

    Returns
    -------
    RunLines
        ``qid -> [(docid, score, line), ...]`` by decreasing score (ties in file order), qids
        in order of first appearance.

    Raises
    ------
    InputError
        As :func:`read_run`.
    """
    run: RunLines = {}
    seen: dict[tuple[str, str], int] = {}
    for number, columns in column_lines(path, on_bad_line):
        try:
            check_shape(columns, RUN_COLUMNS, path, number)
            qid, _, docid, rank, score, _ = columns
            parse_id(qid, path, number, "qid")
            parse_id(docid, path, number, "docid")
            parse_int(rank, path, number, "rank")
            value = parse_float(score, path, number, "score")
            if (qid, docid) in seen:
                raise DuplicateId(f"docid {docid!r} appears twice for qid {qid!r} (first on"
                                  f" line {seen[qid, docid]})", path, number, "docid")
        except InputError as error:
            report(error, on_bad_line)
            continue
        seen[qid, docid] = number
        run.setdefault(qid, []).append((docid, value, number))
    for lines in run.values():
        lines.sort(key=lambda entry: -entry[1])  # stable: ties keep file order
    return run


def read_qrels(path: str | os.PathLike, *,
               on_bad_line: OnBadLine | None = None) -> dict[str, dict[str, int]]:
    """Read TREC relevance judgments.

    Parameters
    ----------
    path : str or path-like
        ``qid 0 docid grade`` lines (the second column is ignored, ``Q0`` is common); blank
        lines are skipped.
    on_bad_line : callable or None
        When given, a bad line is passed to it as its :class:`InputError` and skipped;
        None stops at the first.

    Returns
    -------
    dict
        ``qid -> {docid: grade}``; a pair judged twice keeps the last grade.

    Raises
    ------
    InputError
        When a line does not have four columns, an id holds a character an id cannot, or the
        grade is not an integer.
    """
    qrels: dict[str, dict[str, int]] = {}
    for number, columns in column_lines(path, on_bad_line):
        try:
            check_shape(columns, QRELS_COLUMNS, path, number)
            qid, _, docid, grade = columns
            parse_id(qid, path, number, "qid")
            parse_id(docid, path, number, "docid")
            value = parse_int(grade, path, number, "grade")
        except InputError as error:
            report(error, on_bad_line)
            continue
        qrels.setdefault(qid, {})[docid] = value
    return qrels


def read_run_requests(run_path: str | os.PathLike, corpus_path: str | os.PathLike,
                      queries_path: str | os.PathLike, *, on_bad_line: OnBadLine | None = None,
                      validate: bool = False) -> Iterator[Request]:
    """Join a TREC run with its corpus and queries into requests.

    Everything is read and checked before this returns, so a missing text is reported
    before any reranking starts. Only the corpus documents the run names are kept.

    Parameters
    ----------
    run_path : str or path-like
        The first-stage run (see :func:`read_run`).
    corpus_path : str or path-like
        The corpus (see :func:`~rerank.formats.beir.read_corpus`).
    queries_path : str or path-like
        The queries (see :func:`~rerank.formats.beir.read_queries`).
    on_bad_line : callable or None
        When given, a bad line of any of the three files is passed to it and skipped, and a
        query of the run whose text or one of whose passages is missing (or, with
        ``validate``, empty) is reported and left out; None stops at the first error.
    validate : bool
        Also reject a candidate whose passage has neither text nor title
        (:class:`~rerank.errors.EmptyPassage`, at the run line naming it), and a query whose
        text is empty or blank (:class:`~rerank.errors.MissingField`, at its first run line).

    Returns
    -------
    Iterator of Request
        One per qid of the run, in order of first appearance, candidates by decreasing
        first-stage score.

    Raises
    ------
    InputError
        When a file is malformed, a qid of the run is not in the queries (field ``qid``, line
        of its first appearance in the run), or a docid is not in the corpus (field ``docid``,
        its line in the run).
    """
    run = read_run_lines(run_path, on_bad_line)
    corpus = read_corpus(corpus_path, {docid for lines in run.values() for docid, _, _ in lines},
                         on_bad_line=on_bad_line)
    queries = read_queries(queries_path, on_bad_line=on_bad_line)
    return join_run(run, corpus, queries, run_path=run_path, corpus_name=f"the corpus {corpus_path}",
                    queries_name=f"the queries file {queries_path}", on_bad_line=on_bad_line,
                    validate=validate)


def join_run(run: RunLines, corpus: Mapping[str, tuple[str | None, str]], queries: Mapping[str, str], *,
             run_path: str | os.PathLike, corpus_name: str, queries_name: str,
             on_bad_line: OnBadLine | None = None, validate: bool = False) -> Iterator[Request]:
    """Join a run with the texts of its queries and documents into requests, checked first.

    The one join of ids and texts: :func:`read_run_requests` (files) and
    :mod:`rerank.formats.irds` (an ir_datasets dataset) both use it.

    Parameters
    ----------
    run : RunLines
        The run (see :func:`read_run_lines`); qids that fail a check are removed from it.
    corpus : mapping
        ``docid -> (title, text)`` of at least the run's documents.
    queries : mapping
        ``qid -> text``.
    run_path : str or path-like
        Where the run comes from, named in errors (with the line of the id at fault).
    corpus_name, queries_name : str
        What holds the texts, for errors: ``"the corpus corpus.jsonl"``, ``"the queries file
        topics.tsv"``.
    on_bad_line : callable or None
        When given, a query whose text or one of whose passages is missing (or, with
        ``validate``, empty) is passed to it and left out; None stops at the first.
    validate : bool
        Also reject empty passages and blank query texts (see :func:`read_run_requests`).

    Returns
    -------
    Iterator of Request
        One per qid of the run, in its order, candidates in run order.

    Raises
    ------
    InputError
        When a qid is not in ``queries`` or a docid not in ``corpus``
        (:class:`~rerank.errors.UnknownId`), or, with ``validate``, a text is empty.
    """
    for qid, lines in list(run.items()):
        try:
            _check_query(qid, lines, corpus, queries, run_path, corpus_name, queries_name, validate)
        except InputError as error:
            report(error, on_bad_line)
            del run[qid]
    return _join(run, corpus, queries)


def _check_query(qid: str, lines: list[tuple[str, float, int | None]],
                 corpus: Mapping[str, tuple[str | None, str]], queries: Mapping[str, str],
                 run_path: str | os.PathLike, corpus_name: str, queries_name: str, validate: bool) -> None:
    """Check that a run query's text and passages are known (and, to validate, not empty)."""
    if qid not in queries:
        raise UnknownId(f"qid {qid!r} is not in {queries_name}", run_path, lines[0][2], "qid")
    if validate and not queries[qid].strip():
        raise MissingField(f"qid {qid!r} has an empty query text in {queries_name}",
                           run_path, lines[0][2], "qid")
    for docid, _, number in lines:
        if docid not in corpus:
            raise UnknownId(f"docid {docid!r} is not in {corpus_name}", run_path, number, "docid")
        title, text = corpus[docid]
        if validate and not text.strip() and not (title or "").strip():
            raise EmptyPassage(f"docid {docid!r} has an empty passage in {corpus_name}",
                               run_path, number, "docid")


def _join(run: RunLines, corpus: Mapping[str, tuple[str | None, str]],
          queries: Mapping[str, str]) -> Iterator[Request]:
    """The requests of a checked run."""
    for qid, lines in run.items():
        yield Request(Query(qid=qid, text=queries[qid]),
                      [Candidate(docid, corpus[docid][1], corpus[docid][0], score)
                       for docid, score, _ in lines])
