"""The configuration of a reranker: plain data, JSON-ready, rebuilt into a reranker anywhere."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields

from .answers import DEFAULT_REASONING_BUDGET, REASONING_EFFORTS
from .backends import backend_name_for
from .backends.openai_params import is_reasoning_model
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
    part of it: they come from the environment (``api_key_env`` names the variable), or from
    ``api_key_file``. ``extra_body`` changes answers, so it is part of every call's cache key;
    ``headers`` are not (their values that look like secrets are never shown in a summary).
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
    api_key_env: str | None = None
    extra_body: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    reasoning_model: bool | None = None
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
        if not isinstance(self.extra_body, dict):
            raise ConfigError(f"--extra-body must be a JSON object, got {type(self.extra_body).__name__}")
        if not isinstance(self.headers, dict):
            raise ConfigError(f"--header: headers must be NAME: VALUE pairs, got {type(self.headers).__name__}")
        for name, value in self.headers.items():
            if not (isinstance(name, str) and _HEADER_NAME.fullmatch(name)):
                raise ConfigError(f"--header {name!s:.60}: not a valid header name")
            if not isinstance(value, str) or _HEADER_VALUE_BAD.search(value):
                raise ConfigError(f"--header {name}: its value must be text on one line")
        if self.api_key_env is not None and not _ENV_NAME.fullmatch(str(self.api_key_env)):
            raise ConfigError(f"--api-key-env {self.api_key_env!s:.60}: not an environment variable name")
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ConfigError("give the API key by --api-key-file or by --api-key-env, not both")

    def reasons_by_default(self) -> bool:
        """Whether the model reasons before every answer without being asked: ``reasoning_model``
        (``--reasoning-model``), else by its name for an OpenAI-compatible endpoint (OpenAI's
        o-series and gpt-5, Gemini 2.5 and later: :func:`~rerank.backends.openai_params.is_reasoning_model`)."""
        if self.reasoning_model is not None:
            return self.reasoning_model
        return backend_name_for(self.backend, self.model, self.base_url) == "openai" and is_reasoning_model(self.model)

    def reasoning(self) -> Reasoning | None:
        """Whether answers come after reasoning (``--reasoning-budget`` or ``--reasoning-effort``,
        or a reasoning model: :meth:`reasons_by_default`)."""
        if self.reasoning_budget is None and self.reasoning_effort is None and not self.reasons_by_default():
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


# RFC 9110's token for a header name; a value must not break the header block.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def reranker_options(extra_strategies: tuple[str, ...] = ()) -> dict:
    """Every option the strategies and the backends declare, by name (strategies' first)."""
    from .backends import backend_options

    return {**backend_options(), **strategy_options(extra_strategies)}


def extra_body_from_json(text: str | None) -> dict:
    """``--extra-body``: a JSON object of request fields.

    Parameters
    ----------
    text : str or None
        The flag's value; None for none.

    Returns
    -------
    dict
        Empty for None.

    Raises
    ------
    ConfigError
        One line, for text that is not JSON or not a JSON object.

    Examples
    --------
    >>> extra_body_from_json('{"provider": {"sort": "price"}}')
    {'provider': {'sort': 'price'}}
    """
    import json

    if text is None:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = f" ({exc.msg} at character {exc.pos})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(f"--extra-body: not valid JSON{reason}") from None
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
        raise ConfigError(f"--extra-body must be a JSON object of fields, got {kind}")
    return value


def headers_from_flags(items: list[str] | None) -> dict:
    """``--header NAME:VALUE`` flags as a dict (a later one replaces an earlier one of the same name).

    Parameters
    ----------
    items : list of str or None

    Returns
    -------
    dict of str to str
        Names and values stripped of surrounding spaces.

    Raises
    ------
    ConfigError
        One line, numbering the flag (never echoing it), for an item without ``:`` or a name that
        is not a header name.

    Examples
    --------
    >>> headers_from_flags(["X-Title: my run", "HTTP-Referer:https://example.org"])
    {'X-Title': 'my run', 'HTTP-Referer': 'https://example.org'}
    """
    headers: dict[str, str] = {}
    for number, item in enumerate(items or [], 1):
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not _HEADER_NAME.fullmatch(name):
            # Never echoed: what was given may be a key without its header's name.
            raise ConfigError(f"--header number {number}: expected NAME:VALUE, e.g. 'X-Title: my run'")
        headers[name] = value.strip()
    return headers
