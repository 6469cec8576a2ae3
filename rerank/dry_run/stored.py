"""The call cache read as a dry run reads it: read-only, creating and changing nothing."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Callable

from ..backends.base import Completion
from ..cache import BUSY_TIMEOUT_S
from ..cache_admin import is_cache

_GET = "SELECT value FROM calls WHERE key = ?"
_COUNT = "SELECT COUNT(*) FROM calls"


class StoredCalls:
    """The answers a call cache file holds, looked up by key without writing anything.

    A missing file, or one that is not a call cache, holds nothing (and is not created). A stored
    answer that would not be trusted by a run (not JSON, wrong fields, or an answer that is never
    stored, :meth:`~rerank.answers.AnswerKind.cacheable`) counts as absent, as the run would
    pay for that call again.

    Parameters
    ----------
    path : str or os.PathLike or None
        The cache file; None for ``--no-cache``.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else os.fspath(path)
        self._conn: sqlite3.Connection | None = None
        #: Why a lookup failed (its calls then count as not cached), or None.
        self.problem: str | None = None
        if self.path is not None and is_cache(self.path):
            self._conn = sqlite3.connect(Path(self.path).resolve().as_uri() + "?mode=ro", uri=True,
                                         timeout=BUSY_TIMEOUT_S, check_same_thread=False)

    @property
    def exists(self) -> bool:
        """Whether there is a cache file to read."""
        return self._conn is not None

    def __len__(self) -> int:
        if self._conn is None:
            return 0
        try:
            return self._conn.execute(_COUNT).fetchone()[0]
        except sqlite3.Error as exc:
            self.problem = str(exc)
            return 0

    def get(self, key: str, cacheable: Callable[[Completion], bool]) -> Completion | None:
        """The answer stored under ``key`` if a run would use it, else None.

        Parameters
        ----------
        key : str
            A call's key (:meth:`rerank.runner.CachedBackend.key`).
        cacheable : callable
            The answer kind's test of what may be stored.
        """
        if self._conn is None:
            return None
        try:
            row = self._conn.execute(_GET, (key,)).fetchone()
        except sqlite3.Error as exc:  # locked for long, or damaged: the run would go on without it too
            self.problem = str(exc)
            return None
        if row is None:
            return None
        try:
            completion = Completion.from_json(json.loads(row[0]))
        except (ValueError, TypeError, RecursionError):
            return None
        return completion if cacheable(completion) else None

    def close(self) -> None:
        """Close the file."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
