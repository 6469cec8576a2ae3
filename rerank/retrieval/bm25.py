"""BM25 retrieval with bm25s, its index saved beside the other rerank indexes and reused."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
from pathlib import Path
from typing import Any

from rerank.errors import ConfigError
from rerank.retrieval.base import Ranking
from rerank.retrieval.index import read_docids
from rerank.retrieval.indexed import IndexedRetriever
from rerank.types import Query

#: The scoring variants bm25s implements.
METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
#: The stop-word lists bm25s ships, by the names it accepts.
STOPWORD_LISTS = ("en", "english", "en_plus", "english_plus", "de", "german", "nl", "dutch", "fr", "french",
                  "es", "spanish", "pt", "portuguese", "it", "italian", "ru", "russian", "sv", "swedish",
                  "no", "norwegian", "zh", "chinese", "ko", "korean")

_INSTALL_HINT = "BM25 retrieval needs bm25s and PyStemmer: pip install 'rerank-llm[bm25]'"

# Bumped when what this module writes into an index folder changes, so old folders are not read.
_FORMAT = 2
# How queries are tokenized, saved beside the index so searching needs no bm25s.
_TOKENIZER_FILE = "tokenizer.json"
_TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s's default, which _build uses


def _modules() -> tuple[Any, Any]:
    """The bm25s and Stemmer modules, or a :class:`ConfigError` saying how to install them."""
    try:
        import bm25s
        import Stemmer
    except ImportError:
        raise ConfigError(_INSTALL_HINT) from None
    return bm25s, Stemmer


class _Index:
    """A saved BM25 index in memory: bm25s's precomputed score matrix and how queries are tokenized.

    Searching needs only numpy and PyStemmer: bm25s (and the scipy it imports, a third of a
    second) is needed only to build the index, so a run over a saved index starts fast.
    """

    def __init__(self, folder: Path, docids: list[str]):
        import numpy as np

        # bm25s's eager index: column t of a (documents x vocabulary) CSC matrix holds the
        # BM25 contribution of token t to each document.
        self.data = np.load(folder / "data.csc.index.npy")
        self.indices = np.load(folder / "indices.csc.index.npy")
        self.indptr = np.load(folder / "indptr.csc.index.npy")
        self.vocabulary: dict[str, int] = json.loads((folder / "vocab.index.json").read_text(encoding="utf-8"))
        tokenizer = json.loads((folder / _TOKENIZER_FILE).read_text(encoding="utf-8"))
        self.pattern = re.compile(tokenizer["token_pattern"])
        self.stopwords = frozenset(tokenizer["stopwords"])
        self.stemmer = tokenizer["stemmer"]
        self.docids = docids

    def tokens(self, text: str, stem) -> list[int]:
        """Token ids of a query, as bm25s tokenizes: lowercase, split, stop words out, stemmed."""
        words = [w for w in self.pattern.findall(text.lower()) if w not in self.stopwords]
        if stem is not None:
            words = stem(words)
        return [self.vocabulary[w] for w in words if w in self.vocabulary]

    def search(self, text: str, k: int, stem) -> list[tuple[str, float]]:
        """The ``k`` best ``(docid, score)`` pairs, ties by corpus order; zero scores dropped."""
        import numpy as np

        ids = self.tokens(text, stem)
        if not ids:
            return []
        starts, ends = self.indptr[ids], self.indptr[np.asarray(ids) + 1]
        rows = np.concatenate([self.indices[a:b] for a, b in zip(starts, ends)])
        contributions = np.concatenate([self.data[a:b] for a, b in zip(starts, ends)])
        scores = np.zeros(len(self.docids), dtype=self.data.dtype)
        np.add.at(scores, rows, contributions)  # float32, token by token, as bm25s sums
        matched = np.flatnonzero(scores > 0)
        if len(matched) > k:
            matched = matched[np.argpartition(-scores[matched], k - 1)[:k]]
        best = matched[np.lexsort((matched, -scores[matched]))]
        return [(self.docids[row], float(scores[row])) for row in best.tolist()]


def counted(items: list, progress, every: int = 1024):
    """``items`` one by one, their count passed to ``progress`` every ``every`` items and at the end."""
    for number, item in enumerate(items, 1):
        yield item
        if number % every == 0:
            progress.update(number)
    progress.update(len(items))


class BM25Retriever(IndexedRetriever):
    """BM25 over a corpus file, indexed on first use and reloaded from disk afterwards.

    Documents are indexed as ``title + " " + text``. The index (bm25s arrays plus the docid of
    each row) is saved under ``<index root>/bm25-<corpus fingerprint>-<params hash>/``; a later
    retriever over the same unchanged corpus file with the same options loads it instead of
    tokenizing and indexing again. Documents that share no term with the query score 0 and are
    not returned, as with Lucene, so a query may get fewer than ``k`` candidates.

    Parameters
    ----------
    corpus : str or path-like
        BEIR ``corpus.jsonl``, JSON lines with an id and a text, or ``docid<TAB>text``.
    index_dir : str or path-like or None
        Root of the index folders; None means :func:`rerank.paths.default_index_root`.
    k1, b : float
        BM25 parameters (the defaults are Anserini's for BEIR).
    method : str
        bm25s scoring variant, one of :data:`METHODS`.
    stemmer : str or None
        A PyStemmer language (``"english"``), or None for no stemming.
    stopwords : str or None
        A bm25s stop-word list (``"en"``, ``"de"``, ...), or None to keep every word.

    Attributes
    ----------
    corpus, index_path, built, loaded_from_disk
        As for :class:`~rerank.retrieval.indexed.IndexedRetriever`.

    Raises
    ------
    ConfigError
        When bm25s or PyStemmer is missing, or an option is invalid.
    InputError
        When the corpus file does not exist.
    """

    name = "bm25"

    def __init__(self, corpus: str | os.PathLike, *, index_dir: str | os.PathLike | None = None,
                 k1: float = 0.9, b: float = 0.4, method: str = "lucene",
                 stemmer: str | None = "english", stopwords: str | None = "en"):
        # Checked without importing bm25s (and its scipy): a saved index is searched without it.
        try:
            bm25s_version = importlib.metadata.version("bm25s")
            import Stemmer
        except (importlib.metadata.PackageNotFoundError, ImportError):
            raise ConfigError(_INSTALL_HINT) from None
        if method not in METHODS:
            raise ConfigError(f"unknown BM25 method {method!r}: choose one of {', '.join(METHODS)}")
        if stemmer is not None and stemmer not in Stemmer.algorithms():
            raise ConfigError(f"unknown stemmer {stemmer!r}: choose one of"
                              f" {', '.join(Stemmer.algorithms())}, or None")
        if stopwords is not None and stopwords not in STOPWORD_LISTS:
            raise ConfigError(f"unknown stop-word list {stopwords!r}: choose one of"
                              f" {', '.join(STOPWORD_LISTS)}, or None")
        self.k1 = float(k1)
        self.b = float(b)
        self.method = method
        self.stemmer = stemmer
        self.stopwords = stopwords
        super().__init__(corpus, {"format": _FORMAT, "bm25s": bm25s_version, "k1": self.k1,
                                  "b": self.b, "method": method, "stemmer": stemmer,
                                  "stopwords": stopwords}, index_dir)

    def _rank(self, queries: list[Query], k: int) -> list[Ranking]:
        """The ``(docid, score)`` pairs of each query, best first, zero scores dropped."""
        index = self._index.get()
        stem = self._stemmer()
        return [index.search(query.text, min(k, len(index.docids)), stem) for query in queries]

    def _stemmer(self):
        # A fresh stemmer per call: PyStemmer objects must not be shared between threads.
        if not self.stemmer:
            return None
        try:
            import Stemmer
        except ImportError:
            raise ConfigError(_INSTALL_HINT) from None
        return Stemmer.Stemmer(self.stemmer).stemWords

    def _build(self, folder: Path) -> _Index:
        """Read, tokenize and index the corpus, and save the index into ``folder``."""
        bm25s, Stemmer = _modules()
        docids, texts = self._documents()
        stemmer = Stemmer.Stemmer(self.stemmer) if self.stemmer else None
        with self._progress("tokenizing", len(texts)) as shown:
            tokens = bm25s.tokenize(counted(texts, shown), token_pattern=_TOKEN_PATTERN,
                                    stopwords=self.stopwords, stemmer=stemmer, show_progress=False)
        with self._progress("scoring and saving", unit=""):  # no count: bm25s's own steps
            model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
            model.index(tokens, show_progress=False)
            model.save(str(folder), show_progress=False)
        stopwords = bm25s.tokenization._infer_stopwords(self.stopwords) if self.stopwords else []
        (folder / _TOKENIZER_FILE).write_text(json.dumps(
            {"token_pattern": _TOKEN_PATTERN, "stopwords": sorted(stopwords), "stemmer": self.stemmer}),
            encoding="utf-8")
        self._save_docids(folder, docids)
        return self._load(folder)

    def _load(self, folder: Path) -> _Index:
        """Load an index that :meth:`_build` saved (no bm25s needed)."""
        try:
            documents = json.loads((folder / "params.index.json").read_text(encoding="utf-8"))["num_docs"]
            return _Index(folder, read_docids(folder, documents))
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(f"damaged index {folder}: {error}; delete the folder to rebuild"
                              " it") from None
