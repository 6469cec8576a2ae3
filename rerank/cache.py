"""A persistent cache of LLM calls, on SQLite, shared safely by threads and processes.

Table ``calls`` maps a key (see :func:`call_key`) to the JSON of the backend's answer. The
database runs in WAL mode with a busy timeout, so several processes (parallel runs, Ray workers)
can read and write the same file at once; every ``put`` commits immediately, so the others see it
at once. Values are JSON only, never pickle: a cache file may come from elsewhere, and loading
JSON cannot run code.

Table ``claims`` records the calls in flight, so that processes sharing the file pay for each
call once (see :mod:`rerank.cache_claims`); statistics and pruning live in
:mod:`rerank.cache_admin`. Keys are built in :mod:`rerank.cache_keys` and the database file is
opened in :mod:`rerank.cache_db`; their public names stay importable from here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Protocol

from .cache_db import BUSY_TIMEOUT_S, config_problem, open_database, retry_busy
from .cache_keys import CACHE_SCHEMA_VERSION, call_key

__all__ = ["BUSY_TIMEOUT_S", "CACHE_SCHEMA_VERSION", "Cache", "CallCache", "NullCache",
           "call_key", "config_problem"]

_GET = "SELECT value FROM calls WHERE key = ?"
_PUT = "INSERT OR REPLACE INTO calls (key, value, created) VALUES (?, ?, ?)"
_COUNT = "SELECT COUNT(*) FROM calls"


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
            conn = self._conn = open_database(self.path, self.busy_timeout)
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
            retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), self.busy_timeout)
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


