"""Any OpenAI-compatible chat endpoint: OpenAI, ``vllm serve``, llama.cpp server, Ollama, SGLang.

Calls go through ``openai.AsyncOpenAI`` (its auth, connection pool and error types) with the SDK's
own retries off; retries are ours, with tenacity. The request is posted with the client's
low-level ``post`` and a plain dict body: ``chat.completions.create`` spends about 20 ms of Python
per 40-message prompt transforming its arguments and building pydantic models, ten times the
framework's whole budget per call.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field

import openai
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ..constraints import ranking_grammar, ranking_regex
from ..errors import BackendError, ConfigError, ContextOverflow
from ..tokens import TokenCounter, count_message_tokens, counter_for_model
from .base import Completion, answer_start

API_KEY_ENV = "OPENAI_API_KEY"
_LOG = logging.getLogger("rerank")
# Local servers ignore the key, but the SDK refuses to start without one.
PLACEHOLDER_API_KEY = "EMPTY"
_REQUEST_OPTIONS = {"security": {"bearer_auth": True}}


def retry_after_seconds(headers) -> float | None:
    """Seconds a server asks us to wait, from ``retry-after-ms`` or ``retry-after`` (seconds or date).

    None when neither header is there or readable (garbage, ``nan``, ``inf``, a malformed date).
    """
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        seconds = _finite_float(value)
        if seconds is not None:
            return max(seconds / 1000.0, 0.0)
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _finite_float(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None  # Python 3.10+ raises on an unreadable date instead of returning None
    if parsed.tzinfo is None:  # "-0000": an HTTP date is always GMT
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return max(parsed.timestamp() - time.time(), 0.0)


def _finite_float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def is_retryable(exc: BaseException) -> bool:
    """Rate limits, timeouts, connection errors, 5xx and malformed answers are retried; other 4xx never."""
    if isinstance(exc, (openai.APIConnectionError, MalformedResponse)):
        return True  # APITimeoutError is a subclass
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 429) or exc.status_code >= 500
    return False


def _token_count(value) -> int | None:
    """A usage number as an int; None (to be estimated) when it is missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return max(int(value), 0)


class MalformedResponse(Exception):
    """A 2xx answer that is not a chat completion (a proxy's HTML page, a truncated body)."""


@dataclass
class OpenAICompatBackend:
    """Async client for an OpenAI-compatible ``/chat/completions`` endpoint.

    Parameters
    ----------
    model : str
        Model name sent to the server.
    base_url : str or None
        Endpoint, e.g. ``http://127.0.0.1:8000/v1``; None means OpenAI's API.
    api_key : str or None
        Defaults to the contents of ``api_key_file``, else ``$OPENAI_API_KEY``; any value works
        for a local server. Never printed: error messages have it masked even when a server
        echoes it.
    api_key_file : str or None
        A file holding the key (its path, unlike the key, may appear in configs).
    concurrency : int
        Most calls in flight at once.
    timeout : float
        Seconds per attempt.
    max_attempts : int
        Attempts per call before giving up (retries + 1).
    backoff_initial, backoff_max : float
        Exponential backoff with full jitter: a wait drawn from ``[0, backoff_initial * 2**k]``,
        capped at ``backoff_max``; a server's ``Retry-After`` takes precedence (also capped).
    extra_body : dict
        Fields added to every request body (e.g. ``{"top_k": 1}`` for vLLM).
    """

    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_file: str | None = None
    concurrency: int = 16
    timeout: float = 120.0
    max_attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    extra_body: dict = field(default_factory=dict)

    # llama.cpp's, vLLM's and SGLang's servers constrain answers (each by its own field);
    # OpenAI's API refuses unknown fields, so it is off unless asked for, or unless the endpoint
    # check finds one of those servers (see preflight).
    constrained_default = False
    _server_context: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.max_attempts < 1:
            raise ConfigError(f"--max-attempts must be at least 1, got {self.max_attempts}")
        self._backoff = wait_random_exponential(multiplier=self.backoff_initial, max=self.backoff_max)
        self._client = None
        self._semaphore = None
        self._counter = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_client=None, _semaphore=None, _counter=None)
        return state

    @classmethod
    def from_config(cls, config) -> "OpenAICompatBackend":
        """Build from a :class:`~rerank.reranker.RerankerConfig`."""
        if not config.model:
            raise ConfigError("--model is required with an OpenAI-compatible endpoint")
        return cls(model=config.model, base_url=config.base_url, api_key_file=config.api_key_file,
                   concurrency=config.concurrency,
                   timeout=config.timeout, max_attempts=config.max_attempts,
                   backoff_initial=config.backoff_initial)

    def _connect(self):
        # Created on first use, inside the running event loop that will use it.
        api_key = self.api_key or self._key_from_file() or os.environ.get(API_KEY_ENV)
        if not api_key:
            if self.base_url is None:
                raise ConfigError(f"no API key: set {API_KEY_ENV} (or give --base-url for a local server)")
            api_key = PLACEHOLDER_API_KEY
        self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key,
                                          max_retries=0, timeout=self.timeout)
        self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._client

    def _key_from_file(self) -> str | None:
        if not self.api_key_file:
            return None
        try:
            key = open(self.api_key_file, encoding="utf-8").read().strip()
        except OSError as exc:
            raise ConfigError(f"{self.api_key_file}: cannot read the API key file: {exc.strerror}") from None
        if not key:
            raise ConfigError(f"{self.api_key_file}: the API key file is empty")
        return key

    def _masked(self, message: str) -> str:
        """``message`` with the API key replaced, should a server have echoed it."""
        key = self._client.api_key if self._client is not None else None
        if key and key != PLACEHOLDER_API_KEY and len(key) >= 4:
            message = message.replace(key, "***")
        return message

    def token_counter(self) -> TokenCounter:
        """tiktoken's encoding for OpenAI models, cl100k_base for others (an approximation)."""
        if self._counter is None:
            self._counter = counter_for_model(self.model)
        return self._counter

    async def preflight(self, timeout: float = 5.0) -> None:
        """Fail within seconds, with one clear line, when the endpoint is down or refuses the key.

        Asks ``GET /models`` once, without retries; any other answer (a server without that route
        included) lets the run go on.
        """
        client = self._client or self._connect()
        try:
            listing = await client.with_options(timeout=timeout).get("/models", cast_to=object,
                                                                      options=_REQUEST_OPTIONS)
        except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise BackendError(self._masked(describe_error(exc, self.base_url)) + " (checked before the run)") from None
        except openai.APIError:
            return
        self._learn_server(listing)

    def _learn_server(self, listing: object) -> None:
        """What a ``GET /models`` answer tells: vLLM, SGLang and llama.cpp name themselves in
        ``owned_by`` (answers are then constrained unless ``--no-constrained``), and vLLM gives
        the model's ``max_model_len``."""
        try:
            cards = [card for card in listing["data"] if isinstance(card, dict)]
        except (TypeError, KeyError):
            return
        card = next((c for c in cards if c.get("id") == self.model), cards[0] if len(cards) == 1 else None)
        if card is None:
            return
        if str(card.get("owned_by", "")).lower() in CONSTRAINING_SERVERS:
            self.constrained_default = True
        length = card.get("max_model_len")
        if isinstance(length, int) and not isinstance(length, bool) and length > 0:
            self._server_context = length

    def context_limit(self) -> int | None:
        """The server's ``max_model_len`` when its model listing gave one (vLLM), else unknown:
        ``--context-size`` sets the budget."""
        return self._server_context

    async def complete(self, messages: list[dict], params: dict, *,
                       ranking_size: int | None = None,
                       first_token_labels: list[str] | None = None) -> Completion:
        """Post one chat request with bounded, jittered retries; see :class:`OpenAICompatBackend`.

        With ``ranking_size`` the body constrains the answer to a ranking of ``1..ranking_size``
        in the fields of the servers that can: a GBNF ``grammar`` (llama.cpp), ``structured_outputs``
        with a ``regex`` (vLLM) and a top-level ``regex`` (SGLang); OpenAI's API refuses them,
        hence off by default here.
        """
        client = self._client or self._connect()
        body = {**self.extra_body, **params, "model": self.model, "messages": messages}
        if answer_start(messages) is not None:
            # The answer's start, to be continued (vLLM's and SGLang's fields; llama.cpp's
            # server continues a last assistant message by itself).
            body.update(continue_final_message=True, add_generation_prompt=False)
        if ranking_size:
            # Each server reads its own field and ignores the others': llama.cpp a GBNF
            # grammar, vLLM structured outputs, SGLang a top-level regex.
            regex = ranking_regex(ranking_size)
            body.update(grammar=ranking_grammar(ranking_size), structured_outputs={"regex": regex}, regex=regex)
        retrying = AsyncRetrying(stop=stop_after_attempt(self.max_attempts), wait=self._wait,
                                 retry=retry_if_exception(is_retryable), reraise=True)
        async with self._semaphore:
            started = time.perf_counter()  # latency starts at the first attempt, not in the queue
            try:
                async for attempt in retrying:
                    with attempt:
                        try:
                            data = await client.post("/chat/completions", body=body, cast_to=object,
                                                     options=_REQUEST_OPTIONS)
                        except (json.JSONDecodeError, UnicodeDecodeError):
                            # A 2xx "application/json" body that does not parse: a cut answer.
                            raise MalformedResponse("the answer is not valid JSON") from None
                        text, prompt_tokens, completion_tokens, finish_reason, alternatives = \
                            self._completion(data, messages)
            except Exception as exc:  # noqa: BLE001 - every failure becomes one BackendError line
                overflow = context_overflow(exc, self.base_url)
                if overflow is not None:
                    overflow.args = (self._masked(str(overflow)),)
                    raise overflow from None
                attempts = retrying.statistics.get("attempt_number", 1)
                prefix = f"gave up after {attempts} attempts: " if is_retryable(exc) else ""
                raise BackendError(self._masked(prefix + describe_error(exc, self.base_url))) from None
        return Completion(text, prompt_tokens, completion_tokens, finish_reason,
                          time.perf_counter() - started, retrying.statistics.get("attempt_number", 1),
                          alternatives)

    def _wait(self, retry_state) -> float:
        exc = retry_state.outcome.exception()
        if _LOG.isEnabledFor(logging.DEBUG):
            _LOG.debug("retrying %s after attempt %d: %s", self.base_url or "the OpenAI API",
                       retry_state.attempt_number, self._masked(describe_error(exc, self.base_url)))
        response = getattr(exc, "response", None)
        asked = retry_after_seconds(getattr(response, "headers", None))
        if asked is not None:
            return min(asked, self.backoff_max)
        return self._backoff(retry_state)

    def _completion(self, data: object, messages: list[dict]):
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish_reason = choice.get("finish_reason")
        except (TypeError, KeyError, IndexError, AttributeError):
            raise MalformedResponse("the answer is not a chat completion") from None
        alternatives = first_token_alternatives(choice.get("logprobs"))
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}  # absent, null or not an object: estimated
        prompt_tokens = _token_count(usage.get("prompt_tokens"))
        completion_tokens = _token_count(usage.get("completion_tokens"))
        if prompt_tokens is None or completion_tokens is None:
            count = self.token_counter().count
            prompt_tokens = count_message_tokens(messages, count) if prompt_tokens is None else prompt_tokens
            completion_tokens = count(text) if completion_tokens is None else completion_tokens
        return text, int(prompt_tokens), int(completion_tokens), finish_reason, alternatives

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            await self._client.close()
            self._client = None


def first_token_alternatives(logprobs: object) -> tuple[tuple[str, float], ...] | None:
    """The first generated token's ``top_logprobs`` from a chat completion's ``logprobs``.

    None when the answer carries none (not asked, or a server that does not return them).
    Entries that are not ``{"token": str, "logprob": number}`` are skipped.
    """
    try:
        entries = logprobs["content"][0]["top_logprobs"]
    except (TypeError, KeyError, IndexError):
        return None
    if not isinstance(entries, list):
        return None
    return tuple((entry["token"], float(entry["logprob"])) for entry in entries
                 if isinstance(entry, dict) and isinstance(entry.get("token"), str)
                 and isinstance(entry.get("logprob"), (int, float)) and not isinstance(entry["logprob"], bool))


# Servers whose model listing names them in ``owned_by`` and which constrain answers by the
# fields that ``complete`` sends.
CONSTRAINING_SERVERS = frozenset({"vllm", "sglang", "llamacpp"})
_CONTEXT_NUMBERS = re.compile(r"maximum context length is (\d+) tokens.*?(\d+) tokens", re.DOTALL)


def context_overflow(exc: BaseException, base_url: str | None) -> ContextOverflow | None:
    """A :class:`ContextOverflow` when ``exc`` is the server saying the prompt is too long."""
    if not isinstance(exc, openai.BadRequestError):
        return None
    message = describe_error(exc, base_url)
    code = getattr(exc, "code", None)
    if code != "context_length_exceeded" and "maximum context length" not in message:
        return None
    numbers = _CONTEXT_NUMBERS.search(message)
    limit, actual = (int(numbers.group(1)), int(numbers.group(2))) if numbers else (None, None)
    return ContextOverflow(message, limit, actual)


def describe_error(exc: BaseException, base_url: str | None) -> str:
    """One line describing a backend failure, without secrets (the API key is never in it)."""
    where = base_url or "the OpenAI API"
    if isinstance(exc, openai.APITimeoutError):
        return f"request to {where} timed out"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot connect to {where}"
    if isinstance(exc, openai.APIStatusError):
        message = exc.message
        body = exc.body
        if isinstance(body, dict):
            message = (body.get("error") or {}).get("message", message) if isinstance(body.get("error"), dict) \
                else body.get("message", message)
        return f"{where} answered HTTP {exc.status_code}: {str(message)[:300]}"
    if isinstance(exc, MalformedResponse):
        return f"{where} sent an answer that is not a chat completion"
    return f"{type(exc).__name__}: {str(exc)[:300]}"
