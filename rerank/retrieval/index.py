"""Index folders: named by the corpus they index and the options that shape them, built
atomically.

An index folder is ``<index root>/<retriever>-<corpus fingerprint>-<params hash>/``. The
fingerprint changes whenever the corpus file is replaced or edited, and the params hash whenever
an option that shapes the index changes, so a stale index is never reused; it is simply left
behind (delete the index root to reclaim the space).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from rerank.errors import ConfigError, InputError
from rerank.paths import default_index_root
from rerank.retrieval.corpus import CorpusSource, corpus_name

log = logging.getLogger(__name__)

T = TypeVar("T")


def corpus_fingerprint(path: str | os.PathLike | CorpusSource) -> str:
    """A short hash of a corpus file's identity: absolute path, size and modification time.

    Cheap (one ``stat``, no read), and different as soon as the file is rewritten, so an index
    named by it is rebuilt when its corpus changes. A :class:`~rerank.retrieval.corpus.CorpusSource`
    (an ir_datasets dataset) gives its own.

    Parameters
    ----------
    path : str, path-like or CorpusSource
        The corpus file, or a corpus source.

    Returns
    -------
    str
        16 hexadecimal digits.

    Raises
    ------
    InputError
        When the file does not exist or is not a regular file.
    """
    if isinstance(path, CorpusSource):
        return path.fingerprint()
    absolute = os.path.abspath(path)
    try:
        stat = os.stat(absolute)
    except OSError as error:
        raise InputError(f"cannot read the corpus: {error.strerror}", path) from None
    if not os.path.isfile(absolute):
        raise InputError("the corpus is not a regular file", path)
    identity = f"{absolute}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]


def params_hash(params: Mapping[str, object]) -> str:
    """A short hash of the options that shape an index (JSON with sorted keys).

    Parameters
    ----------
    params : mapping
        JSON-serializable options.

    Returns
    -------
    str
        12 hexadecimal digits.
    """
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def index_folder(retriever: str, corpus: str | os.PathLike | CorpusSource, params: Mapping[str, object],
                 index_dir: str | os.PathLike | None = None) -> Path:
    """The folder of one retriever's index of one corpus with one set of options.

    Parameters
    ----------
    retriever : str
        The retriever's name (``"bm25"``, ``"dense"``): the folder name's prefix.
    corpus : str or path-like
        The corpus file (see :func:`corpus_fingerprint`).
    params : mapping
        The options that shape the index (see :func:`params_hash`).
    index_dir : str or path-like or None
        The index root; None means :func:`rerank.paths.default_index_root`.

    Returns
    -------
    Path
        ``<index root>/<retriever>-<fingerprint>-<params hash>``; not created here.
    """
    root = Path(index_dir) if index_dir is not None else default_index_root()
    return root / f"{retriever}-{corpus_fingerprint(corpus)}-{params_hash(params)}"


def write_meta(folder: Path, retriever: str, corpus: str | os.PathLike | CorpusSource,
               params: Mapping[str, object], documents: int) -> None:
    """Write ``meta.json``, which says what an index folder holds (for people, not for loading).

    Parameters
    ----------
    folder : Path
        The (temporary) index folder.
    retriever : str
        The retriever's name.
    corpus : str, path-like or CorpusSource
        The indexed corpus file or source.
    params : mapping
        The options that shaped the index.
    documents : int
        Number of documents indexed.
    """
    meta = {"retriever": retriever, "corpus": corpus_name(corpus), "params": dict(params),
            "documents": documents}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def write_docids(folder: Path, docids: Sequence[str]) -> None:
    """Write the docid of each index row, in row order, as ``docids.json``.

    Parameters
    ----------
    folder : Path
        The (temporary) index folder.
    docids : sequence of str
        Docids in index order.
    """
    (folder / "docids.json").write_text(json.dumps(list(docids)), encoding="utf-8")


def read_docids(folder: Path, expected: int) -> list[str]:
    """Read ``docids.json`` and check it has one docid per index row.

    Parameters
    ----------
    folder : Path
        The index folder.
    expected : int
        Number of rows of the index.

    Returns
    -------
    list of str
        Docids in index order.

    Raises
    ------
    ConfigError
        When the file is missing, unreadable or of the wrong length.
    """
    path = folder / "docids.json"
    try:
        docids = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"damaged index {folder}: cannot read docids.json ({error});"
                          " delete the folder to rebuild it") from None
    if not isinstance(docids, list) or len(docids) != expected:
        raise ConfigError(f"damaged index {folder}: docids.json does not match the index;"
                          " delete the folder to rebuild it")
    return docids


class DiskIndex(Generic[T]):
    """An index kept in a folder: loaded from it, or built into it on first use.

    A build writes into a temporary sibling folder that is renamed into place only once
    complete, so a killed build never leaves a half index behind (only a hidden ``.tmp``
    folder, ignored). When two processes build the same index at once, the first rename wins
    and the other keeps its own identical copy in memory. :meth:`get` is thread-safe.

    Parameters
    ----------
    folder : Path
        Where the index lives.
    build : callable
        ``build(folder) -> index``: builds the index, writes it into the (temporary) folder
        given, and returns it.
    load : callable
        ``load(folder) -> index``: reads an index that ``build`` wrote.

    Attributes
    ----------
    folder : Path
        Where the index lives.
    built : bool
        Whether :meth:`get` built the index (False before the first call).
    loaded_from_disk : bool
        Whether :meth:`get` loaded an index built earlier (False before the first call).
    """

    def __init__(self, folder: Path, build: Callable[[Path], T], load: Callable[[Path], T]):
        self.folder = folder
        self.built = False
        self.loaded_from_disk = False
        self._build = build
        self._load = load
        self._index: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The index, loading or building it on the first call.

        Returns
        -------
        object
            What ``load`` or ``build`` returned.
        """
        with self._lock:
            if self._index is None:
                if self.folder.is_dir():
                    log.info("loading the index %s", self.folder)
                    self._index = self._load(self.folder)
                    self.loaded_from_disk = True
                else:
                    log.info("building the index %s", self.folder)
                    self._index = self._build_atomically()
                    self.built = True
            return self._index

    def _build_atomically(self) -> T:
        """Build into a temporary sibling folder, then rename it into place."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        # mkdir rather than mkdtemp: mkdtemp's 0700 mode would follow the index into place
        # and hide it from the other users of a shared index root.
        temporary = self.folder.parent / f".{self.folder.name}.tmp-{uuid.uuid4().hex}"
        temporary.mkdir()
        try:
            index = self._build(temporary)
            try:
                os.rename(temporary, self.folder)
            except OSError:
                if not self.folder.is_dir():
                    raise
                log.info("another process built %s first; keeping its copy", self.folder)
            return index
        finally:
            if temporary.exists():
                shutil.rmtree(temporary, ignore_errors=True)
