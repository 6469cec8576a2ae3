"""The checks a parsed request must pass to be reranked, shared by the rank_llm and RankGPT
readers (the TREC reader checks the same things of the corpus and queries it joins).
"""

from __future__ import annotations

import os

from rerank.errors import DuplicateId, EmptyPassage, MissingField, NoCandidates
from rerank.types import Request


def check_request(request: Request, path: str | os.PathLike, line: int, *,
                  query_field: str = "query.text", candidates_field: str = "candidates",
                  text_field: str = "doc") -> None:
    """Reject a well-formed request that cannot be reranked.

    Parameters
    ----------
    request : Request
        The parsed request.
    path : str or path-like
        The request file, for the error message.
    line : int
        The request's 1-based line, for the error message.
    query_field, candidates_field, text_field : str
        How the format names the query text, the candidate list and a candidate's passage
        (rank_llm: ``query.text``, ``candidates``, ``doc``; RankGPT: ``[3].query``,
        ``[3].hits``, ``content``).

    Raises
    ------
    MissingField
        When the query text is empty or blank.
    NoCandidates
        When there are no candidates.
    DuplicateId
        When a docid appears twice (the request is rejected, not de-duplicated: which copy
        to keep is the user's call); the field is the second occurrence.
    EmptyPassage
        When a candidate has neither passage text nor title (blank counts as empty).
    """
    if not request.query.text.strip():
        raise MissingField("the query text is empty", path, line, query_field)
    if not request.candidates:
        raise NoCandidates("no candidates: nothing to rerank", path, line, candidates_field)
    first: dict[str, int] = {}
    for index, candidate in enumerate(request.candidates):
        field = f"{candidates_field}[{index}]"
        if candidate.docid in first:
            raise DuplicateId(
                f"docid {candidate.docid!r} appears twice in one request (first as"
                f" {candidates_field}[{first[candidate.docid]}]); remove the duplicate",
                path, line, f"{field}.docid")
        first[candidate.docid] = index
        if not candidate.text.strip() and not (candidate.title or "").strip():
            raise EmptyPassage(f"empty passage for docid {candidate.docid!r}", path, line,
                               f"{field}.{text_field}")


def check_new_qid(qid: str, first_lines: dict[str, int], path: str | os.PathLike, line: int,
                  field: str) -> None:
    """Reject a request whose qid an earlier request of the file has; else remember it.

    Parameters
    ----------
    qid : str
        The request's qid.
    first_lines : dict
        ``qid -> line`` of the requests accepted so far; the qid is added when new.
    path, line, field
        Where the request and its qid sit: the file, the request's 1-based line and the
        field holding the qid, named in the error.

    Raises
    ------
    DuplicateId
        When the qid is in ``first_lines``; the message gives the line of the first.
    """
    if qid in first_lines:
        raise DuplicateId(f"qid {qid!r} appears twice (first on line {first_lines[qid]}):"
                          " remove the duplicate, or keep both with --keep-duplicate-qids",
                          path, line, field)
    first_lines[qid] = line
