"""The synchronous facade: ``rerank.rank(query, documents)`` for scripts and notebooks.

Plain strings (or dicts, or :class:`~rerank.types.Candidate` objects) go in, and come back
ranked, best first, each with its score, its rank and its position in the input::

    import rerank

    ranked = rerank.rank("how long do fleas live",
                         ["Fleas live two to three months.", "A flea market sells old things."],
                         model="gpt-4o-mini")
    for doc in ranked:
        print(doc.rank, round(doc.score, 2), doc.document)

It works in a plain script and inside a running event loop (Jupyter): the reranker's coroutines
run on a loop of their own (:mod:`rerank.sync`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, InvalidJSON
from .formats.beir import TEXT_KEYS
from .formats.checks import check_request
from .formats.fields import parse_id, parse_score, parse_str
from .types import Candidate, Query, Request, Result

#: The keys a document given as a dict may hold its id under, first found wins.
ID_KEYS = ("docid", "docno", "id", "_id")
#: The qid of a query given as a plain string.
DEFAULT_QID = "q"


@dataclass(frozen=True, slots=True)
class Ranked:
    """One document of a ranking made by :func:`rank`.

    Attributes
    ----------
    document : object
        The document as it was given: the string, the dict or the Candidate.
    docid : str
        Its id: the one it was given, else its position in the input (``"0"``, ``"1"``, ...).
    text : str
        The passage text ranked.
    score : float
        The reranker's score; scores strictly decrease with rank.
    rank : int
        1 for the best.
    index : int
        Its position in the input list.
    """

    document: Any
    docid: str
    text: str
    score: float
    rank: int
    index: int


def rank(query: str | Query, documents: Iterable[str | Mapping | Candidate], *, reranker=None,
         **options) -> list[Ranked]:
    """Rank documents for a query with an LLM, from synchronous code; best first.

    Parameters
    ----------
    query : str or Query
        The query text (its qid is then ``"q"``), or a :class:`~rerank.types.Query`.
    documents : iterable of str, dict or Candidate
        The first stage's candidates, best first. A dict holds the text under ``text``,
        ``contents`` or ``segment``, and may hold ``docid`` (or ``docno``, ``id``, ``_id``),
        ``title`` and ``score``; other keys are ignored (and kept in :attr:`Ranked.document`).
    reranker : Reranker, optional
        A reranker to use (and keep open for the next calls); without it one is made from
        ``options`` and closed after the call.
    **options
        The fields of :class:`~rerank.config.RerankerConfig` and the strategy's and backend's
        options (``model=``, ``base_url=``, ``strategy=``, ``backend=``, ``window=``, ...), as
        ``Reranker(**options)`` takes them.

    Returns
    -------
    list of Ranked
        Every document, best first; empty for no documents.

    Raises
    ------
    InputError
        For a document that cannot be ranked (no text, a duplicate id, a wrong type), naming
        it (``documents[3].text``).
    ConfigError
        For an unknown option, or options given beside ``reranker``.
    BackendError
        When the backend fails for good.

    Examples
    --------
    >>> rank("how long do fleas live", ["Fleas live ...", "..."],
    ...      model="Qwen/Qwen2.5-7B-Instruct", base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
    [Ranked(document='Fleas live ...', docid='0', text='Fleas live ...', score=2.0, rank=1, index=0), ...]
    """
    from .reranker import Reranker

    documents = list(documents)
    request = as_request(query, documents)
    if not request.candidates:
        if reranker is None:
            Reranker(**options)  # an unknown option is an error with no documents too
        return []
    if reranker is not None:
        if options:
            raise ConfigError(f"rank() takes either reranker= or the options of a new one, not both "
                              f"(got {', '.join(sorted(options))})")
        return ranked(documents, request, reranker.rerank_sync(request))
    with Reranker(**options) as owned:
        return ranked(documents, request, owned.rerank_sync(request))


def as_request(query: str | Query, documents: Iterable[str | Mapping | Candidate]) -> Request:
    """The :class:`~rerank.types.Request` of a query and documents as :func:`rank` takes them.

    Parameters
    ----------
    query : str or Query
    documents : iterable of str, dict or Candidate

    Returns
    -------
    Request
        With no candidates for no documents.

    Raises
    ------
    InputError
        Naming the document at fault (``documents[3].docid``).
    """
    if isinstance(query, str):
        query = Query(qid=DEFAULT_QID, text=parse_str(query, None, None, "query"))
    elif not isinstance(query, Query):
        raise InvalidJSON(f"expected a string or a Query, got {type(query).__name__}", None, None, "query")
    request = Request(query, [as_candidate(document, index) for index, document in enumerate(documents)])
    if request.candidates:
        check_request(request, None, None, query_field="query", candidates_field="documents",
                      text_field="text")
    return request


def as_candidate(document: str | Mapping | Candidate, index: int) -> Candidate:
    """One document as a :class:`~rerank.types.Candidate`; its id its position when it has none.

    Parameters
    ----------
    document : str, dict or Candidate
    index : int
        Its position in the input, for its default id and for error messages.

    Returns
    -------
    Candidate
    """
    field = f"documents[{index}]"
    if isinstance(document, Candidate):
        return document
    if isinstance(document, str):
        return Candidate(str(index), parse_str(document, None, None, field))
    if not isinstance(document, Mapping):
        raise InvalidJSON(f"expected a string, a dict or a Candidate, got {type(document).__name__}",
                          None, None, field)
    id_key = next((key for key in ID_KEYS if key in document), None)
    docid = str(index) if id_key is None else parse_id(document[id_key], None, None, f"{field}.{id_key}")
    text_key = next((key for key in TEXT_KEYS if key in document), None)
    if text_key is None:
        raise InvalidJSON(f"no passage text: expected one of the keys {', '.join(map(repr, TEXT_KEYS))}",
                          None, None, field)
    text = parse_str(document[text_key], None, None, f"{field}.{text_key}")
    title = document.get("title")
    if title is not None:
        title = parse_str(title, None, None, f"{field}.title")
    return Candidate(docid, text, title, parse_score(document.get("score"), None, None, f"{field}.score"))


def ranked(documents: list, request: Request, result: Result) -> list[Ranked]:
    """The documents of ``request`` in ``result``'s order, as :class:`Ranked` values.

    Parameters
    ----------
    documents : list
        As given to :func:`rank`, in the request's order.
    request : Request
        Built from them by :func:`as_request`.
    result : Result
        The reranked request.

    Returns
    -------
    list of Ranked
    """
    position = {candidate.docid: index for index, candidate in enumerate(request.candidates)}
    out = []
    for number, candidate in enumerate(result.candidates, start=1):
        index = position[candidate.docid]
        out.append(Ranked(documents[index], candidate.docid, candidate.text, float(candidate.score), number, index))
    return out
