"""Pointwise reranking: every passage judged alone in one round, sorted by P(yes)."""

import pytest

from conftest import read_summary, run_cli
from llm_server import start_server
from rerank.answers import Answer
from rerank.evaluation import evaluate
from rerank.strategies import make_strategy, run_with_judge

BEST_NDCG10 = 0.8922
QUERIES = 43


def test_one_round_of_windows_of_one_sorted_by_probability_unreadable_last():
    probabilities = [0.2, None, 0.9, 0.2, 0.7]

    def judge(window):
        (index,) = window.indices
        p = probabilities[index]
        return Answer((0,), "ok", (p,)) if p is not None else Answer((0,), "unparseable")

    order, calls, rounds = run_with_judge(make_strategy("pointwise"), 5, judge)
    assert (calls, rounds) == (5, 1)
    assert order == [2, 4, 0, 3, 1]  # ties keep the first-stage order; unreadable goes last
    assert run_with_judge(make_strategy("pointwise"), 0, judge) == ([], 0, 0)


@pytest.mark.integration
def test_perfect_judge_reaches_the_upper_bound_with_one_round(dl19, tmp_path):
    out, trec, summary = tmp_path / "pw.jsonl", tmp_path / "pw.trec", tmp_path / "pw.json"
    with start_server("oracle", data_dir=dl19) as server:
        proc = run_cli("run", dl19 / "bm25_top100.json", "-o", out, "--trec", trec, "--model", "judge",
                       "--base-url", server.base_url, "--strategy", "pointwise", "--no-cache",
                       "--summary-json", summary, "--concurrency", 32)
        assert proc.returncode == 0, proc.stderr
        assert server.stats()["completions"] == QUERIES * 100
    stats = read_summary(summary)
    assert stats["rounds"] == QUERIES and stats["parse_ok"] == stats["calls"] == QUERIES * 100
    ndcg = evaluate(str(trec), str(dl19 / "qrels.dl19-passage.txt"), ["nDCG@10"]).aggregate["nDCG@10"]
    assert BEST_NDCG10 - 1e-4 <= ndcg <= BEST_NDCG10 + 1e-4
    first = trec.read_text().splitlines()[0].split()
    assert 0.0 < float(first[4]) <= 1.0  # the probability of relevance is the run's score
