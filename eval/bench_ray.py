"""``--engine ray`` against a slow judge: how close 4 actors get to the ideal wall time.

A judges' server in a process of its own answers every call after ``--delay`` seconds (1 by
default) and accepts any number of calls at once (a thread per connection; checked here first
with twice the run's concurrency). DL19's 43 BM25 top-100 queries, repeated ``--repeat`` times
with new qids (1,075 queries), are reranked with sliding windows (9 calls a query, 9,675 calls)
by ``--actors`` actors at ``--concurrency`` calls each, with no cache (repeated prompts would be
answered from it). Ray's start-up (the cluster, then the actors) is reported apart; the wall time
runs from the first actor ready to the last result, and is compared with the ideal: total calls
times the delay over the total concurrency (9,675 / 256 = 38 s).

Usage: ``python eval/bench_ray.py [--data ../shared/data/dl19] [--actors 4] [--concurrency 64]
[--repeat 25] [--delay 1] [--baseline]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from pathlib import Path

from rerank.distributed import RayOptions, RayStats, rerank_dataset, start_ray
from rerank.formats import read_requests
from rerank.reranker import RerankerConfig
from rerank.testing import start_process
from rerank.types import Query, Request

TARGET = 1.3


def repeated(data: Path, times: int) -> list[Request]:
    """DL19's requests ``times`` over, each copy with qids of its own."""
    requests = list(read_requests(data / "bm25_top100.json"))
    return [Request(Query(qid=f"{r.query.qid}-{k}", text=r.query.text), r.candidates)
            for k in range(times) for r in requests]


async def probe(base_url: str, calls: int) -> float:
    """Seconds ``calls`` simultaneous chat calls take (one delay if the server takes them all at once)."""
    import httpx

    body = {"model": "judge", "messages": [{"role": "user", "content": "Rank: [1] a [2] b. Query: x"}]}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=calls)) as client:
        began = time.perf_counter()
        await asyncio.gather(*(client.post(f"{base_url}/chat/completions", json=body) for _ in range(calls)))
        return time.perf_counter() - began


async def one_process(config: RerankerConfig, requests: list[Request], total: int) -> int:
    """Results of one reranker running ``total`` calls at once (twice as many queries in flight,
    as the actors keep)."""
    from dataclasses import replace

    from rerank.reranker import Reranker

    async with Reranker(replace(config, concurrency=total)) as reranker:
        return sum([1 async for _ in reranker.rerank_iter(requests, in_flight=2 * total)])


def stats(base_url: str) -> dict:
    """The server's counters."""
    with urllib.request.urlopen(base_url.rsplit("/v1", 1)[0] + "/stats") as answer:
        return json.loads(answer.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19")
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--address", default=None, help="a Ray cluster to join (default: start a local one)")
    parser.add_argument("--baseline", action="store_true",
                        help="also time one process at the same total concurrency, on the same server, first "
                             "(on a machine of few cores, what the CPU allows whatever the engine)")
    args = parser.parse_args()

    server, base_url = start_process("--judge", "oracle", "--data-dir", str(args.data), "--delay", str(args.delay),
                                     "--estimate-usage")
    try:
        total = args.actors * args.concurrency
        took = asyncio.run(probe(base_url, 2 * total))
        print(f"server: {2 * total} simultaneous calls answered in {took:.2f} s (delay {args.delay:g} s)")
        requests = repeated(args.data, args.repeat)
        config = RerankerConfig(model="judge", base_url=base_url, concurrency=args.concurrency, cache=None,
                                max_attempts=2)
        if args.baseline:
            began = time.perf_counter()
            done = asyncio.run(one_process(config, requests, total))
            took = time.perf_counter() - began
            print(f"one process at concurrency {total}: {done} queries in {took:.1f} s "
                  f"({took / (len(requests) * 9 * args.delay / total):.2f}x the ideal)")
        options = RayOptions(actors=args.actors, address=args.address)
        run = RayStats()
        before = stats(base_url)["requests"]
        started_here = start_ray(options, run)
        try:
            results = sum(1 for _ in rerank_dataset(config, requests, options=options, stats=run))
        finally:
            if started_here:
                import ray

                ray.shutdown()
        calls = stats(base_url)["requests"] - before
        print(f"queries: {results} of {len(requests)}; calls: {calls:,}")
        actors_up = run.last_ready - run.started
        print(f"Ray start-up: cluster {run.init_seconds:.1f} s, actors {run.first_ready - run.started:.1f} s "
              f"(first) to {actors_up:.1f} s (last) after the dataset started")
        wall = run.finished - run.first_ready
        ideal = calls * args.delay / total
        print(f"wall, start-up excluded (first actor ready -> last result): {wall:.1f} s; "
              f"dataset start -> last result: {run.finished - run.started:.1f} s")
        print(f"ideal ({calls:,} calls x {args.delay:g} s / {total} in flight): {ideal:.1f} s; "
              f"ratio {wall / ideal:.2f}x (target <= {TARGET}x): {'PASS' if wall / ideal <= TARGET else 'FAIL'}")
        print(f"server: at most {stats(base_url)['max_in_flight']} calls in flight")
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
