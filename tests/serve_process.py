"""``rerank serve`` run as a user runs it, for tests/test_serve.py and tests/test_serve_clients.py:
the CLI in a process of its own, its URL read from the start line on stderr; DL19 queries with
their BM25 top 20 and grades; ``GET /metrics`` read into numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_LINE = re.compile(r"^rerank serve: (http://\S+) ", re.MULTILINE)


class ServeProcess:
    """``python -m rerank serve ARGS --port 0``, started and listening; a context manager that stops it.

    Parameters
    ----------
    *args
        The command's options (the judge server's ``--base-url`` among them).
    env : dict, optional
        Added to the environment.
    timeout : float
        Seconds to wait for the start line.

    Raises
    ------
    AssertionError
        When the process ends, or prints no start line in time (its stderr in the message).
    """

    def __init__(self, *args, env: dict | None = None, timeout: float = 60.0):
        environment = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key", **(env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "rerank", "serve", "--port", "0", *map(str, args)],
                                        cwd=REPO, env=environment, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.wait_for_stderr(START_LINE.search, timeout):
            self.stop()
            raise AssertionError(f"rerank serve did not start: {self.stderr()}")
        self.url = START_LINE.search(self.stderr()).group(1)

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._lines.append("")  # the end: waiters stop waiting
            self._changed.notify_all()

    def stderr(self) -> str:
        """What the server printed on stderr so far."""
        with self._changed:
            return "".join(self._lines)

    def wait_for_stderr(self, predicate, timeout: float = 30.0) -> bool:
        """Wait until ``predicate(stderr)`` holds (or the process has ended); whether it holds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate("".join(self._lines)):
                left = deadline - time.monotonic()
                if left <= 0 or (self._lines and self._lines[-1] == ""):
                    return predicate("".join(self._lines))
                self._changed.wait(left)
            return True

    def stop(self) -> None:
        """Stop the server (SIGTERM, as a supervisor would) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


@dataclass(frozen=True)
class Case:
    """A DL19 query and its BM25 top candidates: texts and grades from the qrels (0 unjudged)."""

    query: str
    documents: list
    grades: list

    @property
    def best(self) -> int:
        """The highest grade among the documents."""
        return max(self.grades)


def dl19_cases(folder: Path, top: int = 20) -> list[Case]:
    """The queries of DL19 whose judged-best passage is not BM25's first (so input order fails)."""
    from rerank.formats import read_qrels, read_requests

    qrels = read_qrels(next(Path(folder).glob("qrels.*")))
    cases = []
    for request in read_requests(Path(folder) / "bm25_top100.json"):
        candidates = request.candidates[:top]
        grades = [qrels.get(request.query.qid, {}).get(c.docid, 0) for c in candidates]
        if grades[0] < max(grades):
            cases.append(Case(request.query.text, [c.text for c in candidates], grades))
    return cases


def read_metrics(text: str) -> dict:
    """A Prometheus text exposition as ``{'name{labels}': value}``."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
