"""pandas DataFrames in and out of rerank: a frame of candidates reranked, requests as a frame.

The frame is PyTerrier's: one row per candidate, with ``qid``, ``query``, ``docno`` (or
``docid``) and ``text``, optionally ``title``, ``score`` and ``rank``; any other column rides
along. :func:`rank_frame` returns the same rows with the reranker's ``score`` and ``rank``,
sorted by query (in order of first appearance) and rank::

    import rerank

    reranked = rerank.rank_frame(frame, model="gpt-4o-mini")

pandas is imported here only, so ``import rerank`` does not need it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import ConfigError, DuplicateId, EmptyPassage, MissingField
from ..formats.fields import parse_id, parse_score, parse_str
from ..types import Candidate, Query, Request, Result

INSTALL_HINT = "pip install pandas"
#: The columns of :func:`to_frame`, PyTerrier's names.
FRAME_COLUMNS = ("qid", "query", "docno", "text", "score", "rank")
#: The columns a frame to rerank must have (``docid`` may stand for ``docno``).
REQUIRED_COLUMNS = ("qid", "query", "docno", "text")


def rank_frame(frame, *, reranker=None, first_rank: int = 1, **options):
    """Rerank every query's candidates in a DataFrame; the frame back with new scores and ranks.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per candidate: ``qid``, ``query``, ``docno`` (or ``docid``) and ``text``,
        optionally ``title``. A query's candidates are taken best first by ``rank`` when the
        frame has one, else by ``score`` (highest first), else in the frame's order.
    reranker : Reranker, optional
        The reranker to use (kept open); without it one is made from ``options`` and closed
        after the call.
    first_rank : int
        The rank of each query's best candidate: 1 as in TREC runs (PyTerrier counts from 0).
    **options
        ``Reranker(**options)``'s keywords (``model=``, ``base_url=``, ``strategy=``, ...).

    Returns
    -------
    pandas.DataFrame
        The same rows and columns, ``score`` and ``rank`` set (added when absent) by the
        reranker (scores strictly decrease with rank within a query), sorted by query in
        order of first appearance, then rank; a new index.

    Raises
    ------
    InputError
        For a missing column, a row without text, or a docno twice for one qid, naming the row
        by its index label (``rows[17].text``).
    ConfigError
        For options given beside ``reranker``, or an unknown option.
    BackendError
        When the backend fails for good.
    """
    from ..reranker import Reranker

    if reranker is not None and options:
        raise ConfigError(f"rank_frame() takes either reranker= or the options of a new one, not both "
                          f"(got {', '.join(sorted(options))})")
    requests, rows = from_frame(frame)
    if not requests:
        results = []
        if reranker is None:
            Reranker(**options)  # an unknown option is an error with an empty frame too
    elif reranker is not None:
        results = reranker.rerank_batch_sync(requests)
    else:
        with Reranker(**options) as owned:
            results = owned.rerank_batch_sync(requests)
    return with_results(frame, requests, rows, results, first_rank)


def from_frame(frame) -> tuple[list[Request], list[list[int]]]:
    """The requests of a candidates frame, and for each its candidates' row positions.

    Parameters
    ----------
    frame : pandas.DataFrame
        As :func:`rank_frame` takes it.

    Returns
    -------
    requests : list of Request
        One per qid, in order of first appearance; its candidates best first.
    rows : list of list of int
        For each request, the frame's row position (``iloc``) of each candidate.

    Raises
    ------
    InputError
        As :func:`rank_frame`.
    """
    pd = _pandas()
    id_column = _id_column(frame)
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns and name != "docno"]
    if missing:
        hint = (" (add the passages' text first: in PyTerrier, pt.text.get_text(dataset, 'text') before the "
                "reranker)") if "text" in missing else ""
        raise MissingField(f"the frame has no column {', '.join(map(repr, missing))}{hint}; its columns: "
                           f"{', '.join(map(str, frame.columns))}", None, None, missing[0])
    labels = frame.index.tolist()
    qids, queries = frame["qid"].tolist(), frame["query"].tolist()
    docids, texts = frame[id_column].tolist(), frame["text"].tolist()
    titles = frame["title"].tolist() if "title" in frame.columns else [None] * len(frame)
    scores = frame["score"].tolist() if "score" in frame.columns else [None] * len(frame)
    by_qid: dict[str, tuple[Request, list[int], dict[str, Any]]] = {}
    for position in _best_first(frame, pd):
        where = f"rows[{labels[position]}]"
        qid = parse_id(_plain(qids[position], pd), None, None, f"{where}.qid")
        entry = by_qid.get(qid)
        if entry is None:
            query = _plain(queries[position], pd)
            if query is None or (isinstance(query, str) and not query.strip()):
                raise MissingField("the query text is empty", None, None, f"{where}.query")
            entry = by_qid[qid] = (Request(Query(qid=qid, text=parse_str(query, None, None, f"{where}.query")), []),
                                   [], {})
        request, positions, first = entry
        docid = parse_id(_plain(docids[position], pd), None, None, f"{where}.{id_column}")
        if docid in first:
            raise DuplicateId(f"{id_column} {docid!r} appears twice for qid {qid!r} (first in rows[{first[docid]}]); "
                              "remove the duplicate", None, None, f"{where}.{id_column}")
        first[docid] = labels[position]
        text = _plain(texts[position], pd)
        title = _plain(titles[position], pd)
        text = "" if text is None else parse_str(text, None, None, f"{where}.text")
        title = None if title is None else parse_str(title, None, None, f"{where}.title")
        if not text.strip() and not (title or "").strip():
            raise EmptyPassage(f"empty passage for {id_column} {docid!r}", None, None, f"{where}.text")
        score = parse_score(_plain(scores[position], pd), None, None, f"{where}.score")
        request.candidates.append(Candidate(docid, text, title, score))
        positions.append(position)
    order = sorted(by_qid.values(), key=lambda entry: min(entry[1]))  # first appearance in the frame
    return [request for request, _, _ in order], [positions for _, positions, _ in order]


def with_results(frame, requests: list[Request], rows: list[list[int]], results: list[Result], first_rank: int = 1):
    """``frame`` with the reranked ``score`` and ``rank`` of each row, sorted by query and rank.

    Parameters
    ----------
    frame : pandas.DataFrame
        The candidates frame.
    requests, rows
        As :func:`from_frame` gave them.
    results : list of Result
        The reranked requests, in the same order.
    first_rank : int
        The rank of each query's best candidate.

    Returns
    -------
    pandas.DataFrame
    """
    pd = _pandas()
    size = len(frame)
    score, rank, query_order = [0.0] * size, [0] * size, [0] * size
    for number, (request, positions, result) in enumerate(zip(requests, rows, results)):
        row_of = {candidate.docid: position for candidate, position in zip(request.candidates, positions)}
        for place, candidate in enumerate(result.candidates):
            position = row_of[candidate.docid]
            score[position], rank[position], query_order[position] = float(candidate.score), first_rank + place, number
    out = frame.copy()
    out["score"] = pd.Series(score, index=out.index, dtype="float64")
    out["rank"] = pd.Series(rank, index=out.index, dtype="int64")
    order = sorted(range(size), key=lambda position: (query_order[position], rank[position]))
    return out.iloc[order].reset_index(drop=True)


def to_frame(items: Iterable[Request | Result], *, first_rank: int = 1):
    """Requests (first-stage candidates) or results (reranked) as a PyTerrier-style frame.

    Parameters
    ----------
    items : iterable of Request or Result
        E.g. ``rerank.read_requests("bm25_top100.json")``.
    first_rank : int
        The rank of each query's first candidate (PyTerrier counts from 0).

    Returns
    -------
    pandas.DataFrame
        Columns ``qid``, ``query``, ``docno``, ``text``, ``score`` (NaN where a candidate has
        none) and ``rank``, and ``title`` when a candidate has one; a row per candidate, in
        order.
    """
    pd = _pandas()
    rows = []
    for item in items:
        for place, candidate in enumerate(item.candidates):
            rows.append((item.query.qid, item.query.text, candidate.docid, candidate.text,
                         float("nan") if candidate.score is None else float(candidate.score),
                         first_rank + place, candidate.title))
    frame = pd.DataFrame(rows, columns=[*FRAME_COLUMNS, "title"])
    frame["rank"] = frame["rank"].astype("int64")
    if frame["title"].isna().all():
        frame = frame.drop(columns="title")
    return frame


def qrels_frame(qrels: dict[str, dict[str, int]]):
    """Relevance judgments as PyTerrier's qrels frame (``qid``, ``docno``, ``label``).

    Parameters
    ----------
    qrels : dict
        qid -> docid -> grade, as :func:`rerank.read_qrels` gives them.

    Returns
    -------
    pandas.DataFrame
    """
    pd = _pandas()
    frame = pd.DataFrame([(qid, docid, grade) for qid, grades in qrels.items() for docid, grade in grades.items()],
                         columns=["qid", "docno", "label"])
    frame["label"] = frame["label"].astype("int64")
    return frame


def _id_column(frame) -> str:
    if "docno" in frame.columns:
        return "docno"
    if "docid" in frame.columns:
        return "docid"
    raise MissingField(f"the frame has no column 'docno' (or 'docid'); its columns: "
                       f"{', '.join(map(str, frame.columns))}", None, None, "docno")


def _best_first(frame, pd) -> list[int]:
    """Row positions, each query's best candidate first: by rank, else by score, else as given."""
    if "rank" in frame.columns:
        keys = pd.to_numeric(frame["rank"], errors="coerce").tolist()
        return sorted(range(len(frame)), key=lambda p: (keys[p] != keys[p], keys[p] if keys[p] == keys[p] else 0))
    if "score" in frame.columns:
        keys = pd.to_numeric(frame["score"], errors="coerce").tolist()
        return sorted(range(len(frame)), key=lambda p: (keys[p] != keys[p], -keys[p] if keys[p] == keys[p] else 0))
    return list(range(len(frame)))


def _plain(value: Any, pd) -> Any:
    """A frame's cell as a plain Python value: None where missing (NaN, None, NA)."""
    if value is None or (not isinstance(value, (str, list, tuple, dict)) and pd.isna(value)):
        return None
    item = getattr(value, "item", None)  # a numpy scalar
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ConfigError(f"DataFrames need pandas: {INSTALL_HINT}") from None
    return pandas
