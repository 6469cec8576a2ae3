"""Bad input: each user mistake is one InputError naming file, line and field, with its own
exit code; with ``on_bad_line`` (``--skip-bad-lines``) bad requests are reported and skipped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from llm_server import start_server
from rerank.errors import (INPUT_ERRORS, BadLine, ConfigError, DuplicateId, EmptyPassage,
                           InputError, InvalidId, InvalidJSON, InvalidText, MissingField,
                           NoCandidates, NotUTF8, UnknownId, UnreadableFile)
from rerank.formats import (RankLLMWriter, TrecRunWriter, read_corpus, read_qrels, read_queries,
                            read_rankllm, read_requests, read_run)
from rerank.formats.fields import parse_id
from rerank.types import Result

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def request_line(qid: str, docids=("a", "b"), text="q", doc="passage") -> str:
    return json.dumps({"query": {"qid": qid, "text": text},
                       "candidates": [{"docid": d, "doc": {"contents": doc}} for d in docids]})


def rankgpt_entry(qid: str, docids=("a", "b")) -> dict:
    return {"query": "q", "hits": [{"qid": qid, "docid": d, "content": "c"} for d in docids]}


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_exit_codes_are_distinct():
    classes = (InvalidJSON, MissingField, NoCandidates, DuplicateId, EmptyPassage, NotUTF8,
               BadLine, UnreadableFile, UnknownId, InvalidText, InvalidId)
    assert [cls.exit_code for cls in classes] == list(range(10, 21))
    assert ConfigError.exit_code == 2 and InputError.exit_code == 2
    assert len({cls.kind for cls in classes}) == len(classes)
    assert INPUT_ERRORS == {cls.exit_code: cls for cls in classes}


GOOD = request_line("1")


@pytest.mark.parametrize(("line", "cls", "field"), [
    (b"{not json", InvalidJSON, None),
    (GOOD[:30].encode(), InvalidJSON, None),  # truncated
    (b'{"query": {"qid": "2"}, "candidates": []}', MissingField, "query.text"),
    (request_line("2", text=" ").encode(), MissingField, "query.text"),
    (request_line("2", docids=()).encode(), NoCandidates, "candidates"),
    (request_line("2", docids=("a", "b", "a")).encode(), DuplicateId, "candidates[2].docid"),
    (request_line("2", doc="  ").encode(), EmptyPassage, "candidates[0].doc"),
    (request_line("2").encode().replace(b'"q"', b'"\xff"'), NotUTF8, None),
    (b'{"query": {"qid": 1.5, "text": "t"}, "candidates": []}', InvalidJSON, "query.qid"),
    (GOOD.replace('"1"', "1" * 5000).encode(), InvalidId, "query.qid"),
    (GOOD.replace('"1"', "1e999").encode(), InvalidJSON, "query.qid"),
    (GOOD.replace('"1"', "NaN").encode(), InvalidJSON, "query.qid"),
    (GOOD.replace('"1"', r'"q\u2028"').encode(), InvalidId, "query.qid"),
    (GOOD.replace('"1"', r'"q\ud800"').encode(), InvalidId, "query.qid"),
    (GOOD.replace('"a"', r'"\u200ba"').encode(), InvalidId, "candidates[0].docid"),
    (GOOD.replace('"b"', r'"b\u0000"').encode(), InvalidId, "candidates[1].docid"),
    (GOOD.replace('"b"', "-" + "9" * 4400).encode(), InvalidId, "candidates[1].docid"),
    (GOOD.replace('"q"', r'"\udc00"').encode(), InvalidText, "query.text"),
    (GOOD.replace('"passage"', r'"x \ud83d"', 1).encode(), InvalidText,
     "candidates[0].doc.contents"),
    (GOOD.replace('"doc": {"contents": "passage"}', r'"doc": "\ud800"', 1).encode(), InvalidText,
     "candidates[0].doc"),
    (GOOD.replace('"a", ', '"a", "score": 1e999, ').encode(), InvalidJSON, "candidates[0].score"),
    (GOOD.replace('"a", ', '"a", "score": -Infinity, ').encode(), InvalidJSON,
     "candidates[0].score"),
    (GOOD.replace('"a", ', '"a", "score": NaN, ').encode(), InvalidJSON, "candidates[0].score"),
    (GOOD.replace('"a", ', '"a", "score": ' + "1" * 5000 + ", ").encode(), InvalidJSON,
     "candidates[0].score"),
    (GOOD.encode(), DuplicateId, "query.qid"),
])
def test_rankllm_mistakes(tmp_path, line, cls, field):
    path = write(tmp_path / "in.jsonl", GOOD.encode() + b"\n" + line + b"\n")
    with pytest.raises(cls) as exc:
        list(read_requests(path))
    error = exc.value
    assert isinstance(error, InputError) and type(error).exit_code == cls.exit_code
    assert (error.path, error.line, error.field) == (str(path), 2, field)
    assert str(error).startswith(f"{path}:2: ")
    if field:
        assert f"field '{field}'" in str(error)
    assert "\n" not in str(error) and str(error).isprintable() and len(str(error)) < 400


@pytest.mark.parametrize(("entry", "cls", "field"), [
    ({"query": "q", "hits": []}, NoCandidates, "[1].hits"),
    ({"query": "q", "qid": 3, "hits": []}, NoCandidates, "[1].hits"),
    (rankgpt_entry("2", ("a", "a")), DuplicateId, "[1].hits[1].docid"),
    ({"query": "", "hits": rankgpt_entry("2")["hits"]}, MissingField, "[1].query"),
    ({"query": "q", "hits": [{"qid": 2, "docid": "a", "content": ""}]}, EmptyPassage,
     "[1].hits[0].content"),
    ({"hits": []}, MissingField, "[1].query"),
    (rankgpt_entry("1"), DuplicateId, "[1].hits[0].qid"),
    (dict(rankgpt_entry("2"), qid="1"), InvalidJSON, "[1].hits[0].qid"),  # not the entry's qid
    ({"query": "q", "qid": 1, "hits": []}, NoCandidates, "[1].hits"),
    ({"query": "q\ud800", "hits": rankgpt_entry("2")["hits"]}, InvalidText, "[1].query"),
    ({"query": "q", "hits": [{"qid": "2\x85", "docid": "a", "content": "c"}]}, InvalidId,
     "[1].hits[0].qid"),
    ({"query": "q", "qid": "\ufeff2", "hits": []}, InvalidId, "[1].qid"),
    ({"query": "q", "hits": [{"qid": 2, "docid": "a\xa0", "content": "c"}]}, InvalidId,
     "[1].hits[0].docid"),
    ({"query": "q", "hits": [{"qid": 2, "docid": "a", "content": "\udfff"}]}, InvalidText,
     "[1].hits[0].content"),
    ({"query": "q", "hits": [{"qid": 2, "docid": "a", "content": "c", "title": "\ud800"}]},
     InvalidText, "[1].hits[0].title"),
    ({"query": "q", "hits": [{"qid": 2, "docid": "a", "content": "c", "score": float("inf")}]},
     InvalidJSON, "[1].hits[0].score"),
    ({"query": "q", "hits": [{"qid": 2, "docid": "a", "content": "c", "score": float("nan")}]},
     InvalidJSON, "[1].hits[0].score"),
    ({"query": "q", "hits": [{"qid": 2.0, "docid": "a", "content": "c"}]}, InvalidJSON,
     "[1].hits[0].qid"),
    ({"query": "q", "hits": [{"qid": False, "docid": "a", "content": "c"}]}, InvalidJSON,
     "[1].hits[0].qid"),
])
def test_rankgpt_mistakes(tmp_path, entry, cls, field):
    path = write(tmp_path / "in.json",
                 "[\n" + json.dumps(rankgpt_entry("1")) + ",\n" + json.dumps(entry) + "\n]\n")
    with pytest.raises(cls) as exc:
        list(read_requests(path))
    assert (exc.value.line, exc.value.field) == (3, field)
    assert str(exc.value).isprintable()


def test_rankgpt_huge_numbers_in_every_field(tmp_path):
    huge = "1" * 5000
    for key, cls in (("qid", InvalidId), ("docid", InvalidId), ("score", InvalidJSON),
                     ("content", InvalidJSON), ("title", InvalidJSON)):
        hit = {"qid": 2, "docid": "a", "content": "c", "score": 1.0, "title": "t", "rank": 1}
        hit[key] = "@HUGE@"
        text = json.dumps([rankgpt_entry("1"), {"query": "q", "hits": [hit]}], indent=1)
        path = write(tmp_path / "in.json", text.replace('"@HUGE@"', huge))
        with pytest.raises(cls) as exc:
            list(read_requests(path))
        assert exc.value.field == f"[1].hits[0].{key}" and str(exc.value).isprintable(), key
    hit = {"qid": 2, "docid": "a", "content": "c", "rank": "@HUGE@"}  # an unread field
    path = write(tmp_path / "in.json", json.dumps([{"query": "q", "hits": [hit]}])
                 .replace('"@HUGE@"', huge))
    assert [r.query.qid for r in read_requests(path)] == ["2"]


# The mistakes of the line files (qrels, run, queries, corpus), by the error class they raise.
LINE_FILE_MISTAKES = {
    BadLine: [
        (read_qrels, "q1 0 d1\n", "grade"),
        (read_qrels, "q1 0 d1 high\n", "grade"),
        (read_qrels, "q1 0 d1 " + "1" * 5000 + "\n", "grade"),
        (read_run, "q1 Q0 d1 1 2.0\n", "tag"),
        (read_run, "q1 Q0 d1 one 2.0 run\n", "rank"),
        (read_run, "q1 Q0 d1 " + "1" * 5000 + " 2.0 run\n", "rank"),
        (read_run, "q1 Q0 d1 1 1e999 run\n", "score"),
        (read_run, "q1 Q0 d1 1 -inf run\n", "score"),
    ],
    DuplicateId: [
        (read_run, "q1 Q0 d1 1 2.0 run\nq1 Q0 d1 2 1.0 run\n", "docid"),
        (read_queries, "q1\tone\nq1\ttwo\n", "qid"),
    ],
    MissingField: [(read_corpus, '{"_id": "d"}\n', "text")],
    InvalidId: [
        (read_qrels, "q1 0 d\x00 1\n", "docid"),
        (read_run, "q\u200b1 Q0 d1 1 2.0 run\n", "qid"),
        (read_queries, "q\ufeff1\tone\n", "qid"),
        (read_corpus, '{"_id": "d\\u2029", "text": "t"}\n', "_id"),
        (read_corpus, "d \x1c1\ttext\n", "docid"),
        (read_queries, '{"_id": ' + "1" * 5000 + ', "text": "t"}\n', "_id"),
    ],
    InvalidText: [
        (read_queries, '{"_id": "q1", "text": "\\ud800"}\n', "text"),
        (read_corpus, '{"_id": "d", "text": "t", "title": "\\ud800"}\n', "title"),
    ],
}


@pytest.mark.parametrize(("reader", "content", "cls", "field"), [
    (reader, content, cls, field)
    for cls, mistakes in LINE_FILE_MISTAKES.items() for reader, content, field in mistakes])
def test_line_file_mistakes(tmp_path, reader, content, cls, field):
    path = write(tmp_path / "f.txt", content)
    with pytest.raises(cls) as exc:
        result = reader(path)
        list(result) if not isinstance(result, dict) else None
    assert exc.value.field == field and exc.value.line is not None
    assert str(exc.value).startswith(f"{path}:{exc.value.line}: ")
    assert str(exc.value).isprintable() and len(str(exc.value)) < 400


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(UnreadableFile) as exc:
        list(read_requests(tmp_path / "nope.jsonl"))
    assert exc.value.exit_code == 17 and str(tmp_path / "nope.jsonl") in str(exc.value)
    with pytest.raises(InvalidJSON):
        list(read_requests(write(tmp_path / "x.txt", "hello world\n")))
    with pytest.raises(ConfigError):
        read_requests(write(tmp_path / "y.jsonl", GOOD), fmt="csv")


@pytest.mark.parametrize("run_text, queries_text, error, field, bad_lines", [
    # a docid missing from the corpus (line 2), a qid missing from the queries (line 3)
    ("q1 Q0 d1 1 2.0 r\nq2 Q0 dX 1 2.0 r\nq3 Q0 d1 1 1.0 r\n", "q1\tone\nq2\ttwo\n", UnknownId, "docid", [2, 3]),
    # a query whose text is blank
    ("q1 Q0 d1 1 2.0 r\nq2 Q0 d1 1 2.0 r\n", "q1\tone\nq2\t \n", MissingField, "qid", [2]),
])
def test_run_lines_that_cannot_become_requests(tmp_path, run_text, queries_text, error, field, bad_lines):
    run = write(tmp_path / "run", run_text)
    corpus = write(tmp_path / "corpus.tsv", "d1\tpassage one\n")
    queries = write(tmp_path / "queries.tsv", queries_text)
    with pytest.raises(error) as exc:
        list(read_requests(run, corpus=corpus, queries=queries))
    assert (exc.value.line, exc.value.field) == (2, field)
    errors: list[InputError] = []
    requests = list(read_requests(run, corpus=corpus, queries=queries, on_bad_line=errors.append))
    assert [r.query.qid for r in requests] == ["q1"]
    assert [(type(e), e.line) for e in errors] == [(error, line) for line in bad_lines]


def test_messages_stay_one_printable_line_whatever_the_file_name(tmp_path):
    import os
    path = tmp_path / os.fsdecode(b"in\nput \xff.jsonl")  # a newline and an undecodable byte
    write(path, "{broken\n")
    with pytest.raises(InvalidJSON) as exc:
        list(read_requests(path))
    assert exc.value.path == str(path) and exc.value.line == 1
    assert str(exc.value).isprintable() and "in\\nput \\udcff.jsonl:1: " in str(exc.value)




# ---------------------------------------------------------------- through the CLI


def cli_line(qid: str = '"1"', text: str = '"q"', docid: str = '"a"', score: str = "1") -> str:
    """A rank_llm line with raw JSON tokens in its fields."""
    return ('{"query": {"qid": %s, "text": %s}, "candidates": [{"docid": %s, "score": %s,'
            ' "doc": "x"}, {"docid": "b", "doc": "y"}]}' % (qid, text, docid, score))


def error_lines(proc) -> list[str]:
    """The stderr lines of a failed command; there must be no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("rerank: error:")]


@pytest.fixture(scope="module")
def server():
    with start_server("identity") as running:
        yield running


@pytest.mark.parametrize(("line", "code", "field"), [
    (cli_line(qid="1" * 5000), 20, "query.qid"),
    (cli_line(qid=r'"2\u2028"'), 20, "query.qid"),
    (cli_line(docid=r'"a\u0000"'), 20, "candidates[0].docid"),
    (cli_line(docid=r'"\ud800"'), 20, "candidates[0].docid"),
    (cli_line(text=r'"\ud800 q"'), 19, "query.text"),
    (cli_line(score="1e999"), 10, "candidates[0].score"),
    (cli_line(score="NaN"), 10, "candidates[0].score"),
    (cli_line(score="1" * 5000), 10, "candidates[0].score"),
    (cli_line(qid="1.5"), 10, "query.qid"),
    (cli_line(), 13, "query.qid"),  # the qid of line 1 again
])
def test_cli_reports_a_bad_value_in_one_line(tmp_path, server, line, code, field):
    path = write(tmp_path / "in.jsonl", cli_line() + "\n" + line + "\n")
    proc = run_cli("run", path, "-o", tmp_path / "o.jsonl", "--trec", tmp_path / "o.trec",
                   "--model", "m", "--base-url", server.base_url, "--no-cache")
    assert proc.returncode == code, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith(f"rerank: error: {path}:2: field '{field}': ")
    assert lines[0].isprintable() and len(lines[0]) < 400


def test_cli_skips_bad_values_and_keeps_duplicate_qids(tmp_path, server):
    path = write(tmp_path / "in.jsonl", "\n".join([
        cli_line('"1"'), cli_line(r'"2\u200b"'), cli_line('"3"', score="-Infinity"),
        cli_line("9" * 4400), cli_line('"5"', text=r'"\udc00"'), cli_line('"1"', docid='"c"'),
        cli_line('"6"')]) + "\n")
    base = ["run", path, "--model", "m", "--base-url", server.base_url, "--no-cache",
            "--skip-bad-lines"]
    skipped = run_cli(*base, "-o", tmp_path / "a.jsonl", "--trec", tmp_path / "a.trec")
    assert skipped.returncode == 0 and not error_lines(skipped), skipped.stderr
    reported = [line for line in skipped.stderr.splitlines() if line.startswith("rerank: skipped:")]
    fields = ["query.qid", "candidates[0].score", "query.qid", "query.text", "query.qid"]
    assert len(reported) == len(fields)
    for number, (line, field) in enumerate(zip(reported, fields), start=2):
        assert line.startswith(f"rerank: skipped: {path}:{number}: field '{field}': "), line
        assert line.isprintable()
    assert [json.loads(line)["query"]["qid"]
            for line in (tmp_path / "a.jsonl").read_text().splitlines()] == ["1", "6"]
    kept = run_cli(*base, "--keep-duplicate-qids", "-o", tmp_path / "b.jsonl",
                   "--trec", tmp_path / "b.trec")
    assert kept.returncode == 0, kept.stderr
    results = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["query"]["qid"] for r in results] == ["1", "1", "6"]
    assert [r["candidates"][0]["docid"] for r in results][:2] == ["a", "c"]
    # The run holds qid 1's first result only, so eval and compare read it.
    trec = (tmp_path / "b.trec").read_text().splitlines()
    assert [line.split()[:3] for line in trec] == [["1", "Q0", "a"], ["1", "Q0", "b"],
                                                   ["6", "Q0", "a"], ["6", "Q0", "b"]]
    qrels = write(tmp_path / "qrels", "1 0 a 1\n6 0 b 2\n")
    evaluation = run_cli("eval", tmp_path / "b.trec", "--qrels", qrels, "--metrics", "P@1")
    assert evaluation.returncode == 0 and "Traceback" not in evaluation.stderr, evaluation.stderr


@pytest.mark.parametrize(("run", "qrels", "bad", "field", "code"), [
    ("q1 Q0 a 1 inf r\n", "q1 0 a 1\n", "run", "score", 16),
    ("q1 Q0 a 1 nan r\n", "q1 0 a 1\n", "run", "score", 16),
    ("q1 Q0 a " + "1" * 5000 + " 2 r\n", "q1 0 a 1\n", "run", "rank", 16),
    ("q1 Q0 a\u200b 1 2 r\n", "q1 0 a 1\n", "run", "docid", 20),
    ("q1 Q0 a 1 2 r\n", "q1 0 a " + "1" * 5000 + "\n", "qrels", "grade", 16),
    ("q1 Q0 a 1 2 r\n", "q1 0 a 9999999999\n", "qrels", "grade", 16),
    ("q1 Q0 a 1 2 r\n", "q\x001 0 a 1\n", "qrels", "qid", 20),
])
def test_cli_eval_and_compare_report_bad_runs_and_qrels(tmp_path, run, qrels, bad, field, code):
    paths = {"run": write(tmp_path / "run.trec", run), "qrels": write(tmp_path / "qrels", qrels)}
    for command in (["eval", paths["run"]], ["compare", paths["run"], paths["run"]]):
        proc = run_cli(*command, "--qrels", paths["qrels"], "--metrics", "nDCG@10")
        assert proc.returncode == code, proc.stderr
        lines = error_lines(proc)
        assert len(lines) == 1 and lines[0].startswith(
            f"rerank: error: {paths[bad]}:1: field '{field}': "), lines
        assert lines[0].isprintable() and len(lines[0]) < 400


# ---------------------------------------------------------------- --skip-bad-lines


def corrupted_rankllm(tmp_path: Path) -> Path:
    lines = [request_line(str(i), docids=(f"d{i}a", f"d{i}b")).encode() for i in range(1, 11)]
    lines[3] = lines[3][: len(lines[3]) // 2]  # line 4 truncated in the middle
    lines[6] = b"\x00\xff\xfe garbage {{{ \x80"  # line 7 garbage bytes
    return write(tmp_path / "cands.jsonl", b"\n".join(lines) + b"\n")


def test_corrupted_candidates_stop_with_the_line_number(tmp_path):
    path = corrupted_rankllm(tmp_path)
    with pytest.raises(InputError) as exc:
        list(read_requests(path))
    assert exc.value.line == 4 and f"{path}:4:" in str(exc.value)
    assert exc.value.exit_code == InvalidJSON.exit_code


def test_corrupted_candidates_skip_bad_lines(tmp_path):
    path = corrupted_rankllm(tmp_path)
    errors: list[InputError] = []
    requests = list(read_requests(path, on_bad_line=errors.append))
    assert [r.query.qid for r in requests] == ["1", "2", "3", "5", "6", "8", "9", "10"]
    assert [e.line for e in errors] == [4, 7]
    assert all(str(e).startswith(f"{path}:{e.line}: ") for e in errors)
    assert [type(e) for e in errors] == [InvalidJSON, NotUTF8]


def test_skip_bad_lines_skips_unrerankable_requests(tmp_path):
    path = write(tmp_path / "in.jsonl", "\n".join([
        request_line("1"), request_line("2", docids=()), request_line("3", docids=("a", "a")),
        request_line("4", doc=""), request_line("5")]) + "\n")
    errors: list[InputError] = []
    assert [r.query.qid for r in read_requests(path, on_bad_line=errors.append)] == ["1", "5"]
    assert [(type(e), e.line) for e in errors] == [(NoCandidates, 2), (DuplicateId, 3),
                                                   (EmptyPassage, 4)]


@pytest.mark.parametrize("chunk_size_hint", ["small", "indented"])
def test_rankgpt_broken_element_is_skipped(tmp_path, chunk_size_hint):
    entries = [json.dumps(rankgpt_entry(str(i)), indent=1 if chunk_size_hint == "indented"
                          else None) for i in range(1, 7)]
    entries[2] = entries[2][: len(entries[2]) // 2]  # truncated element 2 (qid 3)
    entries[4] = '{"query": "q", "hits": [}'  # garbled element 4 (qid 5)
    path = write(tmp_path / "in.json", "[\n" + ",\n".join(entries) + "\n]\n")
    with pytest.raises(InvalidJSON):
        list(read_requests(path))
    errors: list[InputError] = []
    requests = list(read_requests(path, on_bad_line=errors.append))
    assert [r.query.qid for r in requests] == ["1", "2", "4", "6"]
    assert len(errors) == 2 and all(isinstance(e, InvalidJSON) for e in errors)
    assert all(e.path == str(path) and e.line is not None for e in errors)


def test_rankgpt_recovery_over_small_chunks(tmp_path):
    from rerank.formats import read_rankgpt
    entries = [json.dumps(rankgpt_entry(str(i))) for i in range(1, 5)]
    entries[1] = "{garbage, {nested: ,"
    path = write(tmp_path / "in.json", "[" + ",   \n  ".join(entries) + "]")
    for chunk_size in (1, 3, 7, 65536):
        errors: list[InputError] = []
        qids = [r.query.qid for r in read_rankgpt(path, chunk_size=chunk_size,
                                                   on_bad_line=errors.append)]
        assert qids == ["1", "3", "4"] and len(errors) == 1, chunk_size


def test_rankgpt_truncated_file_reports_and_ends(tmp_path):
    text = json.dumps([rankgpt_entry("1"), rankgpt_entry("2")])
    path = write(tmp_path / "in.json", text[: len(text) - 20])
    errors: list[InputError] = []
    assert [r.query.qid for r in read_requests(path, on_bad_line=errors.append)] == ["1"]
    assert len(errors) == 1


def test_skip_bad_lines_in_qrels_and_run(tmp_path):
    qrels = write(tmp_path / "qrels", b"q1 0 d1 1\nq1 0 d2\nq1 0 d3 x\n\xff\xfe\nq2 0 d1 2\n")
    errors: list[InputError] = []
    assert read_qrels(qrels, on_bad_line=errors.append) == {"q1": {"d1": 1}, "q2": {"d1": 2}}
    assert [(type(e), e.line) for e in errors] == [(BadLine, 2), (BadLine, 3), (NotUTF8, 4)]
    run = write(tmp_path / "run", "q1 Q0 d1 1 2 r\nbroken\nq1 Q0 d2 2 1 r\n")
    errors = []
    assert list(read_run(run, on_bad_line=errors.append)) == [("q1", [("d1", 2.0), ("d2", 1.0)])]
    assert [e.line for e in errors] == [2]


# ---------------------------------------------------------------- nasty values, every field

HUGE = "1" * 5000  # past Python's 4300-digit int-string conversion limit
# JSON number literals that are not sane numbers, and other tokens of the wrong type.
BAD_NUMBERS = [HUGE, "-" + "9" * 4400, "1" * 400, "1e999", "-1e999", "NaN", "Infinity",
               "-Infinity", "1.5", "-0.0", "true", "null", "[]", "{}"]
# Characters that are refused in ids (and lone surrogates, refused in any text).
BAD_CHARS = ["\ud800", "\udfff", "\x00", "\x07", "\x1c", "\x1f", "\x7f", "\x85", "\x9f",
             "\u2028", "\u2029", "\xa0", "\u3000", "\u200b", "\u200d", "\ufeff", "\t", " ", "\n"]
BAD_STRINGS = st.text(alphabet=st.sampled_from(BAD_CHARS + ["a", "1", "é"]), max_size=4)
# A JSON token: a bad number, or a string with bad characters, escaped or raw (a raw lone
# surrogate is written with "surrogatepass", so the file is not UTF-8 there).
NASTY_JSON = (st.sampled_from(BAD_NUMBERS)
              | BAD_STRINGS.map(json.dumps)
              | BAD_STRINGS.map(lambda text: json.dumps(text, ensure_ascii=False)))


def sometimes(good: st.SearchStrategy, nasty: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly ``good`` (so that some requests survive), one time in six ``nasty``."""
    return st.integers(min_value=0, max_value=5).flatmap(lambda i: nasty if i == 5 else good)


JSON_IDS = sometimes(st.sampled_from(['"1"', '"2"', "1", '"d1"', '"d2"', "7"]), NASTY_JSON)
JSON_TEXTS = sometimes(st.sampled_from(['"text"', '"passage [1]"']), NASTY_JSON)
JSON_SCORES = sometimes(st.sampled_from(["1.5", "-3", "null", "0"]), NASTY_JSON)
# A column of a text file (TREC run, qrels, TSV).
NASTY_COLUMN = (st.sampled_from([HUGE, "-" + HUGE, "inf", "-inf", "nan", "NaN", "Infinity", "1e999",
                                 "1_0", "\u0663", "2147483648", "+1", "-1", "1.5", ".5", "0x1"])
                | BAD_STRINGS)
ID_COLUMN = sometimes(st.sampled_from(["1", "2", "d1", "d2"]), NASTY_COLUMN)
INT_COLUMN = sometimes(st.sampled_from(["1", "2", "0"]), NASTY_COLUMN)
SCORE_COLUMN = sometimes(st.sampled_from(["1.5", "-2", "3e2"]), NASTY_COLUMN)
TEXT_COLUMN = sometimes(st.sampled_from(["text", "a passage"]), BAD_STRINGS)


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@st.composite
def rankllm_files(draw):
    """rank_llm JSONL whose every field may hold a nasty value; qids often repeat."""
    lines = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        candidates = []
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            if draw(st.booleans()):
                doc = draw(JSON_TEXTS)
            else:
                title = draw(st.none() | JSON_TEXTS)
                doc = '{"contents": %s%s}' % (draw(JSON_TEXTS),
                                              "" if title is None else ', "title": ' + title)
            candidates.append('{"docid": %s, "score": %s, "doc": %s}'
                              % (draw(JSON_IDS), draw(JSON_SCORES), doc))
        lines.append('{"query": {"qid": %s, "text": %s}, "candidates": [%s]}'
                     % (draw(JSON_IDS), draw(JSON_TEXTS), ", ".join(candidates)))
    return "\n".join(lines) + "\n"


@st.composite
def rankgpt_files(draw):
    """A RankGPT list whose every field (query, entry qid, hit qid, docid, content, title,
    score, rank) may hold a nasty value."""
    entries = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        qid = draw(JSON_IDS)
        hits = []
        for rank in range(draw(st.integers(min_value=0, max_value=2))):
            title = draw(st.none() | JSON_TEXTS)
            hits.append('{"content": %s, "qid": %s, "docid": %s, "rank": %s, "score": %s%s}' % (
                draw(JSON_TEXTS), draw(sometimes(st.just(qid), JSON_IDS)), draw(JSON_IDS),
                draw(sometimes(st.just(str(rank + 1)), NASTY_JSON)), draw(JSON_SCORES),
                "" if title is None else ', "title": ' + title))
        entry_qid = draw(st.none() | st.just(qid) | sometimes(st.just(qid), JSON_IDS))
        entries.append('{"query": %s, %s"hits": [%s]}' % (
            draw(JSON_TEXTS), "" if entry_qid is None else f'"qid": {entry_qid}, ',
            ",\n ".join(hits)))
    return "[\n" + ",\n".join(entries) + "\n]\n"


@st.composite
def trec_files(draw):
    """A TREC run with its corpus (JSON lines or TSV), queries (TSV or JSON lines) and qrels,
    every column or field of which may hold a nasty value."""
    run = "".join(f"{draw(ID_COLUMN)} Q0 {draw(ID_COLUMN)} {draw(INT_COLUMN)}"
                  f" {draw(SCORE_COLUMN)} tag\n"
                  for _ in range(draw(st.integers(min_value=1, max_value=4))))
    qrels = "".join(f"{draw(ID_COLUMN)} 0 {draw(ID_COLUMN)} {draw(INT_COLUMN)}\n"
                    for _ in range(draw(st.integers(min_value=1, max_value=3))))
    ids = ["1", "2", "d1", "d2"]
    if draw(st.booleans()):
        corpus = "".join('{"_id": %s, "title": %s, "text": %s}\n'
                         % (draw(sometimes(st.just(f'"{i}"'), JSON_IDS)),
                            draw(JSON_TEXTS), draw(JSON_TEXTS)) for i in ids)
    else:
        corpus = "".join(f"{draw(sometimes(st.just(i), ID_COLUMN))}\t{draw(TEXT_COLUMN)}\n"
                         for i in ids)
    if draw(st.booleans()):
        queries = "".join(f"{draw(sometimes(st.just(i), ID_COLUMN))}\t{draw(TEXT_COLUMN)}\n"
                          for i in ids)
    else:
        queries = "".join('{"_id": %s, "text": %s}\n'
                          % (draw(sometimes(st.just(f'"{i}"'), JSON_IDS)), draw(JSON_TEXTS))
                          for i in ids)
    return run, corpus, queries, qrels


def check_message(error: Exception) -> None:
    """An error the CLI prints: an InputError (or ConfigError), one printable line."""
    assert isinstance(error, (InputError, ConfigError)), repr(error)
    text = str(error)
    assert text and text.isprintable(), ascii(text)


def read_both_ways(tmp_path: Path, read) -> tuple[list | None, list]:
    """Read strictly and with on_bad_line; check that every outcome is clean.

    Returns the strict result (None when it stopped with an error) and the lenient one.
    """
    try:
        strict = read(None)
    except Exception as error:  # noqa: BLE001 - any other exception fails check_message
        check_message(error)
        strict = None
    errors: list[InputError] = []
    try:
        lenient = read(errors.append)
    except Exception as error:  # noqa: BLE001 - a whole-file error still stops reading
        check_message(error)
        lenient = []
    for error in errors:
        check_message(error)
        assert isinstance(error, InputError) and error.line is not None
    if strict is not None:
        assert not errors and lenient == strict
    return strict, lenient


def assert_writable(tmp_path: Path, requests: list) -> None:
    """Every request a reader gives is clean: sane ids, UTF-8 texts, finite scores; it writes
    and reads back unchanged, and its TREC run reads back."""
    for request in requests:
        for ident in [request.query.qid, *(c.docid for c in request.candidates)]:
            assert parse_id(ident, "f", 1, "id") == ident
            print(ident, file=open(tmp_path / "printed", "w", encoding="utf-8"))
        for text in [request.query.text, *(c.text for c in request.candidates),
                     *(c.title for c in request.candidates if c.title is not None)]:
            text.encode("utf-8")
        assert all(c.score is None or math.isfinite(c.score) for c in request.candidates)
    with RankLLMWriter(tmp_path / "out.jsonl") as jsonl, \
            TrecRunWriter(tmp_path / "out.trec") as trec:
        for request in requests:
            jsonl.write(Result(request.query, request.candidates))
            trec.write(Result(request.query, request.candidates))
    assert list(read_rankllm(tmp_path / "out.jsonl")) == requests
    assert [qid for qid, _ in read_run(tmp_path / "out.trec")] == list(dict.fromkeys(
        request.query.qid for request in requests if request.candidates))


@FUZZ
@given(content=rankllm_files() | rankgpt_files(), keep=st.booleans())
def test_fuzz_nasty_values_in_request_files(tmp_path, content, keep):
    path = write(tmp_path / "in.json", encode(content))
    strict, lenient = read_both_ways(tmp_path, lambda on_bad: list(read_requests(
        path, on_bad_line=on_bad, keep_duplicate_qids=keep)))
    assert_writable(tmp_path, lenient)
    qids = [request.query.qid for request in lenient]
    assert keep or len(set(qids)) == len(qids)


@FUZZ
@given(files=trec_files())
def test_fuzz_nasty_values_in_trec_corpus_queries_and_qrels(tmp_path, files):
    run, corpus, queries, qrels = (write(tmp_path / name, encode(text)) for name, text in
                                   zip(("run", "corpus", "queries", "qrels"), files))
    _, requests = read_both_ways(tmp_path, lambda on_bad: list(read_requests(
        run, fmt="trec", corpus=corpus, queries=queries, on_bad_line=on_bad)))
    assert_writable(tmp_path, requests)
    _, judged = read_both_ways(tmp_path, lambda on_bad: read_qrels(qrels, on_bad_line=on_bad))
    for qid, grades in dict(judged).items():
        assert parse_id(qid, "f", 1, "qid") == qid
        assert all(parse_id(d, "f", 1, "docid") == d and abs(g) < 2**31 for d, g in grades.items())
    for path, read in ((run, read_run), (corpus, read_corpus), (queries, read_queries)):
        read_both_ways(tmp_path, lambda on_bad: (lambda r: r if isinstance(r, dict) else list(r))(
            read(path, on_bad_line=on_bad)))


# ---------------------------------------------------------------- fuzz

PLACEHOLDERS = {"@HUGE@": HUGE, "@-HUGE@": "-" + HUGE, "@INF@": "1e999", "@-INF@": "-1e999",
                "@NAN@": "NaN", "@INFINITY@": "Infinity", "@-INFINITY@": "-Infinity"}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10)
    | BAD_STRINGS | st.sampled_from(list(PLACEHOLDERS)),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["query", "qid", "text", "candidates", "docid", "doc",
                                       "contents", "hits", "content", "_id", "title", "score",
                                       "rank", "segment", "id"])
                      | st.text(max_size=5), children, max_size=5),
    max_leaves=20)


def dumps(value) -> str:
    """JSON text, with the placeholders replaced by literals json.dumps cannot write."""
    text = json.dumps(value)
    for placeholder, literal in PLACEHOLDERS.items():
        text = text.replace(json.dumps(placeholder), literal)
    return text


def outcome(read, path) -> None:
    """Read fully; the only outcomes allowed are a result or a clear error."""
    try:
        result = read(path)
        if not isinstance(result, dict):
            list(result)
    except Exception as error:  # noqa: BLE001 - check_message fails on anything else
        check_message(error)


def report(error: InputError) -> None:
    check_message(error)


READERS = [read_requests, read_qrels, lambda p: read_run(p), read_corpus, read_queries,
           lambda p: read_requests(p, on_bad_line=report),
           lambda p: read_requests(p, on_bad_line=report, keep_duplicate_qids=True),
           lambda p: read_qrels(p, on_bad_line=report),
           lambda p: read_run(p, on_bad_line=report),
           lambda p: read_corpus(p, on_bad_line=report),
           lambda p: read_queries(p, on_bad_line=report)]


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_random_bytes(tmp_path, data):
    path = write(tmp_path / "fuzz.bin", data)
    for read in READERS:
        outcome(read, path)


@FUZZ
@given(value=JSON, lines=st.booleans())
def test_fuzz_random_json(tmp_path, value, lines):
    if lines and isinstance(value, list):
        content = "\n".join(dumps(item) for item in value)
    else:
        content = dumps(value)
    path = write(tmp_path / "fuzz.json", content)
    for read in READERS:
        outcome(read, path)


JUNK = (st.binary(max_size=8)
        | st.sampled_from(BAD_NUMBERS + ["inf", "nan", "1_0", "\u0663"]).map(encode)
        | BAD_STRINGS.map(encode) | BAD_STRINGS.map(json.dumps).map(encode))


@FUZZ
@given(cut=st.integers(min_value=0, max_value=400), junk=JUNK)
def test_fuzz_damaged_real_files(tmp_path, cut, junk):
    """A valid file of each format cut and spliced with junk (bytes, a huge or non-finite
    number, a string with control characters or lone surrogates) reads or fails cleanly."""
    good_lines = "\n".join(request_line(str(i)) for i in range(3)).encode()
    good_list = json.dumps([rankgpt_entry(str(i)) for i in range(3)]).encode()
    good_run = b"".join(b"q%d Q0 d%d %d %d.5 run\n" % (q, d, d, 9 - d)
                        for q in range(2) for d in range(3))
    good_qrels = b"q0 0 d0 2\nq0 0 d1 0\nq1 0 d2 1\n"
    good_corpus = "\n".join(json.dumps({"_id": f"d{i}", "title": "t", "text": "x"})
                            for i in range(3)).encode()
    good_tsv = b"q0\tfirst\nq1\tsecond\n"
    for good in (good_lines, good_list, good_run, good_qrels, good_corpus, good_tsv):
        at = cut % (len(good) + 1)
        path = write(tmp_path / "damaged", good[:at] + junk + good[at:])
        for read in READERS:
            outcome(read, path)
