"""Claims on calls in flight, in the cache file's ``claims`` table: each call paid once across processes.

Before paying for a call that the cache does not hold, a process claims its key: one row with
the owner (a token unique to the process), its host and pid, and an expiry. Another process that
finds a live claim waits for the value instead of paying again; the owner stores the value and
drops its claim in one transaction, or only drops the claim when its call failed, so that a
waiter takes over. A claim is dead once expired (the owner renews its claims while they run,
:func:`renew`), and at once when its owner ran on this host and its process is gone: a killed
run's claims are taken over by the next run without waiting for the lease.

The table is created with the others when a cache opens (``CREATE TABLE IF NOT EXISTS``), so
caches made before it keep working; no key or value changes.
"""

from __future__ import annotations

import json
import os
import socket
import time

from .cache import CallCache

#: What :func:`claim` found: a stored value, the claim now ours, or a live claim of another.
HIT, CLAIMED, WAIT = "hit", "claimed", "wait"
#: This machine's name, stored with each claim: a pid means something only on its own host.
HOST = socket.gethostname()

_GET = "SELECT value FROM calls WHERE key = ?"
_GET_CLAIM = "SELECT owner, host, pid, expires FROM claims WHERE key = ?"
_PUT_CLAIM = "INSERT OR REPLACE INTO claims (key, owner, host, pid, expires) VALUES (?, ?, ?, ?, ?)"
_RELEASE = "DELETE FROM claims WHERE key = ? AND owner = ?"


def claim(cache: CallCache, key: str, owner: str, lease: float,
          discard: str | None = None) -> tuple[str, str | None]:
    """Look ``key`` up and, on a miss, claim it for ``owner`` unless another holds a live claim.

    A plain read comes first, so that a hit or a live claim takes no write lock; the claim
    itself is written in a transaction that looks again.

    Parameters
    ----------
    cache : CallCache
        The cache.
    key : str
        A key from :func:`rerank.cache.call_key`.
    owner : str
        The claimant's token, unique to one process.
    lease : float
        Seconds the claim lives unless renewed.
    discard : str or None
        A stored value found unusable: deleted first (if it is still the value), then the key
        claimed in its place.

    Returns
    -------
    tuple of (str, str or None)
        ``(HIT, value_json)``, ``(CLAIMED, None)`` or ``(WAIT, None)``.
    """
    if discard is None:
        with cache.connection() as conn:
            found = _found(conn, key, owner)
        if found is not None:
            return found
    with cache.connection(write=True) as conn:
        if discard is not None:
            conn.execute("DELETE FROM calls WHERE key = ? AND value = ?", (key, discard))
        found = _found(conn, key, owner)
        if found is None:
            conn.execute(_PUT_CLAIM, (key, owner, HOST, os.getpid(), time.time() + lease))
    return found or (CLAIMED, None)


def put_claimed(cache: CallCache, key: str, value: dict, owner: str) -> None:
    """Store ``value`` under ``key`` and drop ``owner``'s claim on it, in one transaction.

    Parameters
    ----------
    cache : CallCache
        The cache.
    key : str
        The claimed key.
    value : dict
        A JSON-serialisable value (encoded here, with ASCII escapes).
    owner : str
        The claim's owner.
    """
    text = json.dumps(value, separators=(",", ":"))
    with cache.connection(write=True) as conn:
        conn.execute("INSERT OR REPLACE INTO calls (key, value, created) VALUES (?, ?, ?)",
                     (key, text, time.time()))
        conn.execute(_RELEASE, (key, owner))


def release(cache: CallCache, key: str | None, owner: str) -> None:
    """Drop ``owner``'s claim on ``key``, or all its claims when ``key`` is None.

    Parameters
    ----------
    cache : CallCache
        The cache.
    key : str or None
        The claimed key.
    owner : str
        The claims' owner; another owner's claim on the key is left alone.
    """
    with cache.connection() as conn:
        if key is None:
            conn.execute("DELETE FROM claims WHERE owner = ?", (owner,))
        else:
            conn.execute(_RELEASE, (key, owner))


def renew(cache: CallCache, owner: str, lease: float) -> None:
    """Extend every claim of ``owner`` to ``lease`` seconds from now.

    Parameters
    ----------
    cache : CallCache
        The cache.
    owner : str
        The claims' owner.
    lease : float
        Seconds from now.
    """
    with cache.connection() as conn:
        conn.execute("UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + lease, owner))


def alive(host: str, pid: int, expires: float) -> bool:
    """Whether a claim still holds: not expired and, when made on this host, its process running.

    Parameters
    ----------
    host, pid, expires
        The claim's columns.

    Returns
    -------
    bool
    """
    if expires <= time.time():
        return False
    return host != HOST or pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs; a zombie (killed, not yet reaped) does not.

    Parameters
    ----------
    pid : int

    Returns
    -------
    bool
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[:1] != [b"Z"]
    except OSError:
        return True


def _found(conn, key: str, owner: str) -> tuple[str, str | None] | None:
    """``(HIT, value)``, ``(WAIT, None)`` for another owner's live claim, or None: free to claim."""
    row = conn.execute(_GET, (key,)).fetchone()
    if row is not None:
        return HIT, row[0]
    holder = conn.execute(_GET_CLAIM, (key,)).fetchone()
    if holder is not None and holder[0] != owner and alive(*holder[1:]):
        return WAIT, None
    return None
