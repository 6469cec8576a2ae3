"""The configuration of a reranker: plain data, JSON-ready, rebuilt into a reranker anywhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .answers import DEFAULT_REASONING_BUDGET, REASONING_EFFORTS
from .errors import ConfigError
from .paths import default_cache_path
from .runner import Reasoning
from .strategies import strategy_options


@dataclass
class RerankerConfig:
    """Everything that defines a reranker; JSON-ready, so a reranker can be rebuilt elsewhere.

    The strategy's and the backend's own options (``window``, ``step``, ``passes``,
    ``max_model_len``, ``n_ctx``, ...) are in ``options``, by name, as they declare them
    (:mod:`rerank.options`); :meth:`from_dict` and
    ``Reranker(**kwargs)`` take them flat, beside the other fields. API keys are deliberately not
    part of it: they come from the environment.
    """

    model: str | None = None
    backend: str = "auto"
    base_url: str | None = None
    strategy: str = "sliding"
    top_k: int = 100
    prompt: str | None = None
    max_passage_words: int | None = 100
    context_size: int = 32768
    concurrency: int = 16
    cache: str | None = field(default_factory=default_cache_path)
    temperature: float | None = None
    max_tokens: int | None = None
    reasoning_budget: int | None = None
    reasoning_effort: str | None = None
    constrained: bool | None = None
    api_key_file: str | None = None
    timeout: float = 120.0
    max_attempts: int = 6
    backoff_initial: float = 0.5
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {self.top_k}")
        if self.max_passage_words is not None and self.max_passage_words < 0:
            raise ConfigError(f"--max-passage-words must be positive, got {self.max_passage_words}")
        if self.context_size < 256:
            raise ConfigError(f"--context-size must be at least 256 tokens, got {self.context_size}")
        if self.reasoning_budget is not None and self.reasoning_budget < 1:
            raise ConfigError(f"--reasoning-budget must be at least 1 token, got {self.reasoning_budget}")
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise ConfigError(f"--reasoning-effort must be one of {', '.join(REASONING_EFFORTS)}, "
                              f"got {self.reasoning_effort!r}")

    def reasoning(self) -> Reasoning | None:
        """Whether answers come after reasoning (``--reasoning-budget`` or ``--reasoning-effort``)."""
        if self.reasoning_budget is None and self.reasoning_effort is None:
            return None
        return Reasoning(self.reasoning_budget or DEFAULT_REASONING_BUDGET, self.reasoning_effort)

    @classmethod
    def from_dict(cls, data: dict) -> "RerankerConfig":
        """Build from a dict of fields and strategy options side by side (and an ``options``
        dict), rejecting unknown names with a clear error."""
        known = {f.name for f in fields(cls)} - {"options"}
        options = dict(data.get("options") or {})
        strategy = data.get("strategy", "sliding")
        declared = reranker_options((strategy,) if ":" in str(strategy) else ())
        for name in sorted(set(data) - known - {"options"}):
            if name not in declared:
                raise ConfigError(f"unknown reranker option '{name}'")
            options[name] = data[name]
        unknown = sorted(set(options) - set(declared))
        if unknown:
            raise ConfigError(f"unknown reranker option '{unknown[0]}'")
        return cls(**{name: value for name, value in data.items() if name in known}, options=options)

    def flat(self) -> dict:
        """The fields and the strategy options side by side (what :meth:`from_dict` takes)."""
        data = asdict(self)
        return {**{k: v for k, v in data.items() if k != "options"}, **data["options"]}


def reranker_options(extra_strategies: tuple[str, ...] = ()) -> dict:
    """Every option the strategies and the backends declare, by name (strategies' first)."""
    from .backends import backend_options

    return {**backend_options(), **strategy_options(extra_strategies)}
