"""Writing reranked results: rank_llm JSON lines and TREC runs, flushed as they come.

The writers are context managers over one open file; :class:`RankLLMWriter` output reads
back with :func:`~rerank.formats.rankllm.read_rankllm`, and :class:`TrecRunWriter` output with
:func:`~rerank.formats.trec.read_run`. JSON lines (:class:`JsonLinesWriter`, which the rank_llm
writer and the labels' and SFT files use) are written through ``jsonlines``.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import IO, Any, TypeVar

import jsonlines

from rerank.errors import ConfigError, InputError
from rerank.formats.fields import parse_id
from rerank.types import Candidate, Request, Result

_W = TypeVar("_W", bound="_FileWriter")


class _FileWriter:
    """What both writers share: the output path, the open file, and closing it."""

    path: str
    _file: IO

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class JsonLinesWriter(_FileWriter):
    """Write JSON objects one line each, flushed per line, through ``jsonlines``.

    Text is written as readable UTF-8; a record whose text has no UTF-8 form (a lone surrogate
    from a ``\\ud800`` escape in the input) is written with ASCII escapes instead, which keep it
    intact, rather than failing mid-run.

    Parameters
    ----------
    path : str or path-like
        The output file, created or truncated.
    append : bool
        Add to an existing file instead (resuming a run).
    """

    def __init__(self, path: str | os.PathLike, append: bool = False):
        self.path = str(path)
        self._file = open(path, "ab" if append else "wb")
        self._lines = jsonlines.Writer(self._file, dumps=_json_bytes, flush=True)

    def write(self, record: Any) -> None:
        """Write one JSON value as a line and flush it.

        Parameters
        ----------
        record : Any
            A value ``json.dumps`` takes, usually a dict.
        """
        self._lines.write(record)

    def close(self) -> None:
        """Close the file."""
        self._lines.close()  # a writer given an open file leaves closing it to its owner
        self._file.close()


class RankLLMWriter(JsonLinesWriter):
    """Write reranked results as rank_llm JSON lines, one line per result, flushed per line.

    The output reads back with :func:`~rerank.formats.rankllm.read_rankllm` to the same queries
    and candidates (with the new scores).

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
        super().write(record)


def _candidate_record(candidate: Candidate) -> dict:
    """The JSON object of one written candidate."""
    doc = {"contents": candidate.text}
    if candidate.title is not None:
        doc["title"] = candidate.title
    return {"docid": candidate.docid, "score": candidate.score, "doc": doc}


def _json_bytes(record: Any) -> bytes:
    """One JSON value as UTF-8 bytes, without the line end: readable non-ASCII text where possible."""
    line = json.dumps(record, ensure_ascii=False)
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from \ud800-style escapes in the input) have no UTF-8 form;
        # ASCII escapes keep them intact.
        return json.dumps(record).encode("ascii")


class TrecRunWriter(_FileWriter):
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

        The candidates' scores are written when they are finite and strictly decreasing, also in
        the single precision trec_eval reads them in (``repr`` keeps every distinct float
        distinct); otherwise rank ``r`` of ``n`` gets the
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
    """The scores as floats if all are finite and strictly decreasing, in single precision too,
    else None."""
    if any(score is None or not math.isfinite(score) for score in scores):
        return None
    values = [float(score) for score in scores]
    # As evaluation tools read them: trec_eval keeps single precision, and breaks ties by docid.
    single = [struct.unpack("f", struct.pack("f", v))[0] if abs(v) < 3.0e38 else v for v in values]
    if all(a > b for a, b in zip(single, single[1:])):
        return values
    return None
