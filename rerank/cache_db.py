"""The SQLite side of the call cache: opening a database file, its tables, and waiting out
another process's lock.

:class:`~rerank.cache.CallCache` opens its connection with :func:`open_database`; the claims
(:mod:`rerank.cache_claims`) and maintenance (:mod:`rerank.cache_admin`) take the write lock
through it, which waits with :func:`retry_busy`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Callable

#: Seconds an operation waits for another connection's write lock by default.
BUSY_TIMEOUT_S = 30.0

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


def open_database(path: str, busy_timeout: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open (and create, with its folder and tables, if needed) a cache database.

    Parameters
    ----------
    path : str
        The database file.
    busy_timeout : float
        Seconds to wait for another process's lock, here and in every later statement.

    Returns
    -------
    sqlite3.Connection
        In autocommit mode and WAL journal mode, usable from any thread (one at a time).

    Raises
    ------
    sqlite3.Error or OSError
        See :func:`config_problem` for the failures that are the path's fault.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Autocommit: each put is its own transaction, visible to other processes at once, and no
    # transaction stays open between calls to block another writer's checkpoint.
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False)
    try:
        retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL"), busy_timeout)
        conn.execute("PRAGMA synchronous=NORMAL")
        retry_busy(lambda: conn.execute(_SCHEMA), busy_timeout)
        retry_busy(lambda: conn.execute(_CLAIMS_SCHEMA), busy_timeout)
    except BaseException:
        conn.close()
        raise
    return conn


def retry_busy(statement: Callable[[], object], timeout: float = BUSY_TIMEOUT_S) -> None:
    """Run a statement, again and again while another process holds the lock it needs.

    Parameters
    ----------
    statement : callable
        Runs the statement, e.g. ``lambda: conn.execute("BEGIN IMMEDIATE")``.
    timeout : float
        Seconds to keep trying, waiting 1 ms at first and at most 0.1 s between tries.

    Raises
    ------
    sqlite3.OperationalError
        What the statement raised, when it is not "busy" or "locked", or the time is up.
    """
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
    """Whether an error means another connection holds a lock (SQLITE_BUSY or LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)
