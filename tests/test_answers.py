"""Answer kinds: what each asks for, how each reads what a model may write, and their targets."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank.answers import (FIRST_TOKEN, PERMUTATION, CallSettings, Choice, Constraint, Permutation, Reasoned,
                            Relevance, format_ranking, read_labels, split_thinking)
from rerank.answers.constraints import RankingPrefix, ranking_regex
from rerank.backends.base import Completion

NUMBERS = [str(i) for i in range(1, 6)]
LETTERS = list("ABCDE")
SETTINGS = CallSettings(context=8192)


def answer(text, finish="stop", top_logprobs=None, reasoning=None):
    return Completion(text, 10, 5, finish, top_logprobs=top_logprobs, reasoning=reasoning)


# -- the ranking format, written in one place ---------------------------------------------------

@given(st.permutations(range(1, 21)))
def test_a_written_ranking_reads_back_as_itself(order):
    parsed = PERMUTATION.parse(answer(format_ranking(order)), [str(i) for i in range(1, 21)])
    assert parsed.status == "ok" and [i + 1 for i in parsed.order] == list(order)


@given(st.integers(2, 30), st.data())
def test_constraint_of_k_of_n_admits_exactly_k_distinct_ids(n, data):
    import re
    k = data.draw(st.integers(1, n))
    ids = data.draw(st.permutations(range(1, n + 1)))[:k]
    text = format_ranking(ids)
    constraint = Constraint(n, k)
    assert re.fullmatch(constraint.regex(), text)
    state = constraint.prefix().advance(text)
    assert state is not None and state.complete
    if k < n:  # one identifier more is not a k-choice
        assert not re.fullmatch(ranking_regex(n, k), format_ranking([*ids, next(i for i in range(1, n + 1) if i not in ids)]))
    assert RankingPrefix(n, count_wanted=k).advance(format_ranking([ids[0], ids[0]])) is None


# -- Permutation ---------------------------------------------------------------------------------

def test_permutation_asks_for_room_for_its_ids_and_constrains_on_request():
    ask = PERMUTATION.ask(NUMBERS, CallSettings(8192, constrained=True))
    assert ask.params == {"temperature": 0.0, "max_tokens": 8 * 5 + 32} and ask.answer_tokens == 72
    assert ask.constraint == Constraint(5, 5) and PERMUTATION.ask(NUMBERS, SETTINGS).constraint is None


def test_permutation_answer_cut_by_the_limit_is_never_cached():
    assert not PERMUTATION.cacheable(answer("[1] > [2]", finish="length"))
    assert PERMUTATION.cacheable(answer("[1] > [2]"))


# -- Choice --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, chosen, status", [
    ("Passage C", (2,), "ok"),
    ("C", (2,), "ok"),
    ("The most relevant is passage D.", (3,), "ok"),
    ("[B]", (1,), "ok"),
    ("nothing to see", (), "unparseable"),
    ("Passage Z", (), "unparseable"),
    ("Of the passages shown, Passage S.", (18,), "ok"),
])
def test_setwise_choice_reads_labels_as_models_write_them(text, chosen, status):
    got = Choice(1).parse(answer(text), [chr(65 + i) for i in range(20)])
    assert (got.order, got.status) == (chosen, status)


def test_best_k_choice_keeps_the_first_k_distinct_and_says_when_repaired():
    kind = Choice(3)
    assert kind.parse(answer("[4] > [2] > [5]"), NUMBERS).order == (3, 1, 4)
    got = kind.parse(answer("[4] > [4] > [2]"), NUMBERS)
    assert got.order == (3, 1) and got.status == "repaired"
    assert kind.ask(NUMBERS, CallSettings(8192, constrained=True)).constraint == Constraint(5, 3)
    assert kind.ask(LETTERS, CallSettings(8192, constrained=True)).constraint is None
    assert kind.target([4, 0, 2, 1, 3], NUMBERS) == "[5] > [1] > [3]"
    assert Choice(1).target([2, 0], LETTERS) == "Passage C"


@given(st.text(max_size=200))
def test_read_labels_never_fails_and_returns_distinct_valid_positions(text):
    for labels in (NUMBERS, LETTERS):
        found, noise = read_labels(text, labels)
        assert len(set(found)) == len(found) and all(0 <= i < len(labels) for i in found) and noise >= 0


# -- FirstToken ----------------------------------------------------------------------------------

def test_first_token_scores_are_the_identifiers_logprobs():
    ask = FIRST_TOKEN.ask(LETTERS, CallSettings(8192, answer_prefix="["))
    assert ask.params["max_tokens"] == 1 and ask.params["top_logprobs"] == 5
    assert ask.answer_start == "[" and ask.first_token_labels == LETTERS
    got = FIRST_TOKEN.parse(answer("C", top_logprobs=(("C", -0.1), (" A", -1.0), ("[B", -2.0))), LETTERS)
    assert got.order == (2, 0, 1, 3, 4) and got.status == "repaired"
    assert got.scores[:3] == (-1.0, -2.0, -0.1) and got.scores[3] == -math.inf
    assert not FIRST_TOKEN.cacheable(answer("C")) and FIRST_TOKEN.cacheable(answer("C", top_logprobs=()))


# -- Relevance -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, alternatives, score, status", [
    ("Yes", (("Yes", math.log(0.8)), ("No", math.log(0.2))), 0.8, "ok"),
    ("No", ((" no", -0.1),), 0.0, "ok"),
    ("Yes.", None, 1.0, "ok"),
    ("no", None, 0.0, "ok"),
    ("2", None, 2.0, "ok"),
    ("maybe", None, None, "unparseable"),
])
def test_relevance_reads_yes_no_probabilities_labels_and_grades(text, alternatives, score, status):
    got = Relevance().parse(answer(text, top_logprobs=alternatives), ["1"])
    assert got.status == status and got.order == (0,)
    assert (got.scores is None) if score is None else got.scores[0] == pytest.approx(score)


def test_relevance_survives_extreme_logprobs():
    got = Relevance().parse(answer("Yes", top_logprobs=(("Yes", -2000.0), ("No", -1.0))), ["1"])
    assert got.scores[0] == pytest.approx(0.0)


# -- Reasoned ------------------------------------------------------------------------------------

def test_reasoned_asks_with_its_own_budget_in_reasoning_models_terms():
    kind = Reasoned(Permutation(), budget=1000, effort="low")
    ask = kind.ask(NUMBERS, CallSettings(8192, constrained=True))
    assert ask.params == {"max_completion_tokens": 1072, "reasoning_effort": "low"}
    assert ask.constraint is None and ask.answer_tokens == 1072
    assert Reasoned(Permutation(), 100).ask(NUMBERS, CallSettings(8192, temperature=0.6)).params["temperature"] == 0.6
    # capped to the answer's share of the context
    assert Reasoned(Permutation(), 10**6).ask(NUMBERS, SETTINGS).answer_tokens == 4096


def test_reasoned_strips_and_keeps_the_thinking():
    kind = Reasoned(Permutation())
    got = kind.parse(answer("<think>[5] looks best... [1] too</think>\n[5] > [1] > [2] > [3] > [4]"), NUMBERS)
    assert got.status == "ok" and got.order == (4, 0, 1, 2, 3) and "[5] looks best" in got.reasoning
    hidden = kind.parse(answer("[2] > [1] > [3] > [4] > [5]", reasoning="I compared them."), NUMBERS)
    assert hidden.order[:2] == (1, 0) and hidden.reasoning == "I compared them."


def test_reasoning_cut_by_its_budget_is_truncated_and_never_cached():
    kind = Reasoned(Choice(1))
    cut = answer("<think>passage B seems", finish="length")
    got = kind.parse(cut, LETTERS)
    assert got.status == "truncated" and got.order == () and got.reasoning == "passage B seems"
    assert not kind.cacheable(cut)


def test_first_token_cannot_follow_reasoning():
    with pytest.raises(ValueError, match="first token"):
        Reasoned(FIRST_TOKEN)


def test_split_thinking_variants():
    assert split_thinking("no thinking") == ("no thinking", None)
    assert split_thinking("a</think>[1]") == ("[1]", "a")
    assert split_thinking("[1]<think>b") == ("[1]", "b")
