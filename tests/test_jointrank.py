"""JointRank: the block design, the aggregations, and a perfect judge on TREC DL19."""

import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import read_summary, run_cli
from llm_server import start_server
from rerank.answers import Answer
from rerank.errors import ConfigError
from rerank.strategies import Ranking, make_strategy, run_with_judge
from rerank.strategies.jointrank import block_design, pagerank, preferences, win_rate

QUERIES = 3


def _perfect_judge(relevance):
    """Best first; equally relevant passages in the order shown (as the oracle server does)."""
    return lambda window: sorted(window, key=lambda i: -relevance[i])


@pytest.mark.parametrize("n,size,replication", [(100, 20, 4), (100, 20, 2), (95, 20, 4), (101, 20, 3),
                                                (21, 20, 4), (15, 20, 4), (7, 3, 5), (2, 2, 1)])
def test_every_candidate_in_exactly_replication_blocks_of_at_most_block_size(n, size, replication):
    blocks = block_design(n, size, replication)
    assert Counter(i for block in blocks for i in block) == {i: replication for i in range(n)}
    assert all(len(set(block)) == len(block) <= size for block in blocks)
    assert len(blocks) == -(-replication * n // min(size, n))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_paper_setting_is_twenty_blocks_of_twenty():
    blocks = block_design(100, 20, 4)
    assert len(blocks) == 20 and {len(block) for block in blocks} == {20}


def test_design_is_deterministic_per_seed():
    assert block_design(100, 20, 4, seed=3) == block_design(100, 20, 4, seed=3)
    assert block_design(100, 20, 4, seed=3) != block_design(100, 20, 4, seed=4)


def test_no_design_for_one_candidate_or_none():
    assert block_design(0, 20, 4) == block_design(1, 20, 4) == []
    assert run_with_judge(make_strategy("jointrank"), 1, lambda w: list(w)) == ([0], 0, 0)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 150), size=st.integers(2, 30), replication=st.integers(1, 6), seed=st.integers(0, 99))
def test_design_properties(n, size, replication, seed):
    blocks = block_design(n, size, replication, seed)
    if n <= 1:
        assert blocks == []
        return
    assert Counter(i for block in blocks for i in block) == {i: replication for i in range(n)}
    assert all(len(set(block)) == len(block) <= size for block in blocks)


def test_preferences_from_rankings_and_partial_ones():
    wins = preferences([((0, 1, 2), [2, 0, 1]), ((1, 2, 3), [3])], 4)
    assert wins[2][0] == wins[2][1] == wins[0][1] == 1
    assert wins[3][1] == wins[3][2] == 1            # a partial answer: the named beat the rest
    assert wins[1][2] == wins[2][3] == 0 and sum(map(sum, wins)) == 5


def test_win_rate_averages_over_opponents_met():
    # 0 beat 1 twice and lost to it once, beat 2 once; 3 met no one.
    wins = [[0, 2, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert win_rate(wins) == pytest.approx([(2 / 3 + 1) / 2, 1 / 3, 0.0, 0.5])


def test_pagerank_follows_wins_over_strong_opponents():
    # 1 beat only 0, but 0 beat everyone else: 1 ranks first, though 0 has more wins.
    wins = [[0, 0, 1, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    scores = pagerank(wins)
    assert sum(scores) == pytest.approx(1.0)
    assert sorted(range(5), key=lambda i: -scores[i])[:2] == [1, 0]
    assert scores[4] == min(scores)
    assert pagerank([]) == [] and pagerank([[0]]) == [1.0]


def test_aggregations_agree_on_overlapping_consistent_blocks():
    wins = preferences([((0, 1, 2), [0, 1, 2]), ((1, 2, 3), [1, 2, 3]), ((0, 3), [0, 3])], 4)
    for scores in (win_rate(wins), pagerank(wins)):
        assert sorted(range(4), key=lambda i: -scores[i]) == [0, 1, 2, 3]


@pytest.mark.parametrize("aggregation", ["pagerank", "winrate"])
def test_one_round_returns_aggregated_scores(aggregation):
    strategy = make_strategy("jointrank", {"aggregation": aggregation})
    generator = strategy.rounds(40)
    windows = next(generator)
    assert len(windows) == 8 and all(len(w) == 20 for w in windows)
    relevance = list(range(40))
    with pytest.raises(StopIteration) as stop:
        generator.send([Answer(tuple(sorted(range(len(w)), key=lambda p: -relevance[w.indices[p]])), "ok")
                        for w in windows])
    ranking = stop.value.value
    assert isinstance(ranking, Ranking) and sorted(ranking.order) == list(range(40))
    assert ranking.scores == sorted(ranking.scores, reverse=True)
    assert ranking.order[:5] == [39, 38, 37, 36, 35]


def test_unreadable_answers_say_nothing():
    order, calls, rounds = run_with_judge(make_strategy("jointrank"), 50, lambda w: Answer(tuple(range(len(w))),
                                                                                              "unparseable"))
    assert order == list(range(50)) and (calls, rounds) == (10, 1)


@pytest.mark.parametrize("options", [dict(block_size=1), dict(replication=0), dict(aggregation="elo")])
def test_invalid_options(options):
    with pytest.raises(ConfigError):
        make_strategy("jointrank", options)


answers = st.one_of(
    st.just("unparseable"), st.just("ok"), st.just("partial"))


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 150), size=st.integers(2, 25), replication=st.integers(1, 5),
       aggregation=st.sampled_from(["pagerank", "winrate"]), seed=st.integers(0, 10**6), kinds=st.data())
def test_any_answers_give_a_permutation(n, size, replication, aggregation, seed, kinds):
    rng = random.Random(seed)

    def judge(window):
        kind = kinds.draw(answers)
        positions = list(range(len(window)))
        rng.shuffle(positions)
        if kind == "unparseable":
            return Answer(tuple(range(len(window))), "unparseable")
        if kind == "partial":
            return Answer(tuple(positions[:rng.randint(0, len(window))]), "repaired")
        return Answer(tuple(positions), "ok")

    strategy = make_strategy("jointrank", {"block_size": size, "replication": replication,
                                           "aggregation": aggregation, "seed": seed})
    order, calls, rounds = run_with_judge(strategy, n, judge)
    assert sorted(order) == list(range(n))
    assert rounds == (1 if n > 1 else 0) and calls == len(block_design(n, size, replication, seed))
    assert strategy.largest_window(n) == min(n, size)


def _dl19(dl19):
    hits = json.loads((dl19 / "bm25_top100.json").read_text())
    grades = {}
    for line in (dl19 / "qrels.dl19-passage.txt").read_text().splitlines():
        qid, _, docid, grade = line.split()
        grades.setdefault(qid, {})[docid] = int(grade)
    return hits, grades


@pytest.mark.parametrize("aggregation", ["pagerank", "winrate"])
def test_perfect_judge_on_dl19_in_one_round(dl19, aggregation):
    from rerank.evaluation import evaluate_run

    hits, qrels = _dl19(dl19)
    run, best, calls = {}, {}, 0
    for request in hits:
        qid = str(request["hits"][0]["qid"])
        docids = [hit["docid"] for hit in request["hits"]]
        relevance = [qrels.get(qid, {}).get(docid, 0) for docid in docids]
        order, used, rounds = run_with_judge(make_strategy("jointrank", {"aggregation": aggregation}),
                                             len(docids), _perfect_judge(relevance))
        assert rounds == 1
        calls += used
        run[qid] = {docids[i]: float(len(order) - rank) for rank, i in enumerate(order)}
        best[qid] = {docid: float(grade) for docid, grade in zip(docids, relevance)}
    ndcg = evaluate_run(run, qrels, ["nDCG@10"]).aggregate["nDCG@10"]
    bound = evaluate_run(best, qrels, ["nDCG@10"]).aggregate["nDCG@10"]
    print(f"jointrank {aggregation}: nDCG@10 {ndcg:.4f} (bound {bound:.4f}), "
          f"{calls / len(hits):.1f} calls/query, 1 round")
    assert calls == 20 * len(hits)
    assert ndcg >= 0.885


@pytest.mark.integration
def test_perfect_judge_through_the_cli(dl19, tmp_path):
    hits, qrels = _dl19(dl19)
    source = tmp_path / "in.json"
    source.write_text(json.dumps(hits[:QUERIES]))
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    with start_server("oracle", data_dir=dl19) as server:
        proc = run_cli("run", source, "-o", out, "--model", "judge", "--base-url", server.base_url,
                       "--strategy", "jointrank", "--no-cache", "--summary-json", summary, "--concurrency", 32)
        assert proc.returncode == 0, proc.stderr
    stats = read_summary(summary)
    assert stats["calls"] == QUERIES * 20 and stats["rounds"] == QUERIES
    for line in out.read_text().splitlines():
        result = json.loads(line)
        shown = [qrels[str(result["query"]["qid"])].get(c["docid"], 0) for c in result["candidates"][:5]]
        assert shown == sorted(shown, reverse=True) and shown[0] == max(qrels[str(result["query"]["qid"])].values())
