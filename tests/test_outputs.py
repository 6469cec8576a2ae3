"""No file rerank did not write is ever changed; one writer per output; SIGTERM is Ctrl-C.

Every hostile command here is checked the same way: the hashes of every file in the folder
before and after, the exit code, one line on stderr and no traceback.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from llm_server import start_server

pytestmark = pytest.mark.integration


def request_line(qid, docs=4):
    return json.dumps({"query": {"qid": qid, "text": f"query number {qid}"},
                       "candidates": [{"docid": f"{qid}-d{i}", "doc": f"passage {i} of {qid}"} for i in range(docs)]})


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "in.jsonl").write_text("\n".join(request_line(f"q{i}") for i in range(3)) + "\n")
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 2.0 bm25\nq1 Q0 d2 2 1.0 bm25\n")
    (tmp_path / "corpus.tsv").write_text("d1\tfirst passage\nd2\tsecond passage\n")
    (tmp_path / "queries.tsv").write_text("q1\tthe query\n")
    (tmp_path / "mine.jsonl").write_text(request_line("x") + "\n")  # a one-line file rerank did not write
    return tmp_path


def hashes(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and not p.name.endswith(".sqlite")}


def run_args(folder, server, *more):
    return ["run", folder / "in.jsonl", "--model", "judge", "--base-url", server.base_url,
            "--cache", folder / "c.sqlite", "--window", 3, "--step", 1, *more]


def assert_refused(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rerank: error:"), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flags", [
    ["-o", "{in}"],                                     # the input itself
    ["-o", "out.jsonl", "--trec", "{in}"],              # the TREC run onto the input
    ["-o", "out.jsonl", "--summary-json", "{in}"],      # the summary onto the input
    ["-o", "out.jsonl", "--summary-json", "out.jsonl"],  # the summary onto -o
    ["-o", "out.jsonl", "--trec", "out.jsonl"],         # two outputs, one file
    ["-o", "link.jsonl"],                               # a symlink to the input
    ["-o", "hard.jsonl"],                               # a hard link to the input
    ["-o", "./sub/../in.jsonl"],                        # the input by another spelling
    ["-o", "out.jsonl", "--cache", "{in}"],             # the cache onto the input
    ["-o", "mine.jsonl"],                               # an existing file
    ["-o", "mine.jsonl", "--resume"],                   # resuming into a file rerank did not write
    ["-o", "out.jsonl", "--api-key-file", "key.txt", "--trec", "key.txt"],  # onto an input of the options
])
def test_outputs_never_touch_inputs_or_unknown_files(folder, flags):
    (folder / "sub").mkdir()
    (folder / "key.txt").write_text("sk-local\n")
    os.symlink(folder / "in.jsonl", folder / "link.jsonl")
    os.link(folder / "in.jsonl", folder / "hard.jsonl")
    before = hashes(folder)
    with start_server("identity") as server:
        args = [str(folder / "in.jsonl") if flag == "{in}" else flag for flag in flags]
        proc = run_cli(*run_args(folder, server), *[a if a.startswith("-") or a.startswith("/") else folder / a
                                                   for a in args])
        assert server.stats()["completions"] == 0
    assert_refused(proc)
    assert hashes(folder) == before
    assert not (folder / "out.jsonl").exists() and not (folder / "out.summary.json").exists()


def test_a_trec_input_cannot_be_its_own_trec_output(folder):
    before = hashes(folder)
    proc = run_cli("run", folder / "run.trec", "--corpus", folder / "corpus.tsv", "--queries", folder / "queries.tsv",
                   "-o", folder / "new.jsonl", "--trec", folder / "run.trec", "--resume",
                   "--model", "m", "--base-url", "http://127.0.0.1:9/v1")
    assert_refused(proc, "run.trec", "same file")
    assert hashes(folder) == before


def test_resume_force_and_the_run_record(folder):
    with start_server("reverse") as server:
        out = folder / "out.jsonl"
        first = run_cli(*run_args(folder, server, "-o", out, "--trec", folder / "out.trec"))
        assert first.returncode == 0, first.stderr
        record = json.loads((folder / "out.summary.json").read_text())
        assert record["state"] == "finished" and record["queries"] == 3 and record["command"] == "run"
        assert {"-o", "--trec", "run record"} <= set(record["outputs"])
        whole = out.read_bytes()
        # Without a flag: refused, untouched.
        again = run_cli(*run_args(folder, server, "-o", out, "--trec", folder / "out.trec"))
        assert_refused(again, "exists", "--resume", "--force")
        assert out.read_bytes() == whole
        # --resume into rerank's own finished output: nothing to do, nothing changed.
        resumed = run_cli(*run_args(folder, server, "-o", out, "--trec", folder / "out.trec", "--resume"))
        assert resumed.returncode == 0, resumed.stderr
        assert out.read_bytes() == whole
        # --force replaces it.
        forced = run_cli(*run_args(folder, server, "-o", out, "--trec", folder / "out.trec", "--force"))
        assert forced.returncode == 0, forced.stderr
        assert out.read_bytes() == whole
        # A TREC file the record does not name is not resumed into.
        (folder / "other.trec").write_text("precious\n")
        other = run_cli(*run_args(folder, server, "-o", out, "--trec", folder / "other.trec", "--resume"))
        assert_refused(other, "other.trec", "no record")
        assert (folder / "other.trec").read_text() == "precious\n"


def test_a_failed_start_leaves_nothing_behind(folder):
    out = folder / "out.jsonl"
    proc = run_cli("run", folder / "in.jsonl", "-o", out, "--model", "m", "--base-url", "http://127.0.0.1:9/v1")
    assert proc.returncode == 3 and "cannot connect" in proc.stderr
    assert not out.exists() and not (folder / "out.summary.json").exists()
    with start_server("identity") as server:  # the same command, once the server is up: no --resume needed
        assert run_cli(*run_args(folder, server, "-o", out)).returncode == 0


def start_cli(*args):
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    return subprocess.Popen([sys.executable, "-m", "rerank", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("second_flags", [[], ["--resume"]])
def test_one_writer_per_output(folder, second_flags):
    many = folder / "many.jsonl"
    many.write_text("\n".join(request_line(f"q{i}") for i in range(40)) + "\n")
    out = folder / "out.jsonl"
    with start_server("identity", delay=0.2) as server:
        args = ["run", many, "-o", out, "--model", "judge", "--base-url", server.base_url, "--no-cache",
                "--window", 3, "--step", 1, "--concurrency", 2]
        first = start_cli(*args, "--resume")
        # At least one query finished: an interrupted run that wrote nothing leaves nothing behind.
        wait_until(lambda: out.exists() and out.read_text().count("\n") >= 1, first)
        second = run_cli(*args, *second_flags)
        assert_refused(second, "out.jsonl", "being written by another process", f"pid {first.pid}")
        first.send_signal(signal.SIGTERM)  # and SIGTERM stops it as Ctrl-C does
        _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    lines = out.read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    assert json.loads((folder / "out.summary.json").read_text())["state"] == "interrupted"
    qids = [json.loads(line)["query"]["qid"] for line in lines]
    assert len(qids) == len(set(qids))


def test_labels_refuse_existing_outputs_and_resume_their_own(folder):
    with start_server("identity") as server:
        common = ["labels", folder / "in.jsonl", "--model", "judge", "--base-url", server.base_url,
                  "--cache", folder / "c.sqlite", "--window", 3, "--step", 1, "--passes", 2]
        before = hashes(folder)
        refused = run_cli(*common, "-o", folder / "mine.jsonl")
        assert_refused(refused, "mine.jsonl", "exists")
        refused = run_cli(*common, "-o", folder / "labels.jsonl", "--sft", folder / "in.jsonl")
        assert_refused(refused, "same file")
        assert hashes(folder) == before
        made = run_cli(*common, "-o", folder / "labels.jsonl", "--sft", folder / "sft.jsonl")
        assert made.returncode == 0, made.stderr
        whole = (folder / "labels.jsonl").read_bytes(), (folder / "sft.jsonl").read_bytes()
        lines = whole[0].split(b"\n")
        (folder / "labels.jsonl").write_bytes(lines[0] + b"\n" + lines[1][:20])  # killed mid-line
        resumed = run_cli(*common, "-o", folder / "labels.jsonl", "--sft", folder / "sft.jsonl", "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert ((folder / "labels.jsonl").read_bytes(), (folder / "sft.jsonl").read_bytes()) == whole


def test_retrieve_refuses_existing_outputs(folder):
    pytest.importorskip("bm25s")
    before = hashes(folder)
    args = ["retrieve", "--corpus", folder / "corpus.tsv", "--queries", folder / "queries.tsv",
            "--index-dir", folder / "idx", "-k", 2]
    assert_refused(run_cli(*args, "-o", folder / "mine.jsonl"), "exists", "--force")
    assert_refused(run_cli(*args, "--trec", folder / "corpus.tsv"), "same file")
    assert hashes(folder) == before
    forced = run_cli(*args, "-o", folder / "mine.jsonl", "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((folder / "mine.jsonl").read_text())["query"]["qid"] == "q1"


def test_compare_plots_refuse_existing_files(folder):
    pytest.importorskip("matplotlib")
    (folder / "qrels.txt").write_text("q1 0 d2 1\n")
    (folder / "other.trec").write_text("q1 Q0 d2 1 2.0 x\nq1 Q0 d1 2 1.0 x\n")
    plots = folder / "plots"
    plots.mkdir()
    (plots / "per-query-other.png").write_text("not a plot, a user's file")
    args = ["compare", folder / "run.trec", folder / "other.trec", "--qrels", folder / "qrels.txt", "--plots", plots]
    refused = run_cli(*args)
    assert_refused(refused, "per-query-other.png", "exists")
    assert (plots / "per-query-other.png").read_text() == "not a plot, a user's file"
    forced = run_cli(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert (plots / "per-query-other.png").read_bytes().startswith(b"\x89PNG")


def test_experiment_results_and_secrets(folder):
    with start_server("identity") as server:
        host = server.base_url.split("//")[1]
        (folder / "exp.yaml").write_text(
            "name: t\ncandidates: in.jsonl\nqrels: qrels.txt\nresults: results\n"
            "settings: {window: 3, step: 1, model: '${RERANK_TEST_MODEL_KEY}',"
            " base_url: 'http://user:${RERANK_TEST_PASSWORD}@" + host + "'}\n"
            "grid: {strategy: [sliding, full], model: ['${RERANK_TEST_MODEL_KEY}', judge]}\nmetrics: [nDCG@10]\n")
        (folder / "qrels.txt").write_text("q1 0 q1-d2 1\n")
        env = {"RERANK_TEST_MODEL_KEY": "model-secret-1234", "RERANK_TEST_PASSWORD": "hunter2-secret"}
        made = run_cli("experiment", folder / "exp.yaml", env=env)
        assert made.returncode == 0, made.stderr
        results = folder / "results"
        assert not any("model-secret" in path.name for path in results.iterdir())
        for path in results.iterdir():
            if path.suffix in (".json", ".md", ".csv", ".tex"):
                text = path.read_text()
                assert "model-secret-1234" not in text and "hunter2-secret" not in text, path
        settings = json.loads((results / "sliding-RERANK_TEST_MODEL_KEY.summary.json").read_text())["settings"]
        assert settings["model"] == "${RERANK_TEST_MODEL_KEY}" and "user" not in settings["base_url"]
        assert "hunter2" not in made.stderr + made.stdout
        before = hashes(results)
        assert_refused(run_cli("experiment", folder / "exp.yaml", env=env), "exists", "--resume")
        assert hashes(results) == before
        resumed = run_cli("experiment", folder / "exp.yaml", "--resume", env=env)
        assert resumed.returncode == 0, resumed.stderr
        (results / "notes.txt").write_text("mine")  # a file of the user's in the folder is kept
        assert run_cli("experiment", folder / "exp.yaml", "--force", env=env).returncode == 0
        assert (results / "notes.txt").read_text() == "mine"
