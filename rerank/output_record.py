"""The run record beside a run's outputs: where it goes, reading it back, and whether it names
a file (which is how ``--resume`` knows that rerank wrote an existing output).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: What replaces an output's suffix to name its run record.
RECORD_SUFFIX = ".summary.json"


def record_path(output: str | os.PathLike) -> Path:
    """The run record beside an output: ``out.jsonl`` -> ``out.summary.json``.

    Parameters
    ----------
    output : str or path-like
        An output file.

    Returns
    -------
    Path
        The output with its suffix replaced by :data:`RECORD_SUFFIX` (or that added).
    """
    path = Path(output)
    return path.with_suffix(RECORD_SUFFIX) if path.suffix else path.with_name(path.name + RECORD_SUFFIX)


def read_record(path: Path) -> dict | None:
    """Read a run record back.

    Parameters
    ----------
    path : Path
        The record file.

    Returns
    -------
    dict or None
        The record, or None when it is missing, unreadable or not a record (no ``outputs``).
    """
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("outputs"), dict):
        return None
    return record


def record_names(record: dict, path: str, info: os.stat_result) -> bool:
    """Whether a run record names a file: by its resolved path, or by device and inode (a
    folder moved since).

    Parameters
    ----------
    record : dict
        A record from :func:`read_record`.
    path : str
        The file.
    info : os.stat_result
        The file's status.

    Returns
    -------
    bool
        True when one of the record's outputs is this file.
    """
    real = os.path.realpath(path)
    for entry in record["outputs"].values():
        if not isinstance(entry, dict):
            continue
        if entry.get("path") == real or (entry.get("device") == info.st_dev and entry.get("inode") == info.st_ino):
            return True
    return False
