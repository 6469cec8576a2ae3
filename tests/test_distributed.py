"""``--engine ray`` (rerank.distributed) and ``rerank cache merge``.

The Ray tests start a local cluster (2 actors) through the real command, against an oracle judge
on DL19's first queries, and compare every output byte with a one-process run's; they are skipped
when Ray is not installed (``pip install 'rerank-llm[ray]'``).
"""

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from conftest import read_summary, run_cli
from rerank.cache import CallCache
from rerank.testing import start_server

ANSWER = {"text": "[1] > [2]", "prompt_tokens": 10, "completion_tokens": 3, "finish_reason": "stop"}


# ------------------------------------------------------------------------------------------------
# rerank cache merge
# ------------------------------------------------------------------------------------------------

def make_cache(path: Path, entries: dict, created: float) -> Path:
    with CallCache(path) as cache:
        for key, value in entries.items():
            cache.put(key, value)
        with cache.connection() as conn:
            conn.execute("UPDATE calls SET created = ?", (created,))
            conn.execute("INSERT INTO claims VALUES ('k', 'someone', 'host', 1, 1e12)")
    return path


def entries(path: Path) -> dict:
    conn = sqlite3.connect(path)
    try:
        return {key: json.loads(value) for key, value in conn.execute("SELECT key, value FROM calls")}
    finally:
        conn.close()


def test_cache_merge_keeps_each_key_once_and_the_newer_of_two_answers(tmp_path):
    newer = {**ANSWER, "text": "[2] > [1]"}
    a = make_cache(tmp_path / "a.sqlite", {"k1": ANSWER, "k2": ANSWER}, created=100.0)
    b = make_cache(tmp_path / "b.sqlite", {"k2": ANSWER, "k3": ANSWER, "k4": newer}, created=200.0)
    c = make_cache(tmp_path / "c.sqlite", {"k4": ANSWER}, created=150.0)
    out = tmp_path / "out.sqlite"
    proc = run_cli("cache", "merge", out, a, b, c, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == {"path": str(out), "read": 6, "added": 4, "duplicates": 1, "conflicts": 1}
    assert entries(out) == {"k1": ANSWER, "k2": ANSWER, "k3": ANSWER, "k4": newer}   # the newer answer kept
    conn = sqlite3.connect(out)
    assert conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0                # no claims copied
    conn.close()
    # into an existing cache: nothing new
    again = run_cli("cache", "merge", out, a)
    assert again.returncode == 0 and "0 added, 2 duplicates" in again.stdout, again.stdout


def test_cache_merge_refuses_what_is_not_a_cache(tmp_path):
    a = make_cache(tmp_path / "a.sqlite", {"k1": ANSWER}, created=1.0)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    for args in ((tmp_path / "out.sqlite", a, text), (tmp_path / "out.sqlite", tmp_path / "missing.sqlite"),
                 (text, a)):
        proc = run_cli("cache", "merge", *args)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert text.read_text() == "hello\n"
    assert not (tmp_path / "out.sqlite").exists()


# ------------------------------------------------------------------------------------------------
# --engine ray
# ------------------------------------------------------------------------------------------------

def first_queries(dl19: Path, path: Path, count: int) -> Path:
    """DL19's first ``count`` requests as rank_llm JSONL."""
    from rerank.formats import read_requests

    with path.open("w") as file:
        for number, request in enumerate(read_requests(dl19 / "bm25_top100.json")):
            if number == count:
                break
            file.write(json.dumps({"query": {"text": request.query.text, "qid": request.query.qid},
                                   "candidates": [{"docid": c.docid, "score": c.score, "doc": {"contents": c.text}}
                                                  for c in request.candidates]}) + "\n")
    return path


def rerank(command: str, source: Path, out: Path, base_url: str, cache: Path, *extra):
    """``rerank run`` (or ``labels``) into ``out``.jsonl/.trec; (the process, its summary)."""
    summary = out.with_suffix(".summary-copy.json")
    proc = run_cli(command, source, "-o", out.with_suffix(".jsonl"), "--trec", out.with_suffix(".trec"),
                   "--base-url", base_url, "--model", "judge", "--cache", cache, "--summary-json", summary,
                   "--force", *extra)
    return proc, read_summary(summary) if summary.exists() else {}


def same_outputs(a: Path, b: Path) -> bool:
    return all(a.with_suffix(s).read_bytes() == b.with_suffix(s).read_bytes() for s in (".jsonl", ".trec"))


RAY = ("--engine", "ray", "--actors", "2")


@pytest.fixture
def ray_installed():
    pytest.importorskip("ray.data", reason="Ray is an optional extra: pip install 'rerank-llm[ray]'")


@pytest.mark.integration
def test_ray_run_is_byte_identical_and_its_merged_cache_serves_a_rerun(tmp_path, dl19, ray_installed):
    source = first_queries(dl19, tmp_path / "in.jsonl", 10)
    with start_server("oracle", data_dir=dl19) as server:
        one, one_summary = rerank("run", source, tmp_path / "one", server.base_url, tmp_path / "one.sqlite")
        assert one.returncode == 0, one.stderr
        paid = server.stats()["requests"]
        ray, ray_summary = rerank("run", source, tmp_path / "ray", server.base_url, tmp_path / "ray.sqlite", *RAY)
        assert ray.returncode == 0, ray.stderr
        assert "Traceback" not in ray.stderr
        assert server.stats()["requests"] == 2 * paid                     # the same calls, paid again
        assert same_outputs(tmp_path / "one", tmp_path / "ray")
        assert ray_summary["calls"] == one_summary["calls"] and ray_summary["queries"] == 10
        assert f"{paid} new cache entries merged" in ray.stderr
        # the merged cache serves a rerun, in one process and on Ray, without a call
        before = server.stats()["requests"]
        for name, extra in (("again-one", ()), ("again-ray", RAY)):
            proc, summary = rerank("run", source, tmp_path / name, server.base_url, tmp_path / "ray.sqlite", *extra)
            assert proc.returncode == 0, proc.stderr
            assert summary["cache_hits"] == summary["calls"] == one_summary["calls"]
            assert same_outputs(tmp_path / "one", tmp_path / name)
        assert server.stats()["requests"] == before
        # --resume skips what is finished: cut the output back to 4 queries, and finish it
        out = tmp_path / "again-ray.jsonl"
        out.write_text("".join(out.read_text().splitlines(keepends=True)[:4]))
        proc = run_cli("run", source, "-o", out, "--trec", out.with_suffix(".trec"), "--base-url", server.base_url,
                       "--model", "judge", "--cache", tmp_path / "ray.sqlite", "--resume", *RAY)
        assert proc.returncode == 0, proc.stderr
        assert "6 queries" in proc.stderr and server.stats()["requests"] == before
    assert same_outputs(tmp_path / "one", tmp_path / "again-ray")


@pytest.mark.integration
def test_ray_lists_failed_queries_as_one_process_does(tmp_path, dl19, ray_installed):
    # The first 5 queries' calls are cached; a judge failing every call fails the other 5 for good.
    with start_server("oracle", data_dir=dl19) as server:
        proc, _ = rerank("run", first_queries(dl19, tmp_path / "in5.jsonl", 5), tmp_path / "seed",
                         server.base_url, tmp_path / "seed.sqlite")
        assert proc.returncode == 0, proc.stderr
    source = first_queries(dl19, tmp_path / "in10.jsonl", 10)
    shutil.copy(tmp_path / "seed.sqlite", tmp_path / "ray.sqlite")
    with start_server("oracle", data_dir=dl19, fail_rate=1.0) as server:
        one, one_summary = rerank("run", source, tmp_path / "one", server.base_url, tmp_path / "seed.sqlite",
                                  "--max-attempts", "1")
        ray, ray_summary = rerank("run", source, tmp_path / "ray", server.base_url, tmp_path / "ray.sqlite",
                                  "--max-attempts", "1", *RAY)
    for proc in (one, ray):
        assert proc.returncode == 3, proc.stderr
        assert "5 queries failed and are not in the output" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(ray_summary["failed"]) == sorted(one_summary["failed"]) and len(one_summary["failed"]) == 5
    assert ray_summary["state"] == one_summary["state"] == "failed"
    assert same_outputs(tmp_path / "one", tmp_path / "ray")


@pytest.mark.integration
def test_ray_labels_equal_one_process_labels(tmp_path, dl19, ray_installed):
    source = first_queries(dl19, tmp_path / "in.jsonl", 3)
    with start_server("oracle", data_dir=dl19) as server:
        one, _ = rerank("labels", source, tmp_path / "one", server.base_url, tmp_path / "one.sqlite")
        ray, summary = rerank("labels", source, tmp_path / "ray", server.base_url, tmp_path / "ray.sqlite", *RAY)
    assert one.returncode == 0, one.stderr
    assert ray.returncode == 0, ray.stderr
    assert summary["queries"] == 3
    assert same_outputs(tmp_path / "one", tmp_path / "ray")


def test_several_base_urls_need_the_ray_engine(tmp_path):
    proc = run_cli("run", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl", "--model", "judge",
                   "--base-url", "http://127.0.0.1:1/v1", "--base-url", "http://127.0.0.1:2/v1")
    assert proc.returncode != 0
    assert "--engine ray" in proc.stderr and "Traceback" not in proc.stderr
