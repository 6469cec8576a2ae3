"""A persistent cache of LLM calls, on SQLite, shared safely by threads and processes.

One table maps a key (see :func:`call_key`) to the JSON of the backend's answer. The database
runs in WAL mode with a busy timeout, so several processes (parallel runs, Ray workers) can
read and write the same file at once; every ``put`` commits immediately, so the others see it
at once. Values are JSON only, never pickle: a cache file may come from elsewhere, and loading
JSON cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

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

    Examples
    --------
    >>> with CallCache("cache/calls.sqlite") as cache:          # doctest: +SKIP
    ...     key = call_key("gpt-4o-mini", messages, {"temperature": 0})
    ...     answer = cache.get(key)
    ...     if answer is None:
    ...         answer = call_backend(...)
    ...         cache.put(key, answer)
    """

    __slots__ = ("path", "_conn", "_pid", "_lock")

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

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
            conn = self._conn = _open(self.path)
        return conn

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


def _open(path: str) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Autocommit: each put is its own transaction, visible to other processes at once, and no
    # transaction stays open between calls to block another writer's checkpoint.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    try:
        _retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=NORMAL")
        _retry_busy(lambda: conn.execute(_SCHEMA))
    except BaseException:
        conn.close()
        raise
    return conn


def _retry_busy(statement: Callable[[], object]) -> None:
    # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is
    # locked" at once, without its busy handler, when another process holds one; so the
    # busy timeout is applied by hand here (only when opening, never per call).
    deadline = time.monotonic() + BUSY_TIMEOUT_S
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
