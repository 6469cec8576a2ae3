"""TourRank: r tournaments of group selections side by side, one round per stage, points as scores."""

import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import collection_grades, read_summary, run_cli, run_collection_with_judge
from llm_server import start_server
from rerank.answers import Answer, Choice
from rerank.errors import ConfigError
from rerank.prompts import load_prompt
from rerank.strategies import make_strategy, run_with_judge
from rerank.strategies.tourrank import TourRank, skip_groups, stage_plan
from rerank.testing.reading import read_prompt

QUERIES = 3


def choice_judge(grades, seen=None):
    """Chooses a group's best ``k`` by grade, best first, ties as shown (the oracle's way)."""
    def judge(window):
        if seen is not None:
            seen.append(window)
        best = sorted(range(len(window)), key=lambda p: (-grades[window.indices[p]], p))
        return Answer(tuple(best[: window.kind.k]), "ok")
    return judge


def run(strategy, n, judge):
    """The strategy's Ranking (order and scores), calls and rounds."""
    generator, calls, rounds = strategy.rounds(n), 0, 0
    try:
        windows = next(generator)
        while True:
            rounds += 1
            calls += len(windows)
            windows = generator.send([judge(w) for w in windows])
    except StopIteration as stop:
        return stop.value, calls, rounds


@pytest.mark.parametrize("r,calls", [(1, 13), (2, 26), (3, 39)])
def test_a_tournament_over_100_is_13_calls_and_every_tournament_shares_the_5_rounds(r, calls):
    grades = list(range(100))
    random.Random(r).shuffle(grades)
    order, made, rounds = run_with_judge(make_strategy("tourrank", {"r": r}), 100, choice_judge(grades))
    assert (made, rounds) == (calls, 5)
    assert [grades[i] for i in order[:10]] == list(range(99, 89, -1))


def test_the_reference_stages():
    assert stage_plan(100) == [(5, 50), (5, 20), (1, 10), (1, 5), (1, 2)]
    seen = []
    run_with_judge(TourRank(r=1), 100, choice_judge(list(range(100)), seen))
    assert [(len(w), w.kind) for w in seen] == ([(20, Choice(10))] * 5 + [(10, Choice(4))] * 5
                                                + [(20, Choice(10)), (10, Choice(5)), (5, Choice(2))])
    # the first stage deals the first-stage order as seeds: group j holds ranks j, j + 5, ...
    assert [sorted(w.indices) for w in seen[:5]] == [list(range(j, 100, 5)) for j in range(5)]
    assert skip_groups(list(range(7)), 2, 3) == [([0, 2, 4, 6], 2), ([1, 3, 5], 1)]


def test_points_are_the_scores_summed_over_tournaments_and_ties_follow_the_last_answer():
    grades = list(range(100))
    ranking, _, _ = run(TourRank(r=2), 100, choice_judge(grades))
    assert ranking.scores[:12] == [10.0] * 2 + [8.0] * 3 + [6.0] * 5 + [4.0] * 2
    assert ranking.scores == sorted(ranking.scores, reverse=True) and sum(ranking.scores) == 2 * 87
    # within a tie, the order the last answer choosing them gave: exact for the top 10
    assert ranking.order[:10] == list(range(99, 89, -1))


def test_seeds_shuffle_the_groups_deterministically():
    def shown(seed, r=2):
        seen = []
        run_with_judge(TourRank(r=r, seed=seed), 100, choice_judge(list(range(100)), seen))
        return [w.indices for w in seen]

    assert shown(0) == shown(0)
    assert shown(0) != shown(1)
    first = shown(3)
    assert [sorted(w) for w in first] == [sorted(w) for w in shown(4)]  # same groups, other orders
    one, two = first[:5], first[5:10]   # stage 1 of tournaments 1 and 2
    assert [sorted(w) for w in one] == [sorted(w) for w in two] and one != two
    assert shown(3, r=3)[:10] == first[:10]   # a tournament's draws do not depend on r


@pytest.mark.parametrize("n", [0, 1])
def test_nothing_to_rank(n):
    assert run_with_judge(TourRank(), n, choice_judge([0] * n)) == (list(range(n)), 0, 0)


def test_two_candidates_one_call_a_tournament():
    seen = []
    order, calls, rounds = run_with_judge(TourRank(), 2, choice_judge([0, 1], seen))
    assert (order, calls, rounds) == ([1, 0], 2, 1)
    assert all(w.kind == Choice(1) and len(w) == 2 for w in seen)


@pytest.mark.parametrize("n", [3, 5, 10, 20, 21, 37, 50, 99, 101, 150, 200, 1000])
def test_other_lengths_scale_the_stages(n):
    plan = stage_plan(n)
    size = n
    for groups, kept in plan:
        assert 1 <= groups <= kept < size and size - kept >= groups
        assert -(-size // groups) <= 20     # a group holds at most 20 passages
        size = kept
    assert 1 <= len(plan) <= 5 and (size <= 2 or len(plan) == 5)
    grades = list(range(n))
    random.Random(n).shuffle(grades)
    ranking, calls, rounds = run(TourRank(r=2), n, choice_judge(grades))
    assert rounds == len(plan) and calls == 2 * sum(groups for groups, _ in plan)
    assert sorted(ranking.order) == list(range(n))
    best = grades.index(n - 1)
    assert ranking.scores[ranking.order.index(best)] == ranking.scores[0]
    if plan[-1][0] == 1:   # a final of one group: its answer orders the winners
        assert ranking.order[0] == best
    assert TourRank().largest_window(n) <= 20


def test_scaled_plans():
    assert stage_plan(200) == [(10, 100), (10, 40), (2, 20), (1, 10), (1, 4)]
    assert stage_plan(50) == [(3, 25), (3, 10), (1, 5), (1, 3), (1, 1)]
    assert stage_plan(20) == [(1, 10), (1, 4), (1, 2), (1, 1)]
    assert stage_plan(2) == [(1, 1)] and stage_plan(1) == stage_plan(0) == []


@pytest.mark.parametrize("options,flag", [({"r": 0}, "--r")])
def test_invalid_options(options, flag):
    with pytest.raises(ConfigError, match=flag):
        make_strategy("tourrank", options)


def test_options_by_name():
    strategy = make_strategy("tourrank", {"r": "3", "seed": "7"})
    assert (strategy.r, strategy.seed, strategy.default_prompt) == (3, 7, "tourrank")


def test_the_prompt_is_read_as_a_choice_of_k():
    template = load_prompt("tourrank")
    messages = template.render("what is a flea", [f"passage {i}" for i in range(10)], "", k=4)
    prompt = read_prompt(messages)
    assert prompt.style == "brackets" and len(prompt.passages) == 10
    assert (prompt.question.kind, prompt.question.k) == ("best", 4)
    assert "select the 4 documents that are most relevant" in messages[1]["content"]


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 130), r=st.integers(1, 3), seed=st.integers(0, 10**6), garbage=st.booleans())
def test_any_answers_give_a_permutation_in_at_most_five_rounds(n, r, seed, garbage):
    rng = random.Random(seed)

    def judge(window):
        assert len(window) <= 20 and len(set(window.indices)) == len(window)
        if garbage:  # repeats, out-of-range positions, too many or none at all
            return Answer(tuple(rng.randrange(-2, len(window) + 3) for _ in range(rng.randrange(0, 25))), "repaired")
        return Answer(tuple(rng.sample(range(len(window)), window.kind.k)), "ok")

    ranking, calls, rounds = run(TourRank(r=r, seed=seed), n, judge)
    assert sorted(ranking.order) == list(range(n)) and len(ranking.scores) == n
    assert ranking.scores == sorted(ranking.scores, reverse=True)
    assert rounds == len(stage_plan(n)) <= 5
    assert max(ranking.scores, default=0) <= 5 * r


def test_perfect_judge_on_dl19(dl19):
    ndcg, calls, rounds = run_collection_with_judge(dl19, TourRank(), choice_judge)
    assert len(calls) == 43
    assert ndcg >= 0.885, ndcg               # upper bound 0.8922
    assert set(calls) == {26} and Counter(rounds) == {5: 43}


@pytest.mark.integration
def test_perfect_judge_through_the_cli(dl19, tmp_path):
    hits = json.loads((dl19 / "bm25_top100.json").read_text())[:QUERIES]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(hits))
    queries, _ = collection_grades(dl19)
    grades = {(qid, d): g for qid, docids, gs in queries for d, g in zip(docids, gs)}
    out, trec, summary = tmp_path / "out.jsonl", tmp_path / "out.trec", tmp_path / "summary.json"
    with start_server("oracle", data_dir=dl19) as server:
        proc = run_cli("run", source, "-o", out, "--trec", trec, "--model", "judge", "--base-url",
                       server.base_url, "--strategy", "tourrank", "--r", 2, "--seed", 1, "--no-cache",
                       "--summary-json", summary)
        assert proc.returncode == 0, proc.stderr
    stats = read_summary(summary)
    assert stats["calls"] == 26 * QUERIES and stats["rounds"] == 5 * QUERIES
    assert stats["parse_ok"] == stats["calls"]
    for line in out.read_text().splitlines():
        result = json.loads(line)
        shown = [grades[(str(result["query"]["qid"]), c["docid"])] for c in result["candidates"][:10]]
        assert shown == sorted(shown, reverse=True), shown
    scores = [float(line.split()[4]) for line in trec.read_text().splitlines()]
    assert max(scores) == 10.0    # 5 points a tournament for the winners
