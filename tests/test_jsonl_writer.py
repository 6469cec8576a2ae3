"""JSON lines written through ``jsonlines``: one whole line per record, flushed, readable UTF-8,
and text without a UTF-8 form kept intact rather than failing mid-run."""

import json

from hypothesis import given
from hypothesis import strategies as st

from rerank.formats import read_rankllm
from rerank.formats.writers import JsonLinesWriter, RankLLMWriter
from rerank.types import Candidate, Query, Request


def test_each_record_is_a_flushed_line(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonLinesWriter(path) as writer:
        writer.write({"label": "[2] > [1]", "text": "café"})
        assert path.read_bytes() == '{"label": "[2] > [1]", "text": "café"}\n'.encode()  # before closing
        writer.write({"text": "lone \ud800 surrogate"})
    lines = path.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == [{"label": "[2] > [1]", "text": "café"},
                                                    {"text": "lone \ud800 surrogate"}]
    assert lines[1] == rb'{"text": "lone \ud800 surrogate"}'  # ASCII escapes: no UTF-8 form
    with JsonLinesWriter(path, append=True) as writer:
        writer.write([1, 2])
    assert path.read_text().splitlines()[-1] == "[1, 2]"


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
                    max_leaves=8))
def test_any_value_reads_back(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("jsonl") / "v.jsonl"
    with JsonLinesWriter(path) as writer:
        writer.write(value)
    data = path.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == value


def test_rank_llm_lines_read_back(tmp_path):
    path = tmp_path / "out.jsonl"
    request = Request(Query(qid="q1", text="fleas \U0001f41c café"), [Candidate("d1", "a", score=2.0, title="T"),
                                                              Candidate("d2", "b", score=1.0)])
    with RankLLMWriter(path) as writer:
        writer.write(request)
    (back,) = read_rankllm(path)
    assert back.query == request.query
    assert [(c.docid, c.text, c.score, c.title) for c in back.candidates] == [("d1", "a", 2.0, "T"),
                                                                               ("d2", "b", 1.0, None)]
