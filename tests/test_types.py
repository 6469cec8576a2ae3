"""The data model refuses rank_llm's argument orders instead of swapping fields silently."""

import pickle

import pytest

from rerank import Candidate, Query, Request


def test_query_takes_keywords_only():
    with pytest.raises(TypeError, match="keywords"):
        Query("how long do fleas live", "q1")  # rank_llm's (text, qid)
    with pytest.raises(TypeError, match="Query.qid must be a str"):
        Query(qid=1, text="t")
    query = Query(qid="q1", text="t")
    assert pickle.loads(pickle.dumps(query)) == query


@pytest.mark.parametrize("args", [("d1", 0.5, {"contents": "x"}), ("d1", 0.5), (1, "text")])
def test_candidate_in_rank_llms_order_fails_clearly(args):
    with pytest.raises(TypeError, match="rank_llm's order"):
        Candidate(*args)


def test_candidate_by_position_or_keyword():
    assert Candidate("d1", "text", score=2) == Candidate(docid="d1", text="text", title=None, score=2)
    with pytest.raises(TypeError, match="score"):
        Candidate("d1", "text", score="high")


def test_request_wants_a_query():
    with pytest.raises(TypeError, match="Request.query must be a Query"):
        Request("q1", [])
