"""PRP all pairs: both orders in one round, disagreements and unreadable answers as ties."""

import json
import random

import pytest

from conftest import read_summary, run_cli
from llm_server import start_server
from rerank.answers import Answer
from rerank.strategies import make_strategy, run_with_judge

TOP = 20
QUERIES = 3


def preference_judge(grades, first_bias=0.0, rng=None):
    """Picks the better passage, or (with probability ``first_bias``) the first one shown."""
    def judge(window):
        if rng is not None and rng.random() < first_bias:
            return Answer((0,), "ok")
        a, b = window.indices
        return Answer((0,) if grades[a] >= grades[b] else (1,), "ok")
    return judge


def test_all_pairs_both_orders_in_one_round():
    grades = [0, 3, 1, 2, 0]
    order, calls, rounds = run_with_judge(make_strategy("pairwise"), 5, preference_judge(grades))
    assert (calls, rounds) == (20, 1)
    assert [grades[i] for i in order] == [3, 2, 1, 0, 0]
    assert run_with_judge(make_strategy("pairwise", {"both_orders": "false"}), 5, preference_judge(grades))[1] == 10


def test_disagreeing_orders_and_unreadable_answers_are_ties():
    def first_always(window):  # always the first shown: both orders disagree on every pair
        return Answer((0,), "ok")

    order, _, _ = run_with_judge(make_strategy("pairwise"), 4, first_always)
    assert order == [0, 1, 2, 3]  # all tied: the first-stage order stays
    order, _, _ = run_with_judge(make_strategy("pairwise"), 3, lambda w: Answer((), "unparseable"))
    assert order == [0, 1, 2]


def test_both_orders_lose_less_to_a_judge_biased_to_the_first_shown():
    from rerank.evaluation import evaluate_run

    rng = random.Random(7)
    losses = {True: 0.0, False: 0.0}
    for trial in range(30):
        grades = [rng.choice([0, 0, 0, 1, 2, 3]) for _ in range(12)]
        qrels = {"q": {f"d{i}": g for i, g in enumerate(grades)}}
        for both in (True, False):
            strategy = make_strategy("pairwise", {"both_orders": both})
            order, _, _ = run_with_judge(strategy, 12, preference_judge(grades, 0.5, random.Random(trial)))
            run = {"q": {f"d{i}": float(12 - rank) for rank, i in enumerate(order)}}
            best = {"q": {f"d{i}": float(g) for i, g in enumerate(grades)}}
            losses[both] += (evaluate_run(best, qrels, ["nDCG@10"]).aggregate["nDCG@10"]
                             - evaluate_run(run, qrels, ["nDCG@10"]).aggregate["nDCG@10"])
    assert losses[True] < losses[False], losses


@pytest.mark.integration
def test_perfect_judge_over_the_top_20_in_one_round_of_380_calls(dl19, tmp_path):
    hits = json.loads((dl19 / "bm25_top100.json").read_text())[:QUERIES]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(hits))
    grades = {}
    for line in (dl19 / "qrels.dl19-passage.txt").read_text().splitlines():
        qid, _, docid, grade = line.split()
        grades[(qid, docid)] = int(grade)
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    with start_server("oracle", data_dir=dl19) as server:
        proc = run_cli("run", source, "-o", out, "--model", "judge", "--base-url", server.base_url,
                       "--strategy", "pairwise", "--top-k", TOP, "--no-cache", "--summary-json", summary,
                       "--concurrency", 32)
        assert proc.returncode == 0, proc.stderr
    stats = read_summary(summary)
    assert stats["calls"] == QUERIES * TOP * (TOP - 1) and stats["rounds"] == QUERIES
    for line in out.read_text().splitlines():
        result = json.loads(line)
        shown = [grades.get((result["query"]["qid"], c["docid"]), 0) for c in result["candidates"][:TOP]]
        assert shown == sorted(shown, reverse=True)
