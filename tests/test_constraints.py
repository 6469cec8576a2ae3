"""The ranking grammar and the permutation automaton used for constrained decoding."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank.answers.constraints import RankingPrefix, ranking_grammar
from rerank.answers.ranking import parse_ranking


def render(order):
    return " > ".join(f"[{i}]" for i in order)


@given(st.integers(1, 60), st.randoms())
def test_every_prefix_of_a_permutation_is_viable(n, rng):
    order = list(range(1, n + 1))
    rng.shuffle(order)
    text = render(order)
    state = RankingPrefix(n)
    for char in text:
        state = state.advance(char)
        assert state is not None
    assert state.complete
    assert parse_ranking(text, n).status == "ok"


@given(st.integers(2, 40), st.randoms())
def test_a_repeat_or_out_of_range_id_is_never_viable(n, rng):
    order = list(range(1, n + 1))
    rng.shuffle(order)
    cut = rng.randrange(1, n)
    repeated = order[:cut] + [rng.choice(order[:cut])]
    assert RankingPrefix(n).advance(render(repeated)) is None
    assert RankingPrefix(n).advance(render(order[:cut] + [n + 1])) is None
    assert RankingPrefix(n).advance(render(order[:cut] + [0])) is None


@given(st.integers(1, 30), st.text(alphabet="[]0123456789> x", max_size=40))
def test_viable_text_always_extends_to_a_permutation(n, text):
    state = RankingPrefix(n).advance(text)
    if state is None:
        return
    # Greedy completion with the smallest viable next character always succeeds.
    for _ in range(10 * n + 10):
        if state.complete:
            break
        state = next(s for s in (state.advance(c) for c in "0123456789[] >") if s is not None)
    assert state.complete


def test_partial_number_needs_an_unused_completion():
    state = RankingPrefix(12).advance("[10] > [11] > [12] > [1] > [")
    assert state.advance("1") is None  # 1, 10, 11, 12 are all used
    assert state.advance("2") is not None
    assert RankingPrefix(3).advance("[1] > [2] > [3]").complete
    assert RankingPrefix(3).advance("[1] > [2] > [3] ") is None


def test_grammar_lists_every_identifier_once_per_slot():
    grammar = ranking_grammar(12)
    assert grammar.splitlines()[0] == "root ::= " + ' " > " '.join(["id"] * 12)
    assert '"12"' in grammar and '"13"' not in grammar
    with pytest.raises(ValueError):
        ranking_grammar(0)


@given(st.integers(1, 30), st.data())
def test_ranking_regex_admits_exactly_rankings_of_n_ids(n, data):
    import re

    from rerank.answers.constraints import ranking_regex

    pattern = re.compile(ranking_regex(n))
    ids = data.draw(st.lists(st.integers(1, n), min_size=n, max_size=n))
    assert pattern.fullmatch(" > ".join(f"[{i}]" for i in ids))
    wrong = data.draw(st.lists(st.integers(0, n + 1), min_size=1, max_size=n + 1))
    text = " > ".join(f"[{i}]" for i in wrong)
    assert bool(pattern.fullmatch(text)) == (len(wrong) == n and all(1 <= i <= n for i in wrong))
