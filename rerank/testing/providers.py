"""The judges' server behaving as a hosted provider's OpenAI-compatible endpoint (``--imitate``).

Each imitation refuses, ignores and reports what the provider's own compatibility notes say
(as of 2025), so that a client is tested against what it will meet:

``openai-reasoning`` (OpenAI's o-series and gpt-5)
    ``max_tokens`` refused ("Unsupported parameter: 'max_tokens' ... Use
    'max_completion_tokens' instead."), a ``temperature`` other than 1 refused ("Unsupported
    value: 'temperature' does not support 0 ..."), ``logprobs`` and ``top_logprobs`` refused,
    an unknown field refused ("Unrecognized request argument supplied: grammar");
    ``reasoning_effort`` minimal, low, medium or high. The reasoning is hidden: its tokens come
    out of ``max_completion_tokens`` first and are reported in
    ``usage.completion_tokens_details.reasoning_tokens`` (the server's ``hidden`` reasoning
    mode, :mod:`rerank.testing.reasoning`). Models are listed ``owned_by: system``.
``anthropic`` (``https://api.anthropic.com/v1/``, "OpenAI SDK compatibility")
    The key in ``x-api-key`` or as a bearer token. ``n`` other than 1 refused; a
    ``temperature`` over 1 capped at 1, below 0 refused; ``logprobs``, ``top_logprobs``,
    ``reasoning_effort``, ``seed`` and the other fields it does not support silently ignored
    (no log-probabilities ever come back). Extended thinking by ``extra_body``'s ``thinking:
    {"type": "enabled", "budget_tokens": N}``: N at least 1024 and below the token limit, and
    then no ``temperature`` but 1; the thinking is not returned, its tokens are counted in
    ``completion_tokens``. Models are listed as Anthropic lists them (``type: model``).
``gemini`` (``https://generativelanguage.googleapis.com/v1beta/openai/``)
    An unknown field refused as Google refuses it, ``logprobs`` included ("Invalid JSON payload
    received. Unknown name \\"logprobs\\": Cannot find field."), errors as a list;
    ``reasoning_effort`` none, low, medium or high ("minimal" refused), not together with
    ``extra_body.google.thinking_config``. Gemini 2.5 and later think by default (older models
    when given an effort): the thinking's tokens come out of the token limit first, are counted
    in ``completion_tokens`` and reported in ``completion_tokens_details.reasoning_tokens``.
    Models are listed ``owned_by: google``.
``openrouter`` (``https://openrouter.ai/api/v1``)
    A bearer key required. Unknown fields ignored; the routed model lists no ``logprobs`` in its
    ``supported_parameters``, so they are ignored, unless ``provider.require_parameters`` is
    set, which finds no endpoint (HTTP 404). ``provider`` (routing preferences) and
    ``reasoning`` (``effort`` or ``max_tokens``, ``exclude``, ``enabled``) are checked; asked
    to reason, the model returns ``message.reasoning`` (unless excluded) and its
    ``reasoning_tokens``. ``HTTP-Referer`` and ``X-Title`` are taken (the log records them).

The imitation checks a request (:meth:`Imitation.check`: refuse it, or return what the judge
answers) and shapes the judge's completion (:meth:`Imitation.answer`); the server calls both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from .counting import Tokens

IMITATIONS = ("openai-reasoning", "anthropic", "gemini", "openrouter")

# OpenAI's chat completion request fields: any other is refused by OpenAI's API.
_OPENAI_FIELDS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "stream",
    "stream_options", "logprobs", "top_logprobs", "reasoning_effort", "response_format", "seed", "tools",
    "tool_choice", "parallel_tool_calls", "user", "metadata", "store", "service_tier", "presence_penalty",
    "frequency_penalty", "logit_bias", "prediction", "modalities", "audio", "verbosity", "prompt_cache_key",
    "safety_identifier", "web_search_options", "functions", "function_call"})
# What Anthropic's compatibility layer acts on (the rest is ignored).
_ANTHROPIC_FIELDS = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
                               "n", "stop", "stream", "stream_options", "tools", "tool_choice",
                               "parallel_tool_calls", "thinking"})
# What Gemini's compatibility layer knows; any other name is refused.
_GEMINI_FIELDS = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
                            "stop", "stream", "stream_options", "reasoning_effort", "response_format", "tools",
                            "tool_choice", "seed", "presence_penalty", "frequency_penalty", "extra_body"})
_GEMINI_EFFORTS = {"none": 0.0, "low": 0.5, "medium": 1.0, "high": 2.0}
_OPENROUTER_EFFORTS = {"minimal": 0.25, "low": 0.5, "medium": 1.0, "high": 2.0}
# OpenRouter's provider routing preferences.
_PROVIDER_FIELDS = frozenset({"order", "allow_fallbacks", "require_parameters", "data_collection", "zdr", "only",
                              "ignore", "quantizations", "sort", "max_price", "enforce_distillable_text"})
_REASONING_FIELDS = frozenset({"effort", "max_tokens", "exclude", "enabled"})
# The routed model's parameters, as OpenRouter lists them (a model without log-probabilities).
OPENROUTER_PARAMETERS = ["max_tokens", "temperature", "top_p", "stop", "seed", "reasoning", "include_reasoning",
                         "response_format", "tools", "tool_choice"]
# Gemini 2.5 and later think by default.
_GEMINI_THINKING = re.compile(r"^(?:models/)?gemini-(?:2\.5|[3-9])")
_THOUGHT = "weighing each passage against the query, and which of them answers it best; "


class Refusal(Exception):
    """A request refused with ``status`` and the provider's error ``body``."""

    def __init__(self, status: int, body: Any):
        super().__init__(status)
        self.status = status
        self.body = body


@dataclass
class Imitation:
    """What one provider's endpoint accepts and returns.

    Parameters
    ----------
    name : str
        One of :data:`IMITATIONS`.
    api_key : str or None
        The key requests must carry; None: any key (a key is still required).
    think_tokens : int
        Tokens of hidden reasoning at medium effort (Gemini's default thinking, OpenRouter's
        reasoning when asked).
    tokens : Tokens
        How the server counts tokens.
    """

    name: str
    api_key: str | None = None
    think_tokens: int = 64
    tokens: Tokens | None = None

    def __post_init__(self) -> None:
        if self.name not in IMITATIONS:
            raise ValueError(f"imitate one of {', '.join(IMITATIONS)}, not {self.name!r}")
        self.tokens = self.tokens or Tokens()

    @property
    def responder_reasoning(self) -> str | None:
        """The responder's own reasoning mode: ``hidden`` for OpenAI's reasoning models."""
        return "hidden" if self.name == "openai-reasoning" else None

    def listing(self, card: dict) -> dict:
        """The ``GET /models`` answer, shaped as this provider lists ``card``'s model."""
        model = card["id"]
        if self.name == "anthropic":
            entry = {"type": "model", "id": model, "display_name": "Test judge", "created_at": "2025-01-01T00:00:00Z"}
            return {"data": [entry], "has_more": False, "first_id": model, "last_id": model}
        if self.name == "gemini":
            return {"object": "list", "data": [{"id": f"models/{model}", "object": "model", "owned_by": "google"}]}
        if self.name == "openrouter":
            return {"data": [{"id": model, "name": "Test judge", "context_length": 32768,
                              "supported_parameters": list(OPENROUTER_PARAMETERS)}]}
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "system"}]}

    def authorize(self, headers: Mapping[str, str]) -> None:
        """Refuse a request without the key (HTTP 401, the provider's error).

        Raises
        ------
        Refusal
        """
        bearer = headers.get("Authorization", "")
        key = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        if self.name == "anthropic":
            key = headers.get("x-api-key") or key
        if key and (self.api_key is None or key == self.api_key):
            return
        if self.name == "anthropic":
            raise Refusal(401, {"type": "error", "error": {"type": "authentication_error",
                                                          "message": "invalid x-api-key"}})
        if self.name == "gemini":
            raise Refusal(401, [{"error": {"code": 401, "message": "API key not valid. Please pass a valid API key.",
                                           "status": "UNAUTHENTICATED"}}])
        if self.name == "openrouter":
            raise Refusal(401, {"error": {"message": "No auth credentials found", "code": 401}})
        raise Refusal(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                      "param": None, "code": "invalid_api_key"}})

    def check(self, request: Any, headers: Mapping[str, str]) -> tuple[dict, int]:
        """What the judge answers for ``request``, and the hidden reasoning tokens spent first.

        Parameters
        ----------
        request : Any
            The decoded body.
        headers : mapping
            The request's headers.

        Returns
        -------
        request : dict
            The request as the judge should answer it: ignored fields gone, the token limit
            lowered by the reasoning (which comes out of it first).
        hidden : int
            Reasoning tokens spent before the answer (counted, not shown).

        Raises
        ------
        Refusal
            What the provider refuses, with its status and error body.
        """
        self.authorize(headers)
        if not isinstance(request, dict):
            return request, 0  # the judge refuses it as OpenAI does
        check = {"openai-reasoning": self._openai, "anthropic": self._anthropic, "gemini": self._gemini,
                 "openrouter": self._openrouter}[self.name]
        request, hidden = check(dict(request))
        return _within(request, hidden)

    def answer(self, request: dict, body: dict, hidden: int) -> dict:
        """The judge's completion as this provider returns it (``hidden`` reasoning tokens counted)."""
        if hidden and self.name != "openai-reasoning":  # the responder counts OpenAI's itself
            usage = body["usage"]
            usage["completion_tokens"] += hidden
            usage["total_tokens"] += hidden
            if self.name != "anthropic":
                usage["completion_tokens_details"] = {"reasoning_tokens": hidden}
            if self.name == "openrouter" and not (request.get("reasoning") or {}).get("exclude"):
                text = self.tokens.truncate(_THOUGHT * (hidden // 4 + 1), hidden).strip()
                body["choices"][0]["message"]["reasoning"] = text
        if self.name in ("anthropic", "gemini", "openrouter"):
            body["choices"][0]["logprobs"] = None
        return body

    # -- the providers ---------------------------------------------------------------------------

    def _openai(self, request: dict) -> tuple[dict, int]:
        for name in request:
            if name not in _OPENAI_FIELDS:
                raise _openai_error(f"Unrecognized request argument supplied: {name}", None, None)
        for name in ("logprobs", "top_logprobs"):
            if request.get(name) not in (None, False):
                raise _openai_error(f"Unsupported parameter: '{name}' is not supported with this model.", name,
                                    "unsupported_parameter")
        return request, 0  # max_tokens, temperature and the reasoning: the responder's hidden mode

    def _anthropic(self, request: dict) -> tuple[dict, int]:
        n = request.get("n")
        if n is not None and n != 1:
            raise _anthropic_error(400, "n: only n=1 is supported")
        temperature = request.get("temperature")
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
            if temperature < 0:
                raise _anthropic_error(400, "temperature: Input should be greater than or equal to 0")
            request["temperature"] = min(temperature, 1)
        hidden = 0
        thinking = request.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
                raise _anthropic_error(400, "thinking.enabled.budget_tokens: Input should be greater than or "
                                            "equal to 1024")
            limit = request.get("max_completion_tokens", request.get("max_tokens"))
            if isinstance(limit, int) and limit <= budget:
                raise _anthropic_error(400, "`max_tokens` must be greater than `thinking.budget_tokens`")
            if request.get("temperature") not in (None, 1):
                raise _anthropic_error(400, "`temperature` may only be set to 1 when thinking is enabled")
            hidden = min(budget, self.think_tokens)
        elif thinking is not None and not (isinstance(thinking, dict) and thinking.get("type") == "disabled"):
            raise _anthropic_error(400, "thinking: Input tag does not match any of the expected tags: 'enabled', "
                                        "'disabled'")
        # Every field it does not act on is ignored, log-probabilities included.
        return {name: value for name, value in request.items() if name in _ANTHROPIC_FIELDS}, hidden

    def _gemini(self, request: dict) -> tuple[dict, int]:
        for name in request:
            if name not in _GEMINI_FIELDS:
                raise _gemini_error(f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
        effort = request.pop("reasoning_effort", None)
        google = (request.pop("extra_body", None) or {}).get("google") or {}
        thinking = google.get("thinking_config") if isinstance(google, dict) else None
        if effort is not None and effort not in _GEMINI_EFFORTS:
            raise _gemini_error(f"Invalid reasoning_effort: {effort}. Valid values are: high, low, medium, none")
        if effort is not None and thinking is not None:
            raise _gemini_error("reasoning_effort and thinking_config cannot both be set")
        if isinstance(thinking, dict) and isinstance(thinking.get("thinking_budget"), int):
            hidden = max(0, min(thinking["thinking_budget"], self.think_tokens * 2))
        elif effort is not None or _GEMINI_THINKING.match(str(request.get("model", ""))):
            hidden = int(self.think_tokens * _GEMINI_EFFORTS[effort or "medium"])
        else:
            hidden = 0  # Gemini 2.0 and older do not think
        return request, hidden

    def _openrouter(self, request: dict) -> tuple[dict, int]:
        provider = request.get("provider")
        if provider is not None:
            if not isinstance(provider, dict):
                raise _openrouter_error(400, "Invalid provider preferences: expected an object")
            unknown = sorted(set(provider) - _PROVIDER_FIELDS)
            if unknown:
                raise _openrouter_error(400, f"Invalid provider preferences: unrecognized key '{unknown[0]}'")
        asks_logprobs = request.get("logprobs") not in (None, False) or request.get("top_logprobs") is not None
        if asks_logprobs and isinstance(provider, dict) and provider.get("require_parameters"):
            raise _openrouter_error(404, "No endpoints found that can handle the requested parameters.")
        reasoning = request.get("reasoning")
        effort = request.get("reasoning_effort")
        hidden = 0
        if reasoning is not None:
            if not isinstance(reasoning, dict) or set(reasoning) - _REASONING_FIELDS:
                raise _openrouter_error(400, "Invalid reasoning: expected an object of effort, max_tokens, "
                                             "exclude and enabled")
            if "effort" in reasoning and "max_tokens" in reasoning:
                raise _openrouter_error(400, "Only one of reasoning.effort and reasoning.max_tokens can be set")
            effort = reasoning.get("effort", effort)
            if isinstance(reasoning.get("max_tokens"), int):
                hidden = max(0, reasoning["max_tokens"])
            elif reasoning.get("enabled") is not False:
                effort = effort or "medium"
        if effort is not None:
            if effort not in _OPENROUTER_EFFORTS:
                raise _openrouter_error(400, f"Invalid reasoning effort: {effort}")
            hidden = hidden or int(self.think_tokens * _OPENROUTER_EFFORTS[effort])
        # The routed model takes the parameters it lists; the rest are dropped.
        kept = {"model", "messages", "max_completion_tokens", *OPENROUTER_PARAMETERS}
        return {name: value for name, value in request.items() if name in kept}, hidden


def _within(request: dict, hidden: int) -> tuple[dict, int]:
    """``request`` with its token limit lowered by the ``hidden`` reasoning spent first (to 0 at
    least), and the reasoning tokens spent (no more than the limit)."""
    for name in ("max_completion_tokens", "max_tokens"):
        limit = request.get(name)
        if isinstance(limit, int) and not isinstance(limit, bool):
            hidden = min(hidden, limit)
            request[name] = limit - hidden
            break
    return request, hidden


def _openai_error(message: str, param: str | None, code: str | None) -> Refusal:
    return Refusal(400, {"error": {"message": message, "type": "invalid_request_error", "param": param,
                                   "code": code}})


def _anthropic_error(status: int, message: str) -> Refusal:
    return Refusal(status, {"type": "error", "error": {"type": "invalid_request_error", "message": message}})


def _gemini_error(message: str) -> Refusal:
    return Refusal(400, [{"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}])


def _openrouter_error(status: int, message: str) -> Refusal:
    return Refusal(status, {"error": {"message": message, "code": status}})
