"""The data model: what goes into a reranker and what comes out.

Plain dataclasses, so a request or a result pickles, crosses a process boundary (Ray, batch
files) and converts to JSON without any framework object attached.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Query:
    """A search query: its identifier and its text."""

    qid: str
    text: str


@dataclass(slots=True)
class Candidate:
    """A first-stage candidate passage.

    Parameters
    ----------
    docid : str
        Document identifier, as in the qrels.
    text : str
        Passage text shown to the LLM.
    title : str or None
        Optional title, shown before the text.
    score : float or None
        First-stage score on input; on a :class:`Result`, the reranked score.
    """

    docid: str
    text: str
    title: str | None = None
    score: float | None = None


@dataclass(slots=True)
class Request:
    """One query and its first-stage candidates, best first."""

    query: Query
    candidates: list[Candidate]


PARSE_STATUSES = ("ok", "repaired", "unparseable")


@dataclass(slots=True)
class CallRecord:
    """What one LLM call (one window) cost and how its answer parsed.

    Attributes
    ----------
    window_size : int
        Number of passages in the prompt.
    round : int
        Index of the strategy round the call belongs to (calls of one round are independent).
    prompt_tokens, completion_tokens : int
        Usage as reported by the backend (or the cached usage on a cache hit).
    latency : float
        Seconds spent waiting for the backend, retries included; 0 for a cache hit.
    cached : bool
        Whether the answer came from the cache.
    parse_status : str
        ``"ok"``, ``"repaired"`` (ids missing, repeated or out of range) or ``"unparseable"``.
    attempts : int
        Backend attempts made (1 when no retry was needed, 0 on a cache hit).
    finish_reason : str or None
        The backend's finish reason (``"stop"``, ``"length"``, ...).
    context_retries : int
        Times the server refused the prompt as too long before it was shortened enough.
    cache_bad_entries : int
        Malformed cache entries met for this call (ignored, and replaced by the fresh answer).
    """

    window_size: int
    round: int
    prompt_tokens: int
    completion_tokens: int
    latency: float
    cached: bool
    parse_status: str
    attempts: int = 1
    finish_reason: str | None = None
    context_retries: int = 0
    cache_bad_entries: int = 0


@dataclass(slots=True)
class Usage:
    """Totals over a set of calls: the numbers of the CLI summary and the cost columns."""

    queries: int = 0
    calls: int = 0
    rounds: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    parse_ok: int = 0
    parse_repaired: int = 0
    parse_unparseable: int = 0
    retries: int = 0
    context_retries: int = 0
    latency: float = 0.0
    cache_bad_entries: int = 0

    def add_result(self, result: "Result") -> None:
        """Add one query's calls to the totals."""
        self.queries += 1
        self.rounds += result.rounds
        for call in result.calls:
            self.calls += 1
            self.prompt_tokens += call.prompt_tokens
            self.completion_tokens += call.completion_tokens
            self.cache_hits += call.cached
            self.latency += call.latency
            self.retries += max(call.attempts - 1, 0)
            self.context_retries += call.context_retries
            self.cache_bad_entries += call.cache_bad_entries
            if call.parse_status == "ok":
                self.parse_ok += 1
            elif call.parse_status == "repaired":
                self.parse_repaired += 1
            else:
                self.parse_unparseable += 1

    def as_dict(self) -> dict:
        """The totals as a plain dict (JSON-ready)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(slots=True)
class Result:
    """A reranked request.

    Attributes
    ----------
    query : Query
    candidates : list of Candidate
        All input candidates in their new order; ``score`` holds the new score, strictly
        decreasing with rank.
    calls : list of CallRecord
        One record per LLM call made (or answered from the cache) for this query.
    rounds : int
        Number of strategy rounds; under concurrency, rounds rather than calls set wall time.
    """

    query: Query
    candidates: list[Candidate]
    calls: list[CallRecord] = field(default_factory=list)
    rounds: int = 0

    @property
    def usage(self) -> Usage:
        """Totals over this query's calls."""
        usage = Usage()
        usage.add_result(self)
        return usage
