"""Resuming a run: which queries an output already holds, with torn lines repaired.

Results are written a whole line at a time and flushed, the TREC run before the JSONL line, so
the JSONL is the record of what is finished: a query is done when its JSONL line is complete.
A process killed mid-write leaves at most one torn last line, which is dropped; TREC lines of
queries the JSONL does not hold are dropped too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ConfigError, InputError


def finished_queries(output: str, trec: str | None, resume: bool) -> set[str]:
    """The qids ``output`` already holds, after repairing both files for appending.

    Raises
    ------
    ConfigError
        When an output exists and ``resume`` is false: it is never silently overwritten.
    """
    existing = [path for path in (output, trec) if path and Path(path).exists() and Path(path).stat().st_size]
    if not resume:
        if existing:
            raise ConfigError(f"{existing[0]} exists: pass --resume to finish that run, or remove it")
        return set()
    done = _repair_jsonl(output) if Path(output).exists() else set()
    if trec and Path(trec).exists():
        _keep_trec_lines(trec, done)
    return done


def _repair_jsonl(path: str) -> set[str]:
    data = Path(path).read_bytes()
    end = data.rfind(b"\n") + 1  # everything after the last newline is a torn line
    done: set[str] = set()
    for number, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            done.add(str(json.loads(line)["query"]["qid"]))
        except (ValueError, KeyError, TypeError):
            raise InputError("not a line this tool wrote; cannot resume into it", path, number) from None
    if end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
    return done


def _keep_trec_lines(path: str, done: set[str]) -> None:
    data = Path(path).read_bytes()
    kept = [line for line in data[: data.rfind(b"\n") + 1].splitlines(keepends=True)
            if line.split(b" ", 1)[0].decode("utf-8", "replace") in done]
    temporary = f"{path}.resume-tmp"
    Path(temporary).write_bytes(b"".join(kept))
    os.replace(temporary, path)
