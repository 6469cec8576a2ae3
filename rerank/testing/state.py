"""What the threads of the judges' server share: the responder, the faults, counters and a log.

Besides the counters, counts by key: how many times each ``custom_id`` was submitted in a batch,
answered and failed (see :mod:`rerank.testing.batches`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from .completions import Responder
from .faults import FAILURE_KINDS, Faults
from .protocol import MODEL_ID

COUNTERS = ("requests", "completions", "failures", "prompt_tokens", "completion_tokens",
            "bad_requests", "internal_errors", "unidentified_queries", "unmatched_passages",
            "redirects", "hung", "disconnects", "body_bytes",
            # The Batch API's (see rerank.testing.batches).
            "files_uploaded", "batches_created", "batches_completed", "batches_failed", "batches_cancelled",
            "batches_expired", "batch_lines", "batch_answers", "batch_errors", "batch_duplicates",
            "batch_prompt_tokens", "batch_completion_tokens")
KEYED = ("custom_id_submissions", "custom_id_answers", "custom_id_failures")


@dataclass
class State:
    """What the handlers share: the responder, the faults, the counters and the log."""

    responder: Responder
    faults: Faults = field(default_factory=Faults)
    delay: float = 0.0
    verbose: bool = False
    owned_by: str = "tests"
    max_model_len: int | None = None

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)   # notified whenever a counter changes
        self._in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero the counters and empty the log (requests in flight stay counted)."""
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._keyed: dict[str, dict[str, int]] = {name: {} for name in KEYED}
            self._by_kind = dict.fromkeys(FAILURE_KINDS, 0)
            self._in_flight_max = self._in_flight
            self._log: list[dict] = []

    def count(self, **amounts: int) -> None:
        """Add to the counters; ``in_flight`` moves the requests in flight, ``failure`` names one."""
        with self._lock:
            self._in_flight += amounts.pop("in_flight", 0)
            self._in_flight_max = max(self._in_flight_max, self._in_flight)
            kind = amounts.pop("failure", None)
            if kind is not None:
                self._by_kind[kind] += 1
                amounts["failures"] = 1
            for name, amount in amounts.items():
                self._counts[name] += amount
            self._changed.notify_all()

    def count_ids(self, name: str, keys: list[str], **amounts: int) -> None:
        """Add one to the count of each of ``keys`` in ``name`` (one of :data:`KEYED`), and
        ``amounts`` to the counters, at once."""
        with self._lock:
            counts = self._keyed[name]
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
            self.count(**amounts)

    def tally(self, name: str, key: str) -> int:
        """The count of ``key`` in ``name`` (one of :data:`KEYED`)."""
        with self._lock:
            return self._keyed[name].get(key, 0)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float) -> bool:
        """Wait until ``predicate(self.stats())`` holds, at most ``timeout`` seconds; whether it does."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.stats()), timeout)

    def record(self, entry: dict) -> None:
        """Append a completion's entry to the log."""
        with self._lock:
            self._log.append(entry)

    def log(self) -> list[dict]:
        """The completions' entries, oldest first."""
        with self._lock:
            return list(self._log)

    def stats(self) -> dict:
        """The counters, with ``failures_by_kind``, ``in_flight``, ``max_in_flight`` and the
        counts by key (:data:`KEYED`, ``{custom_id: count}``)."""
        with self._lock:
            return {**self._counts, "failures_by_kind": dict(self._by_kind),
                    "in_flight": self._in_flight, "max_in_flight": self._in_flight_max,
                    **{name: dict(counts) for name, counts in self._keyed.items()}}

    def model_card(self) -> dict:
        """The model as ``GET /models`` lists it."""
        card = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": self.owned_by}
        if self.max_model_len is not None:  # as vLLM lists its models
            card["max_model_len"] = self.max_model_len
        return card
