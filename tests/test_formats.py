"""Tests of rerank.formats: reading, writing, round trips, detection and error reporting."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rerank.errors import (ConfigError, DuplicateId, InputError, InvalidId, InvalidJSON,
                           InvalidText)
from rerank.formats import (
    RankLLMWriter,
    TrecRunWriter,
    detect_format,
    read_corpus,
    read_qrels,
    read_queries,
    read_rankgpt,
    read_rankllm,
    read_requests,
    read_run,
    read_run_requests,
)
from rerank.formats.fields import parse_id, parse_score
from rerank.formats.jsonvalues import HugeInt, load_json_line
from rerank.types import Candidate, Query, Request, Result

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

HYPOTHESIS = settings(max_examples=100, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def write(path: Path, content: str | bytes) -> Path:
    """Write a test file, bytes as they are, text as UTF-8."""
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def raises_input_error(read: Callable[[], object], path: Path, line: int | None,
                       field: str | None, cls: type[InputError] = InputError) -> InputError:
    """Check that ``read()`` raises an InputError (``cls``) naming the file, line and field."""
    with pytest.raises(cls) as exc:
        read()
    error = exc.value
    assert error.path == str(path)
    assert error.line == line
    assert error.field == field
    text = str(error)
    expected = str(path) + (f":{line}" if line is not None else "")
    assert text.startswith(expected + ": ")
    if field is not None:
        assert f"field '{field}'" in text
    return error


def check_bad_last_line(path: Path, read: Callable[[Path], object], good: str, line: str,
                        field: str) -> None:
    """A bad line after ``good`` ones is reported by number and field, in one short line."""
    write(path, f"{good}{line}\n")
    error = raises_input_error(lambda: list(read(path)), path, good.count("\n") + 1, field)
    assert str(error).isprintable() and len(str(error)) < 300


# ---------------------------------------------------------------- rank_llm JSONL


def test_read_rankllm_fixture():
    requests = list(read_rankllm(FIXTURES / "requests.rankllm.jsonl"))
    assert requests == [
        Request(Query(qid="19335", text="what is a flea"), [
            Candidate("7", "A flea is an insect.", "Flea", 12.5),
            Candidate("d2", "Fleas jump.", None, 3.0),
            Candidate("d3", "Segmented text.", None, None),
        ]),
        Request(Query(qid="q2", text="second query"), [Candidate("d9", "plain string passage")]),
    ]
    assert isinstance(requests[0].candidates[1].score, float)


def test_rankllm_round_trip(tmp_path):
    results = [
        Result(Query(qid="1", text='quotes " and \\ and\nnewline'), [
            Candidate("b", "text b", "Title B", 2.0),
            Candidate("a", "text [a] {x}", None, 1.5),
        ]),
        Result(Query(qid="q-é", text="ünïcödé ☃ \u2028"), []),
    ]
    path = tmp_path / "out.jsonl"
    with RankLLMWriter(path) as writer:
        for result in results:
            writer.write(result)
    back = list(read_rankllm(path))
    assert back == [Request(result.query, result.candidates) for result in results]
    assert path.read_text(encoding="utf-8").count("\n") == len(results)


def test_rankllm_writer_flushes_each_line(tmp_path):
    path = tmp_path / "out.jsonl"
    with RankLLMWriter(path) as writer:
        writer.write(Result(Query(qid="q", text="t"), [Candidate("d", "x", score=1.0)]))
        assert len(list(read_rankllm(path))) == 1


def test_rankllm_writer_keeps_lone_surrogates(tmp_path):
    """The writer keeps a lone surrogate as an escape; reading it back refuses it cleanly."""
    result = Result(Query(qid="q", text="bad \ud800 half"), [Candidate("d", "x\udfff", score=0.5)])
    path = tmp_path / "out.jsonl"
    with RankLLMWriter(path) as writer:
        writer.write(result)
    line = path.read_bytes()
    assert b"\\ud800" in line and b"\\udfff" in line and line.isascii()
    assert json.loads(line)["query"]["text"] == "bad \ud800 half"
    error = raises_input_error(lambda: list(read_rankllm(path)), path, 1, "query.text", InvalidText)
    assert str(error).isprintable() and "\\ud800" in str(error)


GOOD_CANDIDATE = {"docid": "d", "doc": {"contents": "x"}}
GOOD_QUERY = {"qid": "q", "text": "t"}


@pytest.mark.parametrize(("record", "field"), [
    ([1, 2], None),
    ({"candidates": []}, "query"),
    ({"query": "text only", "candidates": []}, "query"),
    ({"query": {"text": "t"}, "candidates": []}, "query.qid"),
    ({"query": {"qid": "q"}, "candidates": []}, "query.text"),
    ({"query": {"qid": 1.5, "text": "t"}, "candidates": []}, "query.qid"),
    ({"query": {"qid": "", "text": "t"}, "candidates": []}, "query.qid"),
    ({"query": {"qid": True, "text": "t"}, "candidates": []}, "query.qid"),
    ({"query": {"qid": "q", "text": 3}, "candidates": []}, "query.text"),
    ({"query": GOOD_QUERY}, "candidates"),
    ({"query": GOOD_QUERY, "candidates": {}}, "candidates"),
    ({"query": GOOD_QUERY, "candidates": [GOOD_CANDIDATE, "d"]}, "candidates[1]"),
    ({"query": GOOD_QUERY, "candidates": [GOOD_CANDIDATE, {"doc": "x"}]}, "candidates[1].docid"),
    ({"query": GOOD_QUERY, "candidates": [{"docid": None, "doc": "x"}]}, "candidates[0].docid"),
    ({"query": GOOD_QUERY, "candidates": [{"docid": "d"}]}, "candidates[0].doc"),
    ({"query": GOOD_QUERY, "candidates": [{"docid": "d", "doc": ["x"]}]}, "candidates[0].doc"),
    ({"query": GOOD_QUERY, "candidates": [{"docid": "d", "doc": {"title": "t"}}]},
     "candidates[0].doc"),
    ({"query": GOOD_QUERY, "candidates": [{"docid": "d", "doc": {"contents": 5}}]},
     "candidates[0].doc.contents"),
    ({"query": GOOD_QUERY, "candidates": [{"docid": "d", "doc": {"text": "x", "title": 1}}]},
     "candidates[0].doc.title"),
    ({"query": GOOD_QUERY, "candidates": [GOOD_CANDIDATE, GOOD_CANDIDATE,
                                          dict(GOOD_CANDIDATE, score="high")]},
     "candidates[2].score"),
    ({"query": GOOD_QUERY, "candidates": [dict(GOOD_CANDIDATE, score=False)]},
     "candidates[0].score"),
])
def test_rankllm_errors_name_file_line_and_field(tmp_path, record, field):
    good = json.dumps({"query": GOOD_QUERY, "candidates": [GOOD_CANDIDATE]})
    path = write(tmp_path / "in.jsonl", f"{good}\n\n{json.dumps(record)}\n{good}\n")
    requests = read_rankllm(path)
    assert next(requests).query.qid == "q"
    raises_input_error(lambda: next(requests), path, 3, field)


# ---------------------------------------------------------------- field checks

@pytest.mark.parametrize(("value", "expected"), [
    ("d1", "d1"), ("é-☃_😀.[1]", "é-☃_😀.[1]"), (7, "7"), (-12, "-12"), (0, "0"),
    (10**99, str(10**99)), ("\ue000", "\ue000"),  # a private-use character is visible enough
])
def test_parse_id_accepts(value, expected):
    assert parse_id(value, "f", 1, "qid") == expected


@pytest.mark.parametrize("value", [
    "a b", "a\tb", "a\nb", "a\rb", "a\x0bb", "a\x0cb", "a\x1cb", "a\x1db", "a\x1eb", "a\x1fb",
    "a\x85b", "a\xa0b", "a\u1680b", "a\u2000b", "a\u2028b", "a\u2029b", "a\u202fb", "a\u3000b",
    "a\x00b", "a\x07b", "a\x7fb", "a\x9fb", "a\u200bb", "a\u200db", "\ufeffa", "a\u2060",
    "a\u00adb", "\ud800", "a\udfffb", " a", "a ", 10**100, -10**100,
    pytest.param(10**5000, id="10**5000"),
])
def test_parse_id_refuses_what_a_run_cannot_hold(value):
    with pytest.raises(InvalidId) as exc:
        parse_id(value, "f", 3, "docid")
    message = str(exc.value)
    assert message.startswith("f:3: field 'docid': ") and message.isprintable()
    assert len(message) < 300


@pytest.mark.parametrize("value", [1.5, float("inf"), float("nan"), True, None, [], {}, ""])
def test_parse_id_refuses_other_types(value):
    with pytest.raises(InvalidJSON):
        parse_id(value, "f", 1, "qid")


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (1, 1.0), (-2.5, -2.5), (10**300, 1e300),
    (1.7976931348623157e308, 1.7976931348623157e308),
])
def test_parse_score_accepts(value, expected):
    assert parse_score(value, "f", 1, "score") == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 10**400, True, "1",
                                   HugeInt(5000)])
def test_parse_score_refuses(value):
    with pytest.raises(InvalidJSON) as exc:
        parse_score(value, "f", 1, "score")
    assert str(exc.value).isprintable()


def test_huge_integers_are_read_and_refused_where_used(tmp_path):
    huge = "1" * 5000
    assert isinstance(load_json_line(f'{{"rank": {huge}}}', "f", 1)["rank"], HugeInt)
    assert isinstance(load_json_line(f'[-{huge}]', "f", 1)[0], HugeInt)
    assert load_json_line("[12, -3]", "f", 1) == [12, -3]
    # An unused field may hold one; RankGPT's rank is not read.
    entry = {"query": "q", "hits": [{"qid": 1, "docid": "a", "content": "c", "rank": 0}]}
    path = write(tmp_path / "in.json", json.dumps([entry]).replace('"rank": 0', f'"rank": {huge}'))
    for chunk_size in (7, 65536):
        assert [r.query.qid for r in read_rankgpt(path, chunk_size=chunk_size)] == ["1"]
    text = json.dumps({"query": GOOD_QUERY, "candidates": [GOOD_CANDIDATE]})
    path = write(tmp_path / "in.jsonl", text.replace('"t"', f'"t", "n": {huge}'))
    assert len(list(read_rankllm(path))) == 1


@pytest.mark.parametrize("fmt", ["rankllm", "rankgpt"])
def test_duplicate_qids(tmp_path, fmt):
    qids = ["1", "2", "1", "3", "2"]
    if fmt == "rankllm":
        path = write(tmp_path / "in.jsonl", "".join(
            json.dumps({"query": {"qid": qid, "text": "t"}, "candidates": [GOOD_CANDIDATE]}) + "\n"
            for qid in qids))
        lines, field = [1, 2, 3, 4, 5], "query.qid"
    else:
        path = write(tmp_path / "in.json", "[\n" + ",\n".join(
            json.dumps({"query": "t", "hits": [{"qid": qid, "docid": "d", "content": "x"}]})
            for qid in qids) + "\n]\n")
        lines, field = [2, 3, 4, 5, 6], "[2].hits[0].qid"
    error = raises_input_error(lambda: list(read_requests(path)), path, lines[2], field,
                               DuplicateId)
    assert f"first on line {lines[0]}" in str(error)
    errors: list[InputError] = []
    assert [r.query.qid for r in read_requests(path, on_bad_line=errors.append)] == ["1", "2", "3"]
    assert [(type(e), e.line) for e in errors] == [(DuplicateId, lines[2]), (DuplicateId, lines[4])]
    kept = [r.query.qid for r in read_requests(path, keep_duplicate_qids=True)]
    assert kept == qids
    # Without validation (the plain readers) nothing is checked.
    reader = read_rankllm if fmt == "rankllm" else read_rankgpt
    assert [r.query.qid for r in reader(path)] == qids


def test_duplicate_qid_after_a_skipped_first_is_kept(tmp_path):
    path = write(tmp_path / "in.jsonl", "\n".join([
        json.dumps({"query": {"qid": "1", "text": "t"}, "candidates": []}),
        json.dumps({"query": {"qid": "1", "text": "t"}, "candidates": [GOOD_CANDIDATE]})]) + "\n")
    errors: list[InputError] = []
    assert [r.query.qid for r in read_requests(path, on_bad_line=errors.append)] == ["1"]
    assert [e.line for e in errors] == [1]


def test_rankgpt_duplicate_entry_qid_names_the_entry_field(tmp_path):
    entry = {"query": "t", "qid": 5, "hits": [{"qid": 5, "docid": "d", "content": "x"}]}
    path = write(tmp_path / "in.json", json.dumps([entry, entry]))
    raises_input_error(lambda: list(read_requests(path)), path, 1, "[1].qid", DuplicateId)


def test_rankllm_invalid_json_names_line(tmp_path):
    path = write(tmp_path / "in.jsonl", '\n{"query": {"qid": "q", "text": "t"}, "candidates": [}\n')
    error = raises_input_error(lambda: list(read_rankllm(path)), path, 2, None)
    assert "invalid JSON" in str(error)


def test_rankllm_non_utf8_names_line(tmp_path):
    good = json.dumps({"query": GOOD_QUERY, "candidates": [GOOD_CANDIDATE]}).encode()
    path = write(tmp_path / "in.jsonl", good + b"\n" + good.replace(b'"t"', b'"\xff"') + b"\n")
    error = raises_input_error(lambda: list(read_rankllm(path)), path, 2, None)
    assert "UTF-8" in str(error)


def test_missing_file_is_an_input_error(tmp_path):
    path = tmp_path / "nope.jsonl"
    raises_input_error(lambda: list(read_rankllm(path)), path, None, None)


# ---------------------------------------------------------------- property tests

TRICKY = st.sampled_from(list('"\\[]{},:\n\r\t \u2028\u2029\x85\ufeff\x00é☃😀'))
# Any text but lone surrogates (which have no UTF-8 form, and are refused).
TEXTS = st.text(alphabet=st.one_of(st.characters(exclude_categories=["Cs"]), TRICKY), max_size=30)
# Ids: one word of visible characters (no whitespace, control, format or surrogate character).
ID_CHARS = st.characters(exclude_categories=["Cc", "Cf", "Cs", "Zs", "Zl", "Zp"])
IDS = st.text(alphabet=st.one_of(ID_CHARS, st.sampled_from(list('"\\[]{},:é☃😀'))), min_size=1,
              max_size=10)
SCORES = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))
CANDIDATES = st.builds(Candidate, docid=IDS, text=TEXTS, title=st.one_of(st.none(), TEXTS),
                       score=SCORES)
REQUESTS = st.builds(Request, query=st.builds(Query, qid=IDS, text=TEXTS),
                     candidates=st.lists(CANDIDATES, max_size=5))


@HYPOTHESIS
@given(requests=st.lists(REQUESTS, max_size=4))
def test_rankllm_round_trip_property(tmp_path, requests):
    path = tmp_path / "prop.jsonl"
    with RankLLMWriter(path) as writer:
        for request in requests:
            writer.write(Result(request.query, request.candidates))
    assert list(read_rankllm(path)) == requests


JSON_IDS = st.one_of(IDS, st.integers(min_value=-10**20, max_value=10**20))


@st.composite
def rankgpt_entries(draw):
    """A RankGPT entry as JSON data, and the request it should read as."""
    qid = draw(JSON_IDS)
    query = draw(TEXTS)
    hits, candidates = [], []
    for rank in range(1, draw(st.integers(min_value=1, max_value=4)) + 1):
        docid, content, score = draw(JSON_IDS), draw(TEXTS), draw(SCORES)
        title = draw(st.one_of(st.none(), TEXTS))
        hit = {"content": content, "qid": qid, "docid": docid, "rank": rank, "score": score}
        if title is not None:
            hit["title"] = title
        hits.append(hit)
        candidates.append(Candidate(str(docid), content, title, score))
    return {"query": query, "hits": hits}, Request(Query(qid=str(qid), text=query), candidates)


@HYPOTHESIS
@given(entries=st.lists(rankgpt_entries(), max_size=4), indent=st.sampled_from([None, 2]),
       ensure_ascii=st.booleans(), chunk_size=st.integers(min_value=1, max_value=64))
def test_rankgpt_streaming_round_trip_property(tmp_path, entries, indent, ensure_ascii,
                                               chunk_size):
    data = [data for data, _ in entries]
    try:
        content = json.dumps(data, indent=indent, ensure_ascii=ensure_ascii).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates can only be written as escapes
        content = json.dumps(data, indent=indent).encode("ascii")
    path = write(tmp_path / "prop.json", content)
    expected = [request for _, request in entries]
    assert list(read_rankgpt(path, chunk_size=chunk_size)) == expected
    assert list(read_rankgpt(path, chunk_size=7)) == expected


@HYPOTHESIS
@given(scores=st.lists(st.one_of(st.none(), st.floats(), st.sampled_from([1.0, 1.0 + 2**-52])),
                       max_size=30))
def test_trec_writer_scores_always_strictly_decrease(tmp_path, scores):
    path = tmp_path / "prop.run"
    candidates = [Candidate(f"d{i}", "x", score=score) for i, score in enumerate(scores)]
    with TrecRunWriter(path) as writer:
        writer.write(Result(Query(qid="q", text="t"), candidates))
    lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
    assert [int(line[3]) for line in lines] == list(range(1, len(scores) + 1))
    written = [float(line[4]) for line in lines]
    assert all(a > b for a, b in zip(written, written[1:]))
    back = list(read_run(path))
    assert [docid for _, pairs in back for docid, _ in pairs] == [c.docid for c in candidates]


# ---------------------------------------------------------------- RankGPT JSON


def test_read_rankgpt_fixture():
    assert list(read_rankgpt(FIXTURES / "requests.rankgpt.json")) == [
        Request(Query(qid="19335", text="what is a flea"), [
            Candidate("7", "A flea is an insect.", "Flea", 12.5),
            Candidate("d2", "Fleas jump.", None, 3.0),
        ]),
        Request(Query(qid="q2", text="second query"), [Candidate("d9", "plain string passage")]),
    ]


def test_rankgpt_empty_list_and_entry_qid(tmp_path):
    assert list(read_rankgpt(write(tmp_path / "a.json", " [ ] \n"))) == []
    path = write(tmp_path / "b.json", '[{"query": "t", "qid": 5, "hits": []}]')
    assert list(read_rankgpt(path)) == [Request(Query(qid="5", text="t"), [])]


def test_rankgpt_skips_byte_order_mark(tmp_path):
    path = write(tmp_path / "bom.json", b'\xef\xbb\xbf[{"query": "t", "hits": '
                                        b'[{"qid": 1, "docid": 2, "content": "c"}]}]')
    for chunk_size in (1, 2, 1024):
        assert list(read_rankgpt(path, chunk_size=chunk_size)) == [
            Request(Query(qid="1", text="t"), [Candidate("2", "c")])]


HIT = '{"qid": 1, "docid": "d", "content": "c"}'
ENTRY = '{"query": "q", "hits": [%s]}' % HIT


@pytest.mark.parametrize(("element", "field"), [
    ('"just a string"', "[1]"),
    ('{"hits": []}', "[1].query"),
    ('{"query": 3, "hits": []}', "[1].query"),
    ('{"query": "q"}', "[1].hits"),
    ('{"query": "q", "hits": {}}', "[1].hits"),
    ('{"query": "q", "hits": []}', "[1].hits"),
    ('{"query": "q", "hits": [%s, 7]}' % HIT, "[1].hits[1]"),
    ('{"query": "q", "hits": [%s, {"qid": 1, "content": "c"}]}' % HIT, "[1].hits[1].docid"),
    ('{"query": "q", "hits": [%s, {"qid": 1, "docid": "e"}]}' % HIT, "[1].hits[1].content"),
    ('{"query": "q", "hits": [%s, {"docid": "e", "content": "c"}]}' % HIT, "[1].hits[1].qid"),
    ('{"query": "q", "hits": [%s, {"qid": 2, "docid": "e", "content": "c"}]}' % HIT,
     "[1].hits[1].qid"),
    ('{"query": "q", "hits": [{"qid": 1, "docid": "e", "content": "c", "score": "9"}]}',
     "[1].hits[0].score"),
    ('{"query": "q", "hits": [{"qid": 1, "docid": "e", "content": "c", "title": 9}]}',
     "[1].hits[0].title"),
])
@pytest.mark.parametrize("chunk_size", [3, 65536])
def test_rankgpt_errors_name_file_line_and_field(tmp_path, element, field, chunk_size):
    path = write(tmp_path / "in.json", f"[\n  {ENTRY},\n\n  {element}\n]\n")
    requests = read_rankgpt(path, chunk_size=chunk_size)
    assert next(requests).query.qid == "1"
    raises_input_error(lambda: next(requests), path, 4, field)


@pytest.mark.parametrize(("content", "line", "message"), [
    ('{"query": "q", "hits": []}', 1, "JSON list"),
    ("\n\n  42", 3, "JSON list"),
    (f"[{ENTRY},\n{ENTRY}\n,\n" + '{"query": "q", "hits": [}\n]', 4, "invalid JSON"),
    (f"[{ENTRY},\n" + '{"query": "q", "hits": [{"qid": 1, "docid": "d", "content": "c\nx"}]}]',
     2, "invalid JSON"),
    (f"[{ENTRY},\n\n{ENTRY},\n]", 4, "invalid JSON"),
    (f"[{ENTRY}\n\n{ENTRY}]", 3, "expected ',' or ']'"),
    (f"[{ENTRY},\n{ENTRY}\n", 3, "not closed"),
    (f"[{ENTRY},\n" + '{"query": "q", "hits": [{"qid": 1, "docid": "d", "content": "unterminated',
     2, "invalid JSON"),
    (f"[{ENTRY}]\n\n[]", 3, "extra data"),
])
@pytest.mark.parametrize("chunk_size", [1, 5, 65536])
def test_rankgpt_structure_errors_name_line(tmp_path, content, line, message, chunk_size):
    path = write(tmp_path / "in.json", content)
    error = raises_input_error(lambda: list(read_rankgpt(path, chunk_size=chunk_size)), path,
                               line, None)
    assert message in str(error)


@pytest.mark.parametrize("chunk_size", [1, 4, 65536])
def test_rankgpt_non_utf8_names_line(tmp_path, chunk_size):
    content = f"[{ENTRY},\n{ENTRY},\n".encode() + '{"query": "é\xff'.encode("latin-1") + b'"}]'
    path = write(tmp_path / "in.json", content)
    error = raises_input_error(lambda: list(read_rankgpt(path, chunk_size=chunk_size)), path, 3,
                               None)
    assert "UTF-8" in str(error)


def test_rankgpt_file_cut_inside_a_character(tmp_path):
    path = write(tmp_path / "in.json", f"[{ENTRY},\n".encode() + '{"query": "é'.encode()[:-1])
    raises_input_error(lambda: list(read_rankgpt(path, chunk_size=3)), path, 2, None)


def test_rankgpt_empty_file(tmp_path):
    path = write(tmp_path / "in.json", " \n ")
    error = raises_input_error(lambda: list(read_rankgpt(path)), path, None, None)
    assert "empty" in str(error)


@pytest.mark.parametrize("chunk_size", [7, 65536])
def test_rankgpt_reads_lazily(tmp_path, chunk_size):
    """The first request comes before the reader meets a broken tail of the file."""
    path = write(tmp_path / "in.json", f"[{ENTRY},\n" + "{broken" * 10_000)
    requests = read_rankgpt(path, chunk_size=chunk_size)
    assert next(requests).query.qid == "1"
    with pytest.raises(InputError) as exc:
        next(requests)
    assert exc.value.line == 2


def test_rankgpt_memory_is_bounded_by_one_element(tmp_path, monkeypatch):
    """With many elements, the buffer never holds much more than one element and a chunk."""
    from rerank.formats.jsonstream import JsonStream

    entry = json.dumps({"query": "q", "hits": [{"qid": 1, "docid": "d", "content": "x" * 500}]})
    path = write(tmp_path / "big.json", "[" + ",\n".join([entry] * 2000) + "]")
    largest = 0
    original = JsonStream._read

    def spy(self, size):
        nonlocal largest
        grew = original(self, size)
        largest = max(largest, len(self.text))
        return grew

    monkeypatch.setattr(JsonStream, "_read", spy)
    assert sum(1 for _ in read_rankgpt(path, chunk_size=1024)) == 2000
    assert largest < 3 * len(entry) + 1024


@pytest.mark.parametrize("name", ["bm25_top100.json", "splade_pp_top100.json"])
def test_read_dl19_rankgpt_file(name):
    path = DATA / "dl19" / name
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    requests = list(read_rankgpt(path))
    assert len(requests) == 43
    assert all(len(request.candidates) == 100 for request in requests)
    # The file lists the DL19 queries in its own order (not sorted by qid).
    assert requests[0].query == Query(qid="264014", text="how long is life cycle of flea")
    assert "19335" in {request.query.qid for request in requests}
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    assert [c.docid for c in requests[5].candidates] == [h["docid"] for h in data[5]["hits"]]
    assert list(read_rankgpt(path, chunk_size=1000)) == requests
    assert list(read_requests(path)) == requests


# ---------------------------------------------------------------- TREC runs and qrels


def test_read_run_merges_sorts_and_keeps_tie_order():
    assert list(read_run(FIXTURES / "run.trec")) == [
        ("q1", [("d5", 11.0), ("d1", 10.5), ("d2", 9.25), ("d4", 9.25)]),
        ("q2", [("d3", 7.0)]),
    ]


def test_trec_run_round_trip(tmp_path):
    results = [
        Result(Query(qid="q1", text="t"), [Candidate("a", "x", score=3.5), Candidate("b", "x", score=-1e-9),
                                  Candidate("c", "x", score=-2.0)]),
        # Ties and a missing score: the writer falls back to n - rank + 1.
        Result(Query(qid="q2", text="t"), [Candidate("z", "x", score=1.0), Candidate("y", "x", score=1.0),
                                  Candidate("w", "x", score=None)]),
        # Distinct scores that single precision (trec_eval's) cannot tell apart: rank-based.
        Result(Query(qid="q3", text="t"), [Candidate(f"d{i}", "x", score=1.0 - i * 1e-12)
                                  for i in range(5)]),
        # Distinct scores closer than %.6g can show, but apart in single precision, stay.
        Result(Query(qid="q4", text="t"), [Candidate(f"d{i}", "x", score=1.0 - i * 1e-6)
                                  for i in range(5)]),
    ]
    path = tmp_path / "out.run"
    with TrecRunWriter(path, tag="mine") as writer:
        for result in results:
            writer.write(result)
    lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(len(line) == 6 and line[1] == "Q0" and line[5] == "mine" for line in lines)
    back = dict(read_run(path))
    for result in results:
        pairs = back[result.query.qid]
        assert [docid for docid, _ in pairs] == [c.docid for c in result.candidates]
        scores = [score for _, score in pairs]
        assert all(a > b for a, b in zip(scores, scores[1:]))
        ranks = [int(line[3]) for line in lines if line[0] == result.query.qid]
        assert ranks == list(range(1, len(result.candidates) + 1))
    assert [score for _, score in back["q1"]] == [3.5, -1e-9, -2.0]
    assert [score for _, score in back["q2"]] == [3.0, 2.0, 1.0]
    assert [score for _, score in back["q3"]] == [5.0, 4.0, 3.0, 2.0, 1.0]
    assert [score for _, score in back["q4"]] == [1.0 - i * 1e-6 for i in range(5)]


def test_trec_writer_flushes_each_query(tmp_path):
    path = tmp_path / "out.run"
    with TrecRunWriter(path) as writer:
        writer.write(Result(Query(qid="q", text="t"), [Candidate("d", "x", score=1.0)]))
        assert list(read_run(path)) == [("q", [("d", 1.0)])]


def test_trec_writer_writes_each_qid_once(tmp_path):
    path = tmp_path / "out.run"
    with TrecRunWriter(path) as writer:
        writer.write(Result(Query(qid="q1", text="t"), [Candidate("a", "x", score=2.0)]))
        writer.write(Result(Query(qid="q2", text="t"), [Candidate("a", "x", score=1.0)]))
        writer.write(Result(Query(qid="q1", text="t"), [Candidate("a", "x", score=5.0),
                                               Candidate("b", "x", score=4.0)]))
    assert list(read_run(path)) == [("q1", [("a", 2.0)]), ("q2", [("a", 1.0)])]
    with TrecRunWriter(path, append=True) as writer:  # resuming: the file's qids count too
        writer.write(Result(Query(qid="q2", text="t"), [Candidate("z", "x", score=1.0)]))
        writer.write(Result(Query(qid="q3", text="t"), [Candidate("z", "x", score=1.0)]))
    assert [qid for qid, _ in read_run(path)] == ["q1", "q2", "q3"]
    assert len(path.read_text().splitlines()) == 3
    with TrecRunWriter(path, append=True) as writer:  # no lines: the qid is not written yet
        writer.write(Result(Query(qid="q4", text="t"), []))
        writer.write(Result(Query(qid="q4", text="t"), [Candidate("y", "x", score=1.0)]))
    assert list(read_run(path))[-1] == ("q4", [("y", 1.0)])


@pytest.mark.parametrize("ident", ["a b", "a\tb", "a\xa0b", "a\x00b", "a\u200bb", "\ufeffa",
                                   "a\ud800", "a\x85", "a\u2028", ""])
def test_trec_writer_refuses_ids_a_run_cannot_hold(tmp_path, ident):
    with TrecRunWriter(tmp_path / "out.run") as writer:
        with pytest.raises(InputError) as exc:
            writer.write(Result(Query(qid="q", text="t"), [Candidate(ident, "x")]))
        assert exc.value.field == "docid" and str(exc.value).isprintable()
        with pytest.raises(InputError) as exc:
            writer.write(Result(Query(qid=ident, text="t"), []))
        assert exc.value.field == "qid"
    assert (tmp_path / "out.run").read_text() == ""


def test_trec_writer_refuses_ids_and_tags_with_spaces(tmp_path):
    with pytest.raises(ConfigError):
        TrecRunWriter(tmp_path / "out.run", tag="my run")
    with TrecRunWriter(tmp_path / "out.run") as writer:
        with pytest.raises(InputError) as exc:
            writer.write(Result(Query(qid="q", text="t"), [Candidate("doc 1", "x")]))
        assert exc.value.field == "docid"
        with pytest.raises(InputError) as exc:
            writer.write(Result(Query(qid="", text="t"), []))
        assert exc.value.field == "qid"


@pytest.mark.parametrize(("line", "field"), [
    ("q1 Q0 d9 3 9.0", "tag"),
    ("q1 Q0 d9", "rank"),
    ("q1", "Q0"),
    ("q1 Q0 d9 3 9.0 run extra", "tag"),
    ("q1 Q0 d9 third 9.0 run", "rank"),
    ("q1 Q0 d9 3 high run", "score"),
    ("q1 Q0 d9 3 nan run", "score"),
    ("q1 Q0 d1 3 9.0 run", "docid"),
    ("q1 Q0 d9 3 inf run", "score"),
    ("q1 Q0 d9 3 -Infinity run", "score"),
    ("q1 Q0 d9 3 1e999 run", "score"),
    ("q1 Q0 d9 3 " + "9" * 5000 + " run", "score"),
    ("q1 Q0 d9 3 1_0 run", "score"),
    ("q1 Q0 d9 3 \u0669 run", "score"),  # an Arabic-Indic 9: float() takes it, no TREC tool
    ("q1 Q0 d9 " + "1" * 5000 + " 9.0 run", "rank"),
    ("q1 Q0 d9 99999999999 9.0 run", "rank"),
    ("q1 Q0 d9 1_0 9.0 run", "rank"),
    ("q1 Q0 d9 \u0663 9.0 run", "rank"),
    ("q1 Q0 d9 3.0 9.0 run", "rank"),
    ("q\x001 Q0 d9 3 9.0 run", "qid"),
    ("q1 Q0 d\u200b9 3 9.0 run", "docid"),
    ("q1 Q0 \ufeffd9 3 9.0 run", "docid"),
    ("q1 Q0 d\x7f9 3 9.0 run", "docid"),
])
def test_run_errors_name_file_line_and_field(tmp_path, line, field):
    check_bad_last_line(tmp_path / "in.run", read_run,
                        "q1 Q0 d1 1 10 run\n\nq2 Q0 d2 1 9 run\n", line, field)


def test_read_qrels_fixture():
    assert read_qrels(FIXTURES / "qrels.txt") == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}


@pytest.mark.parametrize(("line", "field"), [
    ("q1 0 d9", "grade"),
    ("q1 0 d9 1 extra", "grade"),
    ("q1 0 d9 relevant", "grade"),
    ("q1 0 d9 1.5", "grade"),
    ("q1", "iteration"),
    ("q1 0 d9 " + "1" * 5000, "grade"),
    ("q1 0 d9 2147483648", "grade"),
    ("q1 0 d9 \u0661", "grade"),
    ("q1 0 d9 1_0", "grade"),
    ("q\x00 0 d9 1", "qid"),
    ("q1 0 d\u200b9 1", "docid"),
])
def test_qrels_errors_name_file_line_and_field(tmp_path, line, field):
    check_bad_last_line(tmp_path / "qrels.txt", read_qrels, "q1 0 d1 1\nq1 Q0 d2 0\n", line, field)


def test_qrels_and_run_take_signed_and_edge_integers(tmp_path):
    qrels = write(tmp_path / "qrels", "q1 0 d1 -2\nq1 0 d2 +3\nq1 0 d3 2147483647\n")
    assert read_qrels(qrels) == {"q1": {"d1": -2, "d2": 3, "d3": 2147483647}}
    run = write(tmp_path / "run", "q1 Q0 d1 1 1e300 r\nq1 Q0 d2 2147483647 -.5 r\n")
    assert list(read_run(run)) == [("q1", [("d1", 1e300), ("d2", -0.5)])]


def test_read_real_qrels():
    path = DATA / "dl19" / "qrels.dl19-passage.txt"
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    qrels = read_qrels(path)
    assert len(qrels) == 43
    assert next(iter(qrels)) == "19335"


# ---------------------------------------------------------------- corpus, queries, run requests


def test_read_corpus_formats():
    assert read_corpus(FIXTURES / "corpus.jsonl")["d2"] == (None, "second passage")
    assert read_corpus(FIXTURES / "corpus.jsonl", {"d1", "d3", "absent"}) == {
        "d1": ("One", "first passage"), "d3": ("Three", "third\tpassage with a tab")}
    assert read_corpus(FIXTURES / "corpus.tsv") == {
        "d1": (None, "first passage"), "d2": (None, "second passage"),
        "d3": (None, "third\tpassage with a tab")}
    assert read_corpus(FIXTURES / "corpus.other.jsonl") == {
        "d1": (None, "first passage"), "2": (None, "second")}


def test_read_queries_formats():
    expected = {"q1": "the first query", "q2": "the second query"}
    assert read_queries(FIXTURES / "queries.tsv") == expected
    assert read_queries(FIXTURES / "queries.jsonl") == expected


@pytest.mark.parametrize(("content", "field"), [
    ("d1\tfine\nd2 no tab here\n", "text"),
    ("d1\tfine\n\tno id\n", "docid"),
    ("d1\tfine\nd1\tagain\n", "docid"),
    ('{"_id": "d1", "text": "x"}\n{"text": "no id"}\n', "_id"),
    ('{"_id": "d1", "text": "x"}\n{"_id": "d2", "body": "x"}\n', "text"),
    ('{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": 5}\n', "text"),
    ('{"_id": "d1", "text": "x"}\n{"_id": "d2", "title": 5, "text": "x"}\n', "title"),
    ('{"_id": "d1", "text": "x"}\n{"_id": [], "text": "x"}\n', "_id"),
    ('{"_id": "d1", "text": "x"}\n{"_id": ' + "1" * 5000 + ', "text": "x"}\n', "_id"),
    ('{"_id": "d1", "text": "x"}\n{"_id": "d\\u0000", "text": "x"}\n', "_id"),
    ('{"_id": "d1", "text": "x"}\n{"_id": "d\\u2029", "text": "x"}\n', "_id"),
    ('{"_id": "d1", "text": "x"}\n{"_id": "\\ud800", "text": "x"}\n', "_id"),
    ('{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": "\\udc00 x"}\n', "text"),
    ('{"_id": "d1", "text": "x"}\n{"_id": "d2", "title": "\\ud800", "text": "x"}\n', "title"),
    ('{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": ' + "1" * 5000 + '}\n', "text"),
    ("d1\tfine\nd 2\tspace in the id\n", "docid"),
    ("d1\tfine\nd\u200b2\tzero-width space in the id\n", "docid"),
    ("d1\tfine\nd\x1c2\tfile separator in the id\n", "docid"),
])
def test_corpus_errors_name_file_line_and_field(tmp_path, content, field):
    path = write(tmp_path / "corpus", content)
    raises_input_error(lambda: read_corpus(path), path, 2, field)


@pytest.mark.parametrize(("content", "line", "field"), [
    ("q1\tfine\nq2 no tab\n", 2, "text"),
    ("q1\tfine\nq1\tagain\n", 2, "qid"),
    ('{"_id": "q1", "text": "x"}\n\n{"_id": "q2"}\n', 3, "text"),
    ('{"_id": "q1", "text": "x"}\n{"_id": "q2", "text": "x"\n', 2, None),
    ("q1\tfine\nq\x002\tnul\n", 2, "qid"),
    ("q1\tfine\nq\xa02\tNBSP\n", 2, "qid"),
    ('{"_id": "q1", "text": "x"}\n{"_id": "q\\u0085", "text": "x"}\n', 2, "_id"),
    ('{"_id": "q1", "text": "x"}\n{"_id": 1e999, "text": "x"}\n', 2, "_id"),
    ('{"_id": "q1", "text": "x"}\n{"_id": "q2", "text": "\\ud83d"}\n', 2, "text"),
])
def test_queries_errors_name_file_line_and_field(tmp_path, content, line, field):
    path = write(tmp_path / "queries", content)
    raises_input_error(lambda: read_queries(path), path, line, field)


def test_read_run_requests():
    requests = list(read_run_requests(FIXTURES / "run.trec", FIXTURES / "corpus.jsonl",
                                      FIXTURES / "queries.tsv"))
    assert requests == [
        Request(Query(qid="q1", text="the first query"), [
            Candidate("d5", "fifth passage", "Five", 11.0),
            Candidate("d1", "first passage", "One", 10.5),
            Candidate("d2", "second passage", None, 9.25),
            Candidate("d4", "fourth passage", None, 9.25),
        ]),
        Request(Query(qid="q2", text="the second query"), [
            Candidate("d3", "third\tpassage with a tab", "Three", 7.0)]),
    ]


def test_run_requests_missing_docid_names_run_line(tmp_path):
    run = write(tmp_path / "in.run", "q1 Q0 d1 1 3 r\nq1 Q0 d404 2 2 r\n")
    error = raises_input_error(lambda: read_run_requests(run, FIXTURES / "corpus.jsonl",
                                                         FIXTURES / "queries.tsv"), run, 2, "docid")
    assert "d404" in str(error)


def test_run_requests_missing_qid_names_run_line(tmp_path):
    run = write(tmp_path / "in.run", "q1 Q0 d1 1 3 r\n\nq9 Q0 d1 1 2 r\n")
    error = raises_input_error(lambda: read_run_requests(run, FIXTURES / "corpus.jsonl",
                                                         FIXTURES / "queries.tsv"), run, 3, "qid")
    assert "q9" in str(error)


def test_read_real_corpora_and_queries():
    scifact, noveleval = DATA / "scifact", DATA / "noveleval"
    if not (scifact.exists() and noveleval.exists()):
        pytest.skip(f"shared data not present: {DATA}")
    corpus = read_corpus(scifact / "corpus.jsonl")
    assert len(corpus) == 5183
    assert corpus["4983"][0].startswith("Microstructural development")
    assert len(read_queries(scifact / "queries.test.tsv")) == 300
    novel = read_corpus(noveleval / "corpus.tsv")
    assert len(novel) == 420
    assert novel["14-17"][1].count("\t") == 23
    queries = read_queries(noveleval / "queries.tsv")
    assert queries["2"] == "Which film was the 2023 Palme d'Or winner?"


# ---------------------------------------------------------------- detection and dispatch


@pytest.mark.parametrize(("name", "fmt"), [
    ("requests.rankllm.jsonl", "rankllm"),
    ("requests.rankgpt.json", "rankgpt"),
    ("run.trec", "trec"),
])
def test_detect_fixture_formats(name, fmt):
    assert detect_format(FIXTURES / name) == fmt


@pytest.mark.parametrize(("content", "fmt"), [
    (b"\xef\xbb\xbf\n  [", "rankgpt"),
    (b"\n\n   {\"query\"", "rankllm"),
    (b"\n1 Q0 d 1 2.5 bm25\n", "trec"),
    (b"1 iter d 1 -2.5e3 bm25\n", "trec"),
])
def test_detect_format_from_content(tmp_path, content, fmt):
    assert detect_format(write(tmp_path / "input", content)) == fmt


@pytest.mark.parametrize(("content", "line", "message"), [
    (b"", None, "empty"),
    (b" \n\t\n", None, "empty"),
    (b"\n\nq1 0 d1 1\n", 3, "unrecognised"),
    (b"\n\xff\xfe{}\n", 2, "UTF-8"),
    (b"\x0b", None, "blank"),
    (b"\n\x0c\x1c\n", None, "blank"),
    (" \xa0\u2028\x85\n".encode(), None, "blank"),
])
def test_detect_format_errors(tmp_path, content, line, message):
    path = write(tmp_path / "input", content)
    error = raises_input_error(lambda: detect_format(path), path, line, None)
    assert message in str(error)


def test_read_requests_dispatch():
    rankllm = list(read_requests(FIXTURES / "requests.rankllm.jsonl"))
    rankgpt = list(read_requests(FIXTURES / "requests.rankgpt.json"))
    assert rankllm[1] == rankgpt[1]
    assert [r.query.qid for r in read_requests(FIXTURES / "run.trec",
                                               corpus=FIXTURES / "corpus.jsonl",
                                               queries=FIXTURES / "queries.jsonl")] == ["q1", "q2"]
    assert list(read_requests(FIXTURES / "requests.rankgpt.json", fmt="rankgpt")) == rankgpt


def test_read_requests_config_errors():
    with pytest.raises(ConfigError, match="--corpus FILE and --queries FILE"):
        read_requests(FIXTURES / "run.trec")
    with pytest.raises(ConfigError, match="--queries"):
        read_requests(FIXTURES / "run.trec", fmt="trec", corpus=FIXTURES / "corpus.jsonl")
    with pytest.raises(ConfigError, match="unknown input format"):
        read_requests(FIXTURES / "run.trec", fmt="csv")
    with pytest.raises(ConfigError, match="only apply to a TREC run"):
        read_requests(FIXTURES / "requests.rankllm.jsonl", corpus=FIXTURES / "corpus.jsonl")


def test_read_requests_wrong_explicit_format_is_an_input_error():
    path = FIXTURES / "run.trec"
    raises_input_error(lambda: list(read_requests(path, fmt="rankgpt")), path, 1, None)
