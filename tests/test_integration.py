"""The real CLI against real OpenAI-compatible HTTP servers on 127.0.0.1, on TREC DL19.

The oracle server ranks the passages it is shown by the DL19 qrels (a perfect judge): a correct
strategy then reaches the best nDCG@10 any reranking of the BM25 top-100 can reach (0.8922).
"""

import json

import pytest

from conftest import read_summary, run_cli
from llm_server import start_server
from rerank.evaluation import evaluate

pytestmark = pytest.mark.integration

BM25_NDCG10 = 0.5058
BEST_NDCG10 = 0.8922
QUERIES = 43


def rerank_dl19(dl19, server, tmp_path, name, *extra, cache=None):
    out, trec, summary = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.trec", tmp_path / f"{name}.json"
    cache_args = ["--cache", cache] if cache else ["--no-cache"]
    proc = run_cli("run", dl19 / "bm25_top100.json", "-o", out, "--trec", trec, "--model", "judge",
                   "--base-url", server.base_url, "--summary-json", summary, "--concurrency", 16,
                   *cache_args, *extra)
    assert proc.returncode == 0, proc.stderr
    ndcg = evaluate(str(trec), str(dl19 / "qrels.dl19-passage.txt"), ["nDCG@10"]).aggregate["nDCG@10"]
    return proc, out, trec, read_summary(summary), ndcg


@pytest.mark.parametrize("strategy,calls_per_query", [("sliding", 9), ("full", 1)])
def test_perfect_judge_reaches_the_upper_bound(dl19, tmp_path, strategy, calls_per_query):
    with start_server("oracle", data_dir=dl19) as server:
        proc, out, trec, summary, ndcg = rerank_dl19(dl19, server, tmp_path, strategy, "--strategy", strategy)
        assert server.stats()["completions"] == QUERIES * calls_per_query
    assert ndcg >= 0.891, ndcg
    assert ndcg <= BEST_NDCG10 + 1e-4
    assert summary["queries"] == QUERIES
    assert summary["calls"] == QUERIES * calls_per_query
    assert summary["rounds"] == QUERIES * calls_per_query
    assert summary["parse_ok"] == summary["calls"]
    lines = out.read_text().splitlines()
    assert len(lines) == QUERIES and all(len(json.loads(line)["candidates"]) == 100 for line in lines)
    assert "9.0 per query" in proc.stderr if strategy == "sliding" else "1.0 per query" in proc.stderr


def test_full_ranking_sends_at_most_056_of_the_sliding_prompt_tokens(dl19, tmp_path):
    with start_server("oracle", data_dir=dl19) as server:
        sliding = rerank_dl19(dl19, server, tmp_path, "s", "--strategy", "sliding")[3]
        full = rerank_dl19(dl19, server, tmp_path, "f", "--strategy", "full")[3]
    ratio = full["prompt_tokens"] / sliding["prompt_tokens"]
    assert ratio <= 0.56, ratio


@pytest.mark.parametrize("judge", ["identity", "garbage"])
def test_uninformative_judges_keep_bm25(dl19, tmp_path, judge):
    with start_server(judge, data_dir=dl19) as server:
        proc, out, trec, summary, ndcg = rerank_dl19(dl19, server, tmp_path, judge)
    assert round(ndcg, 4) == BM25_NDCG10
    if judge == "garbage":
        assert summary["parse_unparseable"] == summary["calls"] == QUERIES * 9
        assert f"{QUERIES * 9} unparseable" in proc.stderr
    else:
        assert summary["parse_ok"] == summary["calls"]


def test_failing_server_gives_the_same_output(dl19, tmp_path):
    with start_server("oracle", data_dir=dl19) as server:
        clean = rerank_dl19(dl19, server, tmp_path, "clean")
    with start_server("oracle", data_dir=dl19, fail_rate=0.3, seed=7) as server:
        flaky = rerank_dl19(dl19, server, tmp_path, "flaky", "--max-attempts", 15)
        stats = server.stats()
    assert stats["failures"] > 0.2 * stats["requests"]
    assert flaky[3]["retries"] == stats["failures"]
    assert flaky[1].read_bytes() == clean[1].read_bytes()
    assert flaky[2].read_bytes() == clean[2].read_bytes()


def test_rerun_on_the_same_cache_makes_no_call(dl19, tmp_path):
    cache = tmp_path / "calls.sqlite"
    with start_server("oracle", data_dir=dl19) as server:
        first = rerank_dl19(dl19, server, tmp_path, "first", cache=cache)
        calls_after_first = server.stats()["requests"]
        second = rerank_dl19(dl19, server, tmp_path, "second", cache=cache)
        assert server.stats()["requests"] == calls_after_first
    assert first[3]["cache_hits"] == 0
    assert second[3]["cache_hits"] == second[3]["calls"] == QUERIES * 9
    assert second[1].read_bytes() == first[1].read_bytes()
    assert second[2].read_bytes() == first[2].read_bytes()


def test_eval_command_matches_the_reference(dl19, tmp_path):
    with start_server("identity", data_dir=dl19) as server:
        trec = rerank_dl19(dl19, server, tmp_path, "id")[2]
    proc = run_cli("eval", trec, "--qrels", dl19 / "qrels.dl19-passage.txt", "--metrics", "nDCG@10", "RR@10")
    assert proc.returncode == 0, proc.stderr
    assert "nDCG@10  0.5058" in proc.stdout
    per_query = run_cli("eval", trec, "--qrels", dl19 / "qrels.dl19-passage.txt", "--per-query")
    assert per_query.returncode == 0 and len(per_query.stdout.splitlines()) == 1 + QUERIES + 1


def test_full_ranking_fits_a_server_that_refuses_long_prompts(dl19, tmp_path):
    with start_server("oracle", data_dir=dl19, context_window=6000) as server:
        proc, out, trec, summary, ndcg = rerank_dl19(dl19, server, tmp_path, "small", "--strategy", "full")
        stats = server.stats()
    assert summary["queries"] == QUERIES and summary["calls"] == QUERIES
    assert summary["context_retries"] >= 1  # learned once, then every prompt is built to fit
    assert stats["bad_requests"] == summary["context_retries"] < QUERIES
    assert summary["prompt_tokens"] / QUERIES <= 6000
    assert summary["prompts_shortened"] >= QUERIES - summary["context_retries"]  # every prompt built to fit
    assert f"{summary['prompts_shortened']} prompts shortened to fit" in proc.stderr
    assert ndcg >= 0.85, ndcg  # shortened passages still tell the perfect judge which is which


def test_single_token_ranking_reads_one_token_a_window_and_reaches_the_upper_bound(dl19, tmp_path):
    """FIRST-style: one call per window with max_tokens=1 and top_logprobs, ordered by them."""
    with start_server("oracle", data_dir=dl19) as server:
        proc, out, trec, summary, ndcg = rerank_dl19(dl19, server, tmp_path, "first", "--strategy", "single-token")
        requests = server.log()
    assert summary["calls"] == QUERIES * 9 and summary["parse_ok"] == summary["calls"]
    assert len(requests) == QUERIES * 9
    assert all(r["max_tokens"] == 1 and r["logprobs"] is True and r["top_logprobs"] == 20 for r in requests)
    assert all(r["prefill"] == "[" for r in requests)  # the answer's start: the next token is a letter
    assert all(len(r["answer"]) == 1 and r["answer"].isalpha() for r in requests)
    assert summary["completion_tokens"] == summary["calls"]
    # The perfect judge's preference over all 20 letters orders each window as a full ranking would.
    assert BEST_NDCG10 - 1e-3 <= ndcg <= BEST_NDCG10 + 1e-4, ndcg


def test_single_token_ranking_against_a_server_without_logprobs_fails_clearly(dl19, tmp_path):
    with start_server("oracle", data_dir=dl19, logprobs=False) as server:
        proc = run_cli("run", dl19 / "bm25_top100.json", "-o", tmp_path / "o.jsonl", "--model", "judge",
                       "--base-url", server.base_url, "--no-cache", "--strategy", "single-token")
    assert proc.returncode == 3, proc.stderr
    assert "no top_logprobs" in proc.stderr and "Traceback" not in proc.stderr


def test_single_token_ranking_with_a_numbered_prompt_needs_small_windows(tmp_path):
    proc = run_cli("run", tmp_path / "in.jsonl", "-o", tmp_path / "o.jsonl", "--model", "m",
                   "--base-url", "http://127.0.0.1:9/v1", "--strategy", "single-token", "--prompt", "rankgpt")
    assert proc.returncode == 2 and "--window must be 9 or less" in proc.stderr
    proc = run_cli("run", tmp_path / "in.jsonl", "-o", tmp_path / "o.jsonl", "--model", "m",
                   "--base-url", "http://127.0.0.1:9/v1", "--prompt", "first")
    assert proc.returncode == 2 and "names passages by letters" in proc.stderr


def test_single_token_answers_are_cached_with_their_logprobs(dl19, tmp_path):
    cache = tmp_path / "calls.sqlite"
    with start_server("noisy", data_dir=dl19) as server:
        first = rerank_dl19(dl19, server, tmp_path, "a", "--strategy", "single-token", cache=cache)
        assert server.stats()["completions"] == QUERIES * 9
        server.reset_stats()
        again = rerank_dl19(dl19, server, tmp_path, "b", "--strategy", "single-token", cache=cache)
        assert server.stats()["completions"] == 0
    assert again[3]["cache_hits"] == QUERIES * 9
    assert again[1].read_text() == first[1].read_text() and again[2].read_text() == first[2].read_text()
