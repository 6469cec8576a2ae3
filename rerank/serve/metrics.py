"""What ``rerank serve`` has done, for ``GET /metrics`` in Prometheus' text format.

Counters and a latency histogram of fixed buckets: memory does not grow with the requests.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

#: Upper bounds (seconds) of the latency histogram's buckets.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class Histogram:
    """A Prometheus histogram: counts per bucket, their sum and their number."""

    bounds: tuple = LATENCY_BUCKETS
    counts: list = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        """Its exposition lines (cumulative buckets, ``+Inf`` last, then sum and count)."""
        prefix = f"{labels}," if labels else ""
        lines, running = [], 0
        for bound, count in zip((*self.bounds, "+Inf"), self.counts):
            running += count
            lines.append(f'{name}_bucket{{{prefix}le="{bound}"}} {running}')
        suffix = f"{{{labels}}}" if labels else ""
        return [*lines, f"{name}_sum{suffix} {self.total:.6f}", f"{name}_count{suffix} {self.count}"]


@dataclass
class Metrics:
    """The server's counters.

    Attributes
    ----------
    requests : dict of (str, int) to int
        Requests by path and status code.
    latency : Histogram
        Seconds from a request's arrival to its response, answered requests only.
    in_flight : int
        Requests being answered now.
    deduplicated : int
        Requests that joined an identical ranking already in flight.
    cancelled : int
        Rankings cancelled because every client waiting for them went away.
    llm_failures : int
        Rankings whose LLM calls failed for good.
    rankings, llm_calls, prompt_tokens, completion_tokens, cache_hits : int
        Rankings made and what their LLM calls spent (answers from the cache counted in
        ``cache_hits``).
    ranking_seconds : Histogram
        Seconds each ranking took.
    """

    requests: dict = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    in_flight: int = 0
    deduplicated: int = 0
    cancelled: int = 0
    llm_failures: int = 0
    rankings: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    ranking_seconds: Histogram = field(default_factory=Histogram)

    def add_request(self, path: str, status: int, seconds: float | None) -> None:
        """Count a finished request (``seconds`` None: the client left before its answer)."""
        self.requests[(path, status)] = self.requests.get((path, status), 0) + 1
        if seconds is not None:
            self.latency.observe(seconds)

    def add_ranking(self, usage, seconds: float) -> None:
        """Count a finished ranking and its :class:`~rerank.types.Usage`."""
        self.rankings += 1
        self.llm_calls += usage.calls
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.cache_hits += usage.cache_hits
        self.ranking_seconds.observe(seconds)

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        lines = ["# HELP rerank_requests_total HTTP requests by path and status code.",
                 "# TYPE rerank_requests_total counter"]
        for (path, status), count in sorted(self.requests.items()):
            lines.append(f'rerank_requests_total{{path="{path}",code="{status}"}} {count}')
        lines += ["# HELP rerank_request_seconds Seconds from a request's arrival to its response.",
                  "# TYPE rerank_request_seconds histogram", *self.latency.lines("rerank_request_seconds"),
                  "# HELP rerank_ranking_seconds Seconds each ranking took.",
                  "# TYPE rerank_ranking_seconds histogram", *self.ranking_seconds.lines("rerank_ranking_seconds")]
        for name, kind, value, text in (
                ("rerank_requests_in_flight", "gauge", self.in_flight, "Requests being answered now."),
                ("rerank_deduplicated_total", "counter", self.deduplicated,
                 "Requests that joined an identical ranking in flight."),
                ("rerank_cancelled_total", "counter", self.cancelled,
                 "Rankings cancelled because their clients went away."),
                ("rerank_llm_failures_total", "counter", self.llm_failures, "Rankings whose LLM calls failed."),
                ("rerank_rankings_total", "counter", self.rankings, "Rankings made."),
                ("rerank_llm_calls_total", "counter", self.llm_calls, "LLM calls of the rankings, cached included."),
                ("rerank_llm_prompt_tokens_total", "counter", self.prompt_tokens, "Prompt tokens of those calls."),
                ("rerank_llm_completion_tokens_total", "counter", self.completion_tokens,
                 "Completion tokens of those calls."),
                ("rerank_cache_hits_total", "counter", self.cache_hits, "Calls answered by the call cache.")):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"
