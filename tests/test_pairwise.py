"""PRP: all pairs (both orders in one round, disagreements and unreadable answers as ties), and the
heapsort and bubble sort variants for the top k."""

import json
import random

import pytest
from hypothesis import given, strategies as st

from conftest import collection_grades, read_summary, run_cli
from llm_server import start_server
from rerank.answers import Answer
from rerank.errors import ConfigError
from rerank.strategies import make_strategy, run_with_judge
from test_setwise import measure_on_dl19

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


# The sorting variants (llm-rankers' heapsort and bubblesort): one comparison a round, both
# orders in it; a tie (disagreeing or unreadable) keeps the current order.

def recording(judge, shown):
    def recorded(window):
        shown.append(window.indices)
        return judge(window)
    return recorded


def test_heapsort_compares_each_child_with_the_node_holding():
    # Binary heap of 4 rising grades: build (node 1: 1 comparison; node 0: 2, then node 1: 1),
    # one sift of 2 after the first extraction; the second ends the sort.
    shown = []
    strategy = make_strategy("pairwise", {"method": "heapsort", "k": 2})
    order, calls, rounds = run_with_judge(strategy, 4, recording(preference_judge([0, 1, 2, 3]), shown))
    assert (order, calls, rounds) == ([3, 2, 0, 1], 12, 6)
    assert shown[:6] == [(3, 1), (1, 3), (3, 0), (0, 3), (2, 3), (3, 2)]  # challenger first, then reversed
    one_order = make_strategy("pairwise", {"method": "heapsort", "k": 2, "both_orders": False})
    assert run_with_judge(one_order, 4, preference_judge([0, 1, 2, 3])) == ([3, 2, 0, 1], 6, 6)


def test_bubblesort_swaps_adjacent_pairs_from_the_bottom():
    # Pass 0: pairs at 2, 1, 0 (the best rises to the top); pass 1: pairs at 2, 1.
    shown = []
    strategy = make_strategy("pairwise", {"method": "bubblesort", "k": 2, "both_orders": False})
    order, calls, rounds = run_with_judge(strategy, 4, recording(preference_judge([0, 1, 2, 3]), shown))
    assert (order, calls, rounds) == ([3, 2, 0, 1], 5, 5)
    assert shown == [(3, 2), (3, 1), (3, 0), (2, 1), (2, 0)]  # the lower one first
    both = make_strategy("pairwise", {"method": "bubblesort", "k": 2})
    assert run_with_judge(both, 4, preference_judge([0, 1, 2, 3]))[1:] == (10, 5)


@pytest.mark.parametrize("method", ["heapsort", "bubblesort"])
def test_sorting_ties_keep_the_current_order(method):
    strategy = make_strategy("pairwise", {"method": method})
    first_always = run_with_judge(strategy, 30, lambda w: Answer((0,), "ok"))  # the orders always disagree
    assert run_with_judge(strategy, 30, lambda w: Answer((), "unparseable")) == first_always
    assert run_with_judge(strategy, 30, lambda w: Answer((5,), "repaired")) == first_always
    if method == "bubblesort":
        assert first_always[0] == list(range(30))


@given(st.integers(0, 60), st.integers(1, 15), st.sampled_from(["heapsort", "bubblesort"]), st.booleans(), st.data())
def test_sorting_with_a_perfect_judge_finds_the_true_top_k(n, k, method, both, data):
    grades = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    strategy = make_strategy("pairwise", {"method": method, "k": k, "both_orders": both})
    order, calls, rounds = run_with_judge(strategy, n, preference_judge(grades))
    assert [grades[i] for i in order[:k]] == sorted(grades, reverse=True)[:k]
    assert order[k:] == [i for i in range(n) if i not in set(order[:k])]
    assert calls == rounds * (2 if both else 1)


answers = st.builds(Answer, st.lists(st.integers(-1, 3), max_size=3).map(tuple),
                    st.sampled_from(["ok", "repaired", "unparseable"]))


@given(st.integers(0, 60), st.integers(1, 12), st.sampled_from(["allpair", "heapsort", "bubblesort"]),
       st.booleans(), st.data())
def test_any_answers_give_a_permutation(n, k, method, both, data):
    if method == "allpair":
        n = min(n, 15)
    strategy = make_strategy("pairwise", {"method": method, "k": k, "both_orders": both})
    order, _, _ = run_with_judge(strategy, n, lambda window: data.draw(answers))
    assert sorted(order) == list(range(n))


@pytest.mark.parametrize("options, flag", [({"method": "tournament"}, "--method"), ({"k": 0}, "--k")])
def test_invalid_options(options, flag):
    with pytest.raises(ConfigError, match=flag):
        make_strategy("pairwise", options)


TRIALS = 200


def biased_judge(grades, position, rng):
    """Picks the passage shown at ``position`` half the time, else the better one."""
    def judge(window):
        if rng.random() < 0.5:
            return Answer((position,), "ok")
        a, b = window.indices
        return Answer((0,) if grades[a] >= grades[b] else (1,), "ok")
    return judge


@pytest.mark.parametrize("method", ["heapsort", "bubblesort"])
def test_sorting_both_orders_never_let_a_biased_judge_promote_the_worse(method):
    # Two passages, the better on top. One order shows the lower first: a judge leaning to the
    # first shown swaps them. Both orders then disagree, a tie, which keeps them.
    def sort(both, seed):
        strategy = make_strategy("pairwise", {"method": method, "both_orders": both, "k": 1})
        return run_with_judge(strategy, 2, biased_judge([2, 0], 0, random.Random(seed)))[0]

    assert all(sort(True, seed) == [0, 1] for seed in range(20))
    assert any(sort(False, seed) == [1, 0] for seed in range(20))


@pytest.mark.parametrize("method", ["heapsort", "bubblesort"])
def test_sorting_both_orders_lose_the_same_whichever_position_the_judge_favours(method):
    """With a judge that picks the first (or the second) shown half the time, both orders lose
    about as much nDCG@10 either way; one order loses little when the bias favours the
    challenger it shows first and much when it favours the holder. (Both orders do not lose less
    than one order here, unlike all pairs: a disagreement keeps the holder, so both orders lose
    what one order showing the holder first loses.)"""
    from rerank.evaluation import evaluate_run

    rng = random.Random(11)
    losses = {(both, position): 0.0 for both in (True, False) for position in (0, 1)}
    for trial in range(TRIALS):
        grades = [rng.choice([0, 0, 0, 1, 2, 3]) for _ in range(30)]
        qrels = {"q": {f"d{i}": g for i, g in enumerate(grades)}}
        best = {"q": {f"d{i}": float(g) for i, g in enumerate(grades)}}
        ideal = evaluate_run(best, qrels, ["nDCG@10"]).aggregate["nDCG@10"]
        for both, position in losses:
            strategy = make_strategy("pairwise", {"method": method, "both_orders": both, "k": 10})
            order, _, _ = run_with_judge(strategy, 30, biased_judge(grades, position, random.Random(trial)))
            run = {"q": {f"d{i}": float(30 - rank) for rank, i in enumerate(order)}}
            losses[both, position] += (ideal - evaluate_run(run, qrels, ["nDCG@10"]).aggregate["nDCG@10"]) / TRIALS
    print(f"pairwise {method}, mean nDCG@10 lost to a judge picking the first / second shown half the time: "
          f"both orders {losses[True, 0]:.3f} / {losses[True, 1]:.3f}, "
          f"one order {losses[False, 0]:.3f} / {losses[False, 1]:.3f}")
    assert abs(losses[True, 0] - losses[True, 1]) < abs(losses[False, 0] - losses[False, 1])
    # ... and about what one order loses when the bias is against it.
    assert max(losses[True, 0], losses[True, 1]) <= 1.15 * max(losses[False, 0], losses[False, 1])


@pytest.mark.parametrize("method", ["heapsort", "bubblesort"])
def test_sorting_with_a_perfect_judge_on_dl19(dl19, method):
    ndcg, calls, rounds = measure_on_dl19(dl19, "pairwise", {"method": method, "k": 10})
    print(f"pairwise {method} k=10: nDCG@10 {ndcg:.4f}, {calls:.1f} calls and {rounds:.1f} rounds "
          "(comparisons) a query")
    assert ndcg >= 0.885 and calls == 2 * rounds


@pytest.mark.integration
def test_heapsort_with_the_perfect_judge_over_the_cli(dl19, tmp_path):
    top = 30
    entries = json.loads((dl19 / "bm25_top100.json").read_text())[:QUERIES]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(entries))
    queries, qrels = collection_grades(dl19, QUERIES)
    expected = [run_with_judge(make_strategy("pairwise", {"method": "heapsort"}), top,
                               preference_judge(grades[:top])) for _, _, grades in queries]
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    with start_server("oracle", data_dir=dl19) as server:
        proc = run_cli("run", source, "-o", out, "--model", "judge", "--base-url", server.base_url,
                       "--strategy", "pairwise", "--method", "heapsort", "--k", 10, "--top-k", top,
                       "--no-cache", "--summary-json", summary)
        assert proc.returncode == 0, proc.stderr
    stats = read_summary(summary)
    assert stats["calls"] == sum(calls for _, calls, _ in expected)
    assert stats["rounds"] == sum(rounds for _, _, rounds in expected) == stats["calls"] // 2
    for line, (qid, _, grades) in zip(out.read_text().splitlines(), queries):
        result = json.loads(line)
        shown = [qrels[qid].get(c["docid"], 0) for c in result["candidates"][:10]]
        assert shown == sorted(grades[:top], reverse=True)[:10]
