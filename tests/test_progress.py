"""Progress: a tqdm bar on a terminal, a plain line every N seconds in a log file (SLURM), on
`run`, `labels`, `pipeline`, `experiment` and `retrieve`; `--quiet` silences both."""

import io
import json
import os
import re
import subprocess
import sys
import threading

import pytest

from conftest import REPO, run_cli
from llm_server import start_server
from rerank.progress import Progress, ProgressOptions, _clock, count_queries
from rerank.sharding import Shard
from rerank.types import Usage

LINE = re.compile(r"^rerank: (?:(?P<label>.+?): )?(?P<done>\d+)(?:/(?P<total>\d+))? queries(?: \(|,)")
FIXTURES = REPO / "tests" / "fixtures" / "retrieval"


class Lines(io.StringIO):
    """A stream that sets an event once it holds ``wanted`` lines (the tests wait on it)."""

    def __init__(self, wanted: int):
        super().__init__()
        self.wanted = wanted
        self.reached = threading.Event()

    def write(self, text):
        written = super().write(text)
        if self.getvalue().count("\n") >= self.wanted:
            self.reached.set()
        return written


def progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if LINE.match(line)]


# --- the Progress class --------------------------------------------------------------------------

def test_a_line_says_how_far_with_rate_and_eta():
    shown = Progress(43, options=ProgressOptions(stream=io.StringIO(), bar=False, interval=3600))
    shown._started -= 32.0  # as if started 32 s ago
    shown.update(17, calls=153, cache_hits=12)
    line = shown.line()
    assert line.startswith("rerank: 17/43 queries (40%), 153 calls (12 cached), 0.53 queries/s, elapsed 0:32, ETA 0:49")
    assert shown.line(final=True).endswith("elapsed 0:32 (ended)") and "ETA" not in shown.line(final=True)
    shown.update(43)
    assert shown.line(final=True).endswith(" (finished)")
    shown.close()


def test_an_unknown_total_shows_the_count_alone():
    shown = Progress(None, label="v1 (1/2)", options=ProgressOptions(stream=io.StringIO(), bar=False, interval=3600))
    shown.update(advance=5)
    line = shown.line()
    assert line.startswith("rerank: v1 (1/2): 5 queries, ") and "ETA" not in line and "%" not in line
    shown.close()


def test_resumed_queries_count_in_the_total_not_in_the_rate():
    shown = Progress(43, initial=40, options=ProgressOptions(stream=io.StringIO(), bar=False, interval=3600))
    shown._started -= 10.0
    usage = Usage(queries=1, calls=9, cache_hits=0)
    shown.track(usage)
    assert shown.line().startswith("rerank: 41/43 queries (95%), 9 calls (0 cached), 0.10 queries/s")
    shown.close()


def test_plain_lines_come_every_interval_even_while_nothing_finishes():
    stream = Lines(wanted=4)
    shown = ProgressOptions(stream=stream, bar=False, interval=0.05).start(10)
    assert stream.reached.wait(30), stream.getvalue()
    shown.update(10, calls=3, cache_hits=1)
    shown.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 5 and all(line.startswith("rerank: ") for line in lines)
    assert lines[0].startswith("rerank: 0/10 queries") and lines[-1].startswith("rerank: 10/10 queries (100%)")
    assert lines[-1].endswith("(finished)") and "\r" not in stream.getvalue()
    shown.close()  # idempotent
    assert stream.getvalue().splitlines() == lines


def test_quiet_shows_nothing():
    stream = io.StringIO()
    with ProgressOptions(enabled=False, stream=stream, interval=0.01).start(3) as shown:
        shown.update(3)
    assert stream.getvalue() == ""


def test_the_bar_has_rate_and_eta_and_notes_do_not_break_it():
    stream = io.StringIO()
    with ProgressOptions(stream=stream, bar=True).start(43, label="run") as shown:
        shown.update(17, calls=153, cache_hits=12)
        shown.note("a line between")
        shown.update(43, calls=387, cache_hits=12)
    text = stream.getvalue()
    assert "run: " in text and "43/43 queries" in text and "100%|" in text and "387 calls (12 cached)" in text
    assert "queries/s" in text and "a line between\n" in text


def test_a_step_without_a_count_shows_its_time():
    stream = io.StringIO()
    with ProgressOptions(stream=stream, bar=False).start(unit="", label="bm25 index: scoring"):
        pass
    assert stream.getvalue().splitlines() == ["rerank: bm25 index: scoring: elapsed 0:00",
                                              "rerank: bm25 index: scoring: elapsed 0:00 (ended)"]


def test_clock():
    assert [_clock(s) for s in (0, 59.4, 61, 3600, 3725)] == ["0:00", "0:59", "1:01", "1:00:00", "1:02:05"]


# --- counting the input --------------------------------------------------------------------------

def test_inputs_are_counted_cheaply_in_every_format(dl19, tmp_path):
    rankgpt = dl19 / "bm25_top100.json"
    assert count_queries(rankgpt) == 43 and count_queries(rankgpt, limit=5) == 5
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"query": {"qid": f"q{i}", "text": "t"},
                                         "candidates": [{"docid": "a", "doc": {"contents": "x"}}]}) + "\n\n"
                             for i in range(20)))
    assert count_queries(jsonl) == 20
    shard = Shard(1, 3)
    assert count_queries(jsonl, keep=shard.holds) == sum(shard.holds(f"q{i}") for i in range(20))
    run = tmp_path / "run.trec"
    run.write_text("".join(f"q{i % 7} Q0 d{i} {i} {1 - i / 100} t\n" for i in range(50)))
    assert count_queries(run) == 7 and count_queries(run, keep=lambda qid: qid in {"q1", "q2"}) == 2
    assert count_queries(tmp_path / "missing.jsonl") is None


# --- the commands --------------------------------------------------------------------------------

def run_with_stderr_file(args, log, env=None):
    environment = {**os.environ, "OPENAI_API_KEY": "sk-test", **(env or {})}
    with open(log, "w") as stderr:
        return subprocess.run([sys.executable, "-m", "rerank", *map(str, args)], cwd=REPO, env=environment,
                              stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=600)


def test_a_run_into_a_log_file_writes_progress_lines(dl19, tmp_path):
    # 9 rounds of 0.2 s for each of 3 waves of 16 queries: seconds, so lines every 0.5 s.
    log = tmp_path / "slurm.log"
    with start_server("oracle", data_dir=dl19, delay=0.2) as server:
        proc = run_with_stderr_file(["run", dl19 / "bm25_top100.json", "-o", tmp_path / "o.jsonl", "--model", "judge",
                                     "--base-url", server.base_url, "--cache", tmp_path / "c.sqlite",
                                     "--progress-interval", 0.5], log)
    text = log.read_text()
    assert proc.returncode == 0, text
    lines = progress_lines(text)
    assert len(lines) >= 4, text
    assert "\r" not in text and all(LINE.match(line)["total"] == "43" for line in lines)
    assert lines[0].startswith("rerank: 0/43 queries") and lines[-1].startswith("rerank: 43/43 queries (100%)")
    assert any("ETA" in line for line in lines) and "calls (" in lines[-1] and "queries/s" in lines[-1]
    done = [int(LINE.match(line)["done"]) for line in lines]
    assert done == sorted(done)


def test_quiet_writes_no_progress_and_a_bad_interval_is_one_line(dl19, tmp_path):
    with start_server("identity", data_dir=dl19) as server:
        args = ["run", dl19 / "bm25_top100.json", "--model", "judge", "--base-url", server.base_url,
                "--cache", tmp_path / "c.sqlite"]
        quiet = run_cli(*args, "-o", tmp_path / "q.jsonl", "--quiet", "--progress-interval", 0.01)
        assert quiet.returncode == 0 and "queries" not in quiet.stderr, quiet.stderr
        bad = run_cli(*args, "-o", tmp_path / "b.jsonl", "--progress-interval", 0)
    assert bad.returncode == 2 and "--progress-interval" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b.jsonl").exists()


def test_a_terminal_gets_a_bar(dl19, tmp_path):
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    with start_server("oracle", data_dir=dl19, delay=0.05) as server:
        proc = subprocess.Popen([sys.executable, "-m", "rerank", "run", str(dl19 / "bm25_top100.json"),
                                 "-o", str(tmp_path / "o.jsonl"), "--model", "judge", "--base-url", server.base_url,
                                 "--cache", str(tmp_path / "c.sqlite")],
                                cwd=REPO, env={**os.environ, "OPENAI_API_KEY": "sk-test"},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        received = bytearray()
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            received += chunk
        os.close(master)
        assert proc.wait(timeout=120) == 0, received.decode("utf-8", "replace")
    text = received.decode("utf-8", "replace")
    assert "\r" in text and "43/43 queries" in text and "100%|" in text and "queries/s" in text, text
    assert "rerank: 0/43" not in text  # no plain lines on a terminal


def test_labels_pipeline_retrieve_and_experiment_show_progress_in_a_log(dl19, tmp_path):
    log = tmp_path / "labels.log"
    proc = run_with_stderr_file(["labels", dl19 / "bm25_top100.json", "-o", tmp_path / "l.jsonl", "--backend", "judge",
                                 "--model", f"judge:oracle:{dl19}", "--passes", 2, "--no-cache",
                                 "--progress-interval", 0.2], log)
    assert proc.returncode == 0, log.read_text()
    lines = progress_lines(log.read_text())
    assert lines[0].startswith("rerank: 0/43 queries") and lines[-1].startswith("rerank: 43/43 queries (100%)")

    log = tmp_path / "retrieve.log"
    corpus, queries = FIXTURES / "corpus.jsonl", FIXTURES / "queries.tsv"
    proc = run_with_stderr_file(["retrieve", "--corpus", corpus, "--queries", queries, "--index-dir", tmp_path / "ix",
                                 "-o", tmp_path / "cands.jsonl", "--progress-interval", 0.2], log)
    text = log.read_text()
    assert proc.returncode == 0, text
    documents = sum(1 for line in corpus.read_text().splitlines() if line.strip())
    assert f"rerank: bm25 index: tokenizing: {documents}/{documents} documents (100%)" in text, text
    assert "rerank: bm25 index: scoring and saving: elapsed" in text

    log = tmp_path / "pipeline.log"
    proc = run_with_stderr_file(["pipeline", "--corpus", corpus, "--queries", queries, "--index-dir", tmp_path / "ix",
                                 "-o", tmp_path / "p.jsonl", "--backend", "judge", "--model", "judge:identity",
                                 "--no-cache", "--progress-interval", 0.2], log)
    text = log.read_text()
    assert proc.returncode == 0, text
    count = sum(1 for line in queries.read_text().splitlines() if line.strip())
    assert f"rerank: {count}/{count} queries (100%)" in text, text
    assert "index: tokenizing" not in text  # loaded from disk: nothing to build

    experiment = tmp_path / "x.yaml"
    experiment.write_text(f"name: x\ncandidates: {dl19 / 'bm25_top100.json'}\nqrels: {dl19 / 'qrels.dl19-passage.txt'}\n"
                          "settings: {backend: judge, model: 'judge:identity'}\ngrid: {strategy: [sliding, full]}\n")
    log = tmp_path / "experiment.log"
    proc = run_with_stderr_file(["experiment", experiment, "--results", tmp_path / "results",
                                 "--progress-interval", 0.2], log)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "rerank: experiment: 0/86 queries" in text and "rerank: experiment: 86/86 queries (100%)" in text, text
    assert "rerank: sliding (1/2): 43/43 queries (100%)" in text and "rerank: full (2/2): 43/43 queries" in text
