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


def test_monot5_true_false_reads_as_yes_no():
    from rerank.answers import Relevance
    from rerank.backends.base import Completion

    def completion(text, logprobs=None):
        return Completion(text, 10, 1, top_logprobs=logprobs)

    kind = Relevance()
    assert kind.parse(completion("true", (("true", -0.1), ("false", -2.3))), ["1"]).scores[0] > 0.85
    assert kind.parse(completion("false", (("false", -0.1), ("true", -2.3))), ["1"]).scores[0] < 0.15
    assert kind.parse(completion("False."), ["1"]).scores == (0.0,)
    assert kind.parse(completion("Yes"), ["1"]).scores == (1.0,)


@pytest.mark.parametrize("prompt,words", [("monot5", ("true", "false")), ("qwen3-reranker", ("yes", "no")),
                                          ("pointwise", ("Yes", "No"))])
def test_monot5_and_qwen3_reranker_prompts_against_the_judge(dl19, prompt, words):
    """Each prompt reads as a relevance question with its own answer words, and ranks perfectly."""
    import asyncio

    from rerank import Reranker
    from rerank.evaluation import evaluate_run
    from rerank.formats import read_qrels, read_requests
    from rerank.prompts import load_prompt
    from rerank.testing.reading import read_prompt

    question = read_prompt(load_prompt(prompt).render("a query", ["a passage"], "")).question
    assert (question.kind, question.words) == ("relevance", words)
    requests = list(read_requests(dl19 / "bm25_top100.json"))[:2]
    qrels = read_qrels(dl19 / "qrels.dl19-passage.txt")

    async def rerank():
        async with Reranker(backend="judge", model=f"judge:oracle:{dl19}", strategy="pointwise", prompt=prompt,
                            cache=None) as reranker:
            return await reranker.rerank_batch(requests)

    results = asyncio.run(rerank())
    assert {call.parse_status for r in results for call in r.calls} == {"ok"}
    run = {r.query.qid: {c.docid: c.score for c in r.candidates} for r in results}
    ideal = {qid: {docid: float(grade) for docid, grade in qrels[qid].items()} for qid in run}
    assert evaluate_run(run, qrels, ["nDCG@10"]).aggregate["nDCG@10"] == pytest.approx(
        evaluate_run(ideal, qrels, ["nDCG@10"]).aggregate["nDCG@10"])
