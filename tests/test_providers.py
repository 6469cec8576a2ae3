"""Every provider through one client: OpenAI's reasoning models, Anthropic, Gemini and OpenRouter.

The real CLI runs DL19 against the judges' server imitating each provider's OpenAI-compatible
endpoint (``rerank.testing.providers``: it refuses, ignores and reports what the provider does),
and every answer must be parsed; strategies that read log-probabilities refuse in one line where
a provider gives none. Unit tests cover the pieces: reasoning models by name, what a refusal
teaches, ``--extra-body``, ``--header`` and ``--api-key-env``, the listing's facts, secrets.
"""

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import read_summary, run_cli
from llm_server import start_server
from rerank.backends.openai_compat import OpenAICompatBackend
from rerank.backends.openai_endpoint import api_key_for, provider_of, server_facts
from rerank.backends.openai_params import Accepted, Finding, finding, is_reasoning_model
from rerank.config import RerankerConfig, extra_body_from_json, headers_from_flags
from rerank.errors import ConfigError
from rerank.secrets import header_secrets, looks_secret, public_headers
from rerank.testing.providers import Imitation, Refusal

QUERIES = 43
THINK = 64
SECRET_HEADER = "sk-or-v1-0123456789abcdef0123456789"


# -- reasoning models by name, and what a refusal teaches ---------------------------------------

@pytest.mark.parametrize("model", ["o1", "o1-mini", "o3", "o3-pro", "o4-mini", "o4-mini-2025-04-16", "gpt-5",
                                   "gpt-5-mini", "gpt-5.1", "openai/o3-mini", "gemini-2.5-flash",
                                   "models/gemini-2.5-pro", "google/gemini-3-pro-preview"])
def test_reasoning_models_are_known_by_name(model):
    assert is_reasoning_model(model)


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4.1-mini", "gpt-5-chat-latest", "gemini-2.0-flash",
                                   "claude-sonnet-4-5", "Qwen/Qwen2.5-7B-Instruct", "olmo-2", "judge", "", None])
def test_other_models_are_not_reasoning_models(model):
    assert not is_reasoning_model(model)


def test_a_reasoning_model_is_asked_as_one_unless_told_otherwise():
    assert RerankerConfig(model="o4-mini").reasoning() is not None
    assert RerankerConfig(model="gpt-4o").reasoning() is None
    assert RerankerConfig(model="o4-mini", reasoning_model=False).reasoning() is None
    assert RerankerConfig(model="my-finetune", reasoning_model=True).reasoning() is not None
    assert RerankerConfig(model="o4-mini", backend="llamacpp").reasoning() is None  # a local file, not OpenAI's


@pytest.mark.parametrize("text, found", [
    ("{\"error\": {\"message\": \"Unsupported parameter: 'max_tokens' is not supported with this model. Use "
     "'max_completion_tokens' instead.\", \"param\": \"max_tokens\"}}", Finding.MAX_COMPLETION_TOKENS),
    ("{\"error\": {\"message\": \"Unsupported value: 'temperature' does not support 0 with this model. Only the "
     "default (1) value is supported.\"}}", Finding.NO_TEMPERATURE),
    ("{\"error\": {\"message\": \"`temperature` may only be set to 1 when thinking is enabled\"}}",
     Finding.NO_TEMPERATURE),
    ("[{\"error\": {\"code\": 400, \"message\": \"Invalid JSON payload received. Unknown name \\\"logprobs\\\": "
     "Cannot find field.\"}}]", Finding.NO_LOGPROBS),
    ("{\"error\": {\"message\": \"Logprobs is not enabled for models/gemini-2.5-flash\"}}", Finding.NO_LOGPROBS),
    ("{\"error\": {\"message\": \"This model's maximum context length is 8 tokens\"}}", None),
    ("{\"error\": {\"message\": \"`max_tokens` must be greater than `thinking.budget_tokens`\"}}", None),
])
def test_a_refusal_teaches_what_the_server_does_not_accept(text, found):
    assert finding(400, text) is found
    assert finding(401, text) is None


@given(st.integers(100, 599), st.text(max_size=300))
def test_any_error_text_is_read_without_failing(status, text):
    assert finding(status, text) in (None, *Finding)


def test_what_is_learnt_adapts_every_request():
    accepted = Accepted()
    params = {"temperature": 0.0, "max_tokens": 40, "logprobs": True, "top_logprobs": 5}
    assert accepted.adapt(params) is params
    for item in Finding:
        assert accepted.learn(item) and not accepted.learn(item)
    room = 40 + accepted.reasoning_budget  # a model that wants max_completion_tokens reasons out of it
    assert accepted.adapt(params) == {"max_completion_tokens": room}
    assert accepted.adapt(params, logprobs_needed=True) == {"max_completion_tokens": room, "logprobs": True,
                                                            "top_logprobs": 5}
    assert accepted.adapt({"max_completion_tokens": 7}) == {"max_completion_tokens": 7}
    assert Finding.NO_LOGPROBS in Accepted(reasoning_model=True)


# -- --extra-body, --header, --api-key-env -------------------------------------------------------

def test_extra_body_is_a_json_object():
    assert extra_body_from_json(None) == {}
    assert extra_body_from_json('{"provider": {"sort": "price"}}') == {"provider": {"sort": "price"}}
    for text, message in [("{provider", "not valid JSON"), ("[1, 2]", "got an array"), ('"x"', "got a string"),
                          ("null", "got null"), ("3", "got a number")]:
        with pytest.raises(ConfigError, match=message):
            extra_body_from_json(text)


def test_headers_are_name_value_pairs_and_a_bad_one_is_never_echoed():
    assert headers_from_flags(["X-Title: my run", "HTTP-Referer:https://example.org/a:b"]) == {
        "X-Title": "my run", "HTTP-Referer": "https://example.org/a:b"}
    for bad in (SECRET_HEADER.replace("-", ""), "no name: x".replace("no name", "bad name")):
        with pytest.raises(ConfigError) as error:
            headers_from_flags(["X-Title: ok", bad])
        assert "number 2" in str(error.value) and bad not in str(error.value)


@given(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
       st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40))
def test_a_header_flag_reads_back_as_given(name, value):
    assert headers_from_flags([f"{name}: {value}"]) == {name: value.strip()}


def test_config_checks_the_new_fields():
    with pytest.raises(ConfigError, match="JSON object"):
        RerankerConfig(extra_body=[1])
    with pytest.raises(ConfigError, match="header name"):
        RerankerConfig(headers={"bad name": "x"})
    with pytest.raises(ConfigError, match="one line"):
        RerankerConfig(headers={"X-Title": "a\r\nInjected: 1"})
    with pytest.raises(ConfigError, match="environment variable name"):
        RerankerConfig(api_key_env="NOT A NAME")
    with pytest.raises(ConfigError, match="not both"):
        RerankerConfig(api_key_env="KEY", api_key_file="key.txt")


def test_the_key_comes_from_the_variable_named(monkeypatch):
    monkeypatch.setenv("PROVIDER_TEST_KEY", "sk-from-the-variable")
    assert api_key_for(None, None, "http://x/v1", "PROVIDER_TEST_KEY") == "sk-from-the-variable"
    monkeypatch.delenv("PROVIDER_TEST_KEY")
    with pytest.raises(ConfigError, match="PROVIDER_TEST_KEY is not set"):
        api_key_for(None, None, "http://x/v1", "PROVIDER_TEST_KEY")


def test_the_python_api_reaches_the_backend():
    config = RerankerConfig(model="o3-mini", base_url="http://127.0.0.1:9/v1", extra_body={"seed": 1},
                            headers={"X-Title": "t"}, api_key_env="K")
    backend = OpenAICompatBackend.from_config(config)
    assert (backend.extra_body, backend.headers, backend.api_key_env, backend.reasoning_model) == (
        {"seed": 1}, {"X-Title": "t"}, "K", True)
    assert "X-Title" not in repr(backend)


def test_cache_keys_include_the_extra_body_but_not_headers_or_keys():
    from rerank.answers import Ask
    from rerank.runner.cached_backend import CachedBackend

    messages, ask = [{"role": "user", "content": "q"}], Ask({"temperature": 0, "max_tokens": 8}, 8)

    def key(**fields):
        config = RerankerConfig(model="m", base_url="http://127.0.0.1:9/v1", **fields)
        return CachedBackend(OpenAICompatBackend.from_config(config), None).key(messages, ask)

    plain = key()
    assert key(headers={"X-Title": "a"}) == key(headers={"X-Title": "b"}) == plain
    assert key(api_key_env="SOME_KEY") == plain
    assert key(extra_body={"provider": {"sort": "price"}}) != plain
    assert key(extra_body={"provider": {"sort": "price"}}) != key(extra_body={"provider": {"sort": "latency"}})


def test_secret_looking_header_values_are_never_shown():
    headers = {"X-Title": "rerank on DL19", "HTTP-Referer": "https://me:pw@example.org/x",
               "Authorization": "Bearer abcdef", "X-Custom": SECRET_HEADER}
    assert public_headers(headers) == {"X-Title": "rerank on DL19", "HTTP-Referer": "https://example.org/x",
                                       "Authorization": "***", "X-Custom": "***"}
    assert not looks_secret("X-Title", "rerank on DL19") and looks_secret("X-Api-Key", "short")
    assert {SECRET_HEADER, "Bearer abcdef", "abcdef", "me:pw"} <= set(header_secrets(headers))


# -- what the model listing and the base URL tell ------------------------------------------------

@pytest.mark.parametrize("name, provider, logprobs", [("anthropic", "anthropic", False),
                                                      ("gemini", "gemini", False),
                                                      ("openrouter", "openrouter", False),
                                                      ("openai-reasoning", None, None)])
def test_the_listing_tells_the_provider(name, provider, logprobs):
    listing = Imitation(name).listing({"id": "gemini-2.5-flash"})
    facts = server_facts(listing, "gemini-2.5-flash", "http://127.0.0.1:8000/v1")
    assert (facts.provider, facts.logprobs) == (provider, logprobs)
    if name == "openrouter":
        assert facts.context == 32768


def test_the_base_url_tells_the_provider():
    assert provider_of("https://api.anthropic.com/v1/") == "anthropic"
    assert provider_of("https://generativelanguage.googleapis.com/v1beta/openai/") == "gemini"
    assert provider_of("https://openrouter.ai/api/v1") == "openrouter"
    assert provider_of(None) == "openai" and provider_of("http://127.0.0.1:8000/v1") is None
    assert server_facts(None, "claude-sonnet-4-5", "https://api.anthropic.com/v1/").logprobs is False


def test_the_imitations_refuse_what_the_providers_refuse():
    def refused(name, request, headers=None):
        with pytest.raises(Refusal) as refusal:
            Imitation(name).check({"messages": [{"role": "user", "content": "q"}], **request},
                                  headers if headers is not None else {"Authorization": "Bearer k"})
        return refusal.value.status, json.dumps(refusal.value.body)

    assert refused("openai-reasoning", {"logprobs": True})[1].count("Unsupported parameter: 'logprobs'") == 1
    assert "Unrecognized request argument supplied: grammar" in refused("openai-reasoning", {"grammar": "x"})[1]
    assert "n=1" in refused("anthropic", {"n": 2})[1]
    assert refused("anthropic", {}, headers={})[0] == 401
    assert "budget_tokens" in refused("anthropic", {"thinking": {"type": "enabled", "budget_tokens": 100}})[1]
    assert "may only be set to 1" in refused("anthropic", {"max_tokens": 4000, "temperature": 0,
                                                           "thinking": {"type": "enabled", "budget_tokens": 1024}})[1]
    assert 'Unknown name \\"logprobs\\"' in refused("gemini", {"logprobs": True})[1]
    assert "Valid values are: high, low, medium, none" in refused("gemini", {"reasoning_effort": "minimal"})[1]
    assert refused("openrouter", {"logprobs": True, "provider": {"require_parameters": True}})[0] == 404
    assert "unrecognized key 'speed'" in refused("openrouter", {"provider": {"speed": 1}})[1]
    # What Anthropic ignores is gone before the judge answers; OpenRouter's reasoning is counted.
    request, hidden = Imitation("anthropic").check({"messages": [], "logprobs": True, "seed": 3, "temperature": 2},
                                                   {"x-api-key": "k"})
    assert "logprobs" not in request and "seed" not in request and request["temperature"] == 1 and hidden == 0
    request, hidden = Imitation("openrouter").check({"messages": [], "max_tokens": 100, "reasoning": {"effort": "low"}},
                                                    {"Authorization": "Bearer k"})
    assert (request["max_tokens"], hidden) == (100 - THINK // 2, THINK // 2)


# -- the real CLI against each imitation ---------------------------------------------------------

def rerank(dl19, tmp_path, server, name, *extra, env=None, strategy="full", cache=None):
    out, summary = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json"
    proc = run_cli("run", dl19 / "bm25_top100.json", "-o", out, "--base-url", server.base_url,
                   "--summary-json", summary, "--cache", tmp_path / f"{cache or name}.sqlite", "--strategy", strategy,
                   *extra, env=env)
    return proc, summary


def assert_all_parsed(proc, summary, calls=QUERIES):
    assert proc.returncode == 0, proc.stderr
    stats = read_summary(summary)
    assert stats["parse_ok"] == stats["calls"] == calls, stats
    return stats


def assert_one_line_refusal(proc, *words):
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.mark.integration
def test_an_openai_reasoning_model_is_asked_as_one(dl19, tmp_path):
    with start_server("oracle", data_dir=dl19, imitate="openai-reasoning", think_tokens=THINK) as server:
        proc, summary = rerank(dl19, tmp_path, server, "o4", "--model", "o4-mini", "--reasoning-effort", "low")
        stats = assert_all_parsed(proc, summary)
        assert server.stats()["bad_requests"] == 0
        sent = [record["sent"] for record in server.log()]
        refused = run_cli("run", dl19 / "bm25_top100.json", "-o", tmp_path / "st.jsonl", "--model", "o4-mini",
                          "--base-url", server.base_url, "--strategy", "single-token", "--no-cache")
    assert stats["reasoning_tokens"] == QUERIES * THINK // 2  # hidden, reported, counted
    assert all("max_tokens" not in body and "temperature" not in body and "logprobs" not in body for body in sent)
    assert all(body["max_completion_tokens"] > 2048 and body["reasoning_effort"] == "low" for body in sent)
    assert_one_line_refusal(refused, "o4-mini", "reasoning model", "log-probabilities")


@pytest.mark.integration
def test_a_server_refusing_max_tokens_and_temperature_is_asked_again_without_them(dl19, tmp_path):
    # A model the name does not give away: the refusals teach, once, for the rest of the run.
    with start_server("oracle", data_dir=dl19, imitate="openai-reasoning", think_tokens=THINK) as server:
        proc, summary = rerank(dl19, tmp_path, server, "unknown", "--model", "my-deployment", "--concurrency", 4)
        stats = assert_all_parsed(proc, summary)
        refusals = server.stats()["bad_requests"]
    assert 2 <= refusals <= 2 * 4  # at most one of each per call in flight when the server first refused
    assert stats["reasoning_tokens"] == QUERIES * THINK
    assert "refused max_tokens" in proc.stderr and "refused the temperature" in proc.stderr


@pytest.mark.integration
def test_anthropic_with_its_own_key_variable(dl19, tmp_path):
    key = "sk-ant-test-0123456789abcdef"
    env = {"ANTHROPIC_TEST_KEY": key}
    with start_server("oracle", data_dir=dl19, imitate="anthropic", api_key=key) as server:
        proc, summary = rerank(dl19, tmp_path, server, "claude", "--model", "claude-sonnet-4-5",
                               "--api-key-env", "ANTHROPIC_TEST_KEY", env=env)
        assert_all_parsed(proc, summary)
        thinking = '{"thinking": {"type": "enabled", "budget_tokens": 1024}}'
        proc, summary = rerank(dl19, tmp_path, server, "thinking", "--model", "claude-sonnet-4-5", "--api-key-env",
                               "ANTHROPIC_TEST_KEY", "--extra-body", thinking, "--reasoning-budget", 2048, env=env)
        assert_all_parsed(proc, summary)
        assert all(record["sent"]["thinking"]["budget_tokens"] == 1024 for record in server.log()[-QUERIES:])
        single = rerank(dl19, tmp_path, server, "single", "--model", "claude-sonnet-4-5", "--api-key-env",
                        "ANTHROPIC_TEST_KEY", strategy="single-token", env=env)[0]
        unset = rerank(dl19, tmp_path, server, "unset", "--model", "claude-sonnet-4-5", "--api-key-env",
                       "ANTHROPIC_UNSET_KEY")[0]
        wrong = rerank(dl19, tmp_path, server, "wrong", "--model", "claude-sonnet-4-5")[0]
    assert key not in proc.stderr + proc.stdout + summary.read_text()
    assert_one_line_refusal(single, "single-token", "log-probabilities")
    assert_one_line_refusal(unset, "--api-key-env ANTHROPIC_UNSET_KEY", "not set")
    assert wrong.returncode != 0 and "401" in wrong.stderr and "Traceback" not in wrong.stderr


@pytest.mark.integration
def test_gemini_thinking_by_default_and_without_logprobs(dl19, tmp_path):
    with start_server("oracle", data_dir=dl19, imitate="gemini", think_tokens=THINK) as server:
        proc, summary = rerank(dl19, tmp_path, server, "gemini", "--model", "gemini-2.5-flash")
        stats = assert_all_parsed(proc, summary)
        assert stats["reasoning_tokens"] == QUERIES * THINK
        proc, summary = rerank(dl19, tmp_path, server, "pointwise", "--model", "gemini-2.0-flash", "--top-k", 3,
                               strategy="pointwise")
        assert_all_parsed(proc, summary, QUERIES * 3)  # yes/no read from the text: logprobs never sent
        assert server.stats()["bad_requests"] == 0
        single = rerank(dl19, tmp_path, server, "single", "--model", "gemini-2.0-flash", strategy="single-token")[0]
    assert_one_line_refusal(single, "single-token", "log-probabilities")


@pytest.mark.integration
def test_openrouter_with_headers_and_provider_fields(dl19, tmp_path):
    extra = '{"provider": {"sort": "price", "allow_fallbacks": false}, "reasoning": {"effort": "low"}}'
    headers = ("--header", "HTTP-Referer: https://example.org/rerank", "--header", "X-Title: rerank tests",
               "--header", f"X-Custom: {SECRET_HEADER}")
    with start_server("oracle", data_dir=dl19, imitate="openrouter", think_tokens=THINK) as server:
        proc, summary = rerank(dl19, tmp_path, server, "or", "--model", "anthropic/claude-sonnet-4.5",
                               "--extra-body", extra, *headers)
        stats = assert_all_parsed(proc, summary)
        log = server.log()
        # Another X-Title is the same call (headers are not in the key); another extra body is not.
        again, again_summary = rerank(dl19, tmp_path, server, "again", "--model", "anthropic/claude-sonnet-4.5",
                                      "--extra-body", extra, "--header", "X-Title: other", cache="or")
        other, other_summary = rerank(dl19, tmp_path, server, "other", "--model", "anthropic/claude-sonnet-4.5",
                                      "--extra-body", '{"provider": {"sort": "latency"}}', cache="or")
        single = rerank(dl19, tmp_path, server, "single", "--model", "anthropic/claude-sonnet-4.5",
                        strategy="single-token")[0]
    assert stats["reasoning_tokens"] == QUERIES * THINK // 2
    assert all(r["headers"]["x-title"] == "rerank tests" for r in log)
    assert all(r["headers"]["http-referer"] == "https://example.org/rerank" for r in log)
    assert all(r["sent"]["provider"] == {"sort": "price", "allow_fallbacks": False} for r in log)
    shown = read_summary(summary)["settings"]["headers"]
    assert shown == {"HTTP-Referer": "https://example.org/rerank", "X-Title": "rerank tests", "X-Custom": "***"}
    assert SECRET_HEADER not in proc.stderr + proc.stdout + summary.read_text()
    assert read_summary(again_summary)["cache_hits"] == QUERIES and again.returncode == 0
    assert read_summary(other_summary)["cache_hits"] == 0 and other.returncode == 0
    assert_one_line_refusal(single, "single-token", "log-probabilities")


@pytest.mark.integration
@pytest.mark.parametrize("flags, message", [
    (("--extra-body", "{provider"), "--extra-body: not valid JSON"),
    (("--extra-body", "[1]"), "--extra-body must be a JSON object"),
    (("--header", "X-Title"), "--header number 1: expected NAME:VALUE"),
    (("--api-key-env", "NO_SUCH_VARIABLE_FOR_RERANK"), "NO_SUCH_VARIABLE_FOR_RERANK is not set"),
])
def test_mistakes_in_the_provider_flags_are_one_line(dl19, tmp_path, flags, message):
    proc = run_cli("run", dl19 / "bm25_top100.json", "-o", tmp_path / "o.jsonl", "--model", "m", "--base-url",
                   "http://127.0.0.1:9/v1", *flags)
    assert_one_line_refusal(proc, message)
    assert not (tmp_path / "o.jsonl").exists()


def test_the_backend_learns_and_retries_in_process():
    """The same recovery without the CLI: one refusal of each, then every call goes through."""
    async def go():
        with start_server("identity", imitate="openai-reasoning") as server:
            backend = OpenAICompatBackend(model="plain-name", base_url=server.base_url, api_key="k")
            messages = [{"role": "user", "content": "Rank [1] a [2] b"}]
            try:
                first = await backend.complete(messages, {"temperature": 0.0, "max_tokens": 500})
                second = await backend.complete(messages, {"temperature": 0.0, "max_tokens": 500})
            finally:
                await backend.aclose()
            return first, second, server.stats()["bad_requests"], server.log()
    first, second, refusals, log = asyncio.run(go())
    assert refusals == 2 and first.attempts == second.attempts == 1
    assert [sorted(r["sent"]) for r in log] == [["max_completion_tokens", "model"]] * 2
    assert first.reasoning_tokens == second.reasoning_tokens == THINK
