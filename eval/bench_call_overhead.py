"""CPU the framework spends per LLM call, on DL19 BM25 top-100 with 20-passage RankGPT windows.

Prints, in CPU milliseconds per call measured in this process, each beside the target of
1.0 ms (and its ratio to it):

1. framework alone: prompt building, cache key, cache lookup and store (a fresh SQLite cache),
   parsing and bookkeeping, with an in-process backend that answers at once;
2. framework + HTTP, for every transport of ``OpenAICompatBackend`` (its ``http_client``:
   ``aiohttp``, the default, and ``httpx``, the SDK's default client) and, for comparison, the
   SDK's own aiohttp transport (``openai.DefaultAioHttpClient``, ``httpx``'s client on aiohttp's
   connections: not a backend choice, see ``rerank/backends/openai_http.py``) in its place,
   side by side in the same run: the whole path to a local
   OpenAI-compatible server running in another process (so its CPU is not counted). Each figure
   is marginal: the reranker is warmed (connections open, the endpoint checked) on 3 queries,
   then timed on the other 40 (every call a cache miss), and the median of ``--repeats`` rounds,
   taken in turn, is kept; then a profile of where that CPU goes by component (prompt building,
   cache, parsing, HTTP client, event loop, the rest), for each transport;
3. for comparison, the openai SDK's ``chat.completions.create`` for the same prompts.

Usage: ``python eval/bench_call_overhead.py [--data ../shared/data/dl19/bm25_top100.json] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from rerank import Reranker, read_requests
from rerank.backends import Capabilities, Completion

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 1.0
WARM_QUERIES = 3


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
    ("HTTP transport: ours, httpx, aiohttp, sockets",
     ("rerank/backends/openai_http", "rerank/backends/openai_aiohttp", "httpx", "httpcore", "h11", "anyio",
      "sniffio", "aiohttp", "yarl", "multidict", "propcache", "socket", "_ssl", "email/", "json/decoder",
      "'loads'")),
    ("openai SDK (request options, pydantic) and tenacity", ("openai/", "pydantic", "tenacity")),
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


SDK_AIOHTTP = "openai-aiohttp"


def http_reranker(base_url: str, http_client: str, cache: str) -> Reranker:
    """A reranker through ``OpenAICompatBackend`` on ``http_client`` (or :data:`SDK_AIOHTTP`),
    with a fresh cache."""
    from rerank.backends.openai_compat import OpenAICompatBackend

    backend = OpenAICompatBackend(model="m", base_url=base_url, concurrency=16,
                                  http_client="httpx" if http_client == SDK_AIOHTTP else http_client)
    if http_client == SDK_AIOHTTP:
        import openai

        from rerank.backends.openai_http import HttpxTransport, refuse_cross_origin_redirect

        # The httpx transport's code on the SDK's aiohttp-backed client, swapped in after connecting.
        backend._connect()
        backend._transport = HttpxTransport(openai.DefaultAioHttpClient(
            timeout=backend.timeout, event_hooks={"response": [refuse_cross_origin_redirect]}))
    return Reranker(model="m", cache=cache, concurrency=16, llm=backend)


async def marginal_cpu_per_call(base_url: str, http_client: str, cache: str, requests) -> tuple[float, int]:
    """CPU per call over ``requests[WARM_QUERIES:]`` on a reranker warmed on the queries before,
    and the number of calls timed."""
    reranker = http_reranker(base_url, http_client, cache)
    try:
        await reranker.rerank_batch(requests[:WARM_QUERIES])
        return await cpu_per_call(reranker, requests[WARM_QUERIES:])
    finally:
        await reranker.aclose()


async def main() -> None:
    from rerank.backends.openai_http import HTTP_CLIENTS

    transports = (*HTTP_CLIENTS, SDK_AIOHTTP)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "dl19" / "bm25_top100.json"))
    parser.add_argument("--repeats", type=int, default=5, help="rounds over the transports (the median is kept)")
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
    figures: dict[str, list[float]] = {name: [] for name in transports}
    shares: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # A fresh cache each time: every call is a miss, so key, lookup and store are all paid.
            for name in transports:  # warm-up: imports, the server's first answers
                await marginal_cpu_per_call(base_url, name, os.path.join(tmp, f"warm-{name}.sqlite"), requests[:6])
            for round_ in range(args.repeats):
                for name in transports:
                    cache = os.path.join(tmp, f"{name}-{round_}.sqlite")
                    per_call, timed_calls = await marginal_cpu_per_call(base_url, name, cache, requests)
                    figures[name].append(per_call)
            for name in transports:
                profiled = http_reranker(base_url, name, os.path.join(tmp, f"profiled-{name}.sqlite"))
                await profiled.rerank_batch(requests[:WARM_QUERIES])
                shares[name] = await profile_components(profiled, requests[WARM_QUERIES:])
                await profiled.aclose()
        sdk = await sdk_cpu_per_call(base_url, requests)
    finally:
        server.terminate()
        server.wait()
    with_http = {name: statistics.median(values) for name, values in figures.items()}
    print(f"calls measured: {calls} (DL19, sliding 20/10); with HTTP {timed_calls} a round, after {WARM_QUERIES} "
          f"queries of warm-up, median of {args.repeats} rounds")
    print(f"target: {TARGET_MS} ms CPU/call (framework + HTTP)")
    print(f"{'path':<58} {'ms CPU/call':>11} {'/target':>7} {'/httpx':>6}  rounds")
    print(f"{'framework alone (prompt, cache, parse, bookkeeping)':<58} {alone:>11.3f} {alone / TARGET_MS:>7.2f}")
    for name in transports:
        label = (f"framework + HTTP, http_client={name}" + (" (default)" if name == HTTP_CLIENTS[0] else "")
                 if name in HTTP_CLIENTS else "framework + HTTP, the SDK's DefaultAioHttpClient")
        rounds = " ".join(f"{value:.3f}" for value in figures[name])
        print(f"{label:<58} {with_http[name]:>11.3f} {with_http[name] / TARGET_MS:>7.2f} "
              f"{with_http[name] / with_http['httpx']:>6.2f}  {rounds}")
    print(f"{'openai SDK chat.completions.create, same prompts':<58} {sdk:>11.3f} {sdk / TARGET_MS:>7.2f}")
    print("\nwhere it goes (cProfile shares of CPU, times each transport's figure above, ms/call):")
    names = sorted(shares[transports[0]], key=lambda component: -shares["httpx"][component])
    print(f"    {'component':<56}" + "".join(f"{name:>16}" for name in transports))
    for component in names:
        print(f"    {component:<56}" + "".join(
            f"{shares[name][component] * with_http[name]:>9.3f} {shares[name][component]:>5.0%}"
            for name in transports))


if __name__ == "__main__":
    asyncio.run(main())
