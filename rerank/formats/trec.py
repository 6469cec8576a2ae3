"""TREC runs and qrels: reading runs and judgments, writing reranked runs.

A run line is ``qid Q0 docid rank score tag`` (whitespace-separated); a qrels line is
``qid 0 docid grade`` (``Q0`` also accepted in the second column). A run holds ids only:
:func:`read_run_requests` joins it with a corpus and a queries file into requests.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator

from rerank.errors import (BadLine, ConfigError, DuplicateId, EmptyPassage, InputError,
                           MissingField, UnknownId)
from rerank.formats.beir import read_corpus, read_queries
from rerank.formats.detect import OnBadLine, text_lines
from rerank.formats.rankllm import parse_id, quoted
from rerank.types import Candidate, Query, Request, Result

RUN_COLUMNS = ("qid", "Q0", "docid", "rank", "score", "tag")
QRELS_COLUMNS = ("qid", "iteration", "docid", "grade")

#: The largest magnitude of a rank or grade: a C int, as trec_eval and pytrec_eval hold them.
MAX_INT_COLUMN = 2**31 - 1

_INT_COLUMN = re.compile(r"[+-]?[0-9]+")

# qid -> its (docid, score, line) entries.
_RunLines = dict[str, list[tuple[str, float, int]]]


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
        (see :func:`~rerank.formats.rankllm.parse_id`), the rank is not an integer, the score
        is not a finite number, or a docid appears twice for one qid.
    """
    for qid, lines in _read_run_lines(path, on_bad_line).items():
        yield qid, [(docid, score) for docid, score, _ in lines]


def _read_run_lines(path: str | os.PathLike, on_bad_line: OnBadLine | None = None) -> _RunLines:
    """The run's candidates per qid, sorted by score, with the line of each."""
    run: _RunLines = {}
    seen: dict[tuple[str, str], int] = {}
    for number, line in text_lines(path, on_bad_line):
        columns = line.split()
        if not columns:
            continue
        try:
            _check_shape(columns, RUN_COLUMNS, path, number)
            qid, _, docid, rank, score, _ = columns
            parse_id(qid, path, number, "qid")
            parse_id(docid, path, number, "docid")
            _parse_int(rank, path, number, "rank")
            value = _parse_float(score, path, number, "score")
            if (qid, docid) in seen:
                raise DuplicateId(f"docid {docid!r} appears twice for qid {qid!r} (first on"
                                  f" line {seen[qid, docid]})", path, number, "docid")
        except InputError as error:
            if on_bad_line is None:
                raise
            on_bad_line(error)
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
    for number, line in text_lines(path, on_bad_line):
        columns = line.split()
        if not columns:
            continue
        try:
            _check_shape(columns, QRELS_COLUMNS, path, number)
            qid, _, docid, grade = columns
            parse_id(qid, path, number, "qid")
            parse_id(docid, path, number, "docid")
            value = _parse_int(grade, path, number, "grade")
        except InputError as error:
            if on_bad_line is None:
                raise
            on_bad_line(error)
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
    run = _read_run_lines(run_path, on_bad_line)
    corpus = read_corpus(corpus_path, {docid for lines in run.values() for docid, _, _ in lines},
                         on_bad_line=on_bad_line)
    queries = read_queries(queries_path, on_bad_line=on_bad_line)
    for qid, lines in list(run.items()):
        try:
            _check_query(qid, lines, corpus, queries, run_path, corpus_path, queries_path,
                         validate)
        except InputError as error:
            if on_bad_line is None:
                raise
            on_bad_line(error)
            del run[qid]
    return _join(run, corpus, queries)


def _check_query(qid: str, lines: list[tuple[str, float, int]],
                 corpus: dict[str, tuple[str | None, str]], queries: dict[str, str],
                 run_path: str | os.PathLike, corpus_path: str | os.PathLike,
                 queries_path: str | os.PathLike, validate: bool) -> None:
    """Check that a run query's text and passages are known (and, to validate, not empty)."""
    if qid not in queries:
        raise UnknownId(f"qid {qid!r} is not in the queries file {queries_path}",
                        run_path, lines[0][2], "qid")
    if validate and not queries[qid].strip():
        raise MissingField(f"qid {qid!r} has an empty query text in the queries file"
                           f" {queries_path}", run_path, lines[0][2], "qid")
    for docid, _, number in lines:
        if docid not in corpus:
            raise UnknownId(f"docid {docid!r} is not in the corpus {corpus_path}",
                            run_path, number, "docid")
        title, text = corpus[docid]
        if validate and not text.strip() and not (title or "").strip():
            raise EmptyPassage(f"docid {docid!r} has an empty passage in the corpus"
                               f" {corpus_path}", run_path, number, "docid")


def _join(run: _RunLines, corpus: dict[str, tuple[str | None, str]],
          queries: dict[str, str]) -> Iterator[Request]:
    """The requests of a checked run."""
    for qid, lines in run.items():
        yield Request(Query(qid, queries[qid]),
                      [Candidate(docid, corpus[docid][1], corpus[docid][0], score)
                       for docid, score, _ in lines])


class TrecRunWriter:
    """Write reranked results as a TREC run, flushed per query.

    Each candidate becomes ``qid Q0 docid rank score tag`` with ranks 1..n and scores that
    strictly decrease with rank, so that any evaluation tool (which sorts by score) sees the
    reranked order. Each qid is written once: a later result for a qid already written
    (requests kept with ``--keep-duplicate-qids``) is skipped, so the run stays valid.

    Parameters
    ----------
    path : str or path-like
        The output file, created or truncated.
    tag : str
        The run tag, the sixth column; no whitespace.
    append : bool
        Add to an existing run instead (resuming); the qids it holds count as written.

    Raises
    ------
    ConfigError
        When the tag is empty or holds whitespace.
    """

    def __init__(self, path: str | os.PathLike, tag: str = "rerank", append: bool = False):
        if not _is_word(tag):
            raise ConfigError(f"a TREC run tag must be one word without spaces, got {tag!r}")
        self.path = str(path)
        self.tag = tag
        self._written = _written_qids(path) if append else set()
        self._file = open(path, "a" if append else "w", encoding="utf-8", newline="\n")

    def write(self, result: Result) -> None:
        """Write one query's candidates, in their order, and flush.

        The candidates' scores are written when they are finite and strictly decreasing
        (``repr`` keeps every distinct float distinct); otherwise rank ``r`` of ``n`` gets the
        score ``n - r + 1``. A result whose qid the run already holds (written by this writer,
        or in the file it appends to) is skipped.

        Parameters
        ----------
        result : Result
            The reranked query.

        Raises
        ------
        InputError
            When the qid or a docid is empty or holds whitespace, a control or format
            character or a lone surrogate, which a run cannot hold.
        """
        qid = result.query.qid
        self._check_id(qid, "qid")
        if qid in self._written:
            return
        scores = _strictly_decreasing([candidate.score for candidate in result.candidates])
        count = len(result.candidates)
        lines = []
        for rank, candidate in enumerate(result.candidates, start=1):
            self._check_id(candidate.docid, "docid")
            score = repr(scores[rank - 1]) if scores else str(count - rank + 1)
            lines.append(f"{qid} Q0 {candidate.docid} {rank} {score} {self.tag}\n")
        self._file.write("".join(lines))
        self._file.flush()
        if lines:  # a run without lines for the qid does not hold it
            self._written.add(qid)

    def _check_id(self, ident: str, field: str) -> None:
        """Refuse an id that would break the run's columns (the readers' check)."""
        try:
            parse_id(ident, self.path, None, field)
        except InputError as error:
            raise InputError(f"cannot be written to a TREC run: {error.message}", self.path,
                             None, field) from None

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> TrecRunWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _written_qids(path: str | os.PathLike) -> set[str]:
    """The qids (first columns) of an existing run that a writer appends to."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return {columns[0] for columns in map(str.split, handle) if columns}
    except FileNotFoundError:
        return set()


def _is_word(text: str) -> bool:
    """Whether a string is non-empty and free of whitespace, so it stays one run column."""
    return text.split() == [text]  # str.split() splits on exactly what str.isspace() calls space


def _strictly_decreasing(scores: list[float | None]) -> list[float] | None:
    """The scores as floats if all are finite and strictly decreasing, else None."""
    if any(score is None or not math.isfinite(score) for score in scores):
        return None
    values = [float(score) for score in scores]
    if all(a > b for a, b in zip(values, values[1:])):
        return values
    return None


def _check_shape(columns: list[str], names: tuple[str, ...], path: str | os.PathLike,
                 number: int) -> None:
    """Raise unless a line has one column per name; the field is the first missing one."""
    if len(columns) == len(names):
        return
    field = names[len(columns)] if len(columns) < len(names) else names[-1]
    raise BadLine(f"expected {len(names)} whitespace-separated columns ({' '.join(names)}),"
                     f" found {len(columns)}", path, number, field)


def _parse_int(text: str, path: str | os.PathLike, number: int, field: str) -> int:
    """An integer column: ASCII digits with an optional sign, within :data:`MAX_INT_COLUMN`."""
    if not _INT_COLUMN.fullmatch(text):
        raise BadLine(f"expected an integer, got {quoted(text)}", path, number, field)
    # Bounding the length first keeps int() clear of its digit limit on a huge number.
    if len(text.lstrip("+-")) > len(str(MAX_INT_COLUMN)) or abs(int(text)) > MAX_INT_COLUMN:
        raise BadLine(f"{quoted(text)} is out of range: expected an integer of at most"
                      f" {MAX_INT_COLUMN} in magnitude", path, number, field)
    return int(text)


def _parse_float(text: str, path: str | os.PathLike, number: int, field: str) -> float:
    """A numeric column, finite: NaN and infinities are refused because they cannot be ranked."""
    try:
        # float() also takes digit groups ("1_0") and non-ASCII digits, which no TREC tool does.
        if not text.isascii() or "_" in text:
            raise ValueError
        value = float(text)
    except ValueError:
        raise BadLine(f"expected a number, got {quoted(text)}", path, number, field) from None
    if math.isnan(value):
        raise BadLine("NaN cannot be ranked", path, number, field)
    if math.isinf(value):
        raise BadLine(f"{quoted(text)} is infinite or too large for a float: a score must be a"
                      " finite number", path, number, field)
    return value
