"""The closing summary of a run: what it did, what it cost, how it ended.

:class:`RunSummary` is what :func:`rerank.run_writer.write_run` returns and writes as JSON: into
the run record (``X.summary.json`` beside the first output), a copy at ``--summary-json``, and
an experiment variant's ``<variant>.summary.json``; ``rerank compare`` reads its cost columns
back with :meth:`RunSummary.from_json`. The module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

CORE_KEYS = ("queries", "calls", "prompt_tokens", "completion_tokens")
#: What a batch provider charges of the list price, by the summary's ``batch_provider``
#: (``rerank run --batch``): OpenAI's Batch API costs half.
BATCH_PRICE_FACTORS = {"openai": 0.5}


@dataclass
class RunSummary:
    """A run's totals and outcome.

    Numbers read from an older or hand-made summary JSON that lacks them are None; a summary
    :func:`~rerank.run_writer.write_run` makes has them all.

    Attributes
    ----------
    queries, calls, rounds : int
        Queries finished in this run, LLM calls made (cache hits included), strategy rounds.
    prompt_tokens, completion_tokens, reasoning_tokens : int
        Token usage summed over the calls.
    cache_hits, cache_bad_entries : int
        Calls answered from the call cache; malformed cache entries met (and replaced).
    parse_ok, parse_repaired, parse_unparseable, parse_truncated : int
        How the answers parsed.
    retries, context_retries : int
        Backend attempts beyond the first; prompts refused as too long and shortened.
    latency : float
        Seconds spent waiting for the backend, summed over the calls.
    wall_seconds, startup_seconds : float
        The run's time from the end of start-up (endpoint checked, tokenizer loaded), and the
        start-up's.
    already_done : int
        Queries the outputs held before this run (``--resume``).
    failed : list of str
        Queries whose backend failed for good; they are not in the outputs.
    state : str
        ``finished``, ``failed`` (some queries failed), ``interrupted`` or ``running`` (the
        record of a run still going, or killed).
    settings : dict
        The reranker's settings, without credentials.
    rerank_version, backend, model : str
        The rerank version, the backend's name (``openai``, ``llamacpp``, ``vllm``) and model.
    extra : dict
        Further top-level keys: a command's own (``variant``, labels' ``kendall_tau``), usage
        totals this class does not name, and the run record's (``command``, ``outputs``).
    first_error : str or None
        The first failed query's error, for the message on stderr (never written).
    """

    queries: int | None = 0
    calls: int | None = 0
    rounds: int | None = 0
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    reasoning_tokens: int | None = 0
    cache_hits: int | None = 0
    parse_ok: int | None = 0
    parse_repaired: int | None = 0
    parse_unparseable: int | None = 0
    parse_truncated: int | None = 0
    retries: int | None = 0
    context_retries: int | None = 0
    prompts_shortened: int | None = 0
    latency: float | None = 0.0
    cache_bad_entries: int | None = 0
    wall_seconds: float | None = 0.0
    startup_seconds: float | None = 0.0
    already_done: int | None = 0
    failed: list[str] = field(default_factory=list)
    state: str | None = "finished"
    settings: dict = field(default_factory=dict)
    rerank_version: str | None = None
    backend: str | None = None
    model: str | None = None
    extra: dict = field(default_factory=dict)
    first_error: str | None = field(default=None, compare=False, metadata={"json": False})

    @classmethod
    def from_usage(cls, usage, *, extra: dict | None = None, **values) -> "RunSummary":
        """A summary of ``usage`` (a :class:`~rerank.types.Usage`) and ``values``: every usage
        total is read, those this class does not name going to ``extra``."""
        names = _field_names()
        totals = usage.as_dict()
        return cls(**{key: value for key, value in totals.items() if key in names}, **values,
                   extra={**{key: value for key, value in totals.items() if key not in names}, **(extra or {})})

    def to_json(self) -> dict:
        """The summary as a JSON-ready dict: every field with a value, then ``extra``."""
        document = {name: getattr(self, name) for name in _field_names()}
        return {**{key: value for key, value in document.items() if value is not None}, **self.extra}

    @classmethod
    def from_json(cls, document) -> "RunSummary":
        """The summary a JSON object holds (a run record, a ``--summary-json`` copy).

        Raises
        ------
        ValueError
            When ``document`` is not an object, or (unless its state is ``running``) lacks a
            number of the core keys (queries, calls, prompt and completion tokens).
        """
        if not isinstance(document, dict):
            raise ValueError("a run summary must be a JSON object")
        if document.get("state") != "running":
            missing = [key for key in CORE_KEYS if not isinstance(document.get(key), (int, float))]
            if missing:
                raise ValueError(f"the run summary lacks {', '.join(missing)}")
        names = _field_names()
        return cls(**{name: document.get(name) for name in names if name not in ("failed", "settings")},
                   failed=list(document.get("failed") or []), settings=dict(document.get("settings") or {}),
                   extra={key: value for key, value in document.items() if key not in names})

    @property
    def price_factor(self) -> float:
        """The share of the list price the run's calls cost: 0.5 for a run through OpenAI's Batch
        API (:data:`BATCH_PRICE_FACTORS`, by ``batch_provider``), else 1."""
        return BATCH_PRICE_FACTORS.get(self.extra.get("batch_provider"), 1.0)

    def format(self) -> str:
        """The closing summary as printed on stderr."""
        queries = self.queries or 1
        return (
            f"rerank: {self.queries} queries in {self.wall_seconds:.2f} s: "
            f"{self.calls} LLM calls ({self.calls / queries:.1f} per query, "
            f"{self.rounds / queries:.1f} rounds), {self.cache_hits} from cache, "
            f"{self.retries} retries, {self.prompts_shortened or 0} prompts shortened to fit "
            f"({self.context_retries or 0} after a context refusal)\n"
            f"  tokens: {self.prompt_tokens:,} prompt ({self.prompt_tokens / queries:,.0f} per query), "
            f"{self.completion_tokens:,} completion"
            + (f" ({self.reasoning_tokens:,} reasoning)" if self.reasoning_tokens else "") + "\n"
            f"  answers: {self.parse_ok} ok, {self.parse_repaired} repaired, "
            f"{self.parse_unparseable} unparseable"
            + (f", {self.parse_truncated} truncated (cut by their token limit: raise --reasoning-budget "
               "or --max-tokens; never cached)" if self.parse_truncated else "")
            + (f"\n  batches: {self.extra['batches']} through {self.extra.get('batch_provider')}"
               if self.extra.get("batches") is not None else ""))


def _field_names() -> list[str]:
    """The fields written as JSON keys, in order (not ``extra``, not ``first_error``)."""
    return [f.name for f in fields(RunSummary) if f.name != "extra" and f.metadata.get("json", True)]
