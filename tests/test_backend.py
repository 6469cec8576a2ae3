"""Tests of the OpenAI-compatible backend against real HTTP servers on 127.0.0.1.

Two kinds of server: the full fake LLM of ``tests/llm_server.py`` (with fault injection), and
tiny scripted ``http.server`` servers defined here that answer a fixed sequence of responses
(a 400, a 429 with ``Retry-After``, an HTML page, ...) and record what they received.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import math
import pickle
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

from rerank.answers import Constraint
from rerank.backends.base import Completion
from rerank.backends.openai_compat import (API_KEY_ENV, MAX_RESPONSE_BYTES, PLACEHOLDER_API_KEY,
                                           AttemptTimeout, CrossOriginRedirect, MalformedResponse,
                                           OpenAICompatBackend, first_token_alternatives,
                                           is_retryable, retry_after_seconds)
from rerank.backends.openai_http import httpx as httpx2  # the installed SDK's: httpx2, or httpx before openai 3
from rerank.errors import ConfigError
from rerank.secrets import public_url, url_secrets
from rerank.tokens import count_message_tokens, counter_for_model

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend_calls import MESSAGES, PARAMS, backend_for, failing_call, one_call  # noqa: E402
from llm_server import start_server  # noqa: E402

SECRET = "sk-SECRET-123"


def completion_body(content: str = "[2] > [1]", *, usage: bool = True) -> dict:
    body = {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    return body


def json_response(status: int, payload, headers: dict | None = None) -> tuple:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


OK = json_response(200, completion_body())


def error_response(status: int, message: str = "bad thing", headers: dict | None = None) -> tuple:
    return json_response(status, {"error": {"message": message, "type": "invalid_request_error",
                                            "param": None, "code": None}}, headers)


class ScriptedServer:
    """Answers POSTs with ``responses`` in turn (the last one repeats); records what came in.

    Each response is ``(status, headers, body_bytes)``.
    """

    def __init__(self, responses: list[tuple]):
        self.responses = list(responses)
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer._lock:
                    index = min(len(outer.requests), len(outer.responses) - 1)
                    outer.requests.append({"path": self.path,
                                           "headers": {k.lower(): v for k, v in self.headers.items()},
                                           "body": body, "time": time.perf_counter()})
                    status, headers, data = outer.responses[index]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def free_port() -> int:
    """A port on which nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# Against the fake LLM server
# ------------------------------------------------------------------------------------------------

async def test_clean_call_matches_server_accounting():
    with start_server("identity") as server:
        completion = await one_call(backend_for(server.base_url))
        stats = server.stats()
        log = server.log()
    assert isinstance(completion, Completion)
    assert completion.text == "[1] > [2] > [3]"
    assert completion.prompt_tokens == stats["prompt_tokens"] > 0
    assert completion.completion_tokens == stats["completion_tokens"] > 0
    assert completion.finish_reason == "stop"
    assert completion.attempts == 1
    assert completion.latency > 0
    assert stats["requests"] == stats["completions"] == 1
    assert log[0]["model"] == "test-judge" and log[0]["messages"] == MESSAGES


async def test_finish_reason_length_and_extra_body_are_passed_through():
    with ScriptedServer([OK]) as server:
        await one_call(backend_for(server.base_url, extra_body={"top_k": 1, "temperature": 1.0}))
        sent = json.loads(server.requests[0]["body"])
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert sent["top_k"] == 1
    assert sent["temperature"] == 0.0          # params win over extra_body
    assert sent["model"] == "test-judge" and sent["messages"] == MESSAGES
    with start_server("identity") as server:
        backend = backend_for(server.base_url)
        try:
            completion = await backend.complete(MESSAGES, {"max_tokens": 2})
        finally:
            await backend.aclose()
    assert completion.finish_reason == "length"
    assert completion.completion_tokens == 2


async def test_injected_failures_are_retried_and_counted():
    with start_server("identity", fail_rate=0.3, seed=7) as server:
        backend = backend_for(server.base_url, max_attempts=15, backoff_initial=0.01, concurrency=16)
        try:
            results = await asyncio.gather(*(backend.complete(MESSAGES, PARAMS) for _ in range(100)))
        finally:
            await backend.aclose()
        stats = server.stats()
    assert all(r.text == "[1] > [2] > [3]" for r in results)
    assert stats["completions"] == 100
    assert stats["failures"] > 10                       # the faults really happened
    assert all(count > 0 for count in stats["failures_by_kind"].values())
    assert sum(r.attempts - 1 for r in results) == stats["failures"]
    assert stats["requests"] == sum(r.attempts for r in results)


async def test_always_failing_server_gives_up_after_max_attempts():
    with start_server("identity", fail_rate=1.0, seed=1) as server:
        error = await failing_call(backend_for(server.base_url, max_attempts=4))
        stats = server.stats()
    assert stats["requests"] == 4
    assert stats["completions"] == 0
    assert str(error).startswith("gave up after 4 attempts")


async def test_concurrency_limit():
    with start_server("identity", delay=0.2) as server:
        backend = backend_for(server.base_url, concurrency=4)
        started = time.perf_counter()
        try:
            results = await asyncio.gather(*(backend.complete(MESSAGES, PARAMS) for _ in range(16)))
        finally:
            await backend.aclose()
        elapsed = time.perf_counter() - started
        stats = server.stats()
    assert len(results) == 16 and stats["completions"] == 16
    assert stats["max_in_flight"] <= 4
    assert stats["max_in_flight"] == 4                  # the limit is also reached
    assert elapsed >= 0.8 - 0.05
    # latency counts from the first attempt: time queued behind the semaphore is not in it
    assert all(0.19 <= r.latency < 0.6 for r in results)


# ------------------------------------------------------------------------------------------------
# Against scripted servers
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(status):
    with ScriptedServer([error_response(status)]) as server:
        error = await failing_call(backend_for(server.base_url, max_attempts=5))
        assert server.count == 1
    message = str(error)
    assert f"HTTP {status}" in message
    assert "bad thing" in message
    assert not message.startswith("gave up")
    assert server.base_url in message


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_retryable_statuses_are_retried(status):
    with ScriptedServer([error_response(status, "try later"), OK]) as server:
        completion = await one_call(backend_for(server.base_url, max_attempts=3))
        assert server.count == 2
    assert completion.attempts == 2
    assert completion.text == "[2] > [1]"


async def test_status_error_message_when_retries_run_out():
    with ScriptedServer([error_response(503, "overloaded")]) as server:
        error = await failing_call(backend_for(server.base_url, max_attempts=3))
        assert server.count == 3
    message = str(error)
    assert message.startswith("gave up after 3 attempts")
    assert "HTTP 503" in message and "overloaded" in message


async def test_retry_after_ms_is_honoured():
    responses = [error_response(429, "slow down", {"retry-after-ms": "300"}), OK]
    with ScriptedServer(responses) as server:
        backend = backend_for(server.base_url, backoff_initial=0.001, backoff_max=5.0)
        started = time.perf_counter()
        try:
            completion = await backend.complete(MESSAGES, PARAMS)
        finally:
            await backend.aclose()
        elapsed = time.perf_counter() - started
        gap = server.requests[1]["time"] - server.requests[0]["time"]
    assert completion.attempts == 2
    assert elapsed >= 0.3
    assert gap >= 0.29
    assert elapsed < 3.0


async def test_retry_after_is_capped_at_backoff_max():
    responses = [error_response(429, "slow down", {"retry-after": "100"}), OK]
    with ScriptedServer(responses) as server:
        backend = backend_for(server.base_url, backoff_initial=0.001, backoff_max=0.2)
        started = time.perf_counter()
        try:
            completion = await backend.complete(MESSAGES, PARAMS)
        finally:
            await backend.aclose()
        elapsed = time.perf_counter() - started
    assert completion.attempts == 2
    assert 0.2 <= elapsed < 2.0


async def test_unreadable_retry_after_falls_back_to_backoff():
    """A ``Retry-After`` that is neither a number nor a date must not break the retry."""
    responses = [error_response(429, "slow down", {"retry-after": "soon"}), OK]
    with ScriptedServer(responses) as server:
        completion = await one_call(backend_for(server.base_url))
    assert completion.attempts == 2


async def test_html_page_is_retried():
    html = (200, {"Content-Type": "text/html"}, b"<html>oops</html>")
    with ScriptedServer([html, OK]) as server:
        completion = await one_call(backend_for(server.base_url))
        assert server.count == 2
    assert completion.attempts == 2
    assert completion.text == "[2] > [1]"


async def test_invalid_json_body_is_retried():
    """A 2xx ``application/json`` body that does not parse (a cut answer) is malformed too."""
    broken = (200, {"Content-Type": "application/json"}, b'{"choices": [{"message": ')
    with ScriptedServer([broken, OK]) as server:
        completion = await one_call(backend_for(server.base_url))
        assert server.count == 2
    assert completion.attempts == 2


@pytest.mark.parametrize("payload", [
    {"id": "x", "object": "chat.completion"},
    {"choices": []},
    {"choices": [{"message": None}]},
    [1, 2, 3],
])
async def test_body_without_choices_gives_up_after_max_attempts(payload):
    with ScriptedServer([json_response(200, payload)]) as server:
        error = await failing_call(backend_for(server.base_url, max_attempts=3))
        assert server.count == 3
    message = str(error)
    assert message.startswith("gave up after 3 attempts")
    assert "not a chat completion" in message


async def test_missing_usage_is_estimated():
    with ScriptedServer([json_response(200, completion_body("[3] > [1] > [2]", usage=False))]) as server:
        completion = await one_call(backend_for(server.base_url))
    count = counter_for_model("test-judge").count
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    assert completion.prompt_tokens == count_message_tokens(MESSAGES, count)
    assert completion.completion_tokens == count("[3] > [1] > [2]")
    assert completion.attempts == 1


@pytest.mark.parametrize("usage", [None, [], "lots", {"prompt_tokens": "11", "completion_tokens": None},
                                   {"prompt_tokens": True, "completion_tokens": 2.5},
                                   {"prompt_tokens": -3, "completion_tokens": float("nan")},
                                   {"prompt_tokens": [11], "completion_tokens": {"n": 7}}])
async def test_unusable_usage_is_estimated(usage):
    """Usage counts are trusted only as non-negative ints; anything else is counted here."""
    body = completion_body("[3] > [1] > [2]")
    body["usage"] = usage
    with ScriptedServer([json_response(200, body)]) as server:
        completion = await one_call(backend_for(server.base_url))
    count = counter_for_model("test-judge").count
    assert completion.prompt_tokens == count_message_tokens(MESSAGES, count)
    assert completion.completion_tokens == count("[3] > [1] > [2]")
    assert completion.attempts == 1


async def test_null_content_is_empty_text():
    body = completion_body()
    body["choices"][0]["message"]["content"] = None
    with ScriptedServer([json_response(200, body)]) as server:
        completion = await one_call(backend_for(server.base_url))
    assert completion.text == ""
    assert (completion.prompt_tokens, completion.completion_tokens) == (11, 7)


@pytest.mark.parametrize("field,value,why", [
    ("content", 42, "its content is a number"),
    ("content", ["[1] > [2]"], "its content is a list"),
    ("content", {"text": "[1]"}, "its content is an object"),
    ("content", True, "its content is a boolean"),
    ("finish_reason", 3, "its finish_reason is a number"),
    ("finish_reason", {"why": "stop"}, "its finish_reason is an object"),
    ("message", "[1] > [2]", "message is not an object"),
    ("logprobs", "yes", "its logprobs is a string"),
    ("logprobs", {"content": "x"}, "logprobs.content is not a list of objects"),
    ("logprobs", {"content": [{"top_logprobs": "x"}]}, "its top_logprobs is a string"),
    ("logprobs", {"content": [{"top_logprobs": [{"token": 1, "logprob": -1.0}]}]}, "an entry that is not"),
    ("logprobs", {"content": [{"top_logprobs": [{"token": "[", "logprob": "-1"}]}]}, "an entry that is not"),
    ("logprobs", {"content": [{"top_logprobs": [{"token": "[", "logprob": float("nan")}]}]}, "an entry"),
    ("logprobs", {"content": [{"top_logprobs": [{"token": "[", "logprob": True}]}]}, "an entry that is not"),
    ("logprobs", {"content": [{"top_logprobs": ["["]}]}, "an entry that is not"),
])
async def test_fields_of_the_wrong_type_are_malformed(field, value, why):
    """Such an answer would be cached and crash the parser: it is retried, then refused."""
    body = completion_body()
    if field == "message":
        body["choices"][0]["message"] = value
    elif field == "content":
        body["choices"][0]["message"]["content"] = value
    else:
        body["choices"][0][field] = value
    with ScriptedServer([json_response(200, body)]) as server:
        error = await failing_call(backend_for(server.base_url, max_attempts=2))
        assert server.count == 2
    message = str(error)
    assert message.startswith("gave up after 2 attempts")
    assert "not a chat completion" in message and why in message


def test_first_token_alternatives_when_absent_or_well_formed():
    assert first_token_alternatives(None) is None
    assert first_token_alternatives({"content": None}) is None
    assert first_token_alternatives({"content": []}) is None
    assert first_token_alternatives({"content": [{"token": "[", "logprob": 0.0}]}) is None
    entries = [{"token": "A", "logprob": -0.1}, {"token": "B", "logprob": -2}, {"token": "C", "logprob": -math.inf}]
    assert first_token_alternatives({"content": [{"top_logprobs": entries}]}) == \
        (("A", -0.1), ("B", -2.0), ("C", -math.inf))
    with pytest.raises(MalformedResponse):
        first_token_alternatives({"content": [{"top_logprobs": [{"token": "A", "logprob": math.inf}]}]})


async def test_declared_length_over_the_cap_is_refused_before_reading():
    big = (200, {"Content-Type": "application/json"}, b" " * (MAX_RESPONSE_BYTES + 1))
    with ScriptedServer([big, OK]) as server:
        completion = await one_call(backend_for(server.base_url))
    assert completion.attempts == 2 and completion.text == "[2] > [1]"
    with ScriptedServer([big]) as server:
        error = await failing_call(backend_for(server.base_url, max_attempts=1))
    assert f"its body of {MAX_RESPONSE_BYTES + 1} bytes is over the limit of 8 MiB" in str(error)


async def test_gzip_answers_and_errors_are_decoded():
    answer = (200, {"Content-Type": "application/json", "Content-Encoding": "gzip"},
              gzip.compress(json.dumps(completion_body("[1] > [2]")).encode()))
    refusal = (400, {"Content-Type": "application/json", "Content-Encoding": "gzip"},
               gzip.compress(json.dumps({"error": {"message": "zipped refusal", "code": "x"}}).encode()))
    with ScriptedServer([answer]) as server:
        completion = await one_call(backend_for(server.base_url))
    assert completion.text == "[1] > [2]"
    with ScriptedServer([refusal]) as server:
        error = await failing_call(backend_for(server.base_url))
    assert "HTTP 400: zipped refusal" in str(error)


async def test_long_error_body_is_cut_and_still_described():
    page = json.dumps({"error": {"message": "overloaded " + "x" * (2 << 20)}}).encode()
    with ScriptedServer([(503, {"Content-Type": "application/json"}, page)]) as server:
        error = await failing_call(backend_for(server.base_url, max_attempts=1))
    message = str(error)
    assert "HTTP 503" in message and len(message) < 500


async def test_connection_refused():
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.perf_counter()
    error = await failing_call(backend_for(url, max_attempts=2, backoff_initial=0.01))
    assert time.perf_counter() - started < 5.0
    message = str(error)
    assert "cannot connect" in message
    assert message.startswith("gave up after 2 attempts")


async def test_timeout_is_retried_then_reported():
    with start_server("identity", delay=0.6) as server:
        backend = backend_for(server.base_url, timeout=0.15, max_attempts=2)
        started = time.perf_counter()
        error = await failing_call(backend)
        elapsed = time.perf_counter() - started
        requests = server.stats()["requests"]
    assert requests == 2
    assert "timed out" in str(error)
    assert str(error).startswith("gave up after 2 attempts")
    assert elapsed < 2.0


# ------------------------------------------------------------------------------------------------
# Secrets and configuration
# ------------------------------------------------------------------------------------------------

def assert_no_secret(error: BaseException, backend: OpenAICompatBackend) -> None:
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert SECRET not in "".join(traceback.format_exception(error))
    assert SECRET not in repr(backend)


async def test_api_key_is_sent_but_never_shown():
    with ScriptedServer([error_response(400)]) as server:
        backend = backend_for(server.base_url, api_key=SECRET)
        error = await failing_call(backend)
        assert server.requests[0]["headers"].get("authorization") == f"Bearer {SECRET}"
    assert "HTTP 400" in str(error)
    assert_no_secret(error, backend)

    backend = backend_for(f"http://127.0.0.1:{free_port()}/v1", api_key=SECRET, max_attempts=2)
    error = await failing_call(backend)
    assert "cannot connect" in str(error)
    assert_no_secret(error, backend)


async def test_api_key_from_environment(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, SECRET)
    with ScriptedServer([OK]) as server:
        backend = backend_for(server.base_url, api_key=None)
        await one_call(backend)
        assert server.requests[0]["headers"].get("authorization") == f"Bearer {SECRET}"
    assert SECRET not in repr(backend)


async def test_no_api_key_and_no_base_url_is_a_config_error(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    backend = OpenAICompatBackend(model="gpt-4o-mini")
    with pytest.raises(ConfigError, match=API_KEY_ENV):
        await backend.complete(MESSAGES, PARAMS)


async def test_local_server_without_api_key_uses_placeholder(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with ScriptedServer([OK]) as server:
        completion = await one_call(backend_for(server.base_url, api_key=None))
        assert server.requests[0]["headers"].get("authorization") == f"Bearer {PLACEHOLDER_API_KEY}"
    assert completion.text == "[2] > [1]"


@pytest.mark.parametrize("options", [{"concurrency": 0}, {"max_attempts": 0}, {"timeout": 0},
                                     {"timeout": -1.0}, {"timeout": float("nan")}, {"timeout": float("inf")}])
def test_invalid_options(options):
    with pytest.raises(ConfigError):
        OpenAICompatBackend(model="m", base_url="http://127.0.0.1:1/v1", **options)


def test_pickled_backend_works_in_a_new_event_loop():
    with start_server("identity") as server:
        backend = backend_for(server.base_url, api_key=SECRET)

        async def call(b):
            try:
                return await b.complete(MESSAGES, PARAMS)
            finally:
                await b.aclose()

        first = asyncio.run(backend.complete(MESSAGES, PARAMS))   # leaves a client behind
        copy = pickle.loads(pickle.dumps(backend))
        second = asyncio.run(call(copy))
        assert server.stats()["completions"] == 2
    assert first.text == second.text == "[1] > [2] > [3]"
    assert copy.api_key == SECRET and copy.base_url == backend.base_url
    assert copy.max_attempts == backend.max_attempts and copy.concurrency == backend.concurrency


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

def test_retry_after_ms_header():
    assert retry_after_seconds(httpx2.Headers({"retry-after-ms": "1500"})) == pytest.approx(1.5)
    # the ms header wins over the seconds header
    assert retry_after_seconds(httpx2.Headers({"Retry-After-Ms": "250", "Retry-After": "9"})) \
        == pytest.approx(0.25)


def test_retry_after_seconds_header():
    assert retry_after_seconds(httpx2.Headers({"Retry-After": "7"})) == pytest.approx(7.0)
    assert retry_after_seconds(httpx2.Headers({"Retry-After": "0.5"})) == pytest.approx(0.5)
    assert retry_after_seconds(httpx2.Headers({"Retry-After": "-3"})) == 0.0
    # an unreadable ms header falls back to the seconds header
    assert retry_after_seconds(httpx2.Headers({"retry-after-ms": "x", "retry-after": "2"})) == 2.0


def test_retry_after_http_date_header():
    date = email.utils.formatdate(time.time() + 2, usegmt=True)
    assert 0.5 <= retry_after_seconds(httpx2.Headers({"Retry-After": date})) <= 2.5
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    # "-0000" (no zone information) is read as GMT, not local time
    minus_zero = email.utils.formatdate(time.time() + 2, usegmt=True).replace("GMT", "-0000")
    assert 0.5 <= retry_after_seconds(httpx2.Headers({"Retry-After": minus_zero})) <= 2.5
    assert retry_after_seconds(httpx2.Headers({"Retry-After": past})) == 0.0


@pytest.mark.parametrize("value", ["soon", "", "Wed, 99 Foo 2015", "nan", "inf", "12abc"])
def test_retry_after_garbage_header(value):
    assert retry_after_seconds(httpx2.Headers({"Retry-After": value})) is None
    assert retry_after_seconds({"retry-after-ms": value}) is None


def test_retry_after_without_headers():
    assert retry_after_seconds(None) is None
    assert retry_after_seconds(httpx2.Headers({})) is None


def status_error(status: int) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, request=request, json={"error": {"message": "m"}})
    return openai.APIStatusError("m", response=response, body={"message": "m"})


@pytest.mark.parametrize("status,expected", [
    (400, False), (401, False), (403, False), (404, False), (409, False), (422, False),
    (408, True), (429, True), (500, True), (502, True), (503, True), (504, True),
])
def test_is_retryable_status(status, expected):
    assert is_retryable(status_error(status)) is expected


def test_is_retryable_other_errors():
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    assert is_retryable(openai.APIConnectionError(request=request))
    assert is_retryable(openai.APITimeoutError(request=request))
    assert is_retryable(AttemptTimeout(request, 3.0))
    assert is_retryable(MalformedResponse("x"))
    assert not is_retryable(CrossOriginRedirect("http://elsewhere:1"))
    assert not is_retryable(ValueError("x"))
    assert not is_retryable(KeyError("choices"))


async def test_constrained_call_sends_the_ranking_grammar():
    from rerank.answers.constraints import ranking_grammar, ranking_regex

    with ScriptedServer([OK, OK]) as server:
        backend = backend_for(server.base_url)
        try:
            await backend.complete(MESSAGES, PARAMS, constraint=Constraint(2, 2))
            await backend.complete(MESSAGES, PARAMS)
        finally:
            await backend.aclose()
        constrained, free = (json.loads(r["body"]) for r in server.requests)
    assert constrained["grammar"] == ranking_grammar(2)
    assert constrained["structured_outputs"] == {"regex": ranking_regex(2)} == {"regex": constrained["regex"]}
    assert not {"grammar", "structured_outputs", "regex"} & set(free)
    assert OpenAICompatBackend.constrained_default is False


# ------------------------------------------------------------------------------------------------
# URLs shown without their credentials
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url,shown", [
    ("http://user:pass@127.0.0.1:8000/v1?api_key=secret#top", "http://127.0.0.1:8000/v1"),
    ("HTTPS://api.example.com/v1/", "https://api.example.com/v1/"),
    ("http://[::1]:8000/v1?k=v", "http://[::1]:8000/v1"),
    ("http://token@host/v1", "http://host/v1"),
    # unescaped "?", "/" or "#" in a password: cut after the last "@"
    ("http://u:p?ss@host/v1", "http://host/v1"),
    ("http://u:pa/ss@host/v1?x=1", "http://host/v1"),
    ("http://u:12/ss@host/v1", "http://host/v1"),
    ("http://u:p#ss@host:9/v1", "http://host:9/v1"),
    ("user:pass@host:8000/v1", "host:8000/v1"),
    ("http://u:p@host:notaport/v1", "http://host:notaport/v1"),
    ("localhost:8000/v1?key=1", "localhost:8000/v1"),
    ("http://host/v1?next=a@b", "http://host/v1"),
    ("http://h/v1\r\nInjected: x", "http://h/v1Injected:x"),
    ("", ""),
    (None, ""),
    (12345, "12345"),
])
def test_public_url(url, shown):
    assert public_url(url) == shown


def test_public_url_is_short_and_never_raises():
    assert len(public_url("http://h/" + "a" * 5000)) <= 200
    for garbage in ["http://[::1", "://", "http://", "@@@", "http://:@/", "\x00\x01", "http://h:-1/x"]:
        shown = public_url(garbage)
        assert isinstance(shown, str) and "@" not in shown


def test_url_secrets():
    assert url_secrets("http://user:hunter22@h/v1?api_key=s3cret&x=1#frag") == \
        ["api_key=s3cret&x=1", "user:hunter22", "hunter22", "s3cret", "frag"]
    assert url_secrets("http://tok3n@h/v1") == ["tok3n"]
    assert url_secrets("http://h/v1") == url_secrets(None) == []


def test_repr_hides_the_credentials_of_the_base_url():
    backend = OpenAICompatBackend(model="m", base_url="http://alice:hunter22@127.0.0.1:9/v1?key=s3cret", api_key=SECRET)
    shown = repr(backend)
    assert "base_url='http://127.0.0.1:9/v1'" in shown and "model='m'" in shown
    assert "hunter22" not in shown and "s3cret" not in shown and "alice" not in shown and SECRET not in shown
