"""``rerank serve`` under load: latency of concurrent requests, throughput, and memory over many.

Three processes, as in production: the judges' server (the LLM: ``oracle`` over TREC DL19, answering
each call ``--delay`` seconds after it arrived), ``rerank serve`` in front of it (full ranking, LLM
concurrency 256, no call cache so every request pays its call), and this load generator. The judge
estimates the tokens it bills (``--estimate-usage``) rather than count them with tiktoken: a real
LLM counts on its own machine, while here that counting takes CPU from the server beside it (half
the judge's CPU, 0.1-0.15 s of p99 on two cores); ``--exact-usage`` counts them.

1. Latency: ``--rounds`` (3) bursts of ``--concurrent`` (200) requests at once, each a DL19
   query and 20 of its BM25 candidates (no two alike, so nothing is deduplicated), through
   Cohere's v2 API, each on a connection of its own opened beforehand; the first burst meets a
   fresh server, the others a warm one. All must succeed and rank the judged-best passage first;
   p50, p99 and the throughput are printed, with the ideal (the judge's delay) beside, and the
   CPU seconds each process spent (on a small machine the three share its cores: what the
   latency holds over the judge's delay is mostly their CPU). The target: p99 under 1.5 s
   with the judge answering in 1 s.
2. Memory: ``--requests`` (5,000) more requests, ``--wave`` at a time, against a judge without
   delay and a server with its call cache on, each query marked ``#N`` so that no two are alike
   (the judge still finds the query in the prompt); the server's resident memory (``VmRSS``)
   at start, after the first tenth and at the end, and its in-flight gauge once every answer
   is in (it must be back to 0).

Usage: ``python eval/bench_serve.py [--concurrent 200] [--delay 1] [--requests 5000] [--json F]``
(``--requests 0`` measures latency alone). Needs the DL19 data beside the project
(``../shared/data/dl19``) and the serve extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DL19 = ROOT.parent / "shared" / "data" / "dl19"

from rerank.formats import read_qrels  # noqa: E402
from rerank.testing import start_process  # noqa: E402

#: The target of the latency run (seconds), with a judge answering in 1 s.
P99_TARGET_S = 1.5


def bodies(count: int, documents: int = 20) -> list[dict]:
    """``count`` distinct v2 request bodies: DL19 queries with ``documents`` of their BM25 hits,
    each query's windows taken at different offsets; each body carries its grades under ``_grades``."""
    data = json.loads((DL19 / "bm25_top100.json").read_text(encoding="utf-8"))
    qrels = read_qrels(next(DL19.glob("qrels.*")))
    found = []
    offset = 0
    while len(found) < count:
        for query in data:
            hits = query["hits"][offset % (len(query["hits"]) - documents + 1):][:documents]
            judged = qrels.get(str(hits[0]["qid"]), {})
            found.append({"model": "full", "query": query["query"], "documents": [hit["content"] for hit in hits],
                          "_grades": [judged.get(str(hit["docid"]), 0) for hit in hits]})
            if len(found) == count:
                break
        offset += 7
    return found


class Serve:
    """``rerank serve`` on a free port in front of the judge (with the call cache ``cache``, none
    without), its stderr drained by a thread (a full pipe would stall the server) and its last
    lines kept for an error message."""

    def __init__(self, judge_url: str, cache: Path | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rerank", "serve", "--model", "judge", "--base-url", judge_url,
             "--strategy", "full", "--serve-model", "full=full", "--concurrency", "256",
             *(["--cache", str(cache)] if cache else ["--no-cache"]), "--port", "0"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.tail: deque = deque(maxlen=20)
        self.url = None
        for line in self.process.stderr:
            found = re.search(r"rerank serve: (http://\S+)", line)
            if found:
                self.url = found.group(1)
                break
            self.tail.append(line)
        if self.url is None:
            raise SystemExit(f"rerank serve did not start (exit {self.process.wait()}):\n{''.join(self.tail)}")
        threading.Thread(target=lambda: self.tail.extend(self.process.stderr), daemon=True).start()

    def resident_mib(self) -> float:
        """The server's resident memory in MiB."""
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def timed(session, url: str, body: dict) -> tuple[float, int, list]:
    """One request: its seconds, status and the grades of its results in order."""
    grades = body["_grades"]
    started = time.perf_counter()
    async with session.post(f"{url}/v2/rerank", json={k: v for k, v in body.items() if k != "_grades"}) as response:
        answer = await response.json() if response.status == 200 else None
    seconds = time.perf_counter() - started
    return seconds, response.status, [grades[r["index"]] for r in answer["results"]] if answer else []


async def burst(url: str, payload: list[dict]) -> tuple[list, float]:
    """Every body at once, each on a connection opened beforehand (so that the timings hold the
    server's answer, not hundreds of TCP handshakes); the outcomes of :func:`timed` and the wall time.

    aiohttp, not httpx: httpcore's pool scans every connection for every request it assigns, and
    with 200 connections that costs the load generator seconds of CPU, more than the server spends.
    """
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=120)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def health() -> None:
            async with session.get(f"{url}/health") as response:
                await response.read()

        # Warm the pool: as many connections as requests, all idle and kept alive.
        await asyncio.gather(*(health() for _ in payload))
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(timed(session, url, body) for body in payload))
        wall = time.perf_counter() - started
    return outcomes, wall


async def metric(url: str, name: str) -> float:
    """A gauge or counter of the server's ``/metrics``."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    return float(re.search(rf"^{name} (\S+)$", text, re.MULTILINE).group(1))


def judge_stats(url: str) -> dict:
    """The judge's counters (``GET /stats``)."""
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=30) as response:
        return json.loads(response.read())


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user and system), from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_judge(delay: float, exact_usage: bool) -> tuple[subprocess.Popen, str]:
    """The oracle judge's server on DL19 in a process of its own; the process and its URL."""
    return start_process("--judge", "oracle", "--data-dir", str(DL19), "--delay", str(delay),
                         *([] if exact_usage else ["--estimate-usage"]))


def latency_run(concurrent: int, delay: float, rounds: int, exact_usage: bool = False) -> list[dict]:
    """``rounds`` bursts of ``concurrent`` distinct requests at once through a judge answering in
    ``delay`` seconds: the first against a fresh server (its connections to the judge not yet
    open), the others warm. With each, the CPU seconds the judge, the server and this load
    generator spent: where the time over the judge's delay went."""
    judge, judge_url = start_judge(delay, exact_usage)
    serve = None
    try:
        serve = Serve(judge_url)
        payload = bodies(concurrent)
        figures = []
        for _ in range(rounds):
            calls_before = judge_stats(judge_url)["requests"]
            pids = (judge.pid, serve.process.pid, os.getpid())
            before = [cpu_seconds(pid) for pid in pids]
            outcomes, wall = asyncio.run(burst(serve.url, payload))
            cpu = [round(cpu_seconds(pid) - spent, 2) for pid, spent in zip(pids, before)]
            seconds = [s for s, _, _ in outcomes]
            statuses = [status for _, status, _ in outcomes]
            best_first = sum(1 for _, status, ranked in outcomes if status == 200 and ranked[0] == max(ranked))
            stats = judge_stats(judge_url)
            figures.append({
                "requests": len(statuses), "succeeded": statuses.count(200), "judged_best_first": best_first,
                "judge_delay_s": delay, "min_s": round(min(seconds), 3), "p50_s": round(statistics.median(seconds), 3),
                "p99_s": round(percentile(seconds, 0.99), 3), "max_s": round(max(seconds), 3),
                "wall_s": round(wall, 3), "throughput_rps": round(len(statuses) / wall, 1),
                "judge_calls": stats["requests"] - calls_before, "judge_max_in_flight": stats["max_in_flight"],
                "cpu_s": dict(zip(("judge", "serve", "client"), cpu))})
        return figures
    finally:
        if serve is not None:
            serve.stop()
        judge.terminate()
        judge.wait()


def memory_run(requests: int, wave: int, exact_usage: bool = False) -> dict:
    """``requests`` requests, ``wave`` at a time, each distinct, through a server with its call
    cache on (a fresh file, as in production, where every one of these calls is a miss and a
    write); the server's memory along the way."""
    judge, judge_url = start_judge(0.0, exact_usage)
    serve, folder = None, tempfile.TemporaryDirectory(prefix="bench-serve-")
    try:
        serve = Serve(judge_url, Path(folder.name) / "calls.sqlite")
        started_mib = serve.resident_mib()
        payload = bodies(wave * 3)
        done, samples, failed = 0, [], 0
        started = time.perf_counter()
        while done < requests:
            count = min(wave, requests - done)
            batch = [payload[(done + i) % len(payload)] for i in range(count)]
            batch = [body | {"query": f"{body['query']} #{done + i}"} for i, body in enumerate(batch)]
            outcomes, _ = asyncio.run(burst(serve.url, batch))
            failed += sum(1 for _, status, _ in outcomes if status != 200)
            done += count
            samples.append((done, serve.resident_mib()))
        seconds = time.perf_counter() - started
        if failed:
            raise SystemExit(f"memory run: {failed} of {done} requests failed:\n{''.join(serve.tail)}")
        early = next(mib for count, mib in samples if count >= requests // 10)
        stats = judge_stats(judge_url)
        return {"requests": done, "seconds": round(seconds, 1), "rss_mib_at_start": round(started_mib, 1),
                "rss_mib_after_10pct": round(early, 1),
                "rss_mib_at_end": round(samples[-1][1], 1), "rss_mib_max": round(max(m for _, m in samples), 1),
                "growth_mib": round(samples[-1][1] - early, 1),
                "rss_mib_by_requests": {count: round(mib, 1) for count, mib in samples[::max(1, len(samples) // 10)]},
                "in_flight_at_end": int(asyncio.run(metric(serve.url, "rerank_requests_in_flight"))),
                "judge_calls": stats["requests"], "judge_unidentified_queries": stats["unidentified_queries"]}
    finally:
        if serve is not None:
            serve.stop()
        judge.terminate()
        judge.wait()
        folder.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrent", type=int, default=200, help="requests at once (default: 200)")
    parser.add_argument("--delay", type=float, default=1.0, help="the judge's seconds per call (default: 1)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="bursts of the latency run: the first cold, the others warm (default: 3)")
    parser.add_argument("--requests", type=int, default=5000,
                        help="requests of the memory run (default: 5000; 0: no memory run)")
    parser.add_argument("--wave", type=int, default=100, help="requests at once in the memory run (default: 100)")
    parser.add_argument("--exact-usage", action="store_true",
                        help="the judge counts the tokens it bills with tiktoken (default: it estimates them)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if not DL19.is_dir():
        raise SystemExit(f"{DL19}: the DL19 data is not there")
    figures = {"latency": latency_run(args.concurrent, args.delay, args.rounds, args.exact_usage)}
    for number, latency in enumerate(figures["latency"], 1):
        print(f"{'cold' if number == 1 else 'warm'} burst {number}: {latency['requests']} concurrent requests of 20 "
              f"documents (full ranking, judge {args.delay:g} s a call, LLM concurrency 256): {latency['succeeded']} "
              f"succeeded, {latency['judged_best_first']} with the judged-best passage first; p50 "
              f"{latency['p50_s']:.3f} s, p99 {latency['p99_s']:.3f} s, max {latency['max_s']:.3f} s (ideal "
              f"{args.delay:g} s; target p99 < {P99_TARGET_S:g} s), {latency['throughput_rps']:.1f} requests/s; the "
              f"judge saw {latency['judge_max_in_flight']} calls at once; CPU s: judge {latency['cpu_s']['judge']}, "
              f"server {latency['cpu_s']['serve']}, load generator {latency['cpu_s']['client']}", flush=True)
    if args.requests > 0:
        figures["memory"] = memory = memory_run(args.requests, args.wave, args.exact_usage)
        print(f"memory over {memory['requests']:,} requests ({memory['seconds']:.0f} s, call cache on): "
              f"{memory['rss_mib_at_start']:.1f} MiB at start, {memory['rss_mib_after_10pct']:.1f} MiB after the first "
              f"tenth, {memory['rss_mib_at_end']:.1f} MiB at the end ({memory['growth_mib']:+.1f} MiB, max "
              f"{memory['rss_mib_max']:.1f}); requests in flight at the end: {memory['in_flight_at_end']}; queries "
              f"the judge did not know: {memory['judge_unidentified_queries']} of {memory['judge_calls']} calls")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    failed = sum(latency["requests"] - latency["succeeded"] for latency in figures["latency"])
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
