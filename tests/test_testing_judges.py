"""The judges of rerank.testing answer every kind of question from the qrels, in process (the
``judge`` backend) and over HTTP: rankings, the first token, setwise choices, the best k,
pairwise comparisons, yes/no relevance, and all of these after visible or hidden reasoning."""

from __future__ import annotations

import asyncio
import json
import math
import pickle
import re

import openai
import pytest

from conftest import data_dir
from rerank.backends import backend_class
from rerank.errors import BackendError, ConfigError, ContextOverflow
from rerank.testing import (Dataset, Judge, JudgeBackend, Responder, Tokens, read_prompt, start_process,
                            start_server)
from rerank.testing.backend import parse_model

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
RANKGPT = "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query."


# Prompts as the published methods write them ------------------------------------------------

def permutation(query: str, passages: list[str], letters: bool = False) -> list[dict]:
    """RankZephyr's single turn (FIRST's with letters)."""
    names = LETTERS if letters else [str(i) for i in range(1, 27)]
    lines = "\n".join(f"[{names[i]}] {p}" for i, p in enumerate(passages))
    return [{"role": "system", "content": RANKGPT}, {"role": "user", "content": (
        f"I will provide you with {len(passages)} passages, each indicated by a numerical identifier []. "
        f"Rank the passages based on their relevance to the search query: {query}.\n\n{lines}\n"
        f"Search Query: {query}.\nRank the {len(passages)} passages above based on their relevance to the "
        "search query. All the passages should be included and listed using identifiers, in descending "
        "order of relevance. The output format should be [] > [], e.g., [4] > [2]. Only respond with the "
        "ranking results, do not say any word or explain.")}]


def setwise(query: str, passages: list[str], question: str = "Output only the passage label of the most "
            "relevant passage:") -> list[dict]:
    """Zhuang et al. (SIGIR 2024), ielab/llm-rankers."""
    shown = "\n\n".join(f'Passage {LETTERS[i]}: "{p}"' for i, p in enumerate(passages))
    return [{"role": "user", "content": f'Given a query "{query}", which of the following passages is the most '
                                        f"relevant one to the query?\n\n{shown}\n\n{question}"}]


def pairwise(query: str, first: str, second: str) -> list[dict]:
    """PRP (Qin et al., 2024)."""
    return [{"role": "user", "content": (
        f'Given a query "{query}", which of the following two passages is more relevant to the query?'
        f'\n\nPassage A: "{first}"\n\nPassage B: "{second}"\n\nOutput Passage A or Passage B:')}]


def best_k(query: str, passages: list[str], k: int) -> list[dict]:
    """TourRank's question in the ``[] > []`` format."""
    lines = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
    return [{"role": "user", "content": (
        f"I will provide you with {len(passages)} passages, each indicated by a numerical identifier []. "
        f"Search Query: {query}.\n\n{lines}\n\nSelect the {k} passages most relevant to the search query, "
        "most relevant first. The output format should be [] > [], e.g., [1] > [2]. Only respond with the "
        "identifiers, do not say any word or explain.")}]


def tourrank(query: str, passages: list[str], k: int) -> list[dict]:
    """TourRank as published: one turn per ``Document j:``, answered ``Document 3, ..., Document 1``."""
    messages = [{"role": "system", "content": "You are an intelligent assistant that can compare multiple "
                                              "documents based on their relevancy to the given query."},
                {"role": "user", "content": f"I will provide you with the given query and {len(passages)} "
                 f"documents. \nConsider the content of all the documents comprehensively and select the {k} "
                 f"documents that are most relevant to the given query: {query}."},
                {"role": "assistant", "content": "Okay, please provide the documents."}]
    for j, passage in enumerate(passages, 1):
        messages += [{"role": "user", "content": f"Document {j}: {passage}"},
                     {"role": "assistant", "content": f"Received Document {j}."}]
    return messages + [{"role": "user", "content": f"The Query is: {query}.\nNow, you must output the top {k} "
                        "documents that are most relevant to the Query using the following format strictly, "
                        "and nothing else. Don't output any explanation, just the following format:\n"
                        "Document 3, ..., Document 1"}]


def pointwise(query: str, passage: str) -> list[dict]:
    """llm-rankers' yes/no relevance question."""
    return [{"role": "user", "content": f"Passage: {passage}\nQuery: {query}\nDoes the passage answer the "
                                        "query? Answer 'Yes' or 'No'."}]


# Data ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dl19():
    """(query, passages, grades, folder): DL19's first query, its top passages of distinct texts."""
    folder = data_dir("dl19")
    entry = json.loads((folder / "bm25_top100.json").read_text())[0]
    judged = Dataset(folder).qrels[str(entry["hits"][0]["qid"])]
    texts = [" ".join(h["content"].split()) for h in entry["hits"]]
    unique = [h for h, t in zip(entry["hits"], texts) if texts.count(t) == 1][:12]
    return (entry["query"], [" ".join(h["content"].split()[:100]) for h in unique],
            [judged.get(h["docid"], 0) for h in unique], folder)


@pytest.fixture(scope="module")
def oracle(dl19):
    return Responder(Judge("oracle", Dataset(dl19[3])))


@pytest.fixture(scope="module")
def server(dl19):
    with start_server("oracle", data_dir=dl19[3]) as running:
        yield running


def best_first(grades: list[int]) -> list[int]:
    """Positions (0-based) by grade, ties in the order shown: the perfect answer."""
    return sorted(range(len(grades)), key=lambda i: (-grades[i], i))


def answer(responder: Responder, messages: list[dict], **params) -> dict:
    reply = responder.respond({"model": "m", "messages": messages, **params})
    assert reply.status == 200, reply.body
    return reply.body["choices"][0]


def first_alternatives(choice: dict) -> list[tuple[str, float]]:
    return [(a["token"], a["logprob"]) for a in choice["logprobs"]["content"][0]["top_logprobs"]]


# How prompts are read ------------------------------------------------------------------------

def test_each_published_prompt_is_read_as_its_question():
    passages = ["first passage text", "second passage text", "third passage text"]
    cases = [
        (permutation("q", passages), "ranking", None, "brackets", passages),
        (setwise("q", passages), "choice", None, "labelled", passages),
        (pairwise("q", *passages[:2]), "choice", None, "labelled", passages[:2]),
        (best_k("q", passages, 2), "best", 2, "brackets", passages),
        (tourrank("q", passages, 2), "best", 2, "labelled", passages),
        (pointwise("q", passages[0]), "relevance", None, "single", passages[:1]),
        ([{"role": "user", "content": "[A] a\n[B] b\nWhich is the most relevant passage? Give its label."}],
         "best", 1, "brackets", ["a", "b"]),
    ]
    for messages, kind, k, style, shown in cases:
        prompt = read_prompt(messages)
        assert (prompt.question.kind, prompt.question.k, prompt.style) == (kind, k, style), messages
        assert list(prompt.passages.values()) == shown      # quotes and labels removed
    assert read_prompt(setwise("q", passages)).question.bare_label
    assert not read_prompt(pairwise("q", *passages[:2])).question.bare_label
    assert read_prompt(tourrank("q", passages, 2)).word == "Document"
    lower = read_prompt([{"role": "user", "content": "Passage: x\nQuery: q\nRelevant? Answer true or false."}])
    assert lower.question.words == ("true", "false")


# Every kind, perfect from the qrels ------------------------------------------------------------

def test_permutation_and_first_token(dl19, oracle):
    query, passages, grades, _ = dl19
    order = [int(n) - 1 for n in re.findall(r"\[(\d+)\]", answer(oracle, permutation(query, passages))
                                                              ["message"]["content"])]
    assert order == best_first(grades)
    messages = [*permutation(query, passages, letters=True), {"role": "assistant", "content": "["}]
    choice = answer(oracle, messages, max_tokens=1, logprobs=True, top_logprobs=20)
    tokens = [token for token, _ in first_alternatives(choice)]
    assert [LETTERS.index(t) for t in tokens] == best_first(grades)
    assert choice["message"]["content"] == tokens[0] and choice["finish_reason"] == "length"


def test_setwise_choice_and_its_likelihood(dl19, oracle):
    query, passages, grades, _ = dl19
    window = passages[:4]
    best = LETTERS[best_first(grades[:4])[0]]
    assert answer(oracle, setwise(query, window))["message"]["content"] == best
    plain = setwise(query, window, "Which passage is it? Answer with the passage.")
    assert answer(oracle, plain)["message"]["content"] == f"Passage {best}"
    for prefill in ("Passage ", "Passage:"):   # llm-rankers' " Passage:" answer start
        reply = answer(oracle, [*plain, {"role": "assistant", "content": prefill}])["message"]["content"]
        assert reply.strip() == best
    # Likelihood: the first token is the label, its alternatives every label by grade.
    choice = answer(oracle, plain, logprobs=True, top_logprobs=5)
    assert choice["message"]["content"] == best
    alternatives = first_alternatives(choice)
    assert [LETTERS.index(t) for t, _ in alternatives] == best_first(grades[:4])
    assert sum(math.exp(v) for _, v in alternatives) == pytest.approx(1.0)


def test_best_k_in_both_forms(dl19, oracle):
    query, passages, grades, _ = dl19
    ids = re.findall(r"\[(\d+)\]", answer(oracle, best_k(query, passages, 3))["message"]["content"])
    assert [int(i) - 1 for i in ids] == best_first(grades)[:3]
    text = answer(oracle, tourrank(query, passages, 4))["message"]["content"]
    assert text == ", ".join(f"Document {i + 1}" for i in best_first(grades)[:4])


def test_pairwise_prefers_the_better_passage_both_ways(dl19, oracle, server):
    query, passages, grades, folder = dl19
    pairs = [(i, j) for i in range(len(grades)) for j in range(len(grades)) if grades[i] != grades[j]][:12]
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)
    for i, j in pairs:
        messages = pairwise(query, passages[i], passages[j])
        expected = "Passage A" if grades[i] > grades[j] else "Passage B"
        assert answer(oracle, messages)["message"]["content"] == expected
        reply = client.chat.completions.create(model="m", messages=messages, temperature=0)
        assert reply.choices[0].message.content == expected
    noisy = Responder(Judge("noisy", Dataset(folder), seed=1, noise=0.5))
    flips = [answer(noisy, pairwise(query, passages[i], passages[j]))["message"]["content"]
             != ("Passage A" if grades[i] > grades[j] else "Passage B") for i, j in pairs]
    assert any(flips) and not all(flips)
    garbage = Responder(Judge("garbage", seed=2))
    for _ in range(12):
        text = answer(garbage, pairwise(query, passages[0], passages[1]))["message"]["content"]
        assert not re.search(r"[A-Z\d\[]", text) and not re.search(r"passage\s+[ab]\b", text, re.I)


def test_relevance_yes_no_with_probabilities_by_grade(dl19, oracle, server):
    query, passages, grades, _ = dl19
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)
    p_yes = {}
    for passage, grade in zip(passages, grades):
        choice = answer(oracle, pointwise(query, passage), max_tokens=4, logprobs=True, top_logprobs=5)
        probabilities = {token: math.exp(value) for token, value in first_alternatives(choice)}
        assert set(probabilities) == {"Yes", "No"} and sum(probabilities.values()) == pytest.approx(1.0)
        assert choice["message"]["content"] == ("Yes" if probabilities["Yes"] > 0.5 else "No")
        p_yes.setdefault(grade, set()).add(round(probabilities["Yes"], 9))
        http = client.chat.completions.create(model="m", messages=pointwise(query, passage), logprobs=True,
                                              top_logprobs=5)
        assert http.choices[0].message.content == choice["message"]["content"]
    assert all(len(values) == 1 for values in p_yes.values()) and len(p_yes) >= 3
    ordered = [p_yes[g].pop() for g in sorted(p_yes)]
    assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered)   # distinct, rising
    assert answer(oracle, pointwise(query, passages[0]))["message"]["content"] in ("Yes", "No")
    for name, word in (("identity", "Yes"), ("reverse", "No")):
        assert answer(Responder(Judge(name)), pointwise(query, passages[0]))["message"]["content"] == word
    garbage = Responder(Judge("garbage", seed=5))
    for _ in range(12):
        assert not re.search(r"yes|no", answer(garbage, pointwise(query, passages[0]))["message"]["content"], re.I)


# Reasoning -----------------------------------------------------------------------------------

def test_visible_reasoning_thinks_then_answers_within_max_tokens(dl19):
    query, passages, grades, folder = dl19
    judge = Responder(Judge("reasoning", Dataset(folder)), think_tokens=40)
    for messages, expected in ((pairwise(query, passages[0], passages[1]),
                                "Passage A" if grades[0] >= grades[1] else "Passage B"),
                               (best_k(query, passages, 2), None)):
        choice = answer(judge, messages, max_completion_tokens=400)
        thought, _, rest = choice["message"]["content"].partition("</think>")
        assert thought.startswith("<think>") and 30 <= judge.tokens.count(thought) <= 50
        assert choice["finish_reason"] == "stop"
        if expected:
            assert rest.strip() == expected
    cut = answer(judge, pairwise(query, passages[0], passages[1]), max_tokens=20)
    assert cut["finish_reason"] == "length" and "</think>" not in cut["message"]["content"]
    separate = Responder(Judge("oracle", Dataset(folder)), reasoning="separate", think_tokens=40)
    message = answer(separate, pairwise(query, passages[0], passages[1]))["message"]
    assert message["content"] in ("Passage A", "Passage B") and message["reasoning_content"].startswith("weighing")


def test_hidden_reasoning_is_an_o_series_model(dl19):
    query, passages, grades, folder = dl19
    messages = pairwise(query, passages[0], passages[1])
    expected = "Passage A" if grades[0] >= grades[1] else "Passage B"
    with start_server("oracle", data_dir=folder, reasoning="hidden", think_tokens=100) as hidden:
        client = openai.OpenAI(base_url=hidden.base_url, api_key="x", max_retries=0, timeout=10)
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="o3", messages=messages, max_tokens=50)
        assert refused.value.body == {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                       "'max_completion_tokens' instead.", "type": "invalid_request_error",
            "param": "max_tokens", "code": "unsupported_parameter"}
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="o3", messages=messages, temperature=0)
        assert (refused.value.body["param"], refused.value.body["code"]) == ("temperature", "unsupported_value")
        medium = client.chat.completions.create(model="o3", messages=messages, max_completion_tokens=500)
        high = client.chat.completions.create(model="o3", messages=messages, max_completion_tokens=500,
                                              reasoning_effort="high", temperature=1)
        short = client.chat.completions.create(model="o3", messages=messages, max_completion_tokens=80)
    assert medium.choices[0].message.content == expected and medium.choices[0].finish_reason == "stop"
    details = medium.usage.completion_tokens_details
    assert details.reasoning_tokens == 100 and medium.usage.completion_tokens == 100 + Tokens().count(expected)
    assert high.usage.completion_tokens_details.reasoning_tokens == 200
    assert short.choices[0].message.content == "" and short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == short.usage.completion_tokens_details.reasoning_tokens == 80


# The judge backend ---------------------------------------------------------------------------

def test_the_judge_backend_is_registered_and_built_from_the_model(dl19):
    folder = dl19[3]
    assert backend_class("judge") is JudgeBackend
    assert parse_model(f"judge:oracle:{folder}") == ("oracle", None, str(folder))
    assert parse_model(f"noisy+hidden:{folder}/qrels.dl19-passage.txt")[:2] == ("noisy", "hidden")
    assert parse_model("judge:identity") == ("identity", None, None)
    config = type("Config", (), {"model": f"judge:reasoning:{folder}"})()
    backend = JudgeBackend.from_config(config)
    assert (backend.judge, backend.data, backend.model) == ("reasoning", str(folder), config.model)
    for bad in ("judge:wise", f"judge:oracle+loud:{folder}", "judge:oracle"):
        with pytest.raises(ConfigError):
            JudgeBackend.from_config(type("Config", (), {"model": bad})())
    copy = pickle.loads(pickle.dumps(backend))
    assert copy == backend and copy._responder is None


def test_the_judge_backend_answers_as_the_server(dl19):
    query, passages, grades, folder = dl19
    backend = JudgeBackend("oracle", str(folder / "qrels.dl19-passage.txt"))   # a qrels file is enough

    async def calls():
        labels = list(LETTERS[:len(passages)])
        messages = [*permutation(query, passages, letters=True), {"role": "assistant", "content": "["}]
        first = await backend.complete(messages, {"temperature": 0, "max_tokens": 1, "logprobs": True,
                                                  "top_logprobs": 5}, first_token_labels=labels)
        judged = await backend.complete(pointwise(query, passages[0]), {"max_tokens": 4, "logprobs": True,
                                                                       "top_logprobs": 5})
        hidden = JudgeBackend("oracle", str(folder), reasoning="hidden")
        thought = await hidden.complete(pairwise(query, passages[0], passages[1]), {"max_completion_tokens": 300})
        with pytest.raises(BackendError, match="max_tokens"):
            await hidden.complete(pairwise(query, passages[0], passages[1]), {"max_tokens": 30})
        small = JudgeBackend("identity", context_window=50)
        with pytest.raises(ContextOverflow) as overflow:
            await small.complete(permutation(query, passages), {})
        await backend.aclose()
        return first, judged, thought, overflow.value

    first, judged, thought, overflow = asyncio.run(calls())
    assert [LETTERS.index(t) for t, _ in first.top_logprobs] == best_first(grades)   # all 12, not 5
    assert first.text == first.top_logprobs[0][0] and first.completion_tokens == 1
    assert judged.text == ("Yes" if grades[0] >= 2 else "No") and dict(judged.top_logprobs).keys() == {"Yes", "No"}
    assert thought.reasoning_tokens == 64 and thought.completion_tokens > 64
    assert overflow.limit == 50 and overflow.actual > 50


def test_the_server_module_runs_with_reasoning_options(dl19):
    process, base_url = start_process("--judge", "reasoning", "--data-dir", str(dl19[3]), "--think-tokens", "8")
    try:
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=10)
        text = client.chat.completions.create(model="m", messages=pairwise(dl19[0], *dl19[1][:2])).choices[0]
        assert text.message.content.startswith("<think>") and text.message.content.endswith(("Passage A",
                                                                                             "Passage B"))
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_a_dataset_of_rerank_requests_and_qrels_judges_in_process():
    from rerank.types import Candidate, Query, Request

    texts = ["Swallows fly at about eleven metres per second.", "An unladen swallow's airspeed is a famous "
             "question.", "Coconuts are not native to England."]
    request = Request(Query(qid="q1", text="what is the airspeed of an unladen swallow"),
                      [Candidate(f"d{i}", text) for i, text in enumerate(texts, 1)])
    backend = JudgeBackend("oracle", dataset=Dataset.from_requests([request], {"q1": {"d1": 1, "d2": 2}}))
    ranking = asyncio.run(backend.complete(permutation(request.query.text, texts), {"temperature": 0}))
    relevance = asyncio.run(backend.complete(pointwise(request.query.text, texts[2]), {}))
    assert ranking.text == "[2] > [1] > [3]" and relevance.text == "No"
