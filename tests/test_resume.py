"""Resumable runs: killed, interrupted and failing runs leave complete lines and resume exactly."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, read_summary, run_cli
from llm_server import start_server

pytestmark = pytest.mark.integration
QUERIES = 43


def start_cli(*args):
    """The CLI as a process of its own, so it can be killed."""
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    return subprocess.Popen([sys.executable, "-m", "rerank", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_lines(path, count, proc, timeout=60.0):
    """Block until ``path`` holds ``count`` complete lines, so a signal lands mid-run on any machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        assert proc.poll() is None, "the run ended before it was interrupted"
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {count} lines in {timeout} s")


def dl19_args(dl19, server, out, cache):
    return ["run", dl19 / "bm25_top100.json", "-o", out, "--trec", f"{out}.trec", "--model", "judge",
            "--base-url", server.base_url, "--cache", cache, "--concurrency", 16]


def test_an_existing_output_is_never_overwritten(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text("precious\n")
    proc = run_cli("run", tmp_path / "whatever.jsonl", "-o", out, "--model", "m", "--base-url", "http://127.0.0.1:9/v1")
    assert proc.returncode == 2 and "exists: pass --resume" in proc.stderr
    assert out.read_text() == "precious\n"


def test_killed_three_times_then_resumed_equals_an_uninterrupted_run(dl19, tmp_path):
    rng = random.Random(2024)
    with start_server("oracle", data_dir=dl19, delay=0.2) as server:
        clean = run_cli(*dl19_args(dl19, server, tmp_path / "clean.jsonl", tmp_path / "clean.sqlite"))
        assert clean.returncode == 0, clean.stderr
        server.reset_stats()
        out = tmp_path / "killed.jsonl"
        args = dl19_args(dl19, server, out, tmp_path / "killed.sqlite")
        in_flight_at_kills = 0
        for attempt in range(3):
            proc = start_cli(*args, *(["--resume"] if attempt else []))
            if attempt == 0:
                wait_for_lines(out, 1, proc)
            time.sleep(rng.uniform(0.1, 1.0))
            in_flight_at_kills += server.stats()["in_flight"]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            lines = out.read_bytes().split(b"\n")
            assert all(json.loads(line) for line in lines[:-1])  # every complete line is whole
        final = run_cli(*args, "--resume")
        assert final.returncode == 0, final.stderr
        answered = server.stats()["completions"]
    assert out.read_bytes() == (tmp_path / "clean.jsonl").read_bytes()
    assert (tmp_path / "killed.jsonl.trec").read_bytes() == (tmp_path / "clean.jsonl.trec").read_bytes()
    qids = [json.loads(line)["query"]["qid"] for line in out.read_text().splitlines()]
    assert len(qids) == len(set(qids)) == QUERIES
    # Finished windows are in the cache: only calls in flight when killed are paid twice.
    assert answered <= QUERIES * 9 + in_flight_at_kills + 3 * 16


def test_a_torn_last_line_is_dropped_on_resume(dl19, tmp_path):
    with start_server("identity", data_dir=dl19) as server:
        out = tmp_path / "o.jsonl"
        args = dl19_args(dl19, server, out, tmp_path / "c.sqlite")
        assert run_cli(*args).returncode == 0
        whole = out.read_bytes()
        lines = whole.split(b"\n")
        out.write_bytes(b"\n".join(lines[:10]) + b"\n" + lines[10][:50])  # 10 lines and a torn one
        resumed = run_cli(*args, "--resume", "--summary-json", tmp_path / "s.json")
        assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == whole
    assert read_summary(tmp_path / "s.json")["already_done"] == 10


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(dl19, tmp_path):
    # Slow calls (9 rounds of 0.3 s a query) keep the run going for seconds after its first line.
    with start_server("oracle", data_dir=dl19, delay=0.3) as server:
        out = tmp_path / "o.jsonl"
        args = dl19_args(dl19, server, out, tmp_path / "c.sqlite")
        proc = start_cli(*args)
        wait_for_lines(out, 1, proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert "--resume" in stderr and "Traceback" not in stderr
        done = len(out.read_text().splitlines())
        assert 0 < done < QUERIES and out.read_text().endswith("\n")
        assert run_cli(*args, "--resume").returncode == 0
    assert len(out.read_text().splitlines()) == QUERIES


def test_a_server_dying_mid_run_lists_the_failed_queries(dl19, tmp_path):
    out = tmp_path / "o.jsonl"
    server = start_server("oracle", data_dir=dl19, delay=0.3)
    args = dl19_args(dl19, server, out, tmp_path / "c.sqlite")
    proc = start_cli(*args, "--max-attempts", 2, "--timeout", 5)
    wait_for_lines(out, 1, proc)
    server.stop()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    assert "queries failed and are not in the output" in stderr and "--resume" in stderr
    done = len(out.read_text().splitlines())
    assert done < QUERIES
    with start_server("oracle", data_dir=dl19) as again:
        resumed = run_cli(*dl19_args(dl19, again, out, tmp_path / "c.sqlite"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert len(out.read_text().splitlines()) == QUERIES


def test_a_server_down_at_start_fails_within_seconds(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"query": {"text": "q", "qid": "1"}, "candidates": [{"docid": "a", "doc": "x"}, {"docid": "b", "doc": "y"}]}\n')
    started = time.perf_counter()
    proc = run_cli("run", source, "-o", tmp_path / "o.jsonl", "--model", "m", "--base-url", "http://127.0.0.1:9/v1")
    assert proc.returncode == 3 and "cannot connect" in proc.stderr
    assert time.perf_counter() - started < 10
