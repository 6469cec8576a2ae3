"""Input and output formats: rank_llm JSONL, RankGPT JSON, TREC runs with a corpus, qrels.

:func:`read_requests` is the one entry point for reading requests: it tells the format from
the file unless told, and streams :class:`~rerank.types.Request` objects.

One module a job: a reader per format (:mod:`.rankllm`, :mod:`.rankgpt`, :mod:`.trec`,
:mod:`.beir`), format detection (:mod:`.detect`), the writers (:mod:`.writers`), and what the
readers share: file access (:mod:`.reading`), JSON decoding (:mod:`.jsonvalues`,
:mod:`.jsonstream`), field checks (:mod:`.fields`, :mod:`.columns`) and request checks
(:mod:`.checks`). Collections named by their ir_datasets id (``--dataset``) are read by
:mod:`.irds` (imported on demand: ir_datasets is optional).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from rerank.errors import ConfigError
from rerank.formats.beir import read_corpus, read_queries
from rerank.formats.detect import FORMATS, detect_format
from rerank.formats.rankgpt import read_rankgpt
from rerank.formats.rankllm import read_rankllm
from rerank.formats.reading import OnBadLine
from rerank.formats.trec import read_qrels, read_run, read_run_requests
from rerank.formats.writers import RankLLMWriter, TrecRunWriter
from rerank.types import Request

__all__ = [
    "FORMATS",
    "OnBadLine",
    "RankLLMWriter",
    "TrecRunWriter",
    "detect_format",
    "read_corpus",
    "read_qrels",
    "read_queries",
    "read_rankgpt",
    "read_rankllm",
    "read_requests",
    "read_run",
    "read_run_requests",
]


def read_requests(path: str | os.PathLike, *, fmt: str | None = None,
                  corpus: str | os.PathLike | None = None,
                  queries: str | os.PathLike | None = None,
                  on_bad_line: OnBadLine | None = None,
                  keep_duplicate_qids: bool = False) -> Iterator[Request]:
    """Stream the checked requests of an input file in any supported format.

    Besides the format's own checks, every request must be rerankable: a non-blank query
    text, at least one candidate, no docid twice (a duplicate is rejected, not
    de-duplicated), and no passage without text and title; and no two requests of a rank_llm
    or RankGPT file may share a qid (a TREC run merges a qid's lines). See
    :mod:`rerank.errors` for the exit code of each mistake.

    Parameters
    ----------
    path : str or path-like
        The input file.
    fmt : str or None
        ``"rankllm"``, ``"rankgpt"`` or ``"trec"``; None tells it from the file
        (see :func:`~rerank.formats.detect.detect_format`). A JSON list is read element by
        element as RankGPT entries or rank_llm records (rank_llm's ``.json`` output), whichever
        each element is, also with ``"rankllm"``.
    corpus : str or path-like or None
        For a TREC run only, and required then: the corpus holding the passage texts.
    queries : str or path-like or None
        For a TREC run only, and required then: the queries file holding the query texts.
    on_bad_line : callable or None
        ``--skip-bad-lines``: when given, each bad request (a JSONL line, a RankGPT list
        element, a run query or a bad line of the run, corpus or queries file) is passed to
        it as its :class:`~rerank.errors.InputError` and skipped, and reading goes on. Errors
        about the file as a whole (missing, empty, unrecognised format; for RankGPT a
        non-UTF-8 byte or a broken stretch with no element after it) still stop it.
        None: the first bad request stops reading with its error.
    keep_duplicate_qids : bool
        ``--keep-duplicate-qids``: keep a rank_llm or RankGPT request whose qid repeats an
        earlier one (a :class:`~rerank.formats.trec.TrecRunWriter` then writes only the first
        result of each qid). False rejects it as :class:`~rerank.errors.DuplicateId`.

    Returns
    -------
    Iterator of Request
        The requests, in the order of the file. JSON formats are read lazily, so their
        errors surface while iterating; a TREC run is read and checked here.

    Raises
    ------
    ConfigError
        When ``fmt`` is unknown, a TREC run comes without ``corpus`` or ``queries``, or those
        are given for a format that holds its own texts.
    InputError
        When the format cannot be detected or, for a TREC run, a file is malformed or
        inconsistent.
    """
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in FORMATS:
        raise ConfigError(f"unknown input format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "trec":
        missing = [flag for flag, value in (("--corpus", corpus), ("--queries", queries))
                   if value is None]
        if missing:
            raise ConfigError(
                f"{path} is a TREC run, which holds ids but no texts: pass "
                + " and ".join(f"{flag} FILE" for flag in missing)
                + " (corpus: BEIR corpus.jsonl or docid<TAB>text; queries: qid<TAB>text or"
                " BEIR queries.jsonl)")
        return read_run_requests(path, corpus, queries, on_bad_line=on_bad_line, validate=True)
    if corpus is not None or queries is not None:
        raise ConfigError(f"--corpus and --queries only apply to a TREC run, and {path} is"
                          f" {fmt}, which holds its own texts")
    reader = read_rankllm if fmt == "rankllm" else read_rankgpt
    if fmt == "rankllm" and _is_json_list(path):
        reader = read_rankgpt  # rank_llm's .json output: a list, which the list reader reads
    return reader(path, on_bad_line=on_bad_line, validate=True,
                  keep_duplicate_qids=keep_duplicate_qids)


def _is_json_list(path: str | os.PathLike) -> bool:
    """Whether the file is a JSON list (first significant character ``[``)."""
    from rerank.errors import InputError

    try:
        return detect_format(path) == "rankgpt"
    except InputError:
        return False  # the JSONL reader reports what is wrong with it
