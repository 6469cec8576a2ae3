"""Any OpenAI-compatible chat endpoint: OpenAI, ``vllm serve``, llama.cpp server, Ollama, SGLang.

``openai.AsyncOpenAI`` resolves the endpoint, the key and the headers, and its error classes
describe HTTP errors; its own retries are off: retries are ours, with tenacity. Requests are sent
on the client's HTTP client (an ``httpx`` client we build) as prepared bytes, and the answer is
read as a stream: ``chat.completions.create`` spends about 20 ms of Python per 40-message prompt
transforming its arguments and building pydantic models, ten times the framework's whole budget
per call, and the SDK's ``post`` reads any body whole, however large.

Hostile servers are bounded:

* every attempt (connect, headers and body) has a deadline of ``timeout`` seconds, however slowly
  the bytes come, and ends as a retryable timeout;
* a body over :data:`MAX_RESPONSE_BYTES` is refused while it is read (no more is read), an answer
  text over :data:`MAX_ANSWER_CHARS` too, and an answer whose fields have the wrong types; each
  is a :class:`MalformedResponse` (retried);
* a redirect to another origin (scheme, host or port) is not followed, so a prompt never goes to
  a host it was not sent to; a same-origin redirect is;
* a base URL's credentials (``user:pass@``, a query string) never appear in a message, a log line
  or a repr (:func:`rerank.secrets.public_url`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.utils
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field

import anyio
import openai
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

try:  # the HTTP library of the installed SDK: httpx2 (openai >= 3), httpx before
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx

from ..constraints import ranking_grammar, ranking_regex
from ..errors import BackendError, ConfigError, ContextOverflow
from ..secrets import public_url, url_secrets
from ..tokens import TokenCounter, count_message_tokens, counter_for_model
from .base import Completion, answer_start

API_KEY_ENV = "OPENAI_API_KEY"
_LOG = logging.getLogger("rerank")
# Local servers ignore the key, but the SDK refuses to start without one.
PLACEHOLDER_API_KEY = "EMPTY"
#: The most bytes of a response body that are read: a larger answer is refused as malformed,
#: and reading stops there (a 50 MB answer costs neither its size in memory nor its parsing).
MAX_RESPONSE_BYTES = 8 << 20
#: The most characters of an answer's text; a longer one is refused as malformed.
MAX_ANSWER_CHARS = 1 << 20
#: The most bytes of an error response (4xx, 5xx) that are read, for its message.
MAX_ERROR_BYTES = 64 << 10
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Headers of a streamed body that no longer hold for the bytes read from it.
_BODY_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


if sys.version_info >= (3, 11):
    async def _within(seconds: float, awaitable):
        """``await awaitable``, cancelled after ``seconds``: raises :class:`TimeoutError` then."""
        async with asyncio.timeout(seconds):
            return await awaitable
else:  # pragma: no cover - Python 3.10
    async def _within(seconds: float, awaitable):
        """``await awaitable``, cancelled after ``seconds``: raises :class:`asyncio.TimeoutError` then."""
        return await asyncio.wait_for(awaitable, seconds)


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
    """Rate limits, timeouts, connection errors, 5xx and malformed answers are retried; other 4xx
    and redirects to another origin never."""
    if isinstance(exc, (openai.APIConnectionError, MalformedResponse)):
        return True  # APITimeoutError and AttemptTimeout are subclasses
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 429) or exc.status_code >= 500
    return False


def _token_count(value) -> int | None:
    """A usage number; None (to be estimated) unless it is a non-negative int."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class MalformedResponse(Exception):
    """A 2xx answer that is not a chat completion (a proxy's HTML page, a truncated body, a
    field of the wrong type, a body or text over the size limits); its message says why."""


class AttemptTimeout(openai.APITimeoutError):
    """An attempt that did not end within its deadline (connect, headers and body together).

    Attributes
    ----------
    seconds : float
        The deadline that passed.
    """

    def __init__(self, request, seconds: float):
        super().__init__(request=request)
        self.seconds = seconds


class CrossOriginRedirect(Exception):
    """A server redirected a request to another origin; the redirect was not followed.

    Attributes
    ----------
    origin : str
        ``scheme://host[:port]`` of the redirect's target, without credentials.
    """

    def __init__(self, origin: str):
        super().__init__(f"redirect to another origin ({origin}) not followed")
        self.origin = origin


def _origin(url) -> tuple[str, str, int | None]:
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme)


async def refuse_cross_origin_redirect(response) -> None:
    """An ``httpx`` response hook: raises :class:`CrossOriginRedirect` on a redirect whose
    ``Location`` has another scheme, host or port than the request (a relative one never has)."""
    if not response.has_redirect_location:
        return
    request_url = response.request.url
    try:
        target = request_url.join(response.headers["location"])
    except Exception:  # noqa: BLE001 - an unreadable Location: httpx refuses it itself
        return
    if target.host and _origin(target) != _origin(request_url):
        host = f"[{target.host}]" if ":" in target.host else target.host
        port = f":{target.port}" if target.port else ""
        raise CrossOriginRedirect(public_url(f"{target.scheme}://{host}{port}"))


@dataclass
class OpenAICompatBackend:
    """Async client for an OpenAI-compatible ``/chat/completions`` endpoint.

    Parameters
    ----------
    model : str
        Model name sent to the server.
    base_url : str or None
        Endpoint, e.g. ``http://127.0.0.1:8000/v1``; None means OpenAI's API. Shown (in errors,
        logs and the repr) without its credentials: ``scheme://host[:port]/path`` only.
    api_key : str or None
        Defaults to the contents of ``api_key_file``, else ``$OPENAI_API_KEY``; any value works
        for a local server. Never printed: error messages have it masked even when a server
        echoes it.
    api_key_file : str or None
        A file holding the key (its path, unlike the key, may appear in configs).
    concurrency : int
        Most calls in flight at once.
    timeout : float
        Seconds per attempt: a deadline for connecting, the headers and the whole body together,
        however slowly a server sends them.
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
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        self._backoff = wait_random_exponential(multiplier=self.backoff_initial, max=self.backoff_max)
        self._where = public_url(self.base_url) if self.base_url else "the OpenAI API"
        self._disconnect()
        self._counter = None

    def _disconnect(self) -> None:
        """Forget the client and what was worked out with it (made again on next use)."""
        self._client = self._http = self._semaphore = None
        self._chat_url = self._models_url = None
        self._headers: dict[str, str] = {}
        self._secrets: list[str] = []

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_client=None, _http=None, _semaphore=None, _counter=None, _chat_url=None,
                     _models_url=None, _headers={}, _secrets=[])
        return state

    def __repr__(self) -> str:
        shown = []
        for item in dataclasses.fields(self):
            if item.repr:
                value = getattr(self, item.name)
                if item.name == "base_url" and value is not None:
                    value = public_url(value)  # never its user, password or query string
                shown.append(f"{item.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

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
        # Redirects to the same origin are followed; to another origin the hook refuses them.
        self._http = openai.DefaultAsyncHttpxClient(
            timeout=self.timeout, event_hooks={"response": [refuse_cross_origin_redirect]})
        self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key, max_retries=0,
                                          timeout=self.timeout, http_client=self._http)
        # What the SDK would send, worked out once: its headers (key included) and URLs.
        headers = {**self._client.default_headers, **self._client.auth_headers}
        self._headers = {name: value for name, value in headers.items() if isinstance(value, str)}
        base = self._client.base_url
        path, mark, query = base.raw_path.partition(b"?")
        self._chat_url = base.copy_with(raw_path=path.rstrip(b"/") + b"/chat/completions" + mark + query)
        self._models_url = base.copy_with(raw_path=path.rstrip(b"/") + b"/models" + mark + query)
        self._secrets = sorted(set(url_secrets(self.base_url) + url_secrets(str(base))), key=len, reverse=True)
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
        """``message`` with the API key and the base URL's credentials replaced, should a
        server have echoed them."""
        key = self._client.api_key if self._client is not None else None
        if key and key != PLACEHOLDER_API_KEY and len(key) >= 4:
            message = message.replace(key, "***")
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    def token_counter(self) -> TokenCounter:
        """tiktoken's encoding for OpenAI models, cl100k_base for others (an approximation)."""
        if self._counter is None:
            self._counter = counter_for_model(self.model)
        return self._counter

    async def preflight(self, timeout: float = 5.0) -> None:
        """Fail within seconds, with one clear line, when the endpoint is down or refuses the key.

        Asks ``GET /models`` once, without retries, within ``timeout`` seconds all told (a server
        that never answers, or drips its answer, fails the check); any other answer (a server
        without that route included) lets the run go on.
        """
        if self._client is None:
            self._connect()
        request = httpx.Request("GET", self._models_url, headers=self._headers)
        try:
            raw = await self._fetch(request, timeout)
        except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError,
                CrossOriginRedirect) as exc:
            raise BackendError(self._masked(describe_error(exc, self.base_url)) + " (checked before the run)") from None
        except (openai.APIError, MalformedResponse):
            return
        try:
            listing = json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError included
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
        if self._client is None:
            self._connect()
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
        content = json.dumps(body, separators=(",", ":")).encode("ascii")
        retrying = AsyncRetrying(stop=stop_after_attempt(self.max_attempts), wait=self._wait,
                                 retry=retry_if_exception(is_retryable), reraise=True)
        async with self._semaphore:
            started = time.perf_counter()  # latency starts at the first attempt, not in the queue
            try:
                async for attempt in retrying:
                    with attempt:
                        raw = await self._fetch(httpx.Request("POST", self._chat_url, headers=self._headers,
                                                              content=content), self.timeout)
                        try:
                            data = json.loads(raw)
                        except (ValueError, RecursionError):  # UnicodeDecodeError included
                            # A 2xx body that does not parse: an HTML page, a cut answer.
                            raise MalformedResponse("it is not valid JSON") from None
                        text, prompt_tokens, completion_tokens, finish_reason, alternatives = \
                            _completion(data)
            except Exception as exc:  # noqa: BLE001 - every failure becomes one BackendError line
                raise self._failure(exc, retrying) from None
            latency = time.perf_counter() - started
        if prompt_tokens is None or completion_tokens is None:
            # Counting may take a while (a long answer without usage, a long prompt): in a thread,
            # while the other calls go on.
            prompt_tokens, completion_tokens = await asyncio.to_thread(
                self._estimate_usage, messages, text, prompt_tokens, completion_tokens)
        return Completion(text, prompt_tokens, completion_tokens, finish_reason, latency,
                          retrying.statistics.get("attempt_number", 1), alternatives)

    async def _fetch(self, request, seconds: float) -> bytes:
        """Send ``request`` and read its 2xx body, all within ``seconds``.

        Raises the SDK's error classes (:class:`openai.APIStatusError` subclasses for 4xx and 5xx,
        :class:`openai.APIConnectionError`), :class:`AttemptTimeout` when the deadline passes,
        :class:`MalformedResponse` for a body over :data:`MAX_RESPONSE_BYTES` and
        :class:`CrossOriginRedirect`.
        """
        try:
            return await _within(seconds, self._send(request))
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise AttemptTimeout(request, seconds) from None
        except (httpx.RequestError, OSError, anyio.EndOfStream, anyio.BrokenResourceError):
            raise openai.APIConnectionError(request=request) from None

    async def _send(self, request) -> bytes:
        response = await self._http.send(request, stream=True)
        try:
            if response.status_code >= 400:
                content = await _read(response, MAX_ERROR_BYTES, cut=True)
                raise _status_error(response, content)
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
                raise MalformedResponse(f"its body of {int(length)} bytes is over the limit of "
                                        f"{_size(MAX_RESPONSE_BYTES)}")
            return await _read(response, MAX_RESPONSE_BYTES)
        finally:
            await response.aclose()

    def _failure(self, exc: Exception, retrying) -> BackendError:
        """The one-line :class:`BackendError` (or :class:`ContextOverflow`) a failure becomes."""
        overflow = context_overflow(exc, self.base_url)
        if overflow is not None:
            overflow.args = (self._masked(str(overflow)),)
            return overflow
        attempts = retrying.statistics.get("attempt_number", 1)
        prefix = f"gave up after {attempts} attempts: " if is_retryable(exc) else ""
        return BackendError(self._masked(prefix + describe_error(exc, self.base_url)))

    def _wait(self, retry_state) -> float:
        exc = retry_state.outcome.exception()
        # tenacity asks for the wait before it checks the stop: no retry follows the last attempt.
        if _LOG.isEnabledFor(logging.DEBUG) and retry_state.attempt_number < self.max_attempts:
            _LOG.debug("retrying %s after attempt %d: %s", self._where,
                       retry_state.attempt_number, self._masked(describe_error(exc, self.base_url)))
        response = getattr(exc, "response", None)
        asked = retry_after_seconds(getattr(response, "headers", None))
        if asked is not None:
            return min(asked, self.backoff_max)
        return self._backoff(retry_state)

    def _estimate_usage(self, messages: list[dict], text: str, prompt_tokens: int | None,
                        completion_tokens: int | None) -> tuple[int, int]:
        """Usage counts the server did not give, counted with :meth:`token_counter` (in a thread)."""
        count = self.token_counter().count
        if prompt_tokens is None:
            prompt_tokens = count_message_tokens(messages, count)
        if completion_tokens is None:
            completion_tokens = count(text)
        return int(prompt_tokens), int(completion_tokens)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            await self._client.close()
            self._disconnect()


async def _read(response, limit: int, cut: bool = False) -> bytes:
    """The decoded body of a streamed ``response``, read until it ends or passes ``limit`` bytes
    (no further): past the limit, its first ``limit`` bytes with ``cut``, else
    :class:`MalformedResponse`."""
    chunks = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            if cut:
                chunks.append(chunk[:len(chunk) - (size - limit)])
                break
            raise MalformedResponse(f"its body is over the limit of {_size(limit)}")
        chunks.append(chunk)
    return b"".join(chunks)


def _size(size: int) -> str:
    """``8 MiB``, ``64 KiB`` or ``1000 bytes``."""
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


_STATUS_ERRORS = {400: openai.BadRequestError, 401: openai.AuthenticationError,
                  403: openai.PermissionDeniedError, 404: openai.NotFoundError,
                  409: openai.ConflictError, 422: openai.UnprocessableEntityError,
                  429: openai.RateLimitError}


def _status_error(response, content: bytes) -> openai.APIStatusError:
    """The SDK's error for a 4xx or 5xx ``response`` whose (possibly cut) body is ``content``,
    built as the SDK builds it (``BadRequestError`` for 400, ..., ``InternalServerError`` for 5xx)."""
    headers = response.headers.copy()
    for name in _BODY_HEADERS:
        headers.pop(name, None)
    response = httpx.Response(response.status_code, headers=headers, content=content,
                              request=response.request)
    text = content.decode("utf-8", errors="replace").strip()
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        body = text
    error = body.get("error", body) if isinstance(body, dict) else body
    message = f"Error code: {response.status_code}"
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        message += f" - {error['message']}"
    status = response.status_code
    kind = _STATUS_ERRORS.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return kind(message, response=response, body=error)


def _completion(data: object) -> tuple[str, int | None, int | None, str | None,
                                        tuple[tuple[str, float], ...] | None]:
    """``(text, prompt_tokens, completion_tokens, finish_reason, top_logprobs)`` of a chat
    completion, each checked: :class:`MalformedResponse` when a field has the wrong type or the
    text is over :data:`MAX_ANSWER_CHARS`. A usage count that is not a non-negative int is None
    (to be estimated), as is a missing one."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (TypeError, KeyError, IndexError):
        raise MalformedResponse("it has no choices[0].message") from None
    if not isinstance(choice, dict) or not isinstance(message, dict):
        raise MalformedResponse("its choices[0].message is not an object")
    text = message.get("content")
    if text is None:
        text = ""
    elif not isinstance(text, str):
        raise MalformedResponse(f"its content is {_json_kind(text)}, not a string or null")
    if len(text) > MAX_ANSWER_CHARS:
        raise MalformedResponse(f"its content of {len(text)} characters is over the limit of "
                                f"{MAX_ANSWER_CHARS}")
    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise MalformedResponse(f"its finish_reason is {_json_kind(finish_reason)}, not a string or null")
    alternatives = first_token_alternatives(choice.get("logprobs"))
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}  # absent, null or not an object: estimated
    return (text, _token_count(usage.get("prompt_tokens")), _token_count(usage.get("completion_tokens")),
            finish_reason, alternatives)


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def first_token_alternatives(logprobs: object) -> tuple[tuple[str, float], ...] | None:
    """The first generated token's ``top_logprobs`` from a chat completion's ``logprobs``.

    None when the answer carries none (``logprobs`` or its ``content`` null or absent, an empty
    ``content``, a first token without ``top_logprobs``: not asked, or a server that does not
    return them).

    Raises
    ------
    MalformedResponse
        When they are there but not ``{"content": [{"top_logprobs": [{"token": str,
        "logprob": number}, ...]}, ...]}``, a logprob being a number that is neither NaN nor
        positive infinity.
    """
    if logprobs is None:
        return None
    if not isinstance(logprobs, dict):
        raise MalformedResponse(f"its logprobs is {_json_kind(logprobs)}, not an object")
    content = logprobs.get("content")
    if content is None or content == []:
        return None
    if not isinstance(content, list) or not isinstance(content[0], dict):
        raise MalformedResponse("its logprobs.content is not a list of objects")
    entries = content[0].get("top_logprobs")
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise MalformedResponse(f"its top_logprobs is {_json_kind(entries)}, not a list")
    alternatives = []
    for entry in entries:
        token = entry.get("token") if isinstance(entry, dict) else None
        logprob = entry.get("logprob") if isinstance(entry, dict) else None
        if (not isinstance(token, str) or isinstance(logprob, bool) or not isinstance(logprob, (int, float))
                or math.isnan(logprob) or logprob == math.inf):
            raise MalformedResponse("its top_logprobs has an entry that is not "
                                    "{\"token\": string, \"logprob\": number}")
        alternatives.append((token, float(logprob)))
    return tuple(alternatives)


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
    """One line describing a backend failure, without secrets: the URL is shown by
    :func:`~rerank.secrets.public_url` (the API key is never in it; see also ``_masked``)."""
    where = public_url(base_url) if base_url else "the OpenAI API"
    if isinstance(exc, openai.APITimeoutError):
        seconds = getattr(exc, "seconds", None)
        return f"request to {where} timed out" + (f" after {seconds:g} s" if seconds is not None else "")
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot connect to {where}"
    if isinstance(exc, openai.APIStatusError):
        message = exc.message
        body = exc.body
        if isinstance(body, dict):
            message = (body.get("error") or {}).get("message", message) if isinstance(body.get("error"), dict) \
                else body.get("message", message)
        return f"{where} answered HTTP {exc.status_code}: {_one_line(message)}"
    if isinstance(exc, CrossOriginRedirect):
        return (f"{where} redirected the request to another origin ({exc.origin}); the redirect was "
                "not followed, so the request was not sent there")
    if isinstance(exc, MalformedResponse):
        reason = _one_line(exc)
        return f"{where} sent an answer that is not a chat completion" + (f": {reason}" if reason else "")
    return f"{type(exc).__name__}: {_one_line(exc)}"


def _one_line(message: object) -> str:
    """``message`` on one line of at most 300 characters."""
    return " ".join(str(message).split())[:300]
