"""Retrieve, then rerank: a first stage's candidates go straight to an LLM reranker."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import AsyncIterator, Iterable

from .reranker import Reranker
from .retrieval import Retriever
from .types import Query, Result


@dataclass
class Pipeline:
    """A first stage and a reranker, run query by query.

    Parameters
    ----------
    retriever : Retriever
        Any first stage (``rerank.retrieval.make_retriever``).
    reranker : Reranker
    k : int
        Candidates retrieved per query (the reranker reranks its ``top_k`` of them).
    batch_size : int
        Queries retrieved at once; bounds memory on large query sets.

    Examples
    --------
    >>> pipeline = Pipeline(make_retriever("bm25", corpus="corpus.jsonl"), Reranker())  # doctest: +SKIP
    >>> results = await pipeline.run([Query(qid="q1", text="how do bees communicate")])  # doctest: +SKIP
    """

    retriever: Retriever
    reranker: Reranker
    k: int = 100
    batch_size: int = 256

    async def run_iter(self, queries: Iterable[Query], on_error=None) -> AsyncIterator[Result]:
        """Results in query order, each batch of queries retrieved then reranked concurrently.

        ``on_error`` is passed to :meth:`Reranker.rerank_iter` (failed queries reported and skipped).
        """
        source = iter(queries)
        while batch := list(islice(source, self.batch_size)):
            requests = await self.retriever.retrieve(batch, self.k)
            async for result in self.reranker.rerank_iter(requests, on_error=on_error):
                yield result

    async def run(self, queries: Iterable[Query]) -> list[Result]:
        """All results, in query order."""
        return [result async for result in self.run_iter(queries)]
