"""Window schedules and strategies, driven by simulated judges."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerank.errors import ConfigError
from rerank.strategies import FullRanking, SlidingWindow, make_strategy, run_with_judge, window_schedule


def test_rankgpt_schedule_for_100_candidates():
    assert window_schedule(100, 20, 10) == [(80, 100), (70, 90), (60, 80), (50, 70), (40, 60),
                                            (30, 50), (20, 40), (10, 30), (0, 20)]


def test_irregular_last_window_reaches_the_top():
    # RankGPT's reference loop stops at start=-5 and never ranks the top five.
    assert window_schedule(95, 20, 10)[-2:] == [(5, 25), (0, 15)]


@pytest.mark.parametrize("n,expected", [(0, []), (1, []), (2, [(0, 2)]), (20, [(0, 20)]),
                                        (21, [(1, 21), (0, 11)])])
def test_small_lists(n, expected):
    assert window_schedule(n, 20, 10) == expected


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 400), window=st.integers(2, 40), data=st.data())
def test_schedule_properties(n, window, data):
    step = data.draw(st.integers(1, window - 1))
    slices = window_schedule(n, window, step)
    if n <= 1:
        assert slices == []
        return
    assert slices[0][1] == n and slices[-1][0] == 0
    covered = set()
    for (start, end), following in zip(slices, slices[1:] + [None]):
        assert 0 <= start < end <= n and end - start <= window
        covered.update(range(start, end))
        if following is not None:
            assert following[1] == end - step          # moves up by exactly one step
            assert following[1] > start                # consecutive windows overlap
    assert covered == set(range(n))
    assert len(slices) == max(1, -(-(n - window) // step) + 1) if n > window else len(slices) == 1


def _perfect_judge(relevance):
    return lambda window: sorted(window, key=lambda i: -relevance[i])


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 150), window=st.integers(2, 30), seed=st.integers(0, 10**6), data=st.data())
def test_one_pass_sorts_the_top_window_minus_step(n, window, seed, data):
    step = data.draw(st.integers(1, window - 1))
    relevance = list(range(n))
    random.Random(seed).shuffle(relevance)
    order, calls, rounds = run_with_judge(SlidingWindow(window, step), n, _perfect_judge(relevance))
    assert sorted(order) == list(range(n))
    assert calls == rounds == len(window_schedule(n, window, step))
    top = min(window - step, n)
    assert [relevance[i] for i in order[:top]] == sorted(relevance, reverse=True)[:top]


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 60), seed=st.integers(0, 10**6))
def test_enough_passes_sort_everything(n, seed):
    relevance = list(range(n))
    random.Random(seed).shuffle(relevance)
    passes = max(1, -(-n // 10))
    order, _, _ = run_with_judge(SlidingWindow(20, 10, passes), n, _perfect_judge(relevance))
    assert [relevance[i] for i in order] == sorted(relevance, reverse=True)


def test_identity_judge_keeps_the_input_order():
    order, calls, _ = run_with_judge(SlidingWindow(), 100, lambda w: list(w))
    assert order == list(range(100)) and calls == 9


def test_full_ranking_is_one_call():
    relevance = list(range(100))
    random.Random(1).shuffle(relevance)
    order, calls, rounds = run_with_judge(FullRanking(), 100, _perfect_judge(relevance))
    assert (calls, rounds) == (1, 1)
    assert [relevance[i] for i in order] == sorted(relevance, reverse=True)
    assert run_with_judge(FullRanking(), 1, _perfect_judge([0])) == ([0], 0, 0)


@pytest.mark.parametrize("options", [dict(window=10, step=10), dict(window=10, step=12),
                                     dict(window=1, step=1), dict(window=20, step=0), dict(passes=0)])
def test_invalid_sliding_options(options):
    with pytest.raises(ConfigError):
        make_strategy("sliding", options)


def test_unknown_strategy():
    with pytest.raises(ConfigError, match="unknown strategy 'nonesuch'"):
        make_strategy("nonesuch")


def test_tied_strategy_scores_stay_apart_in_single_precision():
    """trec_eval reads scores as float32 and breaks ties by docid: tied points must not collapse."""
    import struct

    from rerank.runner.rounds import _scored
    from rerank.types import Candidate

    candidates = [Candidate(f"d{i}", "x") for i in range(6)]
    for scores in ([3.0, 3.0, 3.0, 2.0], [1.0, 1.0 - 1e-12, 0.5], [1e6, 1e6, 1e6], [0.0, 0.0, -0.0]):
        written = [c.score for c in _scored(candidates[: max(len(scores), 4)], scores)]
        single = [struct.unpack("f", struct.pack("f", s))[0] for s in written]
        assert all(a > b for a, b in zip(single, single[1:])), (scores, written)
        assert written[0] == scores[0]


def test_help_names_each_strategys_default_where_they_differ():
    from rerank.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    text = " ".join(commands.choices["run"].format_help().split())
    assert "(default: allpair for pairwise, heapsort for setwise)" in text
    assert "tourrank: each group's order; jointrank: the block design) (default: 0)" in text
