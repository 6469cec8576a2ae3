"""Tests of rerank.parsing: answer variants, repairs, reasoning blocks and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerank.answers.ranking import ParsedRanking, extract_ids, parse_ranking, strip_thinking

STATUSES = ("ok", "repaired", "unparseable")


def _ok(order):
    return ParsedRanking(tuple(order), "ok", 0, 0, 0)


@pytest.mark.parametrize("text", [
    "[3] > [1] > [2]",
    "3 > 1 > 2",
    "[3]>[1]>[2]",
    "[3], [1], [2]",
    "3, 1, 2",
    "3\n1\n2\n",
    "[3]\n[1]\n[2]",
    "[ 3 ] > [ 1 ] > [ 2 ]",
    "Sure! Here is the ranking: [3] > [1] > [2]. Hope this helps",
    "Here are the 20 passages ranked: [3] > [1] > [2]",
    "  \n[3] > [1] > [2]\n\n",
    "[3] >> [1] >> [2]",
    "[3, 1, 2]",
    "<think>Passage [1] mentions 42 things, [2] fewer.</think>\n[3] > [1] > [2]",
    "<THINK>\n[1] > [2] > [3]?\n</THINK>[3] > [1] > [2]",
    "<thinking>1 2 3</thinking> 3 > 1 > 2",
    "I compared them all [1] [2] [3]...</think>\n[3] > [1] > [2]",
    "[3] > [1] > [2]\n<think>on second thought [1] > [2] > [3]",
    "<think>a</think>[3] > [1] <think>b</think> > [2]",
])
def test_variants_parse_to_the_same_ranking(text):
    assert parse_ranking(text, 3) == _ok([2, 0, 1])


def test_chatter_numbers_count_in_bare_mode_only():
    # Bracket mode ignores "20"; bare mode sees it as an out-of-range id.
    assert parse_ranking("Here are the 20 passages: [2] > [1]", 2) == _ok([1, 0])
    assert parse_ranking("Here are the 20 passages: 2 > 1", 2) == ParsedRanking(
        (1, 0), "repaired", 0, 0, 1)


def test_digits_glued_to_letters_are_not_ids():
    assert parse_ranking("passage2 3rd 2 > 1", 2) == _ok([1, 0])


def test_digits_next_to_non_latin_text_are_ids():
    assert parse_ranking("第2 > 第1", 2) == _ok([1, 0])


def test_unclosed_think_at_start_is_unparseable():
    result = parse_ranking("<think>[2] > [1] > [3] looks right, but", 3)
    assert result == ParsedRanking((0, 1, 2), "unparseable", 3, 0, 0)


def test_think_block_between_digits_does_not_merge_them():
    assert parse_ranking("2<think>x</think>1", 2) == _ok([1, 0])


def test_strip_thinking():
    assert strip_thinking("no tags [1]") == "no tags [1]"
    assert strip_thinking("a<think>b</think>c") == "a c"
    assert strip_thinking("before</think>after") == "after"
    assert strip_thinking("kept<think>dropped") == "kept"
    assert strip_thinking("<think>everything") == ""


def test_extract_ids_prefers_brackets():
    assert extract_ids("the 20 passages: [4] > [10]") == ["4", "10"]
    assert extract_ids("4 > 10, then 7") == ["4", "10", "7"]
    assert extract_ids("no ids at all") == []


def test_missing_ids_are_appended_in_window_order():
    assert parse_ranking("[4] > [2]", 5) == ParsedRanking((3, 1, 0, 2, 4), "repaired", 3, 0, 0)


def test_repeats_and_out_of_range_are_dropped_and_counted():
    result = parse_ranking("[2] > [0] > [2] > [9] > [1] > [1] > [3]", 3)
    assert result == ParsedRanking((1, 0, 2), "repaired", 0, 2, 2)


def test_no_valid_id_is_unparseable_with_counts():
    assert parse_ranking("I cannot rank these.", 3) == ParsedRanking(
        (0, 1, 2), "unparseable", 3, 0, 0)
    assert parse_ranking("[0] > [7] > [7]", 3) == ParsedRanking((0, 1, 2), "unparseable", 3, 0, 3)
    assert parse_ranking("", 2) == ParsedRanking((0, 1), "unparseable", 2, 0, 0)


def test_huge_numbers_are_out_of_range():
    result = parse_ranking("9" * 5000 + " > 1", 1)
    assert result == ParsedRanking((0,), "repaired", 0, 0, 1)


def test_leading_zeros():
    assert parse_ranking("[02] > [01]", 2) == _ok([1, 0])


def test_empty_window():
    assert parse_ranking("[1] > [2]", 0) == _ok([])
    assert parse_ranking("", 0) == _ok([])


def test_negative_window_is_an_error():
    with pytest.raises(ValueError):
        parse_ranking("[1]", -1)


@pytest.mark.parametrize("n", [100, 1000])
def test_large_windows(n):
    order = list(range(n))[::-1]
    text = " > ".join(f"[{i + 1}]" for i in order)
    assert parse_ranking(text, n) == _ok(order)
    assert parse_ranking("\n".join(str(i + 1) for i in order), n) == _ok(order)


def test_result_is_frozen():
    result = parse_ranking("[1]", 1)
    with pytest.raises(AttributeError):
        result.status = "repaired"  # type: ignore[misc]


# --- properties -----------------------------------------------------------------------------

# Chatter that cannot make an id or a reasoning tag: no digits of any script, no "<".
_CHATTER = st.text(
    alphabet=st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="<[]"),
    max_size=30)
# No letters: a bare id glued to one ("3a") would not be standalone.
_SEPARATORS = st.sampled_from([" > ", ">", ", ", ",", "\n", " ", " >> ", " -> ", "; ", "\n- "])


def _render(ids, bracketed, data):
    parts = []
    for i, ident in enumerate(ids):
        if i:
            parts.append(data.draw(_SEPARATORS))
        parts.append(f"[{ident}]" if bracketed else str(ident))
    return "".join(parts)


@settings(max_examples=300)
@given(text=st.text(), n=st.integers(0, 120))
def test_any_text_gives_a_permutation(text, n):
    result = parse_ranking(text, n)
    assert sorted(result.order) == list(range(n))
    assert result.status in STATUSES
    assert min(result.missing, result.repeated, result.out_of_range) >= 0
    if result.status == "unparseable":
        assert result.order == tuple(range(n)) and result.missing == n
    if result.status == "ok":
        assert result.missing == result.repeated == result.out_of_range == 0


@given(data=st.data(), n=st.integers(1, 120), bracketed=st.booleans())
def test_rendered_permutation_round_trips(data, n, bracketed):
    perm = data.draw(st.permutations(range(n)))
    body = _render([p + 1 for p in perm], bracketed, data)
    if bracketed:
        text = data.draw(_CHATTER) + body + data.draw(_CHATTER)
    else:
        # Bare ids must not touch letters, so chatter is kept apart by whitespace.
        text = data.draw(_CHATTER) + "\n" + body + "\n" + data.draw(_CHATTER)
    assert parse_ranking(text, n) == _ok(perm)


@given(data=st.data(), n=st.integers(1, 120), bracketed=st.booleans())
def test_repairs_are_exact(data, n, bracketed):
    perm = data.draw(st.permutations(range(n)))
    tokens: list[int] = []
    emitted: list[int] = []
    dropped: list[int] = []
    repeats = out_of_range = 0
    for pos in perm:
        if data.draw(st.booleans()):
            dropped.append(pos)
        else:
            tokens.append(pos + 1)
            emitted.append(pos)
        if emitted and data.draw(st.integers(0, 3)) == 0:
            tokens.append(data.draw(st.sampled_from(emitted)) + 1)
            repeats += 1
        if data.draw(st.integers(0, 3)) == 0:
            tokens.append(data.draw(st.sampled_from([0, n + 1, n + 1000, 10**30])))
            out_of_range += 1
    text = _render(tokens, bracketed, data)
    result = parse_ranking(text, n)
    assert result.order == tuple(emitted) + tuple(sorted(dropped))
    assert (result.missing, result.repeated, result.out_of_range) == (
        len(dropped), repeats, out_of_range)
    if not emitted:
        assert result.status == "unparseable"
    elif dropped or repeats or out_of_range:
        assert result.status == "repaired"
    else:
        assert result.status == "ok"


@given(st.lists(st.floats(-50, 0, allow_nan=False), min_size=1, max_size=26), st.data())
def test_first_token_ranking_sorts_by_logprob_and_appends_the_missing(logprobs, data):
    from rerank.answers.ranking import rank_by_first_token
    from rerank.prompts import LETTERS

    labels = list(LETTERS[:len(logprobs)])
    shown = data.draw(st.sets(st.integers(0, len(labels) - 1)))
    decorate = data.draw(st.sampled_from(["{}", " {}", "[{}", "{}]"]))
    alternatives = [(decorate.format(labels[i]), logprobs[i]) for i in shown] + [("the", 0.5), ("[", 1.0)]
    parsed = rank_by_first_token(alternatives, labels)
    assert sorted(parsed.order) == list(range(len(labels)))
    found = list(parsed.order[:len(shown)])
    assert found == sorted(shown, key=lambda i: (-logprobs[i], i))
    assert list(parsed.order[len(shown):]) == [i for i in range(len(labels)) if i not in shown]
    assert parsed.missing == len(labels) - len(shown)
    assert parsed.status == ("ok" if len(shown) == len(labels) else "repaired" if shown else "unparseable")


def test_first_token_ranking_keeps_a_labels_best_logprob():
    from rerank.answers.ranking import rank_by_first_token

    parsed = rank_by_first_token([("B", -3.0), (" A", -2.0), ("[B", -1.0), ("C", -9.0)], ["A", "B", "C"])
    assert parsed.order == (1, 0, 2) and parsed.status == "ok"
