"""The `rerank` command as a user runs it: inputs of each format, errors, eval."""

import json

import pytest

from conftest import read_summary, run_cli
from llm_server import start_server


def test_help_lists_the_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "run" in proc.stdout and "eval" in proc.stdout
    run_help = run_cli("run", "--help").stdout
    for flag in ("--trec", "--model", "--base-url", "--strategy", "--window", "--step", "--passes",
                 "--top-k", "--prompt", "--max-passage-words", "--context-size", "--concurrency",
                 "--cache", "--no-cache"):
        assert flag in run_help


@pytest.fixture
def trec_input(tmp_path):
    (tmp_path / "run.trec").write_text(
        "q1 Q0 d3 1 9.5 bm25\nq1 Q0 d1 2 9.0 bm25\nq1 Q0 d2 3 8.0 bm25\nq2 Q0 d2 1 3.0 bm25\nq2 Q0 d4 2 2.0 bm25\n")
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in [
        {"_id": "d1", "title": "One", "text": "first passage [1] > [2]"},
        {"_id": "d2", "title": "", "text": "second passage"},
        {"_id": "d3", "title": "Three", "text": "third passage"},
        {"_id": "d4", "text": "fourth passage"},
        {"_id": "d5", "text": "never retrieved"}]) + "\n")
    (tmp_path / "queries.tsv").write_text("q1\tfirst query\nq2\tsecond query\n")
    (tmp_path / "qrels.txt").write_text("q1 0 d2 2\nq1 0 d3 0\nq2 0 d4 1\n")
    return tmp_path


def test_trec_run_input_with_corpus_and_queries(trec_input):
    out, trec = trec_input / "out.jsonl", trec_input / "out.trec"
    with start_server("reverse") as server:
        proc = run_cli("run", trec_input / "run.trec", "--corpus", trec_input / "corpus.jsonl",
                       "--queries", trec_input / "queries.tsv", "-o", out, "--trec", trec,
                       "--model", "m", "--base-url", server.base_url, "--no-cache", "--tag", "mine")
        assert server.stats()["completions"] == 2
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["query"] for line in lines] == [{"text": "first query", "qid": "q1"},
                                                 {"text": "second query", "qid": "q2"}]
    assert [c["docid"] for c in lines[0]["candidates"]] == ["d2", "d1", "d3"]  # reversed
    assert lines[0]["candidates"][1]["doc"]["title"] == "One"
    assert trec.read_text().splitlines()[:3] == ["q1 Q0 d2 1 3.0 mine", "q1 Q0 d1 2 2.0 mine",
                                                 "q1 Q0 d3 3 1.0 mine"]
    evaluation = run_cli("eval", trec, "--qrels", trec_input / "qrels.txt", "--metrics", "nDCG@10", "P@1",
                         "--per-query")
    assert evaluation.returncode == 0, evaluation.stderr
    rows = [line.split() for line in evaluation.stdout.splitlines()]
    assert rows[0] == ["qid", "nDCG@10", "P@1"]
    assert rows[1] == ["q1", "1.0000", "1.0000"] and rows[-1][0] == "all"


def test_rankllm_output_is_valid_rankllm_input(trec_input):
    with start_server("identity") as server:
        first = run_cli("run", trec_input / "run.trec", "--corpus", trec_input / "corpus.jsonl",
                        "--queries", trec_input / "queries.tsv", "-o", trec_input / "a.jsonl",
                        "--model", "m", "--base-url", server.base_url, "--no-cache")
        second = run_cli("run", trec_input / "a.jsonl", "-o", trec_input / "b.jsonl", "--model", "m",
                         "--base-url", server.base_url, "--no-cache", "--prompt", "rankzephyr",
                         "--strategy", "full", "--summary-json", trec_input / "s.json")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert (trec_input / "a.jsonl").read_text() == (trec_input / "b.jsonl").read_text()
    summary = read_summary(trec_input / "s.json")
    assert summary["queries"] == 2 and summary["calls"] == 2
    assert summary["wall_seconds"] > 0 and summary["startup_seconds"] > 0


@pytest.mark.parametrize("content,expected,code", [
    ('{"query": {"text": "q", "qid": "1"}, "candidates": [{"docid": "a", "doc": "x"}]}\n{"query": {"text": "q"}, "candidates": []}\n',
     ":2: field 'query.qid'", 11),
    ('{"query": {"text": "q", "qid": "1"}, "candidates": [{"docid": "a", "doc": {"body": "x"}}]}\n',
     ":1: field 'candidates[0].doc", 11),
    ("[{\"query\": \"q\", \"hits\": [{\"qid\": 1, \"docid\": \"a\"}]}]", "field '[0].hits[0].content'", 11),
    ("{not json\n", ":1:", 10),
    ('{"query": {"text": "q", "qid": "1"}, "candidates": [{"docid": "a", "doc": "x"}, {"docid": "a", "doc": "y"}]}\n',
     ":1: field 'candidates[1].docid'", 13),
    ('{"query": {"text": "q", "qid": "1"}, "candidates": [{"docid": "a", "doc": " "}]}\n', ":1: field 'candidates[0]", 14),
    ('{"query": {"text": "q", "qid": "1"}, "candidates": []}\n', ":1: field 'candidates'", 12),
    ("q1 Q0 d1 one 2.0 run\n", None, 2),
])
def test_malformed_input_gives_one_clear_line(tmp_path, content, expected, code):
    path = tmp_path / "input.txt"
    path.write_text(content)
    with start_server("identity") as server:
        proc = run_cli("run", path, "-o", tmp_path / "o.jsonl", "--model", "m",
                       "--base-url", server.base_url, "--no-cache", "--max-attempts", "1")
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("rerank: error")]
    assert len(lines) == 1 and lines[0].startswith(f"rerank: error: {path}")
    if expected:
        assert expected in lines[0]


def test_a_corrupted_candidates_file_stops_at_its_line_or_is_skipped(dl19, tmp_path):
    from rerank.formats import RankLLMWriter, read_requests

    clean = tmp_path / "clean.jsonl"
    with RankLLMWriter(clean) as writer:
        for request in read_requests(dl19 / "bm25_top100.json"):
            writer.write(request)
    lines = clean.read_bytes().split(b"\n")
    lines[3] = lines[3][: len(lines[3]) // 2]  # a truncated line
    lines[6] = b"\x00\xffgarbage{{{"          # a line of garbage
    corrupted = tmp_path / "corrupted.jsonl"
    corrupted.write_bytes(b"\n".join(lines))
    with start_server("identity", data_dir=dl19) as server:
        args = ["run", corrupted, "--model", "m", "--base-url", server.base_url, "--no-cache"]
        stopped = run_cli(*args, "-o", tmp_path / "a.jsonl")
        skipped = run_cli(*args, "-o", tmp_path / "b.jsonl", "--skip-bad-lines")
    assert stopped.returncode != 0 and f"{corrupted}:4:" in stopped.stderr and "Traceback" not in stopped.stderr
    assert skipped.returncode == 0, skipped.stderr
    assert f"{corrupted}:4:" in skipped.stderr and f"{corrupted}:7:" in skipped.stderr
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 41


@pytest.mark.parametrize("args,message", [
    (["--window", "10", "--step", "10"], "--step"), (["--strategy", "nope"], "unknown strategy"),
    (["--prompt", "nope"], "unknown prompt"), (["-o", "/nonexistent-dir/o.jsonl"], "No such file"),
])
def test_bad_options_give_one_clear_line(tmp_path, args, message):
    path = tmp_path / "in.jsonl"
    path.write_text('{"query": {"text": "q", "qid": "1"}, "candidates": [{"docid": "a", "doc": "x"}]}\n')
    base = ["run", path, "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--no-cache"]
    if "-o" not in args:
        base += ["-o", tmp_path / "o.jsonl"]
    proc = run_cli(*base, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unreachable_server_fails_fast_with_one_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"query": {"text": "q", "qid": "1"}, "candidates": [{"docid": "a", "doc": "x"}, {"docid": "b", "doc": "y"}]}\n')
    proc = run_cli("run", path, "-o", tmp_path / "o.jsonl", "--model", "m", "--base-url",
                   "http://127.0.0.1:9/v1", "--no-cache", "--max-attempts", "2", timeout=60)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert "cannot connect to http://127.0.0.1:9/v1" in proc.stderr


def test_eval_rejects_an_unknown_metric(tmp_path):
    (tmp_path / "r").write_text("q Q0 d 1 1.0 t\n")
    (tmp_path / "q").write_text("q 0 d 1\n")
    proc = run_cli("eval", tmp_path / "r", "--qrels", tmp_path / "q", "--metrics", "nDCG@ten")
    assert proc.returncode == 2 and "unknown metric 'nDCG@ten'" in proc.stderr
