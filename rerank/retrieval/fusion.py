"""Hybrid retrieval: two retrievers' rankings merged by reciprocal-rank fusion."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from rerank.errors import ConfigError
from rerank.retrieval.base import Retriever, check_k
from rerank.types import Candidate, Query, Request


@dataclass(slots=True)
class _Fused:
    """One document's fused score so far."""

    candidate: Candidate
    score: float
    best_rank: int


def fuse(rankings: Sequence[Sequence[Candidate]], k: int, k_rrf: float = 60) -> list[Candidate]:
    """Reciprocal-rank fusion of candidate lists.

    A document scores ``sum(1 / (k_rrf + rank))`` over the lists holding it (ranks from 1).
    Ties go to the document with the better best single rank, then to the smaller docid, so
    the order never depends on the order of the lists.

    Parameters
    ----------
    rankings : sequence of sequences of Candidate
        The lists to fuse, each best first.
    k : int
        Candidates to keep.
    k_rrf : float
        The RRF constant; larger values flatten the advantage of top ranks.

    Returns
    -------
    list of Candidate
        The best ``k`` documents, new objects whose ``score`` is the fused score; title and
        text come from the first list holding the document.
    """
    fused: dict[str, _Fused] = {}
    for ranking in rankings:
        for rank, candidate in enumerate(ranking, start=1):
            share = 1.0 / (k_rrf + rank)
            entry = fused.get(candidate.docid)
            if entry is None:
                fused[candidate.docid] = _Fused(candidate, share, rank)
            else:
                entry.score += share
                entry.best_rank = min(entry.best_rank, rank)
    best = sorted(fused.values(), key=lambda e: (-e.score, e.best_rank, e.candidate.docid))[:k]
    return [Candidate(e.candidate.docid, e.candidate.text, e.candidate.title, e.score)
            for e in best]


class FusionRetriever:
    """Two retrievers combined by reciprocal-rank fusion (see :func:`fuse`).

    Both retrievers are asked for ``depth`` candidates at the same time, and the fused list is
    cut to ``k``.

    Parameters
    ----------
    first, second : Retriever
        The retrievers to combine.
    k_rrf : float
        The RRF constant (60, as in Cormack et al. 2009).
    depth : int or None
        Candidates asked of each retriever; None means ``max(k, 100)``.

    Raises
    ------
    ConfigError
        When ``k_rrf`` is negative or ``depth`` is not a positive integer.
    """

    name = "hybrid"

    def __init__(self, first: Retriever, second: Retriever, *, k_rrf: float = 60,
                 depth: int | None = None):
        if not k_rrf >= 0:
            raise ConfigError(f"k_rrf must be a number >= 0, got {k_rrf!r}")
        if depth is not None:
            check_k(depth, "depth")
        self.retrievers = (first, second)
        self.k_rrf = k_rrf
        self.depth = depth

    async def retrieve(self, queries: Sequence[Query], k: int) -> list[Request]:
        """Retrieve with both retrievers concurrently and fuse their lists.

        Parameters
        ----------
        queries : sequence of Query
            The queries, sent to both retrievers.
        k : int
            Candidates wanted per query after fusion (each retriever is asked for ``depth``).

        Returns
        -------
        list of Request
            One per query, in order; candidates by decreasing fused score.

        Raises
        ------
        RuntimeError
            When a retriever breaks the protocol (not one request per query, in order).
        """
        check_k(k)
        queries = list(queries)
        depth = self.depth if self.depth is not None else max(k, 100)
        answers = await asyncio.gather(*(retriever.retrieve(queries, depth)
                                         for retriever in self.retrievers))
        for retriever, requests in zip(self.retrievers, answers):
            if [request.query.qid for request in requests] != [query.qid for query in queries]:
                raise RuntimeError(f"{type(retriever).__name__} did not return one request per"
                                   " query, in order")
        return [Request(query, fuse([requests[i].candidates for requests in answers], k,
                                    self.k_rrf))
                for i, query in enumerate(queries)]
