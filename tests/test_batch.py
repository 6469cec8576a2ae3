"""``rerank run --batch``: the batch driver against the judges' Batch API and a fake ``vllm run-batch``.

The judges' server (:mod:`rerank.testing.batches`) answers batch lines with the same responder as
online calls, returns them out of order, fails lines on demand and counts every ``custom_id``'s
submissions, so a batch run must give an online run's TREC run byte for byte, in as many batches
as the strategy has rounds, and never submit a line twice.
"""

import asyncio
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, read_summary, run_cli
from llm_server import start_server
from rerank.batch.lines import read_results, request_line, split_lines
from rerank.batch.state import BatchState, Submission, state_path
from rerank.evaluation.compare import read_costs

pytestmark = pytest.mark.integration

QUERIES = 43
FAKE_VLLM = Path(__file__).resolve().parent / "fake_vllm.py"


def rerank_args(dl19, tmp_path, name, base_url, *extra):
    return ["run", dl19 / "bm25_top100.json", "-o", tmp_path / f"{name}.jsonl", "--trec", tmp_path / f"{name}.trec",
            "--model", "judge", "--base-url", base_url, "--cache", tmp_path / f"{name}.sqlite", *extra]


def online(dl19, tmp_path, server, strategy="sliding"):
    proc = run_cli(*rerank_args(dl19, tmp_path, "online", server.base_url, "--strategy", strategy))
    assert proc.returncode == 0, proc.stderr
    return (tmp_path / "online.trec").read_bytes()


def batch(dl19, tmp_path, server, name, *extra, strategy="sliding"):
    proc = run_cli(*rerank_args(dl19, tmp_path, name, server.base_url, "--strategy", strategy, "--batch", "openai",
                                "--poll-interval", "0.02", *extra))
    return proc, tmp_path / f"{name}.trec", tmp_path / f"{name}.summary.json"


def submitted_once(stats):
    """Whether no batch line was ever submitted while answered or in a batch still running."""
    return stats["batch_duplicates"] == 0


@pytest.mark.parametrize("strategy,rounds", [("sliding", 9), ("full", 1)])
def test_batch_run_equals_the_online_run_in_one_batch_a_round(dl19, tmp_path, strategy, rounds):
    with start_server("oracle", data_dir=dl19) as server:
        expected = online(dl19, tmp_path, server, strategy)
        online_calls = server.stats()["completions"]
        server.reset_stats()
        proc, trec, summary = batch(dl19, tmp_path, server, "batch", strategy=strategy)
        stats = server.stats()
    assert proc.returncode == 0, proc.stderr
    assert trec.read_bytes() == expected
    assert stats["batches_created"] == rounds and stats["completions"] == 0
    assert stats["batch_lines"] == stats["batch_answers"] == online_calls
    assert set(stats["custom_id_submissions"].values()) == {1}
    result = read_summary(summary)
    assert result["batches"] == rounds and result["batch_provider"] == "openai"
    assert result["queries"] == QUERIES and result["calls"] == online_calls and result["cache_hits"] == 0
    assert result["rounds"] == QUERIES * rounds
    assert json.loads(state_path(tmp_path / "batch.jsonl").read_text())["steps"] == rounds


def test_batch_answers_are_cached_as_online_answers(dl19, tmp_path):
    """An online run on the batch run's cache pays for nothing, and the reverse."""
    with start_server("oracle", data_dir=dl19) as server:
        proc, trec, _ = batch(dl19, tmp_path, server, "batch", strategy="full")
        assert proc.returncode == 0, proc.stderr
        server.reset_stats()
        again = run_cli(*rerank_args(dl19, tmp_path, "again", server.base_url, "--strategy", "full"),
                        "--cache", tmp_path / "batch.sqlite")
        assert again.returncode == 0, again.stderr
        assert server.stats()["completions"] == 0
        assert (tmp_path / "again.trec").read_bytes() == trec.read_bytes()
        rerun = run_cli(*rerank_args(dl19, tmp_path, "rerun", server.base_url, "--strategy", "full", "--batch",
                                     "openai"), "--cache", tmp_path / "batch.sqlite")
        assert rerun.returncode == 0, rerun.stderr
        assert server.stats()["batches_created"] == 0
        assert read_summary(tmp_path / "rerun.summary.json")["batches"] == 0


def test_killed_twice_and_resumed_submits_no_line_twice(dl19, tmp_path):
    seed = random.randrange(1 << 30)
    draw = random.Random(seed)
    # Lines are answered over 0.3 s per batch: the kills land while batches run, between them,
    # or while their answers are read.
    with start_server("oracle", data_dir=dl19, batch_delay=0.3) as server:
        expected = online(dl19, tmp_path, server)
        total = server.stats()["completions"]
        server.reset_stats()
        args = rerank_args(dl19, tmp_path, "batch", server.base_url, "--batch", "openai", "--poll-interval", "0.02")
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key"}
        # The first kill once a random number of lines are answered (in the first half of the
        # run); the second right after one of the next two uploads, before or after its batch is
        # created or recorded.
        answered = draw.randrange(1, total // 2)
        uploads = draw.randint(1, 2)
        for number in range(2):
            command = [sys.executable, "-m", "rerank", *map(str, args), *(["--resume"] if number else [])]
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                if number == 0:
                    server.wait_for(lambda stats: stats["batch_answers"] >= answered, timeout=120)
                else:
                    uploaded = server.stats()["files_uploaded"] + uploads
                    server.wait_for(lambda stats: stats["files_uploaded"] >= uploaded, timeout=120)
            finally:
                process.kill()
                process.wait()
                process.stderr.close()
        proc = run_cli(*args, "--resume")
        stats = server.stats()
    assert proc.returncode == 0, f"seed {seed}: {proc.stderr}"
    assert submitted_once(stats), f"seed {seed}: {stats['batch_duplicates']} lines submitted twice"
    assert max(stats["custom_id_submissions"].values()) == 1, f"seed {seed}"
    assert stats["batch_answers"] == total
    assert (tmp_path / "batch.trec").read_bytes() == expected, f"seed {seed}"
    assert read_summary(tmp_path / "batch.summary.json")["queries"] == QUERIES


def test_failing_and_expired_lines_are_submitted_again(dl19, tmp_path):
    with start_server("oracle", data_dir=dl19, batch_fail_rate=0.1, batch_expire=1, seed=3) as server:
        expected = online(dl19, tmp_path, server)
        proc, trec, summary = batch(dl19, tmp_path, server, "batch")
        stats = server.stats()
    assert proc.returncode == 0, proc.stderr
    assert stats["batch_errors"] > 0.1 * stats["batch_lines"] and stats["batches_expired"] == 1
    assert submitted_once(stats)
    assert trec.read_bytes() == expected
    result = read_summary(summary)
    assert result["queries"] == QUERIES and result["failed"] == []
    assert result["batches"] == stats["batches_created"] > 9


def test_lines_failing_past_max_attempts_fail_their_queries(dl19, tmp_path):
    with start_server("oracle", data_dir=dl19, batch_fail_rate=1.0) as server:
        proc, trec, summary = batch(dl19, tmp_path, server, "batch", "--max-attempts", "2", strategy="full")
        stats = server.stats()
    assert proc.returncode == 3, proc.stderr
    assert f"{QUERIES} queries failed" in proc.stderr and "failed in 2 submissions" in proc.stderr
    assert stats["batches_created"] == 2
    result = read_summary(summary)
    assert result["state"] == "failed" and len(result["failed"]) == QUERIES and result["batches"] == 2


def test_batch_files_are_split_at_the_provider_limits(dl19, tmp_path):
    from rerank import Reranker
    from rerank.batch import BatchDriver, OpenAIBatches
    from rerank.formats import read_requests

    requests = list(read_requests(dl19 / "bm25_top100.json"))
    with start_server("oracle", data_dir=dl19) as server:
        reranker = Reranker(model="judge", base_url=server.base_url, strategy="full", cache=str(tmp_path / "c.sqlite"))
        submitter = OpenAIBatches(server.base_url, None, 30.0, 2)
        submitter.max_requests = 10
        driver = BatchDriver(reranker, submitter, tmp_path / "state.json", BatchState("openai", "judge"), 0.02)

        async def run():
            await driver.prepare()
            try:
                return [result async for result in driver.results(requests)(lambda request, error: None)]
            finally:
                await driver.aclose()

        results = asyncio.run(run())
        stats = server.stats()
    assert [r.query.qid for r in results] == [r.query.qid for r in requests]
    assert stats["batches_created"] == 5 and stats["batch_lines"] == QUERIES
    assert driver.summary() == {"batches": 5, "batch_provider": "openai"}


class Killed(Exception):
    """Stands for a SIGKILL at one precise moment of the driver."""


@pytest.mark.parametrize("created", [True, False])
def test_killed_between_upload_and_recording_the_batch(dl19, tmp_path, created):
    """A batch created (or not) just before the kill, its id never saved: the rerun finds it by its
    input file (or submits its lines), and no line is submitted twice."""
    from rerank import Reranker
    from rerank.batch import BatchDriver, OpenAIBatches
    from rerank.formats import read_requests

    class DiesAtCreate(OpenAIBatches):
        async def create(self, input_file):
            if created:
                await super().create(input_file)
            raise Killed

    requests = list(read_requests(dl19 / "bm25_top100.json"))
    path = tmp_path / "state.json"

    async def run(submitter_class, state):
        reranker = Reranker(model="judge", base_url=server.base_url, strategy="full", cache=str(tmp_path / "c.sqlite"))
        driver = BatchDriver(reranker, submitter_class(server.base_url, None, 30.0, 2), path, state, 0.02)
        await driver.prepare()
        try:
            return [result async for result in driver.results(requests)(lambda request, error: None)]
        finally:
            await driver.aclose()

    with start_server("oracle", data_dir=dl19) as server:
        with pytest.raises(Killed):
            asyncio.run(run(DiesAtCreate, BatchState("openai", "judge")))
        saved = BatchState.load(path)
        assert len(saved.submissions) == 1 and saved.submissions[0].batch_id is None
        results = asyncio.run(run(OpenAIBatches, saved))
        stats = server.stats()
    assert len(results) == QUERIES
    assert stats["batches_created"] == 1 and stats["files_uploaded"] == 1 + (not created)
    assert submitted_once(stats) and set(stats["custom_id_submissions"].values()) == {1}
    assert BatchState.load(path).batches == 1


def test_vllm_run_batch(dl19, tmp_path):
    """``--batch vllm`` runs a fake ``vllm run-batch``: the online run of a vLLM server's."""
    log = tmp_path / "runs.log"
    env = {"RERANK_VLLM": f"{sys.executable} {FAKE_VLLM}", "FAKE_VLLM_DATA": str(dl19), "FAKE_VLLM_LOG": str(log)}
    with start_server("oracle", data_dir=dl19, owned_by="vllm") as server:
        expected = online(dl19, tmp_path, server)
    proc = run_cli("run", dl19 / "bm25_top100.json", "-o", tmp_path / "v.jsonl", "--trec", tmp_path / "v.trec",
                   "--model", "judge", "--cache", tmp_path / "v.sqlite", "--batch", "vllm", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "v.trec").read_bytes() == expected
    assert len(log.read_text().splitlines()) == 9
    assert read_summary(tmp_path / "v.summary.json")["batch_provider"] == "vllm"
    assert len(list((tmp_path / "v.jsonl.batch").glob("*.output.jsonl"))) == 9


def test_vllm_printed_command_then_resume(dl19, tmp_path):
    env = {"RERANK_VLLM": f"{sys.executable} {FAKE_VLLM}", "FAKE_VLLM_DATA": str(dl19)}
    args = ["run", dl19 / "bm25_top100.json", "-o", tmp_path / "p.jsonl", "--trec", tmp_path / "p.trec",
            "--model", "judge", "--cache", tmp_path / "p.sqlite", "--strategy", "full", "--batch", "vllm",
            "--print-batch-command"]
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert "--resume" in first.stderr and not (tmp_path / "p.trec").exists()
    command = first.stdout.strip().splitlines()[-1]
    assert " run-batch -i " in command and command.endswith("--model judge")
    subprocess.run(command, shell=True, check=True, env={**os.environ, **env})
    second = run_cli(*args, "--resume", env=env)
    assert second.returncode == 0, second.stderr
    assert len((tmp_path / "p.trec").read_text().splitlines()) == QUERIES * 100
    assert read_summary(tmp_path / "p.summary.json")["batches"] == 1


def test_batch_needs_a_cache_and_an_endpoint_backend(dl19, tmp_path):
    base = ["run", dl19 / "bm25_top100.json", "-o", tmp_path / "o.jsonl", "--model", "judge", "--batch", "openai"]
    proc = run_cli(*base, "--no-cache")
    assert proc.returncode == 2 and "drop --no-cache" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(*base, "--backend", "judge", "--model", f"judge:oracle:{dl19}", "--cache", tmp_path / "c.sqlite")
    assert proc.returncode == 2 and "--batch" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(*base, "--cache", tmp_path / "c.sqlite", "--poll-interval", "0")
    assert proc.returncode == 2 and "--poll-interval" in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_an_existing_state_needs_resume_or_force(dl19, tmp_path):
    with start_server("oracle", data_dir=dl19) as server:
        proc, _, _ = batch(dl19, tmp_path, server, "b", strategy="full")
        assert proc.returncode == 0, proc.stderr
        (tmp_path / "b.jsonl").unlink()
        (tmp_path / "b.trec").unlink()
        again, _, _ = batch(dl19, tmp_path, server, "b", strategy="full")
        assert again.returncode == 2 and "b.jsonl.batch-state.json exists" in again.stderr
        forced, _, _ = batch(dl19, tmp_path, server, "b", "--force", strategy="full")
        assert forced.returncode == 0, forced.stderr


# -- the parts ------------------------------------------------------------------------------


def test_lines_split_at_requests_and_bytes():
    lines = [request_line(f"id{i}", {"messages": [{"role": "user", "content": "x" * i}]}) for i in range(10)]
    assert split_lines(lines, None, None) == [list(range(10))]
    assert split_lines(lines, 4, None) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    parts = split_lines(lines, None, len(lines[9]) * 2)
    assert [i for part in parts for i in part] == list(range(10))
    assert all(sum(len(lines[i]) for i in part) <= len(lines[9]) * 2 for part in parts)
    assert split_lines([b"x" * 10], None, 5) == [[0]]


def test_results_are_read_by_custom_id_answers_first():
    answer = {"custom_id": "a", "response": {"status_code": 200, "body": {"choices": []}}, "error": None}
    failed = {"custom_id": "a", "response": None, "error": {"code": "server_error", "message": "boom"}}
    http = {"custom_id": "b", "response": {"status_code": 500, "body": {"error": {"message": "down"}}}, "error": None}
    content = "\n".join(json.dumps(line) for line in (answer, failed, http)).encode() + b"\nnot json\n"
    results = read_results(content)
    assert results["a"].body == {"choices": []}
    assert results["b"].body is None and results["b"].error == "status 500: down"
    assert read_results(json.dumps(failed).encode())["a"].error == "server_error: boom"


def test_state_round_trip_and_refusals(tmp_path):
    path = tmp_path / "s.json"
    assert BatchState.load(path) is None
    state = BatchState("openai", "m")
    state.add(Submission("file-1", ["a", "b"], "batch-1", "completed", "out-1"))
    state.add(Submission("file-2", ["b"]))
    state.save(path)
    loaded = BatchState.load(path)
    assert loaded.batches == 1 and [s.input_file for s in loaded.of("b")] == ["file-1", "file-2"]
    loaded.drop(loaded.of("b")[1])
    assert [s.input_file for s in loaded.of("b")] == ["file-1"]
    from rerank.errors import ConfigError, InputError

    with pytest.raises(ConfigError):
        loaded.check("vllm", "m", path)
    path.write_text("{}")
    with pytest.raises(InputError):
        BatchState.load(path)


def test_compare_prices_openai_batches_at_half(tmp_path):
    summary = {"queries": 2, "calls": 18, "prompt_tokens": 1_000_000, "completion_tokens": 0, "state": "finished"}
    (tmp_path / "online.json").write_text(json.dumps(summary))
    (tmp_path / "batch.json").write_text(json.dumps({**summary, "batches": 9, "batch_provider": "openai"}))
    (tmp_path / "local.json").write_text(json.dumps({**summary, "batches": 9, "batch_provider": "vllm"}))
    online_costs = read_costs(tmp_path / "online.json", (2.0, 8.0))
    batch_costs = read_costs(tmp_path / "batch.json", (2.0, 8.0))
    assert online_costs["price"] == 2.0 and online_costs["batches"] is None
    assert batch_costs["price"] == 1.0 and batch_costs["batches"] == 9
    assert read_costs(tmp_path / "local.json", (2.0, 8.0))["price"] == 2.0
