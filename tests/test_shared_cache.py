"""The call cache under stress: bad entries, failures that must not stop a run, calls paid once
across queries, rerankers and processes, and ``rerank cache stats|prune``."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, read_summary, run_cli
from llm_server import start_server
from rerank import Query, Request, Reranker
from rerank import cache_claims, cached_calls
from rerank.backends import Completion
from rerank.cache import CallCache
from rerank.errors import BackendError, ConfigError
from test_reranker import ScriptedBackend, make_request, reverse_answer

WINDOWS = 9  # sliding 20/10 over 100 candidates


# --- Completion.to_json / from_json ---------------------------------------------------------

def test_completion_round_trips_through_json():
    plain = Completion("[2] > [1]", 12, 3, "stop", 0.5, 2)
    again = Completion.from_json(json.loads(json.dumps(plain.to_json())))
    assert again == Completion("[2] > [1]", 12, 3, "stop", 0.0, 0)
    assert "top_logprobs" not in plain.to_json()
    first = Completion("B", 40, 1, "length", 0.1, 1, (("B", -0.1), ("A", -2.5)))
    assert Completion.from_json(json.loads(json.dumps(first.to_json()))).top_logprobs == first.top_logprobs


@pytest.mark.parametrize("value", [
    None, [], "text", {"prompt_tokens": 1, "completion_tokens": 1},
    {"text": 5, "prompt_tokens": 1, "completion_tokens": 1},
    {"text": "x" * (2 << 20), "prompt_tokens": 1, "completion_tokens": 1},
    {"text": "[1]", "prompt_tokens": -1, "completion_tokens": 1},
    {"text": "[1]", "prompt_tokens": 1.0, "completion_tokens": 1},
    {"text": "[1]", "prompt_tokens": True, "completion_tokens": 1},
    {"text": "[1]", "prompt_tokens": "3", "completion_tokens": 1},
    {"text": "[1]", "prompt_tokens": 1, "completion_tokens": 1, "finish_reason": 3},
    {"text": "[1]", "prompt_tokens": 1, "completion_tokens": 1, "top_logprobs": {"A": -1}},
    {"text": "[1]", "prompt_tokens": 1, "completion_tokens": 1, "top_logprobs": [["A"]]},
    {"text": "[1]", "prompt_tokens": 1, "completion_tokens": 1, "top_logprobs": [["A", "-1"]]},
    {"text": "[1]", "prompt_tokens": 1, "completion_tokens": 1, "top_logprobs": [[1, -1.0]]},
    {"text": "[1]", "prompt_tokens": 1, "completion_tokens": 1, "top_logprobs": [["A", math.nan]]},
    {"text": "[1]", "prompt_tokens": 1, "completion_tokens": 1, "top_logprobs": [["A", -math.inf]]},
])
def test_from_json_refuses_malformed_values(value):
    with pytest.raises(ValueError):
        Completion.from_json(value)


# --- malformed entries ------------------------------------------------------------------------

BAD_VALUES = ['{"text": "[1] > [2', "not json at all", "[]", '{"text": null}',
              '{"text": "[1] > [2]", "prompt_tokens": -5, "completion_tokens": 1, "finish_reason": "stop"}',
              '{"text": "[1] > [2]", "prompt_tokens": 5, "completion_tokens": 1, "finish_reason": "length"}',
              '{"text": "[1]", "prompt_tokens": 5, "completion_tokens": 1, "top_logprobs": [["A", NaN]]}',
              "", '{"text": "' + "x" * 100 + '"']


async def test_malformed_entries_are_misses_counted_reported_once_and_replaced(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    request = make_request()
    backend = ScriptedBackend(reverse_answer)
    async with Reranker(model="m", cache=str(path), llm=backend) as reranker:
        first = await reranker.rerank(request)
    with sqlite3.connect(path) as db:
        keys = [key for (key,) in db.execute("SELECT key FROM calls ORDER BY key")]
        assert len(keys) == WINDOWS
        for key, bad in zip(keys, BAD_VALUES):
            db.execute("UPDATE calls SET value = ? WHERE key = ?", (bad, key))
    caplog.set_level(logging.WARNING, logger="rerank")
    async with Reranker(model="m", cache=str(path), llm=backend) as reranker:
        again = await reranker.rerank(request)
    assert len(backend.prompts) == 2 * WINDOWS  # every bad entry was paid for again
    assert again.usage.cache_bad_entries == WINDOWS and again.usage.cache_hits == 0
    assert [c.docid for c in again.candidates] == [c.docid for c in first.candidates]
    warnings = [r for r in caplog.records if r.name == "rerank" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "malformed entry" in warnings[0].getMessage()
    async with Reranker(model="m", cache=str(path), llm=backend) as reranker:
        third = await reranker.rerank(request)  # the fresh answers replaced the bad ones
    assert len(backend.prompts) == 2 * WINDOWS
    assert third.usage.cache_hits == WINDOWS and third.usage.cache_bad_entries == 0


async def test_a_cut_answer_is_never_cached(tmp_path):
    cut = ScriptedBackend(reverse_answer, finish_reason="length")
    async with Reranker(model="m", cache=str(tmp_path / "c.sqlite"), llm=cut) as reranker:
        await reranker.rerank(make_request())
    assert len(CallCache(tmp_path / "c.sqlite")) == 0


# --- paid once within a process ---------------------------------------------------------------

def same_request(qid):
    request = make_request()
    return Request(Query(qid=qid, text=request.query.text), request.candidates)


async def test_identical_calls_in_flight_are_paid_once(tmp_path):
    backend = ScriptedBackend(reverse_answer, delay=0.05)
    async with Reranker(model="m", cache=str(tmp_path / "c.sqlite"), llm=backend) as reranker:
        results = await reranker.rerank_batch([same_request(f"q{i}") for i in range(4)])
    assert len(backend.prompts) == WINDOWS
    orders = {tuple(c.docid for c in r.candidates) for r in results}
    assert len(orders) == 1
    assert sum(r.usage.cache_hits for r in results) == 3 * WINDOWS


async def test_two_rerankers_on_one_cache_pay_once_through_claims(tmp_path):
    path = str(tmp_path / "c.sqlite")
    one, two = ScriptedBackend(reverse_answer, delay=0.05), ScriptedBackend(reverse_answer, delay=0.05)
    async with Reranker(model="m", cache=path, llm=one) as a, Reranker(model="m", cache=path, llm=two) as b:
        ra, rb = await asyncio.gather(a.rerank(make_request()), b.rerank(make_request()))
    assert len(one.prompts) + len(two.prompts) == WINDOWS
    assert [c.docid for c in ra.candidates] == [c.docid for c in rb.candidates]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


class FailingBackend(ScriptedBackend):
    async def complete(self, messages, params, constraint=None, first_token_labels=None):
        self.prompts.append((messages, params))
        await asyncio.sleep(0.3)
        raise BackendError("the server is down")


async def test_when_the_owner_fails_a_waiter_takes_over(tmp_path):
    path = str(tmp_path / "c.sqlite")
    failing, working = FailingBackend(reverse_answer), ScriptedBackend(reverse_answer)
    async with Reranker(model="m", cache=path, llm=failing) as a, Reranker(model="m", cache=path, llm=working) as b:
        task = asyncio.ensure_future(a.rerank(make_request()))
        while not failing.prompts:  # a holds the first window's claim, and is calling
            await asyncio.sleep(0.01)
        started = time.monotonic()
        result = await b.rerank(make_request())
        with pytest.raises(BackendError):
            await task
    assert len(failing.prompts) == 1 and len(working.prompts) == WINDOWS
    assert time.monotonic() - started < 5
    assert len(result.candidates) == 100


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def first_key(tmp_path) -> str:
    """The key of the first window of make_request(), as the reranker computes it."""
    scratch = str(tmp_path / "scratch.sqlite")
    async with Reranker(model="m", cache=scratch, llm=ScriptedBackend(reverse_answer)) as reranker:
        await reranker.rerank(make_request(n=20))
    with sqlite3.connect(scratch) as db:
        return db.execute("SELECT key FROM calls").fetchone()[0]


@pytest.mark.parametrize("holder", ["dead pid here", "expired elsewhere", "live elsewhere for 1.5 s"])
async def test_claims_of_dead_owners_are_taken_over(tmp_path, holder):
    key = await first_key(tmp_path)
    path = str(tmp_path / "c.sqlite")
    CallCache(path).check()
    host, pid, expires = {"dead pid here": (cache_claims.HOST, dead_pid(), time.time() + 3600),
                          "expired elsewhere": ("elsewhere", 1, time.time() - 1),
                          "live elsewhere for 1.5 s": ("elsewhere", 1, time.time() + 1.5)}[holder]
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO claims VALUES (?, 'gone', ?, ?, ?)", (key, host, pid, expires))
    backend = ScriptedBackend(reverse_answer)
    started = time.monotonic()
    async with Reranker(model="m", cache=path, llm=backend) as reranker:
        await reranker.rerank(make_request(n=20))
    waited = time.monotonic() - started
    assert len(backend.prompts) == 1
    assert (1.4 < waited < 10) if holder.startswith("live") else waited < 5


# --- failures never stop a run ------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["directory", "not a database", "parent is a file"])
async def test_an_unopenable_cache_is_a_config_error_before_any_call(tmp_path, kind):
    path = {"directory": tmp_path, "not a database": tmp_path / "notes.txt",
            "parent is a file": tmp_path / "notes.txt" / "c.sqlite"}[kind]
    (tmp_path / "notes.txt").write_text("these are notes, not a database\n" * 100)
    backend = ScriptedBackend(reverse_answer)
    with pytest.raises(ConfigError, match="--cache"):
        await Reranker(model="m", cache=str(path), llm=backend).prepare()
    with pytest.raises(ConfigError, match="--cache"):  # lazily, on first use
        await Reranker(model="m", cache=str(path), llm=backend).rerank(make_request())
    assert backend.prompts == []
    assert (tmp_path / "notes.txt").read_text().startswith("these are notes")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes any file")
async def test_an_unreadable_cache_is_a_config_error(tmp_path):
    path = tmp_path / "c.sqlite"
    CallCache(path).check()
    path.chmod(0)
    with pytest.raises(ConfigError, match="--cache"):
        await Reranker(model="m", cache=str(path), llm=ScriptedBackend(reverse_answer)).prepare()


class HeldLock:
    """Another connection holding ``BEGIN EXCLUSIVE`` on a cache until stopped."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self):
        self.conn.execute("ROLLBACK")
        self.conn.close()


async def test_a_locked_cache_turns_off_with_one_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("rerank.reranker.BUSY_TIMEOUT_S", 0.3)
    path = tmp_path / "c.sqlite"
    CallCache(path).check()
    lock = HeldLock(path)
    caplog.set_level(logging.WARNING, logger="rerank")
    backend = ScriptedBackend(reverse_answer)
    try:
        async with Reranker(model="m", cache=str(path), llm=backend, concurrency=4) as reranker:
            results = await reranker.rerank_batch([make_request(f"q{i}", seed=i) for i in range(4)])
            assert reranker.cached_calls.off and "locked" in reranker.cached_calls.off
    finally:
        lock.release()
    assert len(backend.prompts) == 4 * WINDOWS and all(len(r.candidates) == 100 for r in results)
    warnings = [r.getMessage() for r in caplog.records if r.name == "rerank"]
    assert len(warnings) == 1 and "running without the cache" in warnings[0] and "locked" in warnings[0]


@pytest.mark.parametrize("error", ["database or disk is full", "disk I/O error", "database disk image is malformed"])
async def test_a_cache_failing_mid_run_turns_off_and_the_run_goes_on(tmp_path, caplog, monkeypatch, error):
    stores = []

    def failing_put(cache, key, value, owner):
        stores.append(key)
        if len(stores) > 2:
            raise sqlite3.OperationalError(error)
        original(cache, key, value, owner)

    original = cache_claims.put_claimed
    monkeypatch.setattr(cache_claims, "put_claimed", failing_put)
    caplog.set_level(logging.WARNING, logger="rerank")
    backend = ScriptedBackend(reverse_answer)
    async with Reranker(model="m", cache=str(tmp_path / "c.sqlite"), llm=backend) as reranker:
        results = await reranker.rerank_batch([make_request(f"q{i}", seed=i) for i in range(3)])
    assert len(backend.prompts) == 3 * WINDOWS and all(len(r.candidates) == 100 for r in results)
    warnings = [r.getMessage() for r in caplog.records if r.name == "rerank"]
    assert len(warnings) == 1 and error in warnings[0]
    assert len(CallCache(tmp_path / "c.sqlite")) == 2


def test_an_existing_cache_without_claims_keeps_working(tmp_path):
    path = tmp_path / "old.sqlite"
    value = Completion("[1] > [2]", 5, 3, "stop").to_json()
    with sqlite3.connect(path) as db:  # the schema of caches made before claims
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE calls (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL) WITHOUT ROWID")
        db.execute("INSERT INTO calls VALUES ('k', ?, 1.0)", (json.dumps(value),))
    with CallCache(path) as cache:
        assert cache.get("k") == value
        assert cache_claims.claim(cache, "k", "me", 30) == (cache_claims.HIT, json.dumps(value))
        assert cache_claims.claim(cache, "k2", "me", 30) == (cache_claims.CLAIMED, None)
        assert cache_claims.claim(cache, "k2", "other", 30) == (cache_claims.WAIT, None)


# --- the CLI: several processes, killed processes, unusable caches ----------------------------

def write_requests(path: Path, queries: int, n: int = 100) -> Path:
    with path.open("w") as handle:
        for q in range(queries):
            request = make_request(f"q{q}", n=n, seed=q)
            handle.write(json.dumps({"query": {"qid": request.query.qid, "text": request.query.text},
                                     "candidates": [{"docid": c.docid, "score": c.score, "doc": {"contents": c.text}}
                                                    for c in request.candidates]}) + "\n")
    return path


def rerank_args(server, source, out, cache, *extra):
    return [sys.executable, "-m", "rerank", "run", str(source), "-o", str(out), "--model", "judge",
            "--base-url", server.base_url, "--cache", str(cache), "--concurrency", "16", *map(str, extra)]


def popen(args):
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key"}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_three_processes_on_one_cache_pay_each_call_once(tmp_path):
    queries = 6
    source, cache = write_requests(tmp_path / "in.jsonl", queries), tmp_path / "calls.sqlite"
    with start_server("reverse", delay=0.3) as server:
        procs = [popen(rerank_args(server, source, tmp_path / f"out{i}.jsonl", cache,
                                   "--summary-json", tmp_path / f"s{i}.json")) for i in range(3)]
        outcomes = [proc.communicate(timeout=300) for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in outcomes]
        assert server.stats()["completions"] == queries * WINDOWS
    outputs = [(tmp_path / f"out{i}.jsonl").read_text() for i in range(3)]
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0].splitlines()) == queries
    summaries = [read_summary(tmp_path / f"s{i}.json") for i in range(3)]
    assert sum(s["calls"] - s["cache_hits"] for s in summaries) == queries * WINDOWS
    assert all("warning" not in err for _, err in outcomes)


def test_a_killed_run_leaves_claims_that_the_next_run_takes_over_at_once(tmp_path):
    queries = 8
    source, cache = write_requests(tmp_path / "in.jsonl", queries), tmp_path / "calls.sqlite"
    with start_server("reverse", delay=0.5) as server:
        killed = popen(rerank_args(server, source, tmp_path / "killed.jsonl", cache))
        deadline = time.monotonic() + 120
        stored = claims = 0
        while time.monotonic() < deadline and not (stored >= queries and claims > 0):
            time.sleep(0.1)
            if cache.exists():
                with sqlite3.connect(cache, timeout=30) as db:
                    try:
                        stored = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
                        claims = db.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
                    except sqlite3.OperationalError:  # tables not made yet
                        pass
        killed.send_signal(signal.SIGKILL)
        killed.communicate()
        # The killed run's calls in flight end at the server.
        quiet = time.monotonic() + 30
        while server.stats()["in_flight"] and time.monotonic() < quiet:
            time.sleep(0.05)
        with sqlite3.connect(cache, timeout=30) as db:
            stored = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            left = db.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
        assert left > 0 and stored < queries * WINDOWS
        server.reset_stats()
        started = time.monotonic()
        proc = run_cli(*rerank_args(server, source, tmp_path / "out.jsonl", cache)[3:], timeout=120)
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
        assert server.stats()["completions"] == queries * WINDOWS - stored
    assert elapsed < cached_calls.LEASE_S * 0.6, elapsed  # no waiting for the dead run's leases
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == queries


@pytest.mark.parametrize("kind", ["directory", "not a database"])
def test_cli_refuses_an_unusable_cache_in_one_line_before_any_call(tmp_path, kind):
    source = write_requests(tmp_path / "in.jsonl", 1)
    cache = tmp_path / "dir" if kind == "directory" else tmp_path / "notes.txt"
    cache.mkdir() if kind == "directory" else cache.write_text("hello\n" * 50)
    with start_server("reverse") as server:
        proc = run_cli(*rerank_args(server, source, tmp_path / "out.jsonl", cache)[3:])
        assert server.stats()["completions"] == 0
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--cache" in proc.stderr, proc.stderr


def test_cli_goes_on_without_a_cache_locked_by_another_process(tmp_path):
    source, cache = write_requests(tmp_path / "in.jsonl", 2), tmp_path / "calls.sqlite"
    CallCache(cache).check()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"db = sqlite3.connect({str(cache)!r}, isolation_level=None)\n"
        "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(120)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with start_server("reverse") as server:
            proc = run_cli(*rerank_args(server, source, tmp_path / "out.jsonl", cache)[3:], timeout=120)
            assert server.stats()["completions"] == 2 * WINDOWS
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "locked" in warnings[0] and "running without the cache" in warnings[0]
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("when", ["while running", "when opening"])
def test_cli_goes_on_when_the_disk_is_full(tmp_path, when):
    if shutil.which("unshare") is None:
        pytest.skip("no unshare command")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {tmp_path}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {probe.stderr.decode().strip()}")
    source = write_requests(tmp_path / "in.jsonl", 2)
    disk = tmp_path / "disk"
    disk.mkdir()
    cache = f"{disk}/calls.sqlite"
    # While running: another connection keeps the -wal and -shm files, so the run opens the cache
    # and fails on its first write; when opening: SQLite cannot even make its -shm file.
    holder = (f"{sys.executable} -c 'import sqlite3, time; c = sqlite3.connect(\"{cache}\"); "
              f"c.execute(\"SELECT COUNT(*) FROM calls\").fetchall(); open(\"{disk}/ready\", \"w\"); "
              "time.sleep(60)' & while [ ! -e " + f"{disk}/ready ]; do sleep 0.05; done; ")
    with start_server("reverse") as server:
        script = (
            f"mount -t tmpfs -o size=256k tmpfs {disk} && "
            f"{sys.executable} -c 'from rerank.cache import CallCache; CallCache(\"{cache}\").check()' && "
            + (holder if when == "while running" else "")
            + f"(dd if=/dev/zero of={disk}/filler bs=4k 2>/dev/null; true); "
            + " ".join(map(str, rerank_args(server, source, tmp_path / "out.jsonl", cache)))
            + "; code=$?; kill $! 2>/dev/null; exit $code"
        )
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key"}
        proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert server.stats()["completions"] == 2 * WINDOWS
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "running without the cache" in warnings[0], proc.stderr
    if when == "while running":
        assert "database or disk is full" in warnings[0]
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


# --- rerank cache stats|prune -----------------------------------------------------------------

def fill(path, entries: int, *, created: float | None = None, bad: int = 0):
    with CallCache(path) as cache:
        for i in range(entries):
            cache.put(f"k{i}", Completion(f"[{i}] > [1]" + " " * 200, 10, 5, "stop").to_json())
    with sqlite3.connect(path) as db:
        if created is not None:
            db.execute("UPDATE calls SET created = ?", (created,))
        for i in range(bad):
            db.execute("INSERT INTO calls VALUES (?, ?, ?)", (f"bad{i}", '{"text": "[1', time.time()))


def test_cache_stats_reports_size_entries_claims_and_malformed(tmp_path):
    path = tmp_path / "calls.sqlite"
    fill(path, 50, bad=3)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO claims VALUES ('k', 'o', ?, ?, ?)", (cache_claims.HOST, os.getpid(), time.time() + 60))
        db.execute("INSERT INTO claims VALUES ('j', 'o', 'elsewhere', 1, ?)", (time.time() - 1,))
    proc = run_cli("cache", "stats", "--cache", path, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["entries"] == 53 and report["malformed"] == 3
    assert report["claims"] == 1 and report["stale_claims"] == 1
    assert report["bytes"] >= path.stat().st_size and report["oldest"] <= report["newest"]
    text = run_cli("cache", "stats", "--cache", path).stdout
    assert "entries: 53" in text and "malformed entries: 3" in text and "claims in flight: 1" in text


def test_cache_stats_of_a_missing_file_creates_nothing(tmp_path):
    path = tmp_path / "nowhere" / "calls.sqlite"
    proc = run_cli("cache", "stats", "--cache", path)
    assert proc.returncode == 0 and "no cache" in proc.stdout
    assert not (tmp_path / "nowhere").exists()
    env_proc = run_cli("cache", "stats", env={"RERANK_CACHE": str(path)})
    assert env_proc.returncode == 0 and str(path) in env_proc.stdout


def test_cache_prune_by_age_size_and_malformed(tmp_path):
    path = tmp_path / "calls.sqlite"
    fill(path, 400, created=time.time() - 10 * 86400, bad=2)
    with CallCache(path) as cache:
        for i in range(100):
            cache.put(f"new{i}", Completion("[1] > [2]" + " " * 200, 10, 5, "stop").to_json())
    proc = run_cli("cache", "prune", "--cache", path, "--malformed", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["malformed"] == 2
    proc = run_cli("cache", "prune", "--cache", path, "--older-than", "5", "--json")
    report = json.loads(proc.stdout)
    assert report["older"] == 400 and report["entries"] == 100 and report["bytes_after"] < report["bytes_before"]
    proc = run_cli("cache", "prune", "--cache", path, "--max-size", "0.02")
    assert proc.returncode == 0 and "for size" in proc.stdout
    with CallCache(path) as cache:
        left = len(cache)
        assert 0 < left < 100 and cache.get("new99") is not None  # the oldest went first
    assert path.stat().st_size + (path.with_name(path.name + "-wal").stat().st_size
                                  if path.with_name(path.name + "-wal").exists() else 0) <= 20_000


@pytest.mark.parametrize("kind", ["missing", "directory", "text file", "other database"])
def test_cache_prune_refuses_what_is_not_a_cache(tmp_path, kind):
    path = tmp_path / "thing"
    if kind == "directory":
        path.mkdir()
    elif kind == "text file":
        path.write_text("hello\n")
    elif kind == "other database":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE t (x)")
    proc = run_cli("cache", "prune", "--cache", path, "--older-than", "1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not" in proc.stderr, proc.stderr
    assert kind != "missing" or not path.exists()

