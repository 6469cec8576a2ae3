"""Looking after a call cache file: its size and contents, pruning and merging (``rerank cache``)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .cache import BUSY_TIMEOUT_S, CallCache
from .cache_claims import alive

Validator = Callable[[str], object]


def is_cache(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an SQLite file with a ``calls`` table; read-only, creates nothing.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    if not os.path.isfile(path):
        return False
    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'calls'"
                                ).fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def size_on_disk(path: str) -> int:
    """Bytes of the database file with its ``-wal`` (the ``-shm`` index is not data, and goes
    with the last connection).

    Parameters
    ----------
    path : str

    Returns
    -------
    int
    """
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def cache_stats(cache: CallCache, validate: Validator | None = None) -> dict:
    """Report a cache's size and contents.

    Parameters
    ----------
    cache : CallCache
        An existing cache (see :func:`is_cache`).
    validate : callable, optional
        Called on each stored value (its JSON text); an entry for which it raises counts as
        malformed. Without it, no value is read.

    Returns
    -------
    dict
        ``path``, ``entries``, ``bytes`` (with ``-wal``), ``oldest`` and ``newest``
        (entry times in seconds since the epoch, or None), ``claims`` (live: calls in flight),
        ``stale_claims`` and ``malformed`` (None without ``validate``).
    """
    with cache.connection() as conn:
        entries, oldest, newest = conn.execute("SELECT COUNT(*), MIN(created), MAX(created) FROM calls").fetchone()
        holders = conn.execute("SELECT host, pid, expires FROM claims").fetchall()
        malformed = None if validate is None else len(_failing(conn, validate))
    live = sum(alive(*holder) for holder in holders)
    return {"path": cache.path, "entries": entries, "bytes": size_on_disk(cache.path), "oldest": oldest,
            "newest": newest, "claims": live, "stale_claims": len(holders) - live, "malformed": malformed}


def prune_cache(cache: CallCache, *, older_than: float | None = None, max_bytes: int | None = None,
                malformed: Validator | None = None) -> dict:
    """Remove entries and dead claims, then compact the file (VACUUM, WAL truncated).

    Parameters
    ----------
    cache : CallCache
        An existing cache.
    older_than : float, optional
        Remove the entries stored more than this many seconds ago (and those without a time).
    max_bytes : int, optional
        Remove the oldest entries until the file (with its WAL) is at most this size.
    malformed : callable, optional
        A validator as for :func:`cache_stats`: remove the entries it refuses.

    Returns
    -------
    dict
        Entries removed by each rule (``malformed``, ``older``, ``size``), ``stale_claims``
        removed, ``entries`` left, and ``bytes_before`` / ``bytes_after``.
    """
    before = size_on_disk(cache.path)
    removed = {"malformed": 0, "older": 0, "size": 0}
    with cache.connection() as conn:
        if malformed is not None:
            doomed = [(key,) for key in _failing(conn, malformed)]
            removed["malformed"] = _delete(conn, doomed)
        if older_than is not None:
            removed["older"] = conn.execute("DELETE FROM calls WHERE created IS NULL OR created < ?",
                                            (time.time() - older_than,)).rowcount
        stale = [(key,) for key, *holder in conn.execute("SELECT key, host, pid, expires FROM claims")
                 if not alive(*holder)]
        conn.executemany("DELETE FROM claims WHERE key = ?", stale)
        _compact(conn)
        for _ in range(16):  # each round estimates what to remove from the entries' share, then measures
            size = size_on_disk(cache.path)
            if max_bytes is None or size <= max_bytes:
                break
            rows = conn.execute("SELECT key, length(key) + length(value) FROM calls "
                                "ORDER BY created IS NOT NULL, created").fetchall()
            if not rows:
                break
            # The entries' share of the excess, with slack for page overhead, and a page at least.
            excess = (size - max_bytes) * sum(n for _, n in rows) / size * 1.1 + 4096
            doomed, freed = [], 0
            for key, n in rows:
                if freed >= excess and doomed:
                    break
                doomed.append((key,))
                freed += n
            removed["size"] += _delete(conn, doomed)
            _compact(conn)
        left = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    return {**removed, "stale_claims": len(stale), "entries": left, "bytes_before": before,
            "bytes_after": size_on_disk(cache.path)}


def _failing(conn: sqlite3.Connection, validate: Validator) -> list[str]:
    """Keys whose stored value ``validate`` refuses (raises on)."""
    failing = []
    for key, value in conn.execute("SELECT key, value FROM calls"):
        try:
            validate(value)
        except Exception:  # noqa: BLE001 - any refusal marks the entry malformed
            failing.append(key)
    return failing


def _delete(conn: sqlite3.Connection, keys: list[tuple[str]]) -> int:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("DELETE FROM calls WHERE key = ?", keys)
    conn.execute("COMMIT")
    return len(keys)


def _compact(conn: sqlite3.Connection) -> None:
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


#: An entry of the ``calls`` table as :func:`merge_entries` takes it: key, value (JSON text), time.
Entry = tuple[str, str, "float | None"]
_MERGE_BATCH = 10_000   # entries per write transaction: other writers are not locked out for long


@dataclass
class MergeReport:
    """What merging call caches did.

    Attributes
    ----------
    read : int
        Entries read from the inputs.
    added : int
        Entries whose key the output did not hold.
    duplicates : int
        Entries whose key the output held with the same answer (kept once).
    conflicts : int
        Entries whose key the output held with a different answer: the newer one is kept.
    """

    read: int = 0
    added: int = 0
    duplicates: int = 0
    conflicts: int = 0

    def add(self, other: "MergeReport") -> None:
        """Add ``other``'s counts to these."""
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict:
        """The counts as a plain dict (JSON-ready)."""
        return asdict(self)


def merge_entries(out: CallCache, entries: Iterable[Entry]) -> MergeReport:
    """Add call cache entries to ``out``, each key kept once.

    Entries under the same key are answers to the same call, deterministic, so they are normally
    equal (compared as JSON, whatever the spacing); when two differ, the newer (``created``) is
    kept and the conflict counted. Claims are never copied. Used by ``rerank cache merge`` and by
    the Ray engine, which sends back its actors' new entries (:mod:`rerank.distributed`).

    Parameters
    ----------
    out : CallCache
        The cache to add to (created if missing).
    entries : iterable of (str, str, float or None)
        ``(key, value, created)`` rows of a ``calls`` table.

    Returns
    -------
    MergeReport
    """
    report = MergeReport()
    batch: list[Entry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= _MERGE_BATCH:
            report.add(_merge_batch(out, batch))
            batch = []
    if batch:
        report.add(_merge_batch(out, batch))
    return report


def _merge_batch(out: CallCache, entries: list[Entry]) -> MergeReport:
    report = MergeReport(read=len(entries))
    with out.connection(write=True) as conn:
        for key, value, created in entries:
            held = conn.execute("SELECT value, created FROM calls WHERE key = ?", (key,)).fetchone()
            if held is None:
                conn.execute("INSERT INTO calls (key, value, created) VALUES (?, ?, ?)", (key, value, created))
                report.added += 1
            elif _same_answer(held[0], value):
                report.duplicates += 1
            else:
                report.conflicts += 1
                if (created or 0.0) > (held[1] or 0.0):
                    conn.execute("UPDATE calls SET value = ?, created = ? WHERE key = ?", (value, created, key))
    return report


def _same_answer(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


def cache_entries(path: str | os.PathLike) -> Iterable[Entry]:
    """Every entry of a call cache file, read-only (nothing is created or changed).

    Parameters
    ----------
    path : str or os.PathLike
        A call cache (see :func:`is_cache`).

    Yields
    ------
    (str, str, float or None)
        ``(key, value, created)``.
    """
    conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        yield from conn.execute("SELECT key, value, created FROM calls")
    finally:
        conn.close()


def merge_caches(out: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> MergeReport:
    """Copy every entry of the ``inputs`` into the call cache ``out`` (``rerank cache merge``).

    Parameters
    ----------
    out : str or os.PathLike
        The output cache: created if missing, added to if it exists.
    inputs : sequence of str or os.PathLike
        Call caches (see :func:`is_cache`); an input that is ``out`` itself adds nothing.

    Returns
    -------
    MergeReport
        Totals over the inputs (see :func:`merge_entries`).

    Raises
    ------
    ConfigError
        When an input is not a call cache (nothing is merged then).
    """
    from .errors import ConfigError

    for path in inputs:
        if not is_cache(path):
            what = "does not exist" if not os.path.lexists(path) else "is not a rerank call cache"
            raise ConfigError(f"{path}: {what}")
    report = MergeReport()
    with CallCache(out) as cache:
        for path in inputs:
            if os.path.exists(out) and os.path.samefile(path, out):
                continue
            report.add(merge_entries(cache, cache_entries(path)))
    return report
