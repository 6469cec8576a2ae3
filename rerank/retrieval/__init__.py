"""First-stage retrieval: BM25, dense, a TREC run file, or a fusion of two of them.

Every retriever answers ``await retriever.retrieve(queries, k)`` with one
:class:`~rerank.types.Request` per query, ready for the reranker::

    from rerank.retrieval import make_retriever

    retriever = make_retriever("hybrid", corpus="corpus.jsonl")
    requests = await retriever.retrieve(queries, k=100)

Heavy dependencies (bm25s, PyStemmer, sentence-transformers, torch) are imported only by the
retriever that needs them, when it is created or used.
"""

from __future__ import annotations

import os

from rerank.errors import ConfigError
from rerank.retrieval.base import Retriever, build_requests, corpus_fingerprint
from rerank.retrieval.bm25 import BM25Retriever
from rerank.retrieval.dense import DenseRetriever
from rerank.retrieval.fusion import FusionRetriever, fuse
from rerank.retrieval.runfile import RunFileRetriever

__all__ = [
    "BM25Retriever", "DenseRetriever", "FusionRetriever", "Retriever", "RunFileRetriever",
    "SPECS", "build_requests", "corpus_fingerprint", "fuse", "make_retriever", "show_progress",
]

#: The retriever specs :func:`make_retriever` understands, for help texts and errors.
SPECS = ("bm25", "dense", "run:FILE", "hybrid", "hybrid:A+B")

_SINGLE = ("bm25", "dense", "run:FILE")


def make_retriever(spec: str, *, corpus: str | os.PathLike,
                   index_dir: str | os.PathLike | None = None) -> Retriever:
    """Create the retriever a command-line spec names.

    Parameters
    ----------
    spec : str
        ``bm25``, ``dense``, ``run:FILE`` (the candidates of a TREC run), ``hybrid`` (BM25 and
        dense fused) or ``hybrid:A+B`` with A and B each ``bm25``, ``dense`` or ``run:FILE``.
        A run file whose name holds ``+`` is fine: the first split that gives two valid specs
        is used.
    corpus : str, path-like or CorpusSource
        The corpus the candidates come from: a file, or a
        :class:`~rerank.retrieval.corpus.CorpusSource` such as an ir_datasets dataset
        (:class:`rerank.formats.irds.IrDataset`).
    index_dir : str or path-like or None
        Root of the index folders; None means :func:`rerank.paths.default_index_root`.

    Returns
    -------
    Retriever
        The retriever, not yet indexed (that happens on first use).

    Raises
    ------
    ConfigError
        When the spec is unknown, or the retriever's dependencies are missing.
    InputError
        When the corpus or a run file does not exist.
    """
    if spec == "hybrid":
        spec = "hybrid:bm25+dense"
    if spec.startswith("hybrid:"):
        parts = spec[len("hybrid:"):]
        for cut in (i for i, char in enumerate(parts) if char == "+"):
            first, second = parts[:cut], parts[cut + 1:]
            if _is_single(first) and _is_single(second):
                return FusionRetriever(_make_single(first, corpus, index_dir),
                                       _make_single(second, corpus, index_dir))
        raise ConfigError(f"unknown retriever {spec!r}: hybrid:A+B needs A and B among"
                          f" {', '.join(_SINGLE)}")
    if _is_single(spec):
        return _make_single(spec, corpus, index_dir)
    raise ConfigError(f"unknown retriever {spec!r}: choose one of {', '.join(SPECS)}"
                      f" (A and B among {', '.join(_SINGLE)})")


def show_progress(retriever: Retriever, options) -> Retriever:
    """Let ``retriever`` (or each retriever of a fusion) show the progress of building its index.

    Parameters
    ----------
    retriever : Retriever
        From :func:`make_retriever`.
    options : ProgressOptions
        How progress is shown (:class:`rerank.progress.ProgressOptions`).

    Returns
    -------
    Retriever
        ``retriever`` itself.
    """
    from rerank.retrieval.indexed import IndexedRetriever

    for part in getattr(retriever, "retrievers", (retriever,)):
        if isinstance(part, IndexedRetriever):
            part.progress = options
    return retriever


def _is_single(spec: str) -> bool:
    """Whether a spec names one retriever: ``bm25``, ``dense`` or ``run:FILE``."""
    return spec in ("bm25", "dense") or (spec.startswith("run:") and len(spec) > len("run:"))


def _make_single(spec: str, corpus: str | os.PathLike,
                 index_dir: str | os.PathLike | None) -> Retriever:
    """The retriever of a spec that :func:`_is_single` accepted."""
    if spec == "bm25":
        return BM25Retriever(corpus, index_dir=index_dir)
    if spec == "dense":
        return DenseRetriever(corpus, index_dir=index_dir)
    return RunFileRetriever(spec[len("run:"):], corpus)
