"""Resuming a run: which queries an output already holds, with torn lines repaired.

Results are written a whole line at a time and flushed, the TREC run (and any other side output)
before the JSONL line, so the JSONL is the record of what is finished: a query is done when its
JSONL line is complete. A process killed mid-write leaves at most one torn last line, which is
dropped, and side-output lines of the query it was writing, which are cut off. Every repair is a
truncation in place: the files keep their inode, and so the lock :mod:`rerank.outputs` holds.
Whether a file may be resumed at all (rerank wrote it) is :class:`rerank.outputs.Outputs`'s call.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Callable

from .errors import InputError


def rankllm_qid(record: dict) -> str:
    """The qid of a ``rerank run`` output line."""
    return str(record["query"]["qid"])


def label_qid(record: dict) -> str:
    """The qid of a ``rerank labels`` output line."""
    return str(record["qid"])


def finished_queries(path: str | None, qid_of: Callable[[dict], str] = rankllm_qid) -> Counter:
    """How many finished results of each qid the JSONL output ``path`` holds.

    A torn last line is cut off (in place). A missing file holds none.

    Raises
    ------
    InputError
        When a complete line is not one this tool wrote.
    """
    if not path or not Path(path).exists():
        return Counter()
    data = Path(path).read_bytes()
    end = data.rfind(b"\n") + 1  # everything after the last newline is a torn line
    done: Counter = Counter()
    for number, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            done[qid_of(json.loads(line))] += 1
        except (ValueError, KeyError, TypeError):
            raise InputError("not a line this tool wrote; cannot resume into it", path, number) from None
    _truncate(path, end, len(data))
    return done


def keep_finished_trec(path: str | None, done: Counter) -> None:
    """Cut a TREC run back to the queries the JSONL holds.

    Lines are written query by query before the query's JSONL line, so those of finished
    queries come first: the run is cut at the first line of any other query (or a torn line).
    """
    if not path or not Path(path).exists():
        return
    data = Path(path).read_bytes()
    end = position = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n") or line.split(b" ", 1)[0].decode("utf-8", "replace") not in done:
            break
        position += len(line)
        end = position
    _truncate(path, end, len(data))


def keep_lines(path: str | None, count: int) -> None:
    """Cut a side output with one line per finished query (``--sft``) to its first ``count`` lines."""
    if not path or not Path(path).exists():
        return
    data = Path(path).read_bytes()
    end = 0
    for _ in range(count):
        next_end = data.find(b"\n", end) + 1
        if not next_end:
            break
        end = next_end
    _truncate(path, end, len(data))


def skip_finished(items, done: Counter, qid_of: Callable = lambda request: request.query.qid):
    """The requests (or queries, with ``qid_of``) not yet finished: each qid's first
    ``done[qid]`` are skipped."""
    left = Counter(done)
    for item in items:
        qid = qid_of(item)
        if left[qid] > 0:
            left[qid] -= 1
            continue
        yield item


def _truncate(path: str, end: int, size: int) -> None:
    if end < size:
        with open(path, "r+b") as handle:
            handle.truncate(end)
