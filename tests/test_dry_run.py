"""`--dry-run` on `rerank run`, `labels` and `experiment`: the calls and tokens a run will send,
with no LLM call and no file written, against what the real run then sends."""

import asyncio
import dataclasses
import json
import sqlite3

import pytest

from conftest import read_summary, run_cli
from rerank.answers import PERMUTATION
from rerank.backends.base import Completion
from rerank.cache import CallCache
from rerank.config import RerankerConfig
from rerank.dry_run import Cost, Price, StoredCalls, format_plan, format_plans, plan_run
from rerank.errors import ConfigError
from rerank.testing import start_server
from rerank.types import Candidate, Query, Request

QUERIES = 43  # DL19


def _requests(count=3, candidates=30):
    return [Request(Query(qid=f"q{q}", text=f"query number {q} about bees"),
                    [Candidate(f"d{q}-{i}", f"passage {i} of query {q}: " + "words " * (i % 7 + 3))
                     for i in range(candidates)]) for q in range(count)]


def _dry(args, *more):
    proc = run_cli(*args, "--dry-run", "--json", *more)
    assert proc.returncode == 0, proc.stderr
    (plan,) = json.loads(proc.stdout)["runs"]
    return plan


# --- units -----------------------------------------------------------------------------------

def test_stored_calls_read_only_and_trusted_entries_only(tmp_path):
    missing = tmp_path / "none" / "calls.sqlite"
    stored = StoredCalls(missing)
    assert not stored.exists and len(stored) == 0 and stored.get("k", PERMUTATION.cacheable) is None
    stored.close()
    assert not missing.exists() and not missing.parent.exists()  # nothing created
    path = tmp_path / "calls.sqlite"
    with CallCache(path) as cache:
        cache.put("good", Completion("[1] > [2]", 10, 5, "stop").to_json())
        cache.put("cut", Completion("[1] >", 10, 5, "length").to_json())
        cache.put("bad", {"text": 3})
    before = path.read_bytes()
    stored = StoredCalls(path)
    assert len(stored) == 3
    assert stored.get("good", PERMUTATION.cacheable).text == "[1] > [2]"
    assert stored.get("cut", PERMUTATION.cacheable) is None      # never stored by a run: a miss
    assert stored.get("bad", PERMUTATION.cacheable) is None      # malformed: a miss
    assert stored.get("absent", PERMUTATION.cacheable) is None
    with pytest.raises(sqlite3.OperationalError):                  # read-only connection
        stored._conn.execute("DELETE FROM calls")
    stored.close()
    assert path.read_bytes() == before


def test_price_and_costs():
    assert Price.parse(None) is None
    price = Price.parse([2.5, 10.0])
    assert price.of(1_000_000, 100_000) == pytest.approx(3.5)
    assert Price.parse([2.5, 10.0], "openai").of(1_000_000, 100_000) == pytest.approx(1.75)  # batch: half
    with pytest.raises(ConfigError, match="negative"):
        Price.parse([-1.0, 1.0])
    total = Cost(1, 1, 10, 2, 4, 1, 0, 0, 0) + Cost(2, 2, 20, 3, 5, 0, 1, 5, 1)
    assert total == Cost(3, 3, 30, 5, 9, 1, 1, 5, 1) and total.new_calls == 1


def test_plan_of_sliding_is_exact_and_the_same_under_every_judge(tmp_path):
    config = RerankerConfig.from_dict(dict(model="gpt-4o-mini", strategy="sliding", window=10, step=5,
                                          cache=str(tmp_path / "calls.sqlite")))
    plan = asyncio.run(plan_run("run", config, _requests()))
    assert [cost.calls for _, cost in plan.queries] == [5, 5, 5]     # 30 candidates, windows 10/5
    assert plan.total.calls == plan.total.rounds == 15 and plan.max_rounds == 5 and not plan.varies
    assert plan.total.cached_calls == 0 and plan.total.new_prompt_tokens == plan.total.prompt_tokens > 0
    assert plan.total.answer_tokens <= plan.total.max_answer_tokens
    assert plan.tokenizer == "o200k_base (tiktoken)" and plan.exact
    assert not (tmp_path / "calls.sqlite").exists()
    text = format_plan(plan, Price(1.0, 2.0))
    assert "total" in text and "no LLM was called" in text and "$" in text
    assert "same under the identity (shown), perfect and reverse judges" in text


def test_plan_of_an_adaptive_strategy_gives_the_range(tmp_path):
    config = RerankerConfig(model="judge-model", strategy="setwise", top_k=20, cache=None)
    plan = asyncio.run(plan_run("run", config, _requests(2, 20)))
    calls = {name: cost.calls for name, cost in plan.judges.items()}
    assert set(calls) == {"identity", "perfect", "reverse"} and plan.varies
    assert calls["reverse"] > calls["perfect"]
    assert "calls depend on the answers" in format_plan(plan)
    assert not plan.exact  # not an OpenAI model: cl100k is the run's estimate of its server's count
    assert "identity" in format_plans([plan, plan])


def test_plan_follows_the_cache_and_counts_repeated_calls(tmp_path):
    """After a real run (here: an in-process judge) fills the cache, the dry run finds every call
    there; an identical plan through the same 'planned' keys (a second experiment variant) pays
    for nothing either."""
    from rerank import Reranker

    cache = tmp_path / "calls.sqlite"
    requests = _requests(2, 25)
    config = RerankerConfig.from_dict(dict(model="judge:reverse", backend="judge", strategy="sliding", window=10, step=5,
                                           cache=str(cache)))
    fresh = asyncio.run(plan_run("run", config, requests))
    assert fresh.total.cached_calls == 0

    async def real():
        async with Reranker(config) as reranker:
            return await reranker.rerank_batch(requests)

    results = asyncio.run(real())
    after = asyncio.run(plan_run("run", config, requests))
    assert after.total.calls == sum(len(r.calls) for r in results) == after.total.cached_calls
    assert after.total.new_calls == 0 and after.total.new_prompt_tokens == 0
    # The reverse judge's answers were cached: the dry run followed them, call for call.
    assert after.total.prompt_tokens == sum(c.prompt_tokens for r in results for c in r.calls)
    planned: dict = {}
    other = dataclasses.replace(config, cache=None)
    first = asyncio.run(plan_run("a", other, requests, planned=planned))
    second = asyncio.run(plan_run("b", other, requests, planned=planned))
    assert first.total.new_calls == first.total.calls and second.total.repeated_calls == second.total.calls


def test_flags_without_dry_run_are_refused(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"query": {"qid": "1", "text": "q"},
                                  "candidates": [{"docid": "a", "doc": {"contents": "x"}}]}) + "\n")
    for flags in (("--price", "1", "2"), ("--json",)):
        proc = run_cli("run", source, "-o", tmp_path / "out.jsonl", "--model", "gpt-4o-mini", *flags)
        assert proc.returncode != 0 and "--dry-run" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


# --- against real runs on DL19 ---------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("strategy", ["sliding", "full"])
def test_dry_run_equals_the_real_run(strategy, dl19, tmp_path):
    out, cache, summary = tmp_path / "out.jsonl", tmp_path / "calls.sqlite", tmp_path / "summary.json"
    with start_server("oracle", data_dir=dl19) as server:
        args = ("run", dl19 / "bm25_top100.json", "-o", out, "--trec", tmp_path / "out.trec", "--model", "judge",
                "--base-url", server.base_url, "--strategy", strategy, "--cache", cache, "--concurrency", 32)
        plan = _dry(args, "--price", "0.15", "0.60")
        assert server.stats()["requests"] == 0                      # no call, not even the endpoint check
        assert not out.exists() and not cache.exists() and not (tmp_path / "out.summary.json").exists()
        proc = run_cli(*args, "--summary-json", summary)
        assert proc.returncode == 0, proc.stderr
        real = read_summary(summary)
        paid = server.stats()["completions"]
        again = _dry(args)
        assert server.stats()["completions"] == paid
    assert plan["total"]["calls"] == real["calls"] == (9 if strategy == "sliding" else 1) * QUERIES
    assert plan["max_rounds"] == (9 if strategy == "sliding" else 1)
    assert plan["total"]["rounds"] == real["rounds"]
    assert plan["total"]["prompt_tokens"] == pytest.approx(real["prompt_tokens"], rel=0.01)
    assert plan["total"]["answer_tokens"] == pytest.approx(real["completion_tokens"], rel=0.05)
    assert plan["total"]["price"] == pytest.approx((plan["total"]["prompt_tokens"] * 0.15
                                                    + plan["total"]["answer_tokens"] * 0.60) / 1e6)
    assert plan["total"]["cached_calls"] == 0 and plan["cache_entries"] == 0
    # After the real run filled the cache: every call is there, and the dry run followed the
    # cached (oracle) answers, so its prompts are the real run's exactly.
    assert again["total"]["cached_calls"] == again["total"]["calls"] == real["calls"]
    assert again["total"]["new_calls"] == 0 and again["total"]["new_prompt_tokens"] == 0
    assert again["total"]["prompt_tokens"] == real["prompt_tokens"]


@pytest.mark.integration
def test_labels_dry_run_equals_the_real_labels_run(dl19, tmp_path):
    out, cache, summary = tmp_path / "labels.jsonl", tmp_path / "calls.sqlite", tmp_path / "summary.json"
    with start_server("oracle", data_dir=dl19) as server:
        args = ("labels", dl19 / "bm25_top100.json", "-o", out, "--model", "judge", "--base-url", server.base_url,
                "--variant", "shrinking", "--cache", cache, "--concurrency", 32)
        proc = run_cli(*args, "--dry-run")
        assert proc.returncode == 0, proc.stderr
        assert "total" in proc.stdout and "no LLM was called" in proc.stdout
        plan = _dry(args)
        assert server.stats()["requests"] == 0 and not out.exists() and not cache.exists()
        proc = run_cli(*args, "--summary-json", summary)
        assert proc.returncode == 0, proc.stderr
        again = _dry(args)
    real = read_summary(summary)
    assert plan["total"]["calls"] == real["calls"] == 45 * QUERIES
    assert plan["total"]["prompt_tokens"] == pytest.approx(real["prompt_tokens"], rel=0.01)
    assert again["total"]["cached_calls"] == real["calls"] and again["total"]["prompt_tokens"] == real["prompt_tokens"]


@pytest.mark.integration
def test_experiment_dry_run_covers_every_variant(dl19, tmp_path):
    hits = json.loads((dl19 / "bm25_top100.json").read_text())[:5]
    (tmp_path / "in.json").write_text(json.dumps(hits))
    path = tmp_path / "x.yaml"
    path.write_text(f"name: x\ncandidates: in.json\nqrels: {dl19 / 'qrels.dl19-passage.txt'}\n"
                    f"settings: {{backend: judge, model: 'judge:oracle:{dl19}'}}\n"
                    "grid: {strategy: [sliding, full, tdpart]}\n")
    proc = run_cli("experiment", path, "--dry-run", "--price", "1", "2")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "results").exists()
    lines = proc.stdout.splitlines()
    assert any(line.startswith("sliding") for line in lines) and any(line.startswith("tdpart") for line in lines)
    proc = run_cli("experiment", path, "--dry-run", "--json")
    plans = {run["name"]: run for run in json.loads(proc.stdout)["runs"]}
    assert plans["sliding"]["total"]["calls"] == 45 and plans["full"]["total"]["calls"] == 5
    assert set(plans["tdpart"]["judges"]) == {"identity", "perfect", "reverse"}
    assert run_cli("experiment", path).returncode == 0
    proc = run_cli("experiment", path, "--dry-run", "--json")
    for run in json.loads(proc.stdout)["runs"]:
        assert run["total"]["new_calls"] == 0, run["name"]


def test_the_gguf_counter_counts_as_the_loaded_model_does():
    """llamacpp: the dry run reads the GGUF's vocabulary and chat template, not its weights, and
    counts exactly as the backend with the model loaded."""
    pytest.importorskip("llama_cpp")
    from rerank.backends.llamacpp import LlamaCppBackend
    from rerank.dry_run.plan import gguf_counter

    try:
        backend = LlamaCppBackend()
    except ConfigError as exc:
        pytest.skip(str(exc))
    dry, loaded = gguf_counter(backend.model_path), backend.token_counter()
    messages = [{"role": "system", "content": "You are RankGPT."},
                {"role": "user", "content": "Rank [1] fleas live über naïve 12345 [2] > [3]"},
                {"role": "assistant", "content": "[2] >"}]
    assert dry.count_messages(messages) == loaded.count_messages(messages)
    assert dry.count("héllo wörld [12] > [3]") == loaded.count("héllo wörld [12] > [3]")
    assert dry.truncate("one two three four five", 3) == loaded.truncate("one two three four five", 3)
