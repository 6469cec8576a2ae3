"""Top-down partitioning: a pivot from the top window, every chunk against it in one round."""

import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import collection_grades, read_summary, run_cli, run_collection_with_judge
from llm_server import start_server
from rerank.answers import Answer
from rerank.errors import ConfigError
from rerank.strategies import make_strategy, run_with_judge
from rerank.strategies.base import Window
from rerank.strategies.tdpart import TopDownPartition, interleave, ranked_window

QUERIES = 3


def grade_judge(grades, seen=None):
    """Orders a window by grade, ties as shown (the oracle's way); records the windows in ``seen``."""
    def judge(window):
        if seen is not None:
            seen.append(window)
        return sorted(window, key=lambda i: -grades[i])
    return judge


def test_the_top_window_then_every_chunk_in_one_round_then_the_candidates():
    grades = [0] * 100
    grades[50] = grades[70] = 3     # two passages deep in the list beat the pivot
    grades[:9] = [2] * 9
    seen = []
    order, calls, rounds = run_with_judge(TopDownPartition(), 100, grade_judge(grades, seen))
    assert (calls, rounds) == (6, 3)
    assert seen[0].indices == tuple(range(20))
    pivot = seen[0].indices[9]
    chunks = seen[1:5]
    assert all(chunk.indices[0] == pivot and len(chunk) == 20 for chunk in chunks)
    assert [i for chunk in chunks for i in chunk.indices[1:]] == list(range(20, 96))
    # the last call: the candidates, the pivot, and the four passages the chunks left unread
    assert seen[5].indices == (*range(9), 50, 70, pivot, 96, 97, 98, 99)
    assert order[:10] == [50, 70, *range(8)] and sorted(order) == list(range(100))


def test_nothing_beats_the_pivot_with_budget_for_every_chunk():
    grades = list(range(100, 0, -1))   # first stage already perfect
    order, calls, rounds = run_with_judge(TopDownPartition(budget=20), 100, grade_judge(grades))
    assert (calls, rounds) == (6, 2)  # the window and five chunks (76 + 4 passages): top 10 known
    assert order == list(range(100))


def test_an_unlimited_budget_finds_the_top_exactly_recursing_on_many_candidates():
    grades = list(range(100))   # the first stage reversed: 90 passages beat the first pivot
    order, calls, rounds = run_with_judge(TopDownPartition(budget=1000), 100, grade_judge(grades))
    assert order[:10] == list(range(99, 89, -1))
    assert rounds > 3 and calls <= 1000


@pytest.mark.parametrize("budget", [1, 2, 3, 5, 6, 7, 9])
def test_calls_never_exceed_the_budget(budget):
    grades = list(range(100))
    order, calls, rounds = run_with_judge(TopDownPartition(budget=budget), 100, grade_judge(grades))
    assert calls <= budget and rounds <= calls and sorted(order) == list(range(100))


def test_too_many_candidates_for_one_window_fill_it_rank_by_rank_across_chunks():
    # Chunk 1 has 15 winners, chunk 2 has 2 stronger ones: with the budget spent, the buffer of
    # one window takes every chunk's best first, and the rest follows above the pivot.
    grades = [0] * 60
    grades[:20] = [5] * 20
    grades[20:35] = [6] * 15
    grades[39], grades[40] = 9, 8
    strategy = TopDownPartition(budget=4)
    order, calls, rounds = run_with_judge(strategy, 60, grade_judge(grades))
    assert (calls, rounds) == (4, 3)
    assert order[:2] == [39, 40] and set(order[:26]) == set(range(9)) | set(range(20, 35)) | {39, 40}
    assert interleave([[1, 2, 3], [4], [5, 6]]) == [1, 4, 5, 2, 6, 3]


@pytest.mark.parametrize("n,calls", [(0, 0), (1, 0), (2, 1), (7, 1), (20, 1), (21, 2)])
def test_short_lists(n, calls):
    order, made, rounds = run_with_judge(TopDownPartition(), n, grade_judge(list(range(n))))
    assert made == rounds == calls + (n == 21)  # the last passage beats the pivot: one more call
    assert order[:10] == list(range(n))[::-1][:10] and sorted(order) == list(range(n))
    order, made, rounds = run_with_judge(TopDownPartition(), n, grade_judge(list(range(n, 0, -1))))
    assert (order, made, rounds) == (list(range(n)), calls, calls)


def test_identity_and_unreadable_answers_keep_the_first_stage_order():
    for n in (5, 21, 40, 100, 250):
        assert run_with_judge(TopDownPartition(), n, lambda w: list(w))[0] == list(range(n))
        assert run_with_judge(TopDownPartition(), n, lambda w: Answer((), "unparseable"))[0] == list(range(n))


def test_ranked_window_repairs_slips():
    window = Window((10, 11, 12, 13))
    assert ranked_window(window, Answer((2, 2, 9, -1, 0), "repaired")) == [12, 10, 11, 13]


@pytest.mark.parametrize("options,flag", [({"cutoff": 20}, "--cutoff"), ({"cutoff": 0}, "--cutoff"),
                                          ({"budget": 0}, "--budget"), ({"window": 1}, "--window")])
def test_invalid_options(options, flag):
    with pytest.raises(ConfigError, match=flag):
        make_strategy("tdpart", options)


def test_options_by_name():
    strategy = make_strategy("tdpart", {"window": "10", "cutoff": "5", "budget": "8"})
    assert (strategy.window, strategy.cutoff, strategy.budget) == (10, 5, 8)
    assert strategy.largest_window(100) == 10 and strategy.largest_window(4) == 4


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 130), window=st.integers(2, 25), budget=st.integers(1, 12), data=st.data())
def test_any_answers_give_a_permutation_within_budget(n, window, budget, data):
    cutoff = data.draw(st.integers(1, window - 1))
    garbage = data.draw(st.booleans())
    rng = random.Random(data.draw(st.integers(0, 10**6)))

    def judge(w):
        assert len(w) <= window and len(set(w.indices)) == len(w)
        if garbage:  # repeats, out-of-range positions, partial answers, nothing at all
            return Answer(tuple(rng.randrange(-2, len(w) + 3) for _ in range(rng.randrange(0, len(w) + 3))), "repaired")
        return Answer(tuple(rng.sample(range(len(w)), len(w))), "ok")

    order, calls, rounds = run_with_judge(TopDownPartition(window, cutoff, budget), n, judge)
    assert sorted(order) == list(range(n))
    assert rounds <= calls <= budget


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 150), window=st.integers(2, 25), seed=st.integers(0, 10**6), data=st.data())
def test_a_perfect_judge_and_enough_budget_sort_the_top_cutoff(n, window, seed, data):
    cutoff = data.draw(st.integers(1, window - 1))
    relevance = list(range(n))
    random.Random(seed).shuffle(relevance)
    order, calls, _ = run_with_judge(TopDownPartition(window, cutoff, 10**6), n, grade_judge(relevance))
    top = min(cutoff, n)
    assert [relevance[i] for i in order[:top]] == sorted(relevance, reverse=True)[:top]


def test_perfect_judge_on_dl19_costs_a_third_less_than_sliding(dl19):
    ndcg, calls, taken = run_collection_with_judge(dl19, TopDownPartition(), grade_judge)
    rounds = Counter(taken)
    assert len(calls) == 43
    assert ndcg >= 0.885, ndcg                      # upper bound 0.8922
    assert sum(calls) / len(calls) <= 0.75 * 9, calls
    assert sum(n for taken, n in rounds.items() if taken <= 4) > len(calls) / 2, rounds


@pytest.mark.integration
def test_perfect_judge_through_the_cli(dl19, tmp_path):
    hits = json.loads((dl19 / "bm25_top100.json").read_text())[:QUERIES]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(hits))
    queries, _ = collection_grades(dl19)
    grades = {(qid, d): g for qid, docids, gs in queries for d, g in zip(docids, gs)}
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    with start_server("oracle", data_dir=dl19) as server:
        proc = run_cli("run", source, "-o", out, "--model", "judge", "--base-url", server.base_url,
                       "--strategy", "tdpart", "--cutoff", 10, "--budget", 6, "--no-cache",
                       "--summary-json", summary)
        assert proc.returncode == 0, proc.stderr
    stats = read_summary(summary)
    assert stats["calls"] == 6 * QUERIES and stats["rounds"] == 3 * QUERIES
    for line in out.read_text().splitlines():
        result = json.loads(line)
        shown = [grades[(str(result["query"]["qid"]), c["docid"])] for c in result["candidates"][:10]]
        assert shown == sorted(shown, reverse=True), shown
