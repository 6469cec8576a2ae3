"""Bad input: each user mistake is one InputError naming file, line and field, with its own
exit code; with ``on_bad_line`` (``--skip-bad-lines``) bad requests are reported and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rerank.errors import (BadLine, ConfigError, DuplicateId, EmptyPassage, InputError,
                           InvalidJSON, MissingField, NoCandidates, NotUTF8, UnknownId,
                           UnreadableFile)
from rerank.formats import read_corpus, read_qrels, read_queries, read_requests, read_run

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
    codes = [cls.exit_code for cls in (InvalidJSON, MissingField, NoCandidates, DuplicateId,
                                       EmptyPassage, NotUTF8, BadLine, UnreadableFile,
                                       UnknownId)]
    assert codes == list(range(10, 19))
    assert ConfigError.exit_code == 2 and InputError.exit_code == 2
    assert len({cls.kind for cls in (InvalidJSON, MissingField, NoCandidates, DuplicateId,
                                     EmptyPassage, NotUTF8, BadLine, UnreadableFile,
                                     UnknownId)}) == 9


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
    assert "\n" not in str(error)


@pytest.mark.parametrize(("entry", "cls", "field"), [
    ({"query": "q", "hits": []}, NoCandidates, "[1].hits"),
    ({"query": "q", "qid": 3, "hits": []}, NoCandidates, "[1].hits"),
    (rankgpt_entry("2", ("a", "a")), DuplicateId, "[1].hits[1].docid"),
    ({"query": "", "hits": rankgpt_entry("2")["hits"]}, MissingField, "[1].query"),
    ({"query": "q", "hits": [{"qid": 2, "docid": "a", "content": ""}]}, EmptyPassage,
     "[1].hits[0].content"),
    ({"hits": []}, MissingField, "[1].query"),
])
def test_rankgpt_mistakes(tmp_path, entry, cls, field):
    path = write(tmp_path / "in.json",
                 "[\n" + json.dumps(rankgpt_entry("1")) + ",\n" + json.dumps(entry) + "\n]\n")
    with pytest.raises(cls) as exc:
        list(read_requests(path))
    assert (exc.value.line, exc.value.field) == (3, field)


@pytest.mark.parametrize(("reader", "content", "cls", "field"), [
    (read_qrels, "q1 0 d1\n", BadLine, "grade"),
    (read_qrels, "q1 0 d1 high\n", BadLine, "grade"),
    (read_run, "q1 Q0 d1 1 2.0\n", BadLine, "tag"),
    (read_run, "q1 Q0 d1 one 2.0 run\n", BadLine, "rank"),
    (read_run, "q1 Q0 d1 1 2.0 run\nq1 Q0 d1 2 1.0 run\n", DuplicateId, "docid"),
    (read_queries, "q1\tone\nq1\ttwo\n", DuplicateId, "qid"),
    (read_corpus, '{"_id": "d"}\n', MissingField, "text"),
])
def test_line_file_mistakes(tmp_path, reader, content, cls, field):
    path = write(tmp_path / "f.txt", content)
    with pytest.raises(cls) as exc:
        result = reader(path)
        list(result) if not isinstance(result, dict) else None
    assert exc.value.field == field and exc.value.line is not None
    assert str(exc.value).startswith(f"{path}:{exc.value.line}: ")


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(UnreadableFile) as exc:
        list(read_requests(tmp_path / "nope.jsonl"))
    assert exc.value.exit_code == 17 and str(tmp_path / "nope.jsonl") in str(exc.value)
    with pytest.raises(InvalidJSON):
        list(read_requests(write(tmp_path / "x.txt", "hello world\n")))
    with pytest.raises(ConfigError):
        read_requests(write(tmp_path / "y.jsonl", GOOD), fmt="csv")


def test_run_with_unknown_ids(tmp_path):
    run = write(tmp_path / "run", "q1 Q0 d1 1 2.0 r\nq2 Q0 dX 1 2.0 r\nq3 Q0 d1 1 1.0 r\n")
    corpus = write(tmp_path / "corpus.tsv", "d1\tpassage one\n")
    queries = write(tmp_path / "queries.tsv", "q1\tone\nq2\ttwo\n")
    with pytest.raises(UnknownId) as exc:
        list(read_requests(run, corpus=corpus, queries=queries))
    assert (exc.value.line, exc.value.field) == (2, "docid")
    errors: list[InputError] = []
    requests = list(read_requests(run, corpus=corpus, queries=queries, on_bad_line=errors.append))
    assert [r.query.qid for r in requests] == ["q1"]
    assert [(type(e), e.line) for e in errors] == [(UnknownId, 2), (UnknownId, 3)]


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


# ---------------------------------------------------------------- fuzz

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["query", "qid", "text", "candidates", "docid", "doc",
                                       "contents", "hits", "content", "_id", "title", "score"])
                      | st.text(max_size=5), children, max_size=5),
    max_leaves=20)


def outcome(read, path) -> None:
    """Read fully; the only outcomes allowed are a result or a clear error."""
    try:
        result = read(path)
        if not isinstance(result, dict):
            list(result)
    except (InputError, ConfigError) as error:
        text = str(error)
        assert text and "\n" not in text


READERS = [read_requests, read_qrels, lambda p: read_run(p), read_corpus, read_queries,
           lambda p: read_requests(p, on_bad_line=lambda e: None),
           lambda p: read_qrels(p, on_bad_line=lambda e: None)]


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
        content = "\n".join(json.dumps(item) for item in value)
    else:
        content = json.dumps(value)
    path = write(tmp_path / "fuzz.json", content)
    for read in READERS:
        outcome(read, path)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=400), junk=st.binary(max_size=8))
def test_fuzz_damaged_real_files(tmp_path, cut, junk):
    """A valid rank_llm or RankGPT file cut and spliced with junk reads or fails cleanly."""
    good_lines = "\n".join(request_line(str(i)) for i in range(3)).encode()
    good_list = json.dumps([rankgpt_entry(str(i)) for i in range(3)]).encode()
    for good in (good_lines, good_list):
        at = cut % (len(good) + 1)
        path = write(tmp_path / "damaged", good[:at] + junk + good[at:])
        for read in READERS:
            outcome(read, path)
