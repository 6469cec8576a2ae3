"""Advisory file locks as outputs use them: refusing a file another process holds, and
naming that process.

:class:`~rerank.outputs.Outputs` holds an exclusive ``flock`` on every output for a run's whole
life; :func:`refuse_if_locked` is how another run finds out, and :func:`lock_holder` says who
holds it (from ``/proc/locks``, on Linux).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import ConfigError


def refuse_if_locked(path: str) -> None:
    """Refuse a file another run holds, whatever else may be said of it.

    Parameters
    ----------
    path : str
        The file; one that cannot be opened is let through (the caller finds out why).

    Raises
    ------
    ConfigError
        When another process holds an exclusive lock on the file; the message names it.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(f"{path} is being written by {lock_holder(os.fstat(fd))}: wait for it to "
                          "finish, or choose another output") from None
    finally:
        os.close(fd)


def lock_holder(info: os.stat_result) -> str:
    """Who holds the lock on a file, from ``/proc/locks`` (Linux).

    Parameters
    ----------
    info : os.stat_result
        The locked file's status (its device and inode identify it in ``/proc/locks``).

    Returns
    -------
    str
        ``another process (pid 123: rerank run)``, or ``another process`` when the holder
        cannot be found (not Linux, or the holder is this process).
    """
    wanted = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "another process"
    for line in lines:
        parts = line.split()
        if "->" in parts or len(parts) < 6:
            continue  # a waiter, not a holder
        try:
            pid = int(parts[4])
            major, minor, inode = parts[5].split(":")
            found = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if found == wanted and pid != os.getpid():
            return f"another process (pid {pid}: {_command_of(pid)})"
    return "another process"


def _command_of(pid: int) -> str:
    """A process's command (``rerank run``), from ``/proc/PID/cmdline``, without arguments."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return "unknown command"
    args = [a for a in args if a]
    if "rerank" in args:  # python -m rerank COMMAND
        args = args[args.index("rerank"):]
    else:
        args = [os.path.basename(args[0]) if args else "?", *args[1:]]
    return " ".join(args[:2])  # the command, never its arguments (URLs, paths)
