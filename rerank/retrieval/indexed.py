"""The base of the retrievers that index a corpus file into a folder: BM25 and dense.

:class:`IndexedRetriever` holds what they share: the index folder (a
:class:`~rerank.retrieval.index.DiskIndex`, built on first use and reloaded afterwards), reading
the corpus to index it, and answering :meth:`~IndexedRetriever.retrieve` in a worker thread.
A subclass ranks the queries and builds and loads its own index.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rerank.errors import InputError
from rerank.progress import SILENT, Progress, ProgressOptions
from rerank.retrieval.base import Ranking, check_k, document_text, requests_from_corpus
from rerank.retrieval.corpus import CorpusLike, CorpusSource, corpus_texts
from rerank.retrieval.index import DiskIndex, index_folder, write_docids, write_meta
from rerank.types import Query, Request


class IndexedRetriever:
    """A retriever over a corpus file, whose index is built on first use and saved.

    Parameters
    ----------
    corpus : str, path-like or CorpusSource
        BEIR ``corpus.jsonl``, JSON lines with an id and a text, or ``docid<TAB>text``; or a
        :class:`~rerank.retrieval.corpus.CorpusSource` such as an ir_datasets dataset.
    params : mapping
        The options that shape the index (JSON-serializable): part of the folder's name.
    index_dir : str or path-like or None
        Root of the index folders; None means :func:`rerank.paths.default_index_root`.

    Attributes
    ----------
    name : str
        The retriever's name, the prefix of its index folders (set by each subclass).
    corpus : str or CorpusSource
        The corpus file (or source).
    index_path : Path
        The index folder (created on first use).
    built : bool
        True once this retriever has built (and saved) the index.
    loaded_from_disk : bool
        True once this retriever has loaded an index saved earlier.
    progress : ProgressOptions
        How building the index shows its progress (nothing unless set, as
        :func:`~rerank.retrieval.make_retriever` does for the CLI).

    Raises
    ------
    InputError
        When the corpus file does not exist.
    """

    name = "indexed"
    progress: ProgressOptions = SILENT

    def __init__(self, corpus: CorpusLike, params: Mapping[str, object],
                 index_dir: str | os.PathLike | None):
        self.corpus = corpus if isinstance(corpus, CorpusSource) else str(corpus)
        self._params = dict(params)
        self._index = DiskIndex(index_folder(self.name, self.corpus, self._params, index_dir),
                                self._build, self._load)

    @property
    def index_path(self) -> Path:
        """The index folder (created on first use)."""
        return self._index.folder

    @property
    def built(self) -> bool:
        """Whether this retriever built (and saved) the index."""
        return self._index.built

    @property
    def loaded_from_disk(self) -> bool:
        """Whether this retriever loaded an index saved earlier."""
        return self._index.loaded_from_disk

    async def prepare(self) -> None:
        """Load or build the index (and load what else ranking needs) now, rather than on the
        first :meth:`retrieve`."""
        await asyncio.to_thread(self._prepare)

    def _prepare(self) -> None:
        """The blocking part of :meth:`prepare`."""
        self._index.get()

    async def retrieve(self, queries: Sequence[Query], k: int) -> list[Request]:
        """Retrieve the ``k`` best documents for each query, in a worker thread.

        Parameters
        ----------
        queries : sequence of Query
            The queries, ranked against the index (built or loaded on the first call).
        k : int
            Candidates wanted per query; capped at the corpus size.

        Returns
        -------
        list of Request
            One per query, in order; candidates best first, with the retriever's scores.
        """
        check_k(k)
        return await asyncio.to_thread(self._retrieve, list(queries), k)

    def _retrieve(self, queries: list[Query], k: int) -> list[Request]:
        """The blocking part of :meth:`retrieve`."""
        if not queries:
            return []
        return requests_from_corpus(queries, self._rank(queries, k), self.corpus)

    def _rank(self, queries: list[Query], k: int) -> list[Ranking]:
        """The ``(docid, score)`` pairs of each query, best first (a subclass's search)."""
        raise NotImplementedError

    def _build(self, folder: Path) -> Any:
        """Index the corpus, save the index into ``folder`` and return it (a subclass's)."""
        raise NotImplementedError

    def _load(self, folder: Path) -> Any:
        """Load an index that :meth:`_build` saved (a subclass's)."""
        raise NotImplementedError

    def _documents(self) -> tuple[list[str], list[str]]:
        """The docids of the corpus and the texts to index (``title text``), in file order."""
        corpus = corpus_texts(self.corpus)
        if not corpus:
            raise InputError("the corpus holds no documents", str(self.corpus))
        return list(corpus), [document_text(title, text) for title, text in corpus.values()]

    def _progress(self, step: str, total: int | None = None, unit: str = "documents") -> Progress:
        """The progress of one step of building the index (``tokenizing``, ``encoding``)."""
        return self.progress.start(total, unit=unit, label=f"{self.name} index: {step}")

    def _save_docids(self, folder: Path, docids: list[str]) -> None:
        """Write the docid of each index row and the folder's ``meta.json`` into ``folder``."""
        write_docids(folder, docids)
        write_meta(folder, self.name, self.corpus, self._params, len(docids))
