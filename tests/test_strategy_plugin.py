"""Strategies and backends own their options: a strategy of one's own (tests/strategy_fixture.py) runs
through the CLI with no other change."""

import json
import os

import pytest

from conftest import REPO, read_summary, run_cli
from llm_server import start_server
from rerank.answers import Answer
from rerank.strategies import make_strategy, run_with_judge
from strategy_fixture import BestOfPairs

pytestmark = pytest.mark.integration
TOP = 6
QUERIES = 4


def test_unreadable_pair_answers_are_ties_and_points_are_scores():
    def judge(window):  # the lower index wins; pairs with candidate 3 cannot be read
        if 3 in window.indices:
            return Answer((), "unparseable")
        return Answer((window.indices.index(min(window.indices)),), "ok")

    order, calls, rounds = run_with_judge(BestOfPairs(), 5, judge)
    assert (calls, rounds) == (20, 1)
    # points: 0 wins 6 + 1 tie, 1: 4 + 1, 2: 2 + 1, 4: 0 + 1, and 3 ties its 8 pairs: 4
    assert order == [0, 1, 3, 2, 4]
    assert make_strategy("strategy_fixture:BestOfPairs", {"pair_prompt": "setwise"}).pair_prompt == "setwise"


def test_a_strategy_of_ones_own_runs_through_the_cli(dl19, tmp_path):
    hits = json.loads((dl19 / "bm25_top100.json").read_text())[:QUERIES]
    source = tmp_path / "in.json"
    source.write_text(json.dumps([{**entry, "hits": entry["hits"][:TOP]} for entry in hits]))
    grades = {}
    for line in (dl19 / "qrels.dl19-passage.txt").read_text().splitlines():
        qid, _, docid, grade = line.split()
        grades[(qid, docid)] = int(grade)
    out, trec, summary = tmp_path / "out.jsonl", tmp_path / "out.trec", tmp_path / "summary.json"
    env = {"PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    with start_server("oracle", data_dir=dl19) as server:
        proc = run_cli("run", source, "-o", out, "--trec", trec, "--model", "judge", "--base-url", server.base_url,
                       "--strategy", "strategy_fixture:BestOfPairs", "--top-k", TOP, "--no-cache",
                       "--summary-json", summary, "--option", "pair_prompt=pairwise", env=env)
        assert proc.returncode == 0, proc.stderr
        wrong = run_cli("run", source, "-o", tmp_path / "x.jsonl", "--model", "judge", "--base-url",
                        server.base_url, "--strategy", "strategy_fixture:BestOfPairs", "--option", "size=3", env=env)
        assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "pair_prompt" in wrong.stderr
        assert server.stats()["completions"] == QUERIES * TOP * (TOP - 1)
    stats = read_summary(summary)
    assert stats["calls"] == QUERIES * TOP * (TOP - 1) and stats["rounds"] == QUERIES
    assert stats["parse_ok"] == stats["calls"]
    for line in out.read_text().splitlines():
        result = json.loads(line)
        qid = result["query"]["qid"]
        shown = [grades.get((qid, c["docid"]), 0) for c in result["candidates"]]
        assert shown == sorted(shown, reverse=True), (qid, shown)  # a perfect judge's order
    # points reach the TREC run: at most TOP-1 wins twice over
    scores = [float(line.split()[4]) for line in trec.read_text().splitlines()]
    assert max(scores) <= 2 * (TOP - 1) and max(scores) >= TOP - 1


def test_backends_said_to_have_no_options_have_none():
    from rerank.backends import WITHOUT_OPTIONS, backend_class
    from rerank.options import declared

    assert all(not declared(backend_class(name)) for name in WITHOUT_OPTIONS)
