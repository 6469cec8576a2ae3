"""What every first-stage retriever shares: the protocol, turning rankings into requests, and
index folders that are named by the corpus they index and written atomically.

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
from typing import Generic, Protocol, TypeVar, runtime_checkable

from rerank.formats.beir import read_corpus
from rerank.errors import ConfigError, InputError
from rerank.paths import default_index_root
from rerank.types import Candidate, Query, Request

log = logging.getLogger(__name__)

#: A corpus in memory, as :func:`rerank.formats.read_corpus` returns it: docid -> (title, text).
Corpus = Mapping[str, tuple[str | None, str]]

#: One query's ranking: (docid, score) pairs, best first.
Ranking = Sequence[tuple[str, float]]

T = TypeVar("T")


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
                         corpus_path: str | os.PathLike) -> list[Request]:
    """:func:`build_requests` with the texts of just the ranked docids read from ``corpus_path``."""
    wanted = {docid for ranking in rankings for docid, _ in ranking}
    return build_requests(queries, rankings, read_corpus(corpus_path, wanted), corpus_path)


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


def corpus_fingerprint(path: str | os.PathLike) -> str:
    """A short hash of a corpus file's identity: absolute path, size and modification time.

    Cheap (one ``stat``, no read), and different as soon as the file is rewritten, so an index
    named by it is rebuilt when its corpus changes.

    Parameters
    ----------
    path : str or path-like
        The corpus file.

    Returns
    -------
    str
        16 hexadecimal digits.

    Raises
    ------
    InputError
        When the file does not exist or is not a regular file.
    """
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


def index_folder(retriever: str, corpus: str | os.PathLike, params: Mapping[str, object],
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


def write_meta(folder: Path, retriever: str, corpus: str | os.PathLike,
               params: Mapping[str, object], documents: int) -> None:
    """Write ``meta.json``, which says what an index folder holds (for people, not for loading).

    Parameters
    ----------
    folder : Path
        The (temporary) index folder.
    retriever : str
        The retriever's name.
    corpus : str or path-like
        The indexed corpus file.
    params : mapping
        The options that shaped the index.
    documents : int
        Number of documents indexed.
    """
    meta = {"retriever": retriever, "corpus": os.path.abspath(corpus), "params": dict(params),
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
