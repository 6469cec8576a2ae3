"""CPU the framework spends per LLM call, on DL19 BM25 top-100 with 20-passage RankGPT windows.

Prints three figures, each in CPU milliseconds per call, measured in this process:

1. framework alone: prompt building, cache key, cache lookup and store (a fresh SQLite cache),
   parsing and bookkeeping, with an in-process backend that answers at once;
2. framework + HTTP: the whole path through ``OpenAICompatBackend`` to a local OpenAI-compatible
   server running in another process (so its CPU is not counted), with a profile of where that
   CPU goes by component (prompt building, cache, parsing, HTTP client, event loop, the rest);
3. for comparison, the openai SDK's ``chat.completions.create`` for the same prompts.

Usage: ``python eval/bench_call_overhead.py [--data ../shared/data/dl19/bm25_top100.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from rerank import Reranker, read_requests
from rerank.backends import Capabilities, Completion

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 2.0


class InstantBackend:
    """Answers every window in input order at once: isolates the framework's own CPU."""

    model = "instant"
    def __init__(self):
        from rerank.tokens import EstimateCounter
        self._counter = EstimateCounter()

    async def prepare(self):
        return Capabilities()

    async def complete(self, messages, params, constraint=None, first_token_labels=None):
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


# Where a profiled function's CPU goes: matched on its file (or, for C functions, its name).
COMPONENTS = (
    ("prompt building and token fitting", ("rerank/prompts.py", "rerank/passages.py", "rerank/runner/prompt_builder.py",
                                           "rerank/tokens.py", "tiktoken", "CoreBPE",
                                           "'format' of 'str'", "'split' of 'str'", "'join' of 'str'")),
    ("cache key and SQLite lookup/store", ("rerank/cache.py", "rerank/cached_calls.py", "rerank/cache_", "sqlite3", "_hashlib", "json/encoder", "_json")),
    ("answer parsing", ("rerank/answers/",)),
    ("openai SDK: request options, headers, response handling", ("openai/", "pydantic", "tenacity")),
    ("HTTP transport: httpx, httpcore, h11, anyio, sockets",
     ("httpx", "httpcore", "h11", "anyio", "sniffio", "socket", "_ssl", "email/", "json/decoder", "'loads'")),
    ("asyncio event loop and tasks", ("asyncio/", "selectors", "select.epoll", "_asyncio")),
    ("reranker, strategy and bookkeeping", ("rerank/",)),
)


async def profile_components(reranker: Reranker, requests) -> dict[str, float]:
    """Each component's share of the CPU the reranker spends on ``requests``, from cProfile.

    A function's own time (not its callees') goes to the first component whose file (for C
    functions, whose name) matches; the time of functions that match none (builtins such as
    ``isinstance``, the standard library, pydantic) goes to their callers' components, in
    proportion to the time each caller spent in them. The profiler's overhead inflates the
    whole, so only shares are kept.
    """
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    await reranker.rerank_batch(requests)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    other = "unattributed"
    totals = dict.fromkeys([name for name, _ in COMPONENTS] + [other], 0.0)

    def component(key) -> str | None:
        filename, _, function = key
        where = function if filename == "~" else filename
        return next((name for name, needles in COMPONENTS if any(n in where for n in needles)), None)

    def assign(key, seconds: float, depth: int) -> None:
        name = component(key)
        callers = stats[key][4] if key in stats else {}
        spent = sum(timing[2] for timing in callers.values())
        if name is not None or depth == 0 or not spent:
            totals[name or other] += seconds
            return
        for caller, timing in callers.items():
            assign(caller, seconds * timing[2] / spent, depth - 1)

    for key, (_, _, own, _, _) in stats.items():
        assign(key, own, depth=8)
    whole = sum(totals.values()) or 1.0
    return {name: seconds / whole for name, seconds in totals.items()}


async def sdk_cpu_per_call(base_url: str, requests) -> float:
    import openai

    from rerank.passages import prepare_passage
    from rerank.prompts import load_prompt

    template = load_prompt("rankgpt")
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    prompts = [template.render(r.query.text, [prepare_passage(c, 100) for c in r.candidates[:20]])
               for r in requests]
    started = time.process_time()
    for messages in prompts:
        await client.chat.completions.create(model="m", messages=messages, temperature=0, max_tokens=152)
    await client.close()
    return (time.process_time() - started) * 1000 / len(prompts)


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
    from rerank.testing import start_process

    server, base_url = start_process("--judge", "identity")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # A fresh cache each time: every call is a miss, so key, lookup and store are all paid.
            def reranker(name: str) -> Reranker:
                return Reranker(model="m", base_url=base_url, cache=os.path.join(tmp, name), concurrency=16)

            warm = reranker("warm.sqlite")
            await warm.rerank_batch(requests[:3])
            await warm.aclose()
            timed = reranker("timed.sqlite")
            with_http, _ = await cpu_per_call(timed, requests)
            await timed.aclose()
            profiled = reranker("profiled.sqlite")
            shares = await profile_components(profiled, requests)
            await profiled.aclose()
        sdk = await sdk_cpu_per_call(base_url, requests)
    finally:
        server.terminate()
        server.wait()
    print(f"calls measured: {calls} (DL19, sliding 20/10)")
    print(f"framework alone (prompt, cache key/lookup/store, parse, bookkeeping): {alone:.3f} ms CPU/call "
          f"(target {TARGET_MS} ms; ratio {alone / TARGET_MS:.2f})")
    print(f"framework + HTTP client through OpenAICompatBackend: {with_http:.3f} ms CPU/call; where it goes "
          f"(cProfile shares of CPU, times the figure above):")
    for name, share in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"    {share:6.1%}  {share * with_http:.3f} ms  {name}")
    print(f"openai SDK chat.completions.create, same prompts: {sdk:.3f} ms CPU/call "
          f"({sdk / with_http:.1f}x ours)")


if __name__ == "__main__":
    asyncio.run(main())
