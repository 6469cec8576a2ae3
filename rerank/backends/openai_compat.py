"""Any OpenAI-compatible chat endpoint: OpenAI, ``vllm serve``, llama.cpp server, Ollama, SGLang.

``openai.AsyncOpenAI`` resolves the endpoint, the key and the headers, and its error classes
describe HTTP errors; its own retries are off: retries are ours (a plain loop: tenacity's
machinery cost a tenth of the CPU of a call). Requests are sent on a transport of ours
(``aiohttp`` by default, the SDK's ``httpx`` client if asked) as prepared bytes, and the answer
is read as a stream: ``chat.completions.create`` spends about 20 ms of Python per 40-message prompt
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

Hosted providers differ in what they accept (:mod:`~rerank.backends.openai_params`): a reasoning
model (by name, or ``reasoning_model``) is asked through :class:`~rerank.answers.Reasoned` and gives
no log-probabilities; a 400 refusing ``max_tokens``, a ``temperature`` or ``logprobs`` teaches the
backend to send the call again without it, and every later one. The endpoint check tells Anthropic,
Gemini and OpenRouter apart (by base URL or listing), and what their models give.
``extra_body``, ``headers`` and ``api_key_env`` carry what a provider needs besides.

This module holds the backend; the transports are :mod:`~rerank.backends.openai_aiohttp` and
:mod:`~rerank.backends.openai_http`, the reading of an answer
:mod:`~rerank.backends.openai_answers`, what a failure becomes
:mod:`~rerank.backends.openai_errors` and the endpoint's key, URLs and check
:mod:`~rerank.backends.openai_endpoint`. Their public names are importable from here too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field

import openai

from ..answers.constraints import Constraint
from ..errors import BackendError, ConfigError
from ..secrets import header_secrets, public_url, url_secrets
from ..tokens import TokenCounter, count_message_tokens, counter_for_model
from .base import Capabilities, Completion, answer_start
from .openai_answers import MAX_ANSWER_CHARS, MalformedResponse, first_token_alternatives, read_completion
from .openai_endpoint import (API_KEY_ENV, CONSTRAINING_SERVERS, PLACEHOLDER_API_KEY, ServerFacts, api_key_for,
                              endpoint_url, model_listing, provider_of, server_facts)
from .openai_errors import context_overflow, describe_error, is_retryable, retry_after_seconds
from .openai_http import (HTTP_CLIENTS, MAX_ERROR_BYTES, MAX_RESPONSE_BYTES, AttemptTimeout, CrossOriginRedirect,
                          make_transport, refuse_cross_origin_redirect)
from .openai_params import EXPLAINED, Accepted, Finding, finding, is_reasoning_model

__all__ = ["API_KEY_ENV", "CONSTRAINING_SERVERS", "HTTP_CLIENTS", "MAX_ANSWER_CHARS", "MAX_ERROR_BYTES", "MAX_RESPONSE_BYTES",
           "PLACEHOLDER_API_KEY", "AttemptTimeout", "CrossOriginRedirect", "MalformedResponse",
           "OpenAICompatBackend", "context_overflow", "describe_error", "first_token_alternatives",
           "is_retryable", "refuse_cross_origin_redirect", "retry_after_seconds"]

_LOG = logging.getLogger("rerank")


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
    api_key_env : str or None
        An environment variable holding the key (``--api-key-env``), read when neither
        ``api_key`` nor ``api_key_file`` is given; it must then be set.
    extra_body : dict
        Provider-specific fields added to every request body (``--extra-body``: OpenRouter's
        ``provider`` and ``reasoning``, Anthropic's ``thinking``, vLLM's ``top_k``); the fields
        rerank sets itself take precedence.
    headers : dict of str to str
        Extra HTTP headers of every request (``--header``: OpenRouter's ``HTTP-Referer`` and
        ``X-Title``); they override the SDK's. Never shown: values that look like secrets are
        masked in messages too.
    reasoning_model : bool or None
        Whether the model reasons out of its token limit and refuses ``max_tokens``, any
        ``temperature`` but 1 and ``logprobs`` (OpenAI's o-series and gpt-5); None: by its name
        (:func:`~rerank.backends.openai_params.is_reasoning_model`).
    http_client : str
        The transport (:data:`~rerank.backends.openai_http.HTTP_CLIENTS`): ``aiohttp`` (the
        default, about 60% of the other's CPU per call) or ``httpx`` (the SDK's default client).
        Both keep the same deadlines, size limits, redirect policy and errors.
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
    http_client: str = "aiohttp"
    api_key_env: str | None = None
    headers: dict = field(default_factory=dict, repr=False)
    reasoning_model: bool | None = None

    # llama.cpp's, vLLM's and SGLang's servers constrain answers (each by its own field);
    # OpenAI's API refuses unknown fields, so it is off unless asked for, or unless the endpoint
    # check finds one of those servers (see preflight).
    constrained_default = False
    _server_context: int | None = field(default=None, init=False, repr=False)
    _facts: ServerFacts = field(default_factory=ServerFacts, init=False, repr=False)

    def __post_init__(self):
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.max_attempts < 1:
            raise ConfigError(f"--max-attempts must be at least 1, got {self.max_attempts}")
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if self.http_client not in HTTP_CLIENTS:
            raise ConfigError(f"unknown HTTP client '{self.http_client}': choose one of {', '.join(HTTP_CLIENTS)}")
        self._where = public_url(self.base_url) if self.base_url else "the OpenAI API"
        if self.reasoning_model is None:
            self.reasoning_model = is_reasoning_model(self.model)
        #: What the server accepts, as its refusals taught (kept for the whole run).
        self._accepted = Accepted(self.reasoning_model)
        self._disconnect()
        self._counter = None

    def _disconnect(self) -> None:
        """Forget the client and what was worked out with it (made again on next use)."""
        self._client = self._transport = self._semaphore = self._loop = None
        self._chat_url = self._models_url = None
        self._headers: dict[str, str] = {}
        self._secrets: list[str] = []

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_client=None, _transport=None, _semaphore=None, _loop=None, _counter=None, _chat_url=None,
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
                   backoff_initial=config.backoff_initial, extra_body=dict(config.extra_body),
                   api_key_env=config.api_key_env, headers=dict(config.headers),
                   reasoning_model=config.reasoning_model)

    def _connect(self):
        # Created on first use, inside the running event loop that will use it; a client of
        # another loop (the caller's, before a synchronous call) is let go first.
        self._let_go()
        self._loop = asyncio.get_running_loop()
        api_key = api_key_for(self.api_key, self.api_key_file, self.base_url, self.api_key_env)
        self._transport = make_transport(self.http_client, self.timeout)
        # The SDK's client is kept for its settings and errors; on aiohttp its own httpx client
        # stays idle (closed with it).
        self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key, max_retries=0, timeout=self.timeout,
                                          http_client=getattr(self._transport, "http", None))
        # What the SDK would send, worked out once: its headers (key included) and URLs.
        headers = {**self._client.default_headers, **self._client.auth_headers, **self.headers}
        self._headers = {name: value for name, value in headers.items() if isinstance(value, str)}
        base = self._client.base_url
        self._chat_url = self._transport.url(endpoint_url(base, b"/chat/completions"))
        self._models_url = self._transport.url(endpoint_url(base, b"/models"))
        self._secrets = sorted(set(url_secrets(self.base_url) + url_secrets(str(base)) + header_secrets(self.headers)),
                               key=len, reverse=True)
        self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._client

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
        if self._client is None or self._loop is not asyncio.get_running_loop():
            self._connect()
        # Anthropic's model listing may want its key in its own header: a refusal there is no verdict.
        listing = await model_listing(self._transport, self._models_url, self._headers, timeout,
                                      lambda exc: self._masked(describe_error(exc, self.base_url)),
                                      key_checked=provider_of(self.base_url) != "anthropic")
        self._facts = facts = server_facts(listing, self.model, self.base_url)
        if facts.constrains:
            self.constrained_default = True
        if facts.context is not None:
            self._server_context = facts.context
        if facts.logprobs is False:
            self._accepted.learn(Finding.NO_LOGPROBS)

    def context_limit(self) -> int | None:
        """The server's ``max_model_len`` when its model listing gave one (vLLM), else unknown:
        ``--context-size`` sets the budget."""
        return self._server_context

    async def prepare(self) -> Capabilities:
        """The endpoint check (:meth:`preflight`), then what the server can do: constrain (on by
        default for servers that list themselves as vLLM, SGLang or llama.cpp), first-token
        log-probabilities (not from Anthropic, Gemini, OpenAI's reasoning models, nor an
        OpenRouter model whose listing lacks ``logprobs``), its context when it lists one,
        reasoning fields."""
        await self.preflight()
        return Capabilities(constrain=True, constrain_by_default=self.constrained_default,
                            logprobs=Finding.NO_LOGPROBS not in self._accepted,
                            context=self._server_context, reasoning=True)

    async def complete(self, messages: list[dict], params: dict, *,
                       constraint: Constraint | None = None,
                       first_token_labels: list[str] | None = None) -> Completion:
        """Post one chat request with bounded, jittered retries; see :class:`OpenAICompatBackend`.

        With a ``constraint`` the body holds the answer to its ranking format in the fields of
        the servers that can: a GBNF ``grammar`` (llama.cpp), ``structured_outputs``
        with a ``regex`` (vLLM) and a top-level ``regex`` (SGLang); OpenAI's API refuses them,
        hence off by default here.

        A 400 refusing ``max_tokens``, a ``temperature`` or ``logprobs`` is learnt (for this call
        and every later one) and the request sent again at once without it; a call that needs
        first-token log-probabilities (``first_token_labels``) from a server without them fails
        with one line saying so, without being sent.
        """
        if self._client is None or self._loop is not asyncio.get_running_loop():
            self._connect()
        needs_logprobs = first_token_labels is not None
        if needs_logprobs and Finding.NO_LOGPROBS in self._accepted:
            raise self._no_logprobs()
        content, sent = self._content(messages, params, constraint, needs_logprobs)
        async with self._semaphore:
            started = time.perf_counter()  # latency starts at the first attempt, not in the queue
            attempts = 1
            while True:
                try:
                    fields = await self._attempt(content)
                    break
                except Exception as exc:  # noqa: BLE001 - every failure becomes one BackendError line
                    learnt = self._learn(exc, sent)
                    if learnt is Finding.NO_LOGPROBS and needs_logprobs:
                        raise self._no_logprobs() from None
                    if learnt is not None:
                        # Sent again at once without what the server refused (not a failed attempt).
                        content, sent = self._content(messages, params, constraint, needs_logprobs)
                        continue
                    if attempts >= self.max_attempts or not is_retryable(exc):
                        raise self._failure(exc, attempts) from None
                    await asyncio.sleep(self._wait(exc, attempts))
                    attempts += 1
            latency = time.perf_counter() - started
        if fields[1] is None or fields[2] is None:
            # Counting may take a while (a long answer without usage, a long prompt): in a thread,
            # while the other calls go on.
            return await asyncio.to_thread(self.completion, fields, messages, latency, attempts)
        return self.completion(fields, messages, latency, attempts)

    def _content(self, messages: list[dict], params: dict, constraint: Constraint | None,
                 needs_logprobs: bool) -> tuple[bytes, frozenset]:
        """The request's body as sent (:meth:`request_body`), and the findings it allows for."""
        sent = self._accepted.findings()
        body = self.request_body(messages, params, constraint, needs_logprobs)
        return json.dumps(body, separators=(",", ":")).encode("ascii"), sent

    def _learn(self, exc: Exception, sent: frozenset) -> Finding | None:
        """What a refused request teaches (:func:`~rerank.backends.openai_params.finding`), when
        the body refused (which allowed for ``sent``) did not already allow for it; else None."""
        if not isinstance(exc, openai.BadRequestError):
            return None
        response = getattr(exc, "response", None)
        text = response.text if response is not None else str(exc)
        found = finding(exc.status_code, text)
        if found is None or found in sent:
            return None  # refused although allowed for: a failure like any other
        if self._accepted.learn(found):
            refused, remedy = EXPLAINED[found]
            _LOG.warning("rerank: %s refused %s for %s: %s from now on", self._where, refused, self.model, remedy)
        return found

    def _no_logprobs(self) -> BackendError:
        """The failure of a call that needs first-token log-probabilities from a server without them."""
        return BackendError(f"{self._where} gives no log-probabilities for {self.model}: single-token ranking "
                            "and setwise's likelihood scoring need them; choose a strategy that reads the "
                            "answer's text (sliding, full, setwise --scoring generation, ...)")

    def request_body(self, messages: list[dict], params: dict, constraint: Constraint | None = None,
                     needs_logprobs: bool = False) -> dict:
        """The JSON body of one chat request, as :meth:`complete` posts it (and a batch file's
        line holds it, :mod:`rerank.batch`).

        Parameters
        ----------
        messages : list of dict
            The chat messages; a last ``assistant`` message is the answer's start, to be continued.
        params : dict
            The call's parameters (temperature, max_tokens, ...), sent as the server accepts
            them (:meth:`~rerank.backends.openai_params.Accepted.adapt`: ``max_completion_tokens``
            instead of ``max_tokens``, no ``temperature``, no ``logprobs``, as its refusals taught).
        constraint : Constraint or None
            Holds the answer to its ranking format, in each constraining server's field.
        needs_logprobs : bool
            Whether the call is useless without log-probabilities (they are then always asked).

        Returns
        -------
        dict
            ``extra_body``, ``params``, the model and the messages, and the fields of an answer's
            start and of a constraint.
        """
        params = self._accepted.adapt(params, needs_logprobs)
        body = {**self.extra_body, **params, "model": self.model, "messages": messages}
        if answer_start(messages) is not None:
            # The answer's start, to be continued (vLLM's and SGLang's fields; llama.cpp's
            # server continues a last assistant message by itself).
            body.update(continue_final_message=True, add_generation_prompt=False)
        if constraint is not None:
            # Each server reads its own field and ignores the others': llama.cpp a GBNF
            # grammar, vLLM structured outputs, SGLang a top-level regex.
            regex = constraint.regex()
            body.update(grammar=constraint.grammar(), structured_outputs={"regex": regex}, regex=regex)
        return body

    def completion(self, fields: tuple, messages: list[dict], latency: float = 0.0, attempts: int = 1) -> Completion:
        """The :class:`Completion` of an answer's fields, as :meth:`complete` returns it (and a
        batch driver reads a batch's output line, :mod:`rerank.batch`).

        Parameters
        ----------
        fields : tuple
            :func:`~rerank.backends.openai_answers.read_completion`'s fields of the answer.
        messages : list of dict
            The request's messages: usage the server did not report is counted from them.
        latency : float
            Seconds from the first attempt to the answer.
        attempts : int
            Attempts made.

        Returns
        -------
        Completion
        """
        text, prompt_tokens, completion_tokens, finish_reason, alternatives, reasoning, reasoning_tokens = fields
        if prompt_tokens is None or completion_tokens is None:
            prompt_tokens, completion_tokens = self._estimate_usage(messages, text, prompt_tokens, completion_tokens)
        return Completion(text, prompt_tokens, completion_tokens, finish_reason, latency, attempts, alternatives,
                          reasoning, reasoning_tokens)

    async def _attempt(self, content: bytes) -> tuple:
        """One attempt: post ``content``, read the answer's fields (:func:`read_completion`)."""
        raw = await self._transport.fetch("POST", self._chat_url, self._headers, self.timeout, content)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError included
            # A 2xx body that does not parse: an HTML page, a cut answer.
            raise MalformedResponse("it is not valid JSON") from None
        return read_completion(data)

    def _failure(self, exc: Exception, attempts: int) -> BackendError:
        """The one-line :class:`BackendError` (or :class:`ContextOverflow`) a failure becomes."""
        overflow = context_overflow(exc, self.base_url)
        if overflow is not None:
            overflow.args = (self._masked(str(overflow)),)
            return overflow
        prefix = f"gave up after {attempts} attempts: " if is_retryable(exc) else ""
        return BackendError(self._masked(prefix + describe_error(exc, self.base_url)))

    def _wait(self, exc: Exception, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (another follows): the server's
        ``Retry-After``, else exponential backoff with full jitter, capped at ``backoff_max``."""
        if _LOG.isEnabledFor(logging.DEBUG):
            _LOG.debug("retrying %s after attempt %d: %s", self._where, attempt,
                       self._masked(describe_error(exc, self.base_url)))
        response = getattr(exc, "response", None)
        asked = retry_after_seconds(getattr(response, "headers", None))
        if asked is not None:
            return min(asked, self.backoff_max)
        return random.uniform(0.0, min(self.backoff_initial * 2.0 ** min(attempt - 1, 64), self.backoff_max))

    def _estimate_usage(self, messages: list[dict], text: str, prompt_tokens: int | None,
                        completion_tokens: int | None) -> tuple[int, int]:
        """Usage counts the server did not give, counted with :meth:`token_counter` (in a thread)."""
        count = self.token_counter().count
        if prompt_tokens is None:
            prompt_tokens = count_message_tokens(messages, count)
        if completion_tokens is None:
            completion_tokens = count(text)
        return int(prompt_tokens), int(completion_tokens)

    def _let_go(self) -> None:
        """Forget the client made on another event loop, closed there when that loop is open."""
        if self._client is None:
            return
        loop, transport, client = self._loop, self._transport, self._client
        self._disconnect()
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: loop.create_task(_close(transport, client)))

    async def release_loop(self) -> None:
        """Close the connections of the running event loop (made again on the next call, in
        whichever loop it runs); what the endpoint check found is kept."""
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self.aclose()
        else:
            self._let_go()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            await self._transport.aclose()
            await self._client.close()
            self._disconnect()


async def _close(transport, client) -> None:
    """Close a transport and the SDK's client (on the loop they were made on)."""
    await transport.aclose()
    await client.close()
