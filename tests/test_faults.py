"""The OpenAI-compatible backend against hostile servers on 127.0.0.1.

Each fault of ``tests/llm_server.py`` (a body or headers dripped a byte at a time, a request never
answered, a redirect to another origin, content of the wrong type, an answer of many MB) goes
through the backend directly, and the drip, hang, wrong-types and redirect cases also through the
real ``rerank run`` command. Every wait is on an event (a call or a process ending, a server
counter reached); the times asserted are bounds, never sleeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from rerank.backends.openai_compat import (MAX_ANSWER_CHARS, MAX_RESPONSE_BYTES, OpenAICompatBackend)
from rerank.errors import BackendError
from rerank.tokens import counter_for_model

from conftest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend_calls import MESSAGES, PARAMS, failing_call, one_call  # noqa: E402
from backend_calls import backend_for as shared_backend_for  # noqa: E402
from llm_server import start_server  # noqa: E402

TIMEOUT = 0.5           # seconds per attempt in the direct tests
SLACK = 1.5             # seconds allowed beyond attempts x timeout (backoff is at most 0.05 s)
USER, PASSWORD, TOKEN = "alice", "hunter2-PASSWORD", "query-TOKEN-42"


def backend_for(base_url: str, **options) -> OpenAICompatBackend:
    """A backend with this file's short deadline and two attempts, unless ``options`` say otherwise."""
    options.setdefault("timeout", TIMEOUT)
    options.setdefault("max_attempts", 2)
    return shared_backend_for(base_url, **options)


def with_credentials(base_url: str) -> str:
    """``base_url`` with a user, a password and a query-string token in it."""
    return base_url.replace("http://", f"http://{USER}:{PASSWORD}@") + f"?api_key={TOKEN}"


def assert_no_credentials(text: str) -> None:
    assert PASSWORD not in text and TOKEN not in text and f"{USER}:" not in text and "api_key=" not in text


async def timed_failure(backend: OpenAICompatBackend) -> tuple[BackendError, float]:
    """The BackendError of one call, and how long the call took."""
    started = time.perf_counter()
    error = await failing_call(backend)
    return error, time.perf_counter() - started


# ------------------------------------------------------------------------------------------------
# Deadlines: an attempt is bounded as a whole, however slowly the bytes come
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", [{"drip": 0.05}, {"drip_headers": 0.05}, {"hang": True}],
                         ids=["drip", "drip_headers", "hang"])
async def test_slow_or_silent_server_ends_within_the_deadline(fault):
    """A body or headers dripped a byte every 0.05 s never trip a per-read timeout; only a
    deadline on the whole attempt ends them (a 300-byte body would otherwise take 15 s)."""
    with start_server("identity", **fault) as server:
        error, elapsed = await timed_failure(backend_for(with_credentials(server.base_url), max_attempts=2))
        stats = server.wait_for(lambda s: s["requests"] == 2 and (not fault.get("hang") or s["hung"] == 2))
    message = str(error)
    assert message.startswith("gave up after 2 attempts")
    assert f"timed out after {TIMEOUT:g} s" in message
    assert server.base_url in message
    assert_no_credentials(message)
    assert stats["completions"] == (0 if fault.get("hang") else 2)
    assert 2 * TIMEOUT * 0.9 <= elapsed < 2 * TIMEOUT + SLACK


async def test_deadline_covers_connect_headers_and_body_together():
    """Headers dripped for about 0.45 s, a body for about 0.5 s: each alone fits in a deadline of
    0.8 s, both together do not (no single read ever waits more than a few milliseconds)."""
    headers, body = {"drip_headers": 0.003}, {"drip": 0.0013}
    for alone in (headers, body):
        with start_server("identity", **alone) as server:
            backend = backend_for(server.base_url, max_attempts=1, timeout=0.8)
            try:
                assert (await backend.complete(MESSAGES, PARAMS)).text == "[1] > [2] > [3]"
            finally:
                await backend.aclose()
    with start_server("identity", **headers, **body) as server:
        error, elapsed = await timed_failure(backend_for(server.base_url, max_attempts=1, timeout=0.8))
    assert "timed out after 0.8 s" in str(error)
    assert 0.8 * 0.9 <= elapsed < 0.8 + SLACK


async def test_a_slow_but_steady_answer_within_the_deadline_is_fine():
    with start_server("identity", drip=0.001) as server:
        completion = await one_call(backend_for(server.base_url, timeout=10.0))
    assert completion.text == "[1] > [2] > [3]" and completion.attempts == 1


@pytest.mark.parametrize("fault", [{"hang": True}, {"drip": 0.05}, {"drip_headers": 0.05}],
                         ids=["hang", "drip", "drip_headers"])
async def test_preflight_has_a_deadline(fault):
    with start_server("identity", fault_models=True, **fault) as server:
        backend = backend_for(with_credentials(server.base_url), timeout=30.0)
        started = time.perf_counter()
        try:
            with pytest.raises(BackendError) as info:
                await backend.preflight(timeout=TIMEOUT)
        finally:
            await backend.aclose()
        elapsed = time.perf_counter() - started
    message = str(info.value)
    assert message.endswith("(checked before the run)")
    assert f"timed out after {TIMEOUT:g} s" in message
    assert_no_credentials(message)
    assert elapsed < TIMEOUT + SLACK


# ------------------------------------------------------------------------------------------------
# Answers are checked before anyone trusts them
# ------------------------------------------------------------------------------------------------

async def test_content_of_the_wrong_type_is_malformed_and_retried():
    with start_server("identity", wrong_types=True) as server:
        error, _ = await timed_failure(backend_for(server.base_url, max_attempts=3))
        stats = server.stats()
    message = str(error)
    assert stats["requests"] == stats["completions"] == 3          # a number, a list, an object
    assert message.startswith("gave up after 3 attempts")
    assert "not a chat completion" in message and "an object, not a string or null" in message


async def test_huge_body_is_refused_while_it_is_read():
    """50 MiB without Content-Length: reading stops at the cap, memory stays near the cap."""
    with start_server("identity", huge=50) as server:
        tracemalloc.start()
        try:
            error, elapsed = await timed_failure(backend_for(server.base_url, max_attempts=1, timeout=30.0))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        stats = server.wait_for(lambda s: s["disconnects"] == 1)
    message = str(error)
    assert "not a chat completion" in message and "over the limit of 8 MiB" in message
    assert peak < 4 * MAX_RESPONSE_BYTES                              # not 50 MiB, let alone 1 GB
    assert stats["body_bytes"] < 40 << 20                             # the server was cut off
    assert elapsed < 10.0


async def test_answer_text_over_the_limit_is_refused():
    with start_server("identity", huge=2) as server:                  # under the body cap
        error, _ = await timed_failure(backend_for(server.base_url, max_attempts=1, timeout=30.0))
    assert f"over the limit of {MAX_ANSWER_CHARS}" in str(error)


async def test_large_answer_without_usage_is_counted_off_the_event_loop():
    """A 0.9 MiB answer without usage: counted, in a worker thread, while the loop goes on."""
    counter = counter_for_model("test-judge")
    threads = set()

    class Recording:
        exact = True

        def count(self, text):
            threads.add(threading.get_ident())
            return counter.count(text)

    with start_server("identity", huge=0.9) as server:
        backend = backend_for(server.base_url, timeout=30.0)
        backend.token_counter = Recording
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticking = asyncio.create_task(ticker())
        try:
            completion = await backend.complete(MESSAGES, PARAMS)
        finally:
            ticking.cancel()
            await backend.aclose()
    assert len(completion.text) > 900_000
    assert completion.completion_tokens == counter.count(completion.text)
    assert completion.prompt_tokens > 0
    assert threads and threading.get_ident() not in threads
    assert ticks > 0


# ------------------------------------------------------------------------------------------------
# Redirects
# ------------------------------------------------------------------------------------------------

async def test_redirect_to_another_origin_is_not_followed():
    with start_server("identity") as target:
        # The Location carries credentials of its own: they are not shown either.
        location = target.base_url.replace("http://", "http://eve:TARGET-SECRET@")
        with start_server("identity", redirect=location) as server:
            error, _ = await timed_failure(backend_for(with_credentials(server.base_url), max_attempts=3))
            stats = server.stats()
        received = target.stats()["requests"]
    message = str(error)
    assert received == 0                                              # the prompt never went there
    assert stats["redirects"] == 1                                    # not retried either
    assert not message.startswith("gave up")
    assert "another origin" in message and "not followed" in message
    assert target.root_url in message and "TARGET-SECRET" not in message and "eve" not in message
    assert_no_credentials(message)


async def test_same_origin_redirect_is_followed():
    with start_server("identity", redirect="/moved/v1") as server:
        completion = await one_call(backend_for(server.base_url))
        stats = server.stats()
    assert completion.text == "[1] > [2] > [3]"
    assert stats["redirects"] == 1 and stats["completions"] == 1


async def test_preflight_refuses_a_redirect_to_another_origin():
    with start_server("identity") as target:
        with start_server("identity", redirect=target.base_url, fault_models=True) as server:
            backend = backend_for(server.base_url)
            try:
                with pytest.raises(BackendError) as info:
                    await backend.preflight(timeout=TIMEOUT)
            finally:
                await backend.aclose()
            assert server.stats()["redirects"] == 1
        assert target.stats()["requests"] == 0
    message = str(info.value)
    assert "another origin" in message and message.endswith("(checked before the run)")


async def test_preflight_follows_a_same_origin_redirect():
    with start_server("identity", redirect="/moved/v1", fault_models=True, owned_by="vllm",
                      max_model_len=4096) as server:
        backend = backend_for(server.base_url)
        try:
            await backend.preflight(timeout=TIMEOUT)
        finally:
            await backend.aclose()
        assert server.stats()["redirects"] == 1
    assert backend.context_limit() == 4096 and backend.constrained_default is True


# ------------------------------------------------------------------------------------------------
# Credentials in the base URL never show
# ------------------------------------------------------------------------------------------------

async def test_credentials_in_the_base_url_are_never_shown(caplog):
    """Not in errors (timeouts, refused connections, HTTP errors that echo the URL), not in the
    retry log, not in the repr, although they are sent."""
    caplog.set_level(logging.DEBUG, logger="rerank")
    messages = []
    with start_server("identity", hang=True) as server:
        backend = backend_for(with_credentials(server.base_url))
        messages.append(repr(backend))
        error, _ = await timed_failure(backend)
        messages.append(str(error))
    # A 404 whose message echoes the request's path and query string.
    with start_server("identity") as server:
        wrong_path = with_credentials(server.root_url + "/nowhere")
        error, _ = await timed_failure(backend_for(wrong_path))
        messages.append(str(error))
        assert "HTTP 404" in str(error) and "***" in str(error)
    with start_server("identity") as server:
        backend = backend_for(with_credentials(server.base_url))
        try:
            await backend.complete(MESSAGES, PARAMS)                  # sent, and answered
        finally:
            await backend.aclose()
        assert server.log()[0]["answer"] == "[1] > [2] > [3]"
    port = server.port   # stopped: nothing listens there now
    refused = backend_for(with_credentials(f"http://127.0.0.1:{port}/v1"))
    with pytest.raises(BackendError) as info:
        await refused.preflight(timeout=TIMEOUT)
    messages.append(str(info.value))
    error, _ = await timed_failure(refused)
    messages.append(str(error))
    messages += [record.getMessage() for record in caplog.records]
    assert any("retrying http://127.0.0.1" in line for line in messages)
    for text in messages:
        assert_no_credentials(text)


# ------------------------------------------------------------------------------------------------
# Through the real command
# ------------------------------------------------------------------------------------------------

def write_requests(path: Path) -> Path:
    """Two tiny rank_llm requests, q1 and q2, one window each."""
    lines = []
    for qid, text in (("q1", "what flies"), ("q2", "what is heavy")):
        candidates = [{"docid": f"d{i}", "score": 3.0 - i, "doc": {"contents": passage}}
                      for i, passage in enumerate(["Swallows fly fast.", "Coconuts are heavy.",
                                                   "Bridges are guarded."], 1)]
        lines.append(json.dumps({"query": {"text": text, "qid": qid}, "candidates": candidates}))
    path.write_text("\n".join(lines) + "\n")
    return path


CLI_TIMEOUT, CLI_ATTEMPTS = 1, 2
# Backoff after a first attempt is at most 0.5 s (--max-attempts 2); the run's own work is small.
CLI_SLACK = 4.0


def run_rerank(tmp_path: Path, base_url: str, *extra, run: str = "run") -> tuple:
    """``rerank run`` on the two requests, its outputs in ``tmp_path / run``; (the process, its
    summary, the seconds the process took)."""
    (tmp_path / run).mkdir()
    summary = tmp_path / run / "summary.json"
    started = time.perf_counter()
    proc = run_cli("run", write_requests(tmp_path / "in.jsonl"), "-o", tmp_path / run / "out.jsonl",
                   "--base-url", base_url, "--model", "judge", "--timeout", CLI_TIMEOUT,
                   "--max-attempts", CLI_ATTEMPTS, "--summary-json", summary, *extra, timeout=120)
    elapsed = time.perf_counter() - started
    return proc, json.loads(summary.read_text()) if summary.exists() else {}, elapsed


def assert_failed_cleanly(proc, summary: dict) -> None:
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "2 queries failed" in proc.stderr and "q1" in proc.stderr and "q2" in proc.stderr
    assert sorted(summary["failed"]) == ["q1", "q2"]


@pytest.mark.integration
@pytest.mark.parametrize("fault", [{"drip": 0.1}, {"hang": True}], ids=["drip", "hang"])
def test_cli_slow_or_silent_server_fails_the_queries_within_the_deadline(tmp_path, fault):
    with start_server("identity", **fault) as server:
        proc, summary, elapsed = run_rerank(tmp_path, with_credentials(server.base_url), "--no-cache")
        # each query: CLI_ATTEMPTS attempts, each cut at its deadline
        stats = server.wait_for(lambda s: s["requests"] == 2 * CLI_ATTEMPTS)
    assert_failed_cleanly(proc, summary)
    assert f"timed out after {CLI_TIMEOUT} s" in proc.stderr
    assert_no_credentials(proc.stderr)
    assert summary["wall_seconds"] < CLI_ATTEMPTS * CLI_TIMEOUT + CLI_SLACK
    assert elapsed < 60            # start-up included; 130 s and 400 s before deadlines
    assert stats["completions"] == (0 if fault.get("hang") else 2 * CLI_ATTEMPTS)


@pytest.mark.integration
def test_cli_redirect_to_another_origin_sends_nothing_there(tmp_path):
    with start_server("identity") as target:
        with start_server("identity", redirect=target.base_url) as server:
            proc, summary, _ = run_rerank(tmp_path, server.base_url, "--no-cache")
            assert server.stats()["redirects"] == 2                      # once per query, no retry
        assert target.stats()["requests"] == 0
    assert_failed_cleanly(proc, summary)
    assert "redirected the request to another origin" in proc.stderr and "not followed" in proc.stderr


@pytest.mark.integration
def test_cli_wrong_types_are_not_cached(tmp_path):
    cache = tmp_path / "c.sqlite"
    with start_server("identity", wrong_types=True) as server:
        proc, summary, _ = run_rerank(tmp_path, server.base_url, "--cache", cache)
        assert server.stats()["completions"] == 2 * CLI_ATTEMPTS
    assert_failed_cleanly(proc, summary)
    assert "not a chat completion" in proc.stderr
    with start_server("identity") as healthy:
        proc, summary, _ = run_rerank(tmp_path, healthy.base_url, "--cache", cache, run="again")
        calls = healthy.stats()["completions"]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert calls == 2                       # nothing came from the cache: nothing bad was kept
    ranked = [json.loads(line) for line in (tmp_path / "again" / "out.jsonl").read_text().splitlines()]
    assert [r["query"]["qid"] for r in ranked] == ["q1", "q2"]
