"""A TREC run file as a retriever: the candidates some external system already retrieved."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence

from rerank.errors import InputError
from rerank.formats.trec import read_run
from rerank.retrieval.base import build_requests, check_k
from rerank.retrieval.corpus import CorpusLike, CorpusSource, corpus_texts
from rerank.types import Query, Request


class RunFileRetriever:
    """Serve the candidates of a TREC run file, cut to ``k``, with texts from a corpus.

    The run is read once, on the first :meth:`retrieve`. A query absent from the run is an
    error (:class:`InputError` naming the run file and the qid), not an empty candidate list:
    a missing query almost always means the wrong run or the wrong queries file, and an empty
    list would silently score 0 for that query downstream.

    Parameters
    ----------
    run : str or path-like
        The run: ``qid Q0 docid rank score tag`` lines (see :func:`rerank.formats.read_run`).
    corpus : str, path-like or CorpusSource
        The corpus holding the texts of the run's documents (a file, or a source such as an
        ir_datasets dataset).

    Attributes
    ----------
    run : str
        The run file.
    corpus : str or CorpusSource
        The corpus file (or source).

    Raises
    ------
    InputError
        When the run or the corpus file does not exist.
    """

    name = "run"

    def __init__(self, run: str | os.PathLike, corpus: CorpusLike):
        files = [(run, "run")] + ([] if isinstance(corpus, CorpusSource) else [(corpus, "corpus")])
        for path, what in files:
            if not os.path.isfile(path):
                raise InputError(f"the {what} file does not exist", path)
        self.run = str(run)
        self.corpus = corpus if isinstance(corpus, CorpusSource) else str(corpus)
        self._rankings: dict[str, list[tuple[str, float]]] | None = None
        self._lock = threading.Lock()

    async def retrieve(self, queries: Sequence[Query], k: int) -> list[Request]:
        """The run's top ``k`` candidates of each query.

        Parameters
        ----------
        queries : sequence of Query
            The queries; each qid must be in the run.
        k : int
            Candidates wanted per query; a query with fewer in the run gets them all.

        Returns
        -------
        list of Request
            One per query, in order; candidates by decreasing run score (ties in file order).

        Raises
        ------
        InputError
            When the run is malformed, a qid is not in the run, or a docid of the run is not
            in the corpus.
        """
        check_k(k)
        return await asyncio.to_thread(self._retrieve, list(queries), k)

    def _retrieve(self, queries: list[Query], k: int) -> list[Request]:
        """The blocking part of :meth:`retrieve`."""
        run = self._run()
        rankings = []
        for query in queries:
            if query.qid not in run:
                raise InputError(f"qid {query.qid!r} has no candidates in this run", self.run,
                                 field="qid")
            rankings.append(run[query.qid][:k])
        wanted = {docid for ranking in rankings for docid, _ in ranking}
        corpus = corpus_texts(self.corpus, wanted)
        missing = sorted(wanted - corpus.keys())
        if missing:
            raise InputError(f"docid {missing[0]!r} is not in the corpus {self.corpus}"
                             f" ({len(missing)} missing)", self.run, field="docid")
        return build_requests(queries, rankings, corpus, str(self.corpus))

    def _run(self) -> dict[str, list[tuple[str, float]]]:
        """The run's rankings by qid, read on first use."""
        with self._lock:
            if self._rankings is None:
                self._rankings = dict(read_run(self.run))
            return self._rankings
