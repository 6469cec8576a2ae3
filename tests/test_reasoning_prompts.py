"""ReasonRank's and REARANK's prompts: think in ``<think>``, rank inside ``<answer>`` tags."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import read_summary, run_cli
from llm_server import start_server
from rerank.answers import PERMUTATION, Reasoned, format_ranking, parse_ranking, split_thinking, strip_thinking
from rerank.backends.base import Completion
from rerank.prompts import load_prompt
from rerank.testing.reading import read_prompt

QUERIES = 3
PASSAGES = ["Mars turns once in 24.6 hours.", "Mars is the red planet.", "Jupiter has a great red spot."]


@pytest.mark.parametrize("text", [
    "<think>[1] looks weak, [2] answers it</think><answer>[2] > [1]</answer>",
    "<think>\n[1] says little\n</think>\n\n<answer> [2] > [1] </answer>",
    "<answer>[2] > [1]</answer>",
    "<ANSWER>\n2 > 1\n</Answer >",
    "Passage [1] is off topic; passage [2] answers it. <answer>[2] > [1]</answer>",
    "<think>maybe <answer>[1] > [2]</answer></think><answer>[2] > [1]</answer>",
    "<answer>[2] > [1]</answer> and [1] was close",
    "<think>weighing [1]</think><answer>[2] > [1]",           # cut inside the answer
    "[2] > [1]",
    "<think>[1]?</think>[2] > [1]",
])
def test_answer_tags_and_thinking_read_as_the_ranking(text):
    parsed = parse_ranking(text, 2)
    assert parsed.order == (1, 0) and parsed.status == "ok"


def test_reasoning_around_the_answer_is_kept_apart():
    assert split_thinking("<think>a</think>\n<answer>[2] > [1]</answer>") == ("[2] > [1]", "a")
    assert split_thinking("first [1]. <answer>[2] > [1]</answer>") == ("[2] > [1]", "first [1].")
    assert split_thinking("<answer>[1]</answer>") == ("[1]", None)
    assert strip_thinking("<think>x</think><answer></answer>") == ""
    assert parse_ranking("<think>x</think><answer></answer>", 2).status == "unparseable"


def test_reasoned_permutation_reads_a_tagged_answer():
    kind = Reasoned(PERMUTATION)
    completion = Completion("<think>[3] is best</think> <answer>[3] > [1] > [2]</answer>", 10, 10,
                            finish_reason="stop")
    answer = kind.parse(completion, ["1", "2", "3"])
    assert answer.order == (2, 0, 1) and answer.status == "ok"
    assert answer.reasoning == "[3] is best" and answer.text == "[3] > [1] > [2]"


ids = st.integers(1, 30)
chatter = st.text(st.characters(blacklist_characters="<>[]0123456789"), max_size=30)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=st.integers(1, 30), before=chatter, thought=st.text(max_size=60),
       spaces=st.sampled_from(["", " ", "\n", "\n\n"]), closed=st.booleans())
def test_a_tagged_ranking_reads_back_whatever_surrounds_it(data, n, before, thought, spaces, closed):
    order = data.draw(st.permutations(range(n)))
    thought = thought.replace("<", "(").replace(">", ")")  # a thought never closes its own block
    text = (f"{before}<think>{thought}</think>{spaces}<answer>{spaces}"
            f"{format_ranking(i + 1 for i in order)}{spaces}{'</answer>' if closed else ''}")
    parsed = parse_ranking(text, n)
    assert parsed.order == tuple(order) and parsed.status == "ok"


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("<>/answerthink[]12 >\n")), max_size=80), n=st.integers(0, 9))
def test_any_tags_still_give_a_permutation(text, n):
    assert sorted(parse_ranking(text, n).order) == list(range(n))
    answer, reasoning = split_thinking(text)
    assert isinstance(answer, str) and (reasoning is None or isinstance(reasoning, str))


@pytest.mark.parametrize("name,turns", [("reasonrank", 2), ("rearank", 4 + 2 * len(PASSAGES))])
def test_prompts_read_as_a_ranking_question_over_their_passages(name, turns):
    messages = load_prompt(name).render("how long is a day on mars", PASSAGES)
    assert len(messages) == turns and messages[0]["role"] == "system"
    text = "\n".join(m["content"] for m in messages)
    assert "<think>" in text and "<answer>" in text and "how long is a day on mars" in messages[-1]["content"]
    prompt = read_prompt(messages)
    assert prompt.passages == dict(enumerate(PASSAGES, 1)) and prompt.question.kind == "ranking"


def _grades(dl19):
    grades = {}
    for line in (dl19 / "qrels.dl19-passage.txt").read_text().splitlines():
        qid, _, docid, grade = line.split()
        grades[(qid, docid)] = int(grade)
    return grades


@pytest.mark.integration
@pytest.mark.parametrize("strategy,prompt", [("sliding", "reasonrank"), ("full", "rearank")])
def test_reasoning_judge_reaches_the_sorted_top(dl19, tmp_path, strategy, prompt):
    hits = json.loads((dl19 / "bm25_top100.json").read_text())[:QUERIES]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(hits))
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    with start_server("reasoning", data_dir=dl19, think_tokens=64) as server:
        proc = run_cli("run", source, "-o", out, "--model", "judge", "--base-url", server.base_url,
                       "--strategy", strategy, "--prompt", prompt, "--reasoning-budget", 256,
                       "--no-cache", "--summary-json", summary)
        assert proc.returncode == 0, proc.stderr
        assert server.stats()["bad_requests"] == 0
    stats = read_summary(summary)
    assert stats["parse_ok"] == stats["calls"] == QUERIES * (9 if strategy == "sliding" else 1)
    grades = _grades(dl19)
    for line in out.read_text().splitlines():
        result = json.loads(line)
        top = 10 if strategy == "sliding" else 100
        shown = [grades.get((str(result["query"]["qid"]), c["docid"]), 0) for c in result["candidates"][:top]]
        everything = [grades.get((str(result["query"]["qid"]), c["docid"]), 0) for c in result["candidates"]]
        assert shown == sorted(everything, reverse=True)[:top]
    assert "<think>" not in out.read_text()
