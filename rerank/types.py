"""The data model: what goes into a reranker and what comes out.

Plain dataclasses, so a request or a result pickles, crosses a process boundary (Ray, batch
files) and converts to JSON without any framework object attached.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """A search query: its identifier and its text, by keyword (``Query(qid=..., text=...)``).

    Keywords only, because rank_llm's ``Query`` takes ``(text, qid)``: a call in that order
    must fail, not swap the two silently.
    """

    qid: str
    text: str

    def __new__(cls, *args, **kwargs):
        if args:
            raise TypeError(f"Query takes keywords, Query(qid=..., text=...), not {len(args)} positional "
                            "arguments (rank_llm's Query is (text, qid): the order would swap them)")
        return object.__new__(cls)

    def __post_init__(self):
        for name in ("qid", "text"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"Query.{name} must be a str, got {type(value).__name__} {value!r}")


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

    def __post_init__(self):
        # rank_llm's Candidate takes (docid, score, doc): that order must fail, not make the score
        # the text.
        if not isinstance(self.docid, str) or not isinstance(self.text, str) or \
                not (self.title is None or isinstance(self.title, str)) or \
                not (self.score is None or isinstance(self.score, (int, float)) and not isinstance(self.score, bool)):
            raise TypeError(
                f"Candidate(docid={self.docid!r}, text={_short(self.text)}, title={_short(self.title)}, "
                f"score={self.score!r}): docid, text and title are str and score a number; rank_llm's order "
                "is (docid, score, doc): pass keywords, Candidate(docid, text=..., score=...)")


@dataclass(slots=True)
class Request:
    """One query and its first-stage candidates, best first."""

    query: Query
    candidates: list[Candidate]

    def __post_init__(self):
        if not isinstance(self.query, Query):
            raise TypeError(f"Request.query must be a Query, got {type(self.query).__name__}: "
                            "Request(Query(qid=..., text=...), [Candidate(...), ...])")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
        ``"ok"``, ``"repaired"`` (ids missing, repeated or out of range), ``"unparseable"`` or
        ``"truncated"`` (cut by its token limit: a reasoning budget too small).
    attempts : int
        Backend attempts made (1 when no retry was needed, 0 on a cache hit).
    finish_reason : str or None
        The backend's finish reason (``"stop"``, ``"length"``, ...).
    context_retries : int
        Times the server refused the prompt as too long before it was shortened enough.
    cache_bad_entries : int
        Malformed cache entries met for this call (ignored, and replaced by the fresh answer).
    answer_kind : str
        What the call asked for (``permutation``, ``first-token``, ``choice-1``, ...).
    reasoning_tokens : int
        Tokens spent reasoning, within ``completion_tokens``, where the backend reports them.
    reasoning : str or None
        The reasoning the model wrote before its answer (stripped before parsing).
    shortened : bool
        Whether passages (or the query) were shortened for the prompt to fit the context.
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
    answer_kind: str = "permutation"
    reasoning_tokens: int = 0
    reasoning: str | None = None
    shortened: bool = False


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
    reasoning_tokens: int = 0
    parse_truncated: int = 0
    prompts_shortened: int = 0

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
            self.reasoning_tokens += call.reasoning_tokens
            self.prompts_shortened += call.shortened
            if call.parse_status == "ok":
                self.parse_ok += 1
            elif call.parse_status == "repaired":
                self.parse_repaired += 1
            elif call.parse_status == "truncated":
                self.parse_truncated += 1
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
