"""CPU the framework spends per LLM call, on DL19 BM25 top-100 with 20-passage RankGPT windows.

Prints three figures, each in CPU milliseconds per call, measured in this process:

1. framework alone: prompt building, cache key, cache lookup and store (a fresh SQLite cache),
   parsing and bookkeeping, with an in-process backend that answers at once;
2. framework + HTTP: the whole path through ``OpenAICompatBackend`` to a local OpenAI-compatible
   server running in another process (so its CPU is not counted);
3. for comparison, the openai SDK's ``chat.completions.create`` for the same prompts.

Usage: ``python eval/bench_call_overhead.py [--data ../shared/data/dl19/bm25_top100.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rerank import Reranker, read_requests
from rerank.backends import Completion

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 2.0


class InstantBackend:
    """Answers every window in input order at once: isolates the framework's own CPU."""

    model = "instant"
    constrained_default = None

    def __init__(self):
        from rerank.tokens import EstimateCounter
        self._counter = EstimateCounter()

    def context_limit(self):
        return None

    async def complete(self, messages, params, ranking_size=None):
        n = sum(1 for m in messages if m["role"] == "user" and m["content"].startswith("["))
        return Completion(" > ".join(f"[{i}]" for i in range(1, n + 1)), 3000, 80, "stop", 0.0, 1)

    def token_counter(self):
        return self._counter

    async def aclose(self):
        pass


async def cpu_per_call(reranker: Reranker, requests) -> tuple[float, int]:
    started = time.process_time()
    results = await reranker.rerank_batch(requests)
    calls = sum(len(r.calls) for r in results)
    return (time.process_time() - started) * 1000 / calls, calls


async def sdk_cpu_per_call(base_url: str, requests) -> float:
    import openai

    from rerank.prompts import load_prompt, prepare_passage

    template = load_prompt("rankgpt")
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    prompts = [template.render(r.query.text, [prepare_passage(c, 100) for c in r.candidates[:20]])
               for r in requests]
    started = time.process_time()
    for messages in prompts:
        await client.chat.completions.create(model="m", messages=messages, temperature=0, max_tokens=152)
    await client.close()
    return (time.process_time() - started) * 1000 / len(prompts)


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "llm_server.py"), "--judge", "identity"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().split()
    return proc, line[1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "dl19" / "bm25_top100.json"))
    args = parser.parse_args()
    if not Path(args.data).exists():
        print(f"skipped: {args.data} not found")
        return
    requests = list(read_requests(args.data))
    os.environ.setdefault("OPENAI_API_KEY", "x")
    with tempfile.TemporaryDirectory() as tmp:
        reranker = Reranker(model="instant", cache=os.path.join(tmp, "c.sqlite"), llm=InstantBackend())
        await reranker.rerank_batch(requests[:3])  # warm-up: imports, encodings, connection
        alone, calls = await cpu_per_call(Reranker(reranker.config, llm=InstantBackend()), requests)
    server, base_url = start_server()
    try:
        reranker = Reranker(model="m", base_url=base_url, cache=None, concurrency=16)
        await reranker.rerank_batch(requests[:3])
        with_http, _ = await cpu_per_call(reranker, requests)
        await reranker.aclose()
        sdk = await sdk_cpu_per_call(base_url, requests)
    finally:
        server.terminate()
        server.wait()
    print(f"calls measured: {calls} (DL19, sliding 20/10)")
    print(f"framework alone (prompt, cache key/lookup/store, parse, bookkeeping): {alone:.3f} ms CPU/call "
          f"(target {TARGET_MS} ms; ratio {alone / TARGET_MS:.2f})")
    print(f"framework + HTTP client through OpenAICompatBackend: {with_http:.3f} ms CPU/call")
    print(f"openai SDK chat.completions.create, same prompts: {sdk:.3f} ms CPU/call "
          f"({sdk / with_http:.1f}x ours)")


if __name__ == "__main__":
    asyncio.run(main())
