"""A persistent cache of LLM calls, on SQLite, shared safely by threads and processes.

Table ``calls`` maps a key (see :func:`call_key`) to the JSON of the backend's answer. The
database runs in WAL mode with a busy timeout, so several processes (parallel runs, Ray workers)
can read and write the same file at once; every ``put`` commits immediately, so the others see it
at once. Values are JSON only, never pickle: a cache file may come from elsewhere, and loading
JSON cannot run code.

Table ``claims`` records the calls in flight, so that processes sharing the file pay for each
call once (see :mod:`rerank.cache_claims`); statistics and pruning live in
:mod:`rerank.cache_admin`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

CACHE_SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

# Never part of a key: the same model behind another endpoint or account answers the same,
# and a secret must not be hashed into a file that may be shared.
_FORBIDDEN_PARAMS = frozenset({"api_key", "base_url"})
_SCHEMA = """CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created REAL
) WITHOUT ROWID"""
# Added without a schema version change: older files gain it when first opened.
_CLAIMS_SCHEMA = """CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID"""
_GET = "SELECT value FROM calls WHERE key = ?"
_PUT = "INSERT OR REPLACE INTO calls (key, value, created) VALUES (?, ?, ?)"
_COUNT = "SELECT COUNT(*) FROM calls"


def call_key(model: str, messages: list[dict], params: dict) -> str:
    """Return the cache key of one LLM call.

    The key is the SHA-256 (hex) of a canonical JSON document (sorted keys, no whitespace,
    ASCII escapes) of ``{"schema": CACHE_SCHEMA_VERSION, "model": ..., "messages": ..., "params": ...}``,
    so it is stable across dict orderings and processes, and changes with the model, any
    message, any parameter or the cache schema version.

    API keys and base URLs are deliberately NOT part of the key: the same model served from
    another endpoint or account gives the same answer, and a secret must never reach a cache
    file. Never put them into ``params``; ``api_key`` and ``base_url`` entries are refused.

    Parameters
    ----------
    model : str
        The model name as sent to the backend.
    messages : list of dict
        The chat messages (``{"role": ..., "content": ...}``).
    params : dict
        Every other request setting that changes the answer (temperature, max_tokens, ...).
        Must be JSON-serialisable.

    Returns
    -------
    str
        64 lowercase hex digits.

    Raises
    ------
    ValueError
        If ``params`` holds an ``api_key`` or ``base_url`` entry.
    TypeError
        If the messages or params are not JSON-serialisable.
    """
    if not _FORBIDDEN_PARAMS.isdisjoint(params):
        raise ValueError("api_key and base_url must not be part of the cache key params")
    document = {"schema": CACHE_SCHEMA_VERSION, "model": model, "messages": messages,
                "params": params}
    # ASCII escapes: faster to encode than UTF-8 output, and a lone surrogate (from a badly
    # decoded passage) still gets a key.
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class Cache(Protocol):
    """What a backend needs of a cache: :class:`CallCache` and :class:`NullCache` provide it."""

    def get(self, key: str) -> dict | None:
        """Return the cached value of ``key``, or None."""

    def put(self, key: str, value: dict) -> None:
        """Store ``value`` under ``key``."""

    def close(self) -> None:
        """Release the cache's resources."""


class CallCache:
    """A persistent cache of LLM calls in one SQLite file.

    The connection opens lazily on first use, and again in a process other than the one that
    opened it (after a fork, or in a copy unpickled elsewhere: pickling keeps only the path).
    One connection serves all threads of a process, one call at a time.

    Parameters
    ----------
    path : str or os.PathLike
        The database file; missing parent directories are created on first use.
    busy_timeout : float
        Seconds an operation waits for another connection's write lock before it fails with
        ``sqlite3.OperationalError`` ("database is locked").

    Examples
    --------
    >>> with CallCache("cache/calls.sqlite") as cache:          # doctest: +SKIP
    ...     key = call_key("gpt-4o-mini", messages, {"temperature": 0})
    ...     answer = cache.get(key)
    ...     if answer is None:
    ...         answer = call_backend(...)
    ...         cache.put(key, answer)
    """

    __slots__ = ("path", "busy_timeout", "_conn", "_pid", "_lock")

    def __init__(self, path: str | os.PathLike, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "busy_timeout": self.busy_timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state.get("busy_timeout", BUSY_TIMEOUT_S))

    def __repr__(self) -> str:
        return f"CallCache({self.path!r})"

    def __enter__(self) -> CallCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _checked_lock(self) -> threading.Lock:
        pid = os.getpid()
        if pid != self._pid:
            # A connection inherited through fork must not be used (SQLite forbids it), and the
            # lock may have been copied while another thread of the parent held it.
            self._conn = None
            self._lock = threading.Lock()
            self._pid = pid
        return self._lock

    def _connection(self) -> sqlite3.Connection:
        # Called with the lock held.
        conn = self._conn
        if conn is None:
            conn = self._conn = _open(self.path, self.busy_timeout)
        return conn

    def check(self) -> None:
        """Open the database now (creating it and its tables if needed), raising what fails.

        Raises
        ------
        sqlite3.Error or OSError
            See :func:`config_problem` for the failures that are the path's fault.
        """
        with self._checked_lock():
            self._connection()

    def get(self, key: str) -> dict | None:
        """Return the value stored under ``key``, or None on a miss.

        Parameters
        ----------
        key : str
            A key from :func:`call_key`.

        Returns
        -------
        dict or None
            The JSON-decoded value.
        """
        with self._checked_lock():
            row = self._connection().execute(_GET, (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: dict) -> None:
        """Store ``value`` under ``key``, replacing any previous value, and commit at once.

        Parameters
        ----------
        key : str
            A key from :func:`call_key`.
        value : dict
            A JSON-serialisable value.

        Raises
        ------
        TypeError
            If ``value`` is not JSON-serialisable.
        """
        # ASCII escapes, because sqlite3 cannot store a str holding a lone surrogate.
        text = json.dumps(value, separators=(",", ":"))
        with self._checked_lock():
            self._connection().execute(_PUT, (key, text, time.time()))

    def __len__(self) -> int:
        with self._checked_lock():
            return self._connection().execute(_COUNT).fetchone()[0]

    @contextmanager
    def connection(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection (opened if needed), held for the caller alone, for the claims
        (:mod:`rerank.cache_claims`) and maintenance (:mod:`rerank.cache_admin`).

        Parameters
        ----------
        write : bool
            Run the block as one transaction that takes the write lock at once (``BEGIN
            IMMEDIATE``, waiting up to ``busy_timeout`` for it), committed when the block ends
            and rolled back when it raises.
        """
        with self._checked_lock():
            conn = self._connection()
            if not write:
                yield conn
                return
            _retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), self.busy_timeout)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # a failed COMMIT (disk full) leaves it open
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection; a later call opens a new one."""
        with self._checked_lock():
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class NullCache:
    """A cache that stores nothing (``--no-cache``): every ``get`` misses."""

    __slots__ = ()

    def __enter__(self) -> NullCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "NullCache()"

    def get(self, key: str) -> dict | None:
        """Return None: nothing is ever stored.

        Parameters
        ----------
        key : str
            Ignored.
        """
        return None

    def put(self, key: str, value: dict) -> None:
        """Discard the value.

        Parameters
        ----------
        key : str
            Ignored.
        value : dict
            Ignored.
        """

    def __len__(self) -> int:
        return 0

    def close(self) -> None:
        """Do nothing."""


def config_problem(path: str, exc: BaseException) -> str | None:
    """Why ``path`` can never serve as a cache, when ``exc`` (from opening it) says so; else None.

    A directory, a file that is not an SQLite database, no permission, a folder that cannot be
    created are the path's fault; a lock, a full disk or an I/O error are the moment's.

    Parameters
    ----------
    path : str
        The cache file.
    exc : BaseException
        What opening it raised (``sqlite3.Error`` or ``OSError``).

    Returns
    -------
    str or None
        The problem in a few words, or None for a failure of the moment.
    """
    if os.path.isdir(path):
        return "is a directory"
    if isinstance(exc, OSError):
        return f"cannot create its folder: {exc.strerror or exc}"
    code = getattr(exc, "sqlite_errorcode", None)
    code = None if code is None else code & 0xFF
    if code == 26 or "not a database" in str(exc):  # SQLITE_NOTADB
        return "is not an SQLite database"
    if code in (3, 8, 14, 23):  # SQLITE_PERM, READONLY, CANTOPEN, AUTH
        return f"cannot be opened for writing ({exc})"
    return None


def _open(path: str, busy_timeout: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Autocommit: each put is its own transaction, visible to other processes at once, and no
    # transaction stays open between calls to block another writer's checkpoint.
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False)
    try:
        _retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL"), busy_timeout)
        conn.execute("PRAGMA synchronous=NORMAL")
        _retry_busy(lambda: conn.execute(_SCHEMA), busy_timeout)
        _retry_busy(lambda: conn.execute(_CLAIMS_SCHEMA), busy_timeout)
    except BaseException:
        conn.close()
        raise
    return conn


def _retry_busy(statement: Callable[[], object], timeout: float = BUSY_TIMEOUT_S) -> None:
    # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is
    # locked" at once, without its busy handler, when another process holds one; so the
    # busy timeout is applied by hand here (when opening, and for BEGIN IMMEDIATE).
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)
