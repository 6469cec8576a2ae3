"""What every first-stage retriever shares: the protocol, and turning rankings into requests.

The index folders of the retrievers that keep one (:class:`DiskIndex` and the helpers that
name, write and read them) are in :mod:`rerank.retrieval.index`; their names stay importable
from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from rerank.errors import ConfigError, InputError
from rerank.retrieval.corpus import CorpusLike, corpus_texts
from rerank.retrieval.index import (DiskIndex, corpus_fingerprint, index_folder, params_hash,
                                    read_docids, write_docids, write_meta)
from rerank.types import Candidate, Query, Request

__all__ = [
    "Corpus", "DiskIndex", "Ranking", "Retriever", "build_requests", "check_k",
    "corpus_fingerprint", "document_text", "index_folder", "params_hash", "read_docids",
    "requests_from_corpus", "write_docids", "write_meta",
]

#: A corpus in memory, as :func:`rerank.formats.read_corpus` returns it: docid -> (title, text).
Corpus = Mapping[str, tuple[str | None, str]]

#: One query's ranking: (docid, score) pairs, best first.
Ranking = Sequence[tuple[str, float]]


@runtime_checkable
class Retriever(Protocol):
    """A first-stage retriever: queries in, candidate lists out.

    Implementations do their blocking work (indexing, encoding, searching) in a worker thread,
    so the event loop keeps serving other tasks, such as LLM calls for queries already
    retrieved.
    """

    async def retrieve(self, queries: Sequence[Query], k: int) -> list[Request]:
        """Retrieve up to ``k`` candidates for each query.

        Parameters
        ----------
        queries : sequence of Query
            The queries.
        k : int
            Candidates wanted per query (at least 1); fewer come back when the retriever has
            fewer to give (a small corpus, a short run).

        Returns
        -------
        list of Request
            One per query, in the order given; candidates best first, each with the
            retriever's ``score`` and the corpus title and text.
        """
        ...


def check_k(k: int, name: str = "k") -> int:
    """Return ``k`` if it is a positive integer, else raise :class:`ConfigError`.

    Parameters
    ----------
    k : int
        A number of candidates.
    name : str
        The option's name, for the message.

    Returns
    -------
    int
        ``k``.

    Raises
    ------
    ConfigError
        When ``k`` is not an integer of at least 1.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"{name} must be a positive integer, got {k!r}")
    return k


def document_text(title: str | None, text: str) -> str:
    """The text a retriever indexes for a document: ``title + " " + text`` (BEIR style).

    Parameters
    ----------
    title : str or None
        The title; None or empty adds nothing.
    text : str
        The body.

    Returns
    -------
    str
        The indexed text.
    """
    return f"{title} {text}" if title else text


def requests_from_corpus(queries: Sequence[Query], rankings: Sequence[Ranking],
                         corpus_path: CorpusLike) -> list[Request]:
    """:func:`build_requests` with the texts of just the ranked docids read from ``corpus_path``.

    Parameters
    ----------
    queries, rankings
        As for :func:`build_requests`.
    corpus_path : str, path-like or CorpusSource
        The corpus file (or source), read for the ranked docids only.

    Returns
    -------
    list of Request
        One per query, candidates in ranking order.

    Raises
    ------
    InputError
        When the corpus cannot be read, or a ranked docid is not in it.
    """
    wanted = {docid for ranking in rankings for docid, _ in ranking}
    return build_requests(queries, rankings, corpus_texts(corpus_path, wanted), str(corpus_path))


def build_requests(queries: Sequence[Query], rankings: Sequence[Ranking], corpus: Corpus,
                   corpus_path: str | os.PathLike) -> list[Request]:
    """Join queries, their rankings and the corpus texts into requests.

    Parameters
    ----------
    queries : sequence of Query
        The queries.
    rankings : sequence of rankings
        For each query, in the same order, its ``(docid, score)`` pairs, best first.
    corpus : mapping
        ``docid -> (title, text)`` holding at least every ranked docid.
    corpus_path : str or path-like
        The corpus file, named in errors.

    Returns
    -------
    list of Request
        One per query, candidates in ranking order with their scores as floats.

    Raises
    ------
    ValueError
        When there are not as many rankings as queries (a bug in the caller).
    InputError
        When a ranked docid is not in the corpus.
    """
    requests = []
    for query, ranking in zip(queries, rankings, strict=True):
        candidates = []
        for docid, score in ranking:
            if docid not in corpus:
                raise InputError(f"docid {docid!r} is not in the corpus", corpus_path,
                                 field="docid")
            title, text = corpus[docid]
            candidates.append(Candidate(docid, text, title, float(score)))
        requests.append(Request(query, candidates))
    return requests
