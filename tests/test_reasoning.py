"""Reasoning models rerank DL19 to the upper bound; a budget too small says so and caches nothing.

Three reasoning judges (rerank.testing): one writing ``<think>...</think>`` before its ranking, one
returning its reasoning apart (vLLM's reasoning parsers), and one behaving as OpenAI's o-series
(refusing ``max_tokens`` and a temperature, reporting hidden reasoning tokens).
"""


import pytest

from conftest import read_summary, run_cli
from llm_server import start_server
from rerank.evaluation import evaluate

pytestmark = pytest.mark.integration

BEST_NDCG10 = 0.8922
QUERIES = 43
THINK = 64


def rerank(dl19, tmp_path, server, name, *extra):
    out, trec, summary = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.trec", tmp_path / f"{name}.json"
    proc = run_cli("run", dl19 / "bm25_top100.json", "-o", out, "--trec", trec, "--model", "judge",
                   "--base-url", server.base_url, "--summary-json", summary, "--cache", tmp_path / f"{name}.sqlite",
                   "--strategy", "full", *extra)
    return proc, out, trec, summary


@pytest.mark.parametrize("mode", ["visible", "separate", "hidden"])
def test_reasoning_models_reach_the_upper_bound(dl19, tmp_path, mode):
    with start_server("reasoning", data_dir=dl19, reasoning=mode, think_tokens=THINK) as server:
        proc, out, trec, summary = rerank(dl19, tmp_path, server, mode, "--reasoning-budget", 256,
                                          *(["--reasoning-effort", "medium"] if mode == "hidden" else []))
        assert proc.returncode == 0, proc.stderr
        assert server.stats()["bad_requests"] == 0
    stats = read_summary(summary)
    assert stats["parse_ok"] == stats["calls"] == QUERIES
    ndcg = evaluate(str(trec), str(dl19 / "qrels.dl19-passage.txt"), ["nDCG@10"]).aggregate["nDCG@10"]
    assert BEST_NDCG10 - 1e-3 <= ndcg <= BEST_NDCG10 + 1e-4
    if mode == "hidden":  # reported by the API: counted in the summary
        assert stats["reasoning_tokens"] == QUERIES * THINK
    else:  # the thinking is kept in the call records, not in the answer
        assert "<think>" not in out.read_text()


def test_a_reasoning_budget_too_small_is_truncated_and_never_cached(dl19, tmp_path):
    with start_server("reasoning", data_dir=dl19, reasoning="visible", think_tokens=THINK) as server:
        proc, _, _, summary = rerank(dl19, tmp_path, server, "small", "--reasoning-budget", 8, "--top-k", 5)
        assert proc.returncode == 0, proc.stderr
        stats = read_summary(summary)
        assert stats["parse_truncated"] == stats["calls"] == QUERIES
        again, _, _, _ = rerank(dl19, tmp_path, server, "small", "--reasoning-budget", 8, "--top-k", 5, "--force")
        assert again.returncode == 0, again.stderr
        assert server.stats()["completions"] == 2 * QUERIES  # nothing truncated was cached
    assert "truncated" in proc.stderr


def test_o_series_refuses_plain_requests_which_are_then_sent_as_it_takes_them(dl19, tmp_path):
    with start_server("reasoning", data_dir=dl19, reasoning="hidden") as server:
        proc, _, _, summary = rerank(dl19, tmp_path, server, "plain", "--top-k", 5)
        assert proc.returncode == 0, proc.stderr
        assert "refused max_tokens" in proc.stderr and "refused the temperature" in proc.stderr
    stats = read_summary(summary)
    assert stats["parse_ok"] == stats["calls"] == QUERIES


def test_first_token_cannot_follow_reasoning(tmp_path):
    proc = run_cli("run", tmp_path / "none.jsonl", "-o", tmp_path / "o.jsonl", "--model", "m", "--base-url",
                   "http://127.0.0.1:9/v1", "--strategy", "single-token", "--reasoning-budget", 100)
    assert proc.returncode == 2 and "reasoning" in proc.stderr and proc.stderr.count("\n") == 1
