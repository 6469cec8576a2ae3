"""Fitting always fits: the answer's share, the query's cut, and refusing up front what cannot fit."""

import json

import pytest

from conftest import run_cli
from rerank import Query, Request, Reranker
from llm_server import start_server
from rerank.errors import ConfigError
from rerank.fitting import ANSWER_SHARE, answer_tokens, check_fits, cut_query, smallest_prompt
from rerank.prompts import load_prompt
from rerank.tokens import TiktokenCounter, get_encoding
from test_reranker import ScriptedBackend, ids_in, make_request, reverse_answer

pytestmark = pytest.mark.skipif(get_encoding() is None, reason="tiktoken offline encoding not available")


def test_the_answer_budget_is_capped_to_its_share():
    assert answer_tokens(None, 20, 32768) == 8 * 20 + 32
    assert answer_tokens(None, 10_000, 32768) == int(32768 * ANSWER_SHARE)  # not 80,032
    assert answer_tokens(100_000, 5, 4096) == 2048
    assert answer_tokens(50, 10_000, 4096) == 50


def test_a_huge_query_is_cut_to_its_share():
    counter = TiktokenCounter()
    query = "fleas " * 2_000_000  # 12 MB
    cut = cut_query(query, 32768, counter)
    assert counter.count(cut) <= 32768 // 8 and query.startswith(cut)
    assert cut_query("how long do fleas live", 32768, counter) == "how long do fleas live"


@pytest.mark.parametrize("prompt", ["rankgpt", "rankzephyr"])
def test_check_fits_names_the_most_that_fit(prompt):
    counter, template = TiktokenCounter(), load_prompt(prompt)
    check_fits(template, 100, 32768, None, counter, "full ranking")  # the usual case passes
    with pytest.raises(ConfigError) as refused:
        check_fits(template, 10_000, 32768, None, counter, "full ranking")
    message = str(refused.value)
    assert "10,000 passages cannot fit a 32,768-token context" in message and "--top-k" in message
    most = int(message.split("at most ")[1].split()[0])
    assert smallest_prompt(template, most, counter) + answer_tokens(None, most, 32768) <= 32768
    assert smallest_prompt(template, most + 1, counter) + answer_tokens(None, most + 1, 32768) > 32768


async def test_full_ranking_of_10000_is_refused_before_any_call():
    backend = ScriptedBackend(reverse_answer, counter=TiktokenCounter())
    reranker = Reranker(model="m", cache=None, llm=backend, strategy="full", top_k=10_000)
    with pytest.raises(ConfigError, match="cannot fit"):
        await reranker.prepare()
    with pytest.raises(ConfigError, match="cannot fit"):  # the API without prepare(): on first use
        await Reranker(model="m", cache=None, llm=backend, strategy="full", top_k=10_000).rerank(
            make_request(n=10_000, words=3))
    assert backend.prompts == []


@pytest.mark.parametrize("prompt", ["rankgpt", "rankzephyr"])
async def test_every_prompt_fits_however_long_the_query_and_passages(prompt):
    counter = TiktokenCounter()
    backend = ScriptedBackend(reverse_answer if prompt == "rankgpt" else (lambda m: "[1] > [2]"), counter=counter)
    request = make_request(n=100, words=200)
    request = Request(Query(qid="q", text="fleas and ticks " * 700_000), request.candidates)  # 11 MB
    context = 8192
    reranker = Reranker(model="m", cache=None, llm=backend, strategy="full", top_k=100, context_size=context,
                        prompt=prompt, max_passage_words=None)
    result = await reranker.rerank(request)
    messages, params = backend.prompts[0]
    assert counter.count_messages(messages) + params["max_tokens"] <= context
    assert params["max_tokens"] <= context * ANSWER_SHARE
    assert len(result.candidates) == 100
    if prompt == "rankgpt":
        assert len(ids_in(messages)) == 100


def test_cli_refuses_up_front_what_cannot_fit(tmp_path):
    line = {"query": {"qid": "q", "text": "fleas"},
            "candidates": [{"docid": f"d{i}", "doc": f"passage {i}"} for i in range(10_000)]}
    (tmp_path / "big.jsonl").write_text(json.dumps(line) + "\n")
    with start_server("identity") as server:
        proc = run_cli("run", tmp_path / "big.jsonl", "-o", tmp_path / "out.jsonl", "--strategy", "full",
                       "--top-k", 10_000, "--model", "judge", "--base-url", server.base_url, "--no-cache")
        assert server.stats()["completions"] == 0
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "cannot fit" in proc.stderr and "--top-k" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()
