"""Performance figures of the performance issue, each printed beside its target, from one run.

1. concurrency: DL19 (43 queries, BM25 top 100) against a local server that answers every call
   after a fixed 1 s and takes any number at once, at concurrency 64: sliding against the ideal
   of 9 sequential rounds (9 s), full ranking against 1 s; and a sequential loop written the way
   RankGPT's reference code calls the API (one call at a time), timed on the first queries and
   extrapolated to all 43. The run's time comes from its summary (``wall_seconds``), CLI
   start-up (imports, the endpoint check, loading the tokenizer) excluded and shown apart. The
   server is a stub as the target describes: it reports usage without tokenizing, so its own
   CPU hardly competes with the client's on a small machine; full ranking is also timed against
   the tests' judge, which counts every prompt's tokens on the same cores;
2. framework CPU per call: see ``eval/bench_call_overhead.py`` (run here too), with a profile of
   where the CPU goes;
3. memory: peak resident memory of ``rerank run`` (the process's own rusage) over DL19 repeated
   100 times under new qids (4,300 requests), against an instant server, and over 10 times as
   few requests, to show it does not grow with their number;
4. cache: a fully cached rerun of DL19 sliding, start-up included, and lookups in a cache of a
   million entries against one of a thousand;
5. tokens: prompt tokens per query of sliding and full ranking, as a server counts them (cl100k),
   against the minimum (the sum of the passages' tokens plus one copy of the instructions);
6. start-up: ``rerank --help``.

Usage: ``python eval/bench_performance.py [--skip-memory] [--sequential-queries 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DL19 = ROOT.parent / "shared" / "data" / "dl19" / "bm25_top100.json"


def cli(*args, env=None) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time and result of one ``rerank`` process."""
    environment = {**os.environ, "OPENAI_API_KEY": "bench", **(env or {})}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rerank", *map(str, args)], capture_output=True, text=True,
                          env=environment, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"rerank {' '.join(map(str, args[:2]))} failed: {proc.stderr[-500:]}")
    return time.perf_counter() - started, proc


def server_process(judge: str, delay: float = 0.0, estimate_usage: bool = False) -> tuple[subprocess.Popen, str]:
    """A test judge in a process of its own (its CPU is not the framework's).

    With ``estimate_usage`` it reports usage without tokenizing: a stub that answers after the
    delay, as the concurrency target has it, whose own CPU barely competes with the client for
    the cores of a small machine.
    """
    from rerank.testing import start_process

    return start_process("--judge", judge, "--delay", str(delay), "--data-dir", str(DL19.parent),
                         *(["--estimate-usage"] if estimate_usage else []))


def concurrency(tmp: Path, sequential_queries: int) -> None:
    def timed_run(url: str, strategy: str, name: str) -> tuple[float, float, float]:
        summary = tmp / f"{name}.json"
        total, _ = cli("run", DL19, "-o", tmp / f"{name}.jsonl", "--model", "m", "--base-url", url, "--no-cache",
                       "--concurrency", 64, "--strategy", strategy, "--summary-json", summary)
        figures = json.loads(summary.read_text())
        # The run's own wall time, from its summary: CLI start-up (imports, the endpoint check and
        # the tokenizer's load) excluded, and given apart.
        return figures["wall_seconds"], figures["startup_seconds"], total

    server, url = server_process("identity", delay=1.0, estimate_usage=True)
    try:
        for strategy, ideal in (("sliding", 9.0), ("full", 1.0)):
            wall, startup, total = timed_run(url, strategy, strategy)
            print(f"1. concurrency 64, {strategy}: {wall:.2f} s vs ideal {ideal:.0f} s -> {wall / ideal:.3f}x "
                  f"(target <= 1.25x); start-up {startup:.2f} s, whole process {total:.2f} s")
        sequential = rankgpt_style_loop(url, sequential_queries)
        print(f"   RankGPT-style sequential loop: {sequential:.1f} s for {sequential_queries} queries, "
              f"{sequential / sequential_queries * 43:.0f} s extrapolated to 43 ({sequential / sequential_queries * 43 / 9:.1f}x "
              f"the ideal; ours {wall_sliding(tmp):.2f} s)")
    finally:
        server.terminate()
    # The same full ranking against the judge that counts every prompt's tokens (cl100k), as the
    # tests' server does: its CPU then competes with the client's on this machine's cores.
    server, url = server_process("identity", delay=1.0)
    try:
        wall, _, _ = timed_run(url, "full", "full-exact-usage")
        print(f"   full ranking against a server that tokenizes every prompt on the same cores: {wall:.2f} s "
              f"-> {wall:.3f}x")
    finally:
        server.terminate()


def wall_sliding(tmp: Path) -> float:
    return json.loads((tmp / "sliding.json").read_text())["wall_seconds"]


def rankgpt_style_loop(url: str, queries: int) -> float:
    """One blocking chat.completions.create after another, as RankGPT's permutation_pipeline does."""
    import openai

    from rerank import read_requests
    from rerank.passages import prepare_passage
    from rerank.prompts import load_prompt
    from rerank.strategies.sliding import window_schedule

    client = openai.OpenAI(base_url=url, api_key="bench")
    template = load_prompt("rankgpt")
    started = time.perf_counter()
    for number, request in enumerate(read_requests(DL19)):
        if number == queries:
            break
        passages = [prepare_passage(c, 100) for c in request.candidates]
        for start, end in window_schedule(len(passages), 20, 10):
            client.chat.completions.create(model="m", messages=template.render(request.query.text, passages[start:end]),
                                           temperature=0, max_tokens=192)
    return time.perf_counter() - started


def peak_rss_mb(*args) -> tuple[float, float]:
    """Wall time and peak resident memory (MB) of one ``rerank`` process, from its own rusage."""
    environment = {**os.environ, "OPENAI_API_KEY": "bench"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rerank", *map(str, args)], env=environment, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"rerank run failed: {proc.stderr.read().decode()[-500:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def memory(tmp: Path) -> None:
    from rerank import read_requests
    from rerank.formats import RankLLMWriter
    from rerank.types import Query, Request

    requests = list(read_requests(DL19))
    server, url = server_process("identity", estimate_usage=True)
    try:
        peaks = {}
        for copies in (10, 100):
            source = tmp / f"dl19x{copies}.jsonl"
            with RankLLMWriter(source) as writer:
                for copy in range(copies):
                    for request in requests:
                        writer.write(Request(Query(qid=f"{request.query.qid}-{copy}", text=request.query.text),
                                             request.candidates))
            output = tmp / f"big{copies}.jsonl"
            wall, peaks[copies] = peak_rss_mb("run", source, "-o", output, "--model", "m", "--base-url", url,
                                              "--no-cache", "--concurrency", 16, "--quiet")
            lines = sum(1 for _ in open(output))
    finally:
        server.terminate()
    print(f"3. memory, {lines:,} requests ({wall:.0f} s): peak RSS {peaks[100]:.0f} MB (target < 300 MB); "
          f"with 430 requests: {peaks[10]:.0f} MB ({peaks[100] / peaks[10]:.2f}x for 10x the requests)")


def cache(tmp: Path) -> None:
    server, url = server_process("identity")
    try:
        args = ["run", DL19, "--model", "m", "--base-url", url, "--cache", tmp / "calls.sqlite", "--quiet"]
        first, _ = cli(*args, "-o", tmp / "c1.jsonl")
        rerun, _ = cli(*args, "-o", tmp / "c2.jsonl")
    finally:
        server.terminate()
    print(f"4. fully cached rerun of DL19 sliding (387 calls), start-up included: {rerun:.2f} s (target < 2 s; "
          f"the first run took {first:.2f} s)")
    from rerank.cache import CallCache

    for size in (1_000, 1_000_000):
        path = tmp / f"cache-{size}.sqlite"
        filled = CallCache(path)
        connection = filled._connection()
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO calls (key, value, created) VALUES (?, ?, 0)",
                               ((f"{i:064x}", '{"text":"[1] > [2]"}') for i in range(size)))
        connection.execute("COMMIT")
        keys = [f"{i:064x}" for i in range(0, size, max(size // 2000, 1))][:2000]
        started = time.perf_counter()
        for key in keys:
            filled.get(key)
        per_lookup = (time.perf_counter() - started) / len(keys) * 1e6
        filled.close()
        print(f"   cache lookup with {size:,} entries: {per_lookup:.1f} us")


def tokens(tmp: Path) -> None:
    from rerank import read_requests
    from rerank.passages import prepare_passage
    from rerank.prompts import load_prompt
    from rerank.tokens import TiktokenCounter

    counter = TiktokenCounter()
    template = load_prompt("rankgpt")
    requests = list(read_requests(DL19))
    minimum = 0
    for request in requests:
        passages = [prepare_passage(c, 100) for c in request.candidates]
        instructions = counter.count_messages(template.render(request.query.text, [""] * len(passages)))
        # One copy of the instructions with empty passage slots, plus the passages themselves.
        minimum += instructions + sum(counter.count(p) for p in passages)
    minimum /= len(requests)
    # Usage as a server counts it (cl100k), from runs against the judge that tokenizes.
    server, url = server_process("identity")
    try:
        for strategy in ("sliding", "full"):
            summary = tmp / f"tokens-{strategy}.json"
            cli("run", DL19, "-o", tmp / f"tokens-{strategy}.jsonl", "--model", "m", "--base-url", url,
                "--no-cache", "--concurrency", 64, "--strategy", strategy, "--summary-json", summary, "--quiet")
            used = json.loads(summary.read_text())["prompt_tokens"] / len(requests)
            target = " (target <= 1.1x)" if strategy == "full" else ""
            print(f"5. prompt tokens per query, {strategy}: {used:,.0f} vs minimum {minimum:,.0f} -> "
                  f"{used / minimum:.3f}x{target}")
    finally:
        server.terminate()


def startup() -> None:
    times = sorted(cli("--help")[0] for _ in range(5))
    print(f"6. rerank --help: {times[2]:.3f} s median of 5 (target < 0.5 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-memory", action="store_true", help="skip the 4,300-request memory run")
    parser.add_argument("--sequential-queries", type=int, default=2,
                        help="queries timed for the RankGPT-style sequential loop (9 s each)")
    args = parser.parse_args()
    if not DL19.exists():
        print(f"skipped: {DL19} not found")
        return
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        concurrency(tmp, args.sequential_queries)
        print("2. framework CPU per call:")
        subprocess.run([sys.executable, str(ROOT / "eval" / "bench_call_overhead.py")], check=True)
        if not args.skip_memory:
            memory(tmp)
        cache(tmp)
        tokens(tmp)
        startup()


if __name__ == "__main__":
    main()
