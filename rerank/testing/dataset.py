"""What the judges know: queries, their candidate passages and relevance grades (qrels).

A :class:`Dataset` is read from a folder holding RankGPT-format candidate files (a JSON list of
``{"query": str, "hits": [{"qid", "docid", "content"}]}``), TREC qrels (``qid Q0 docid grade``)
and optionally topics (``qid<TAB>text``), as the folders of ``../shared/data`` do. A prompt's
passage is mapped back to docids by its text (:meth:`QueryIndex.match`), so the judges need
nothing but the prompt: a passage's grade is ``qrels[qid][docid]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

#: Passages are indexed by their first this many normalised tokens.
PREFIX_TOKENS = 12
#: Only the candidates the reranker is shown: merging another run's passages (SPLADE's) into the
#: index makes more texts ambiguous at 100 words and costs the oracle its perfect order.
DEFAULT_CANDIDATES = "bm25_top100.json"
DEFAULT_QRELS = "qrels*.txt"

_WORD = re.compile(r"[a-z0-9]+")
_WHITESPACE = re.compile(r"\s+")
_ID_IN_TEXT = re.compile(r"\[\s*(\d+)\s*\]")


def normalise(text: str) -> list[str]:
    """Lowercase alphanumeric word tokens of ``text``: ``re.findall(r"[a-z0-9]+", text.lower())``."""
    return _WORD.findall(text.lower())


def _is_prefix(passage: list[str], candidate: list[str], cut_last: bool = False) -> bool:
    """Whether ``passage`` is a prefix of ``candidate``; with ``cut_last`` its last token may be
    cut short (a passage truncated by tokens rather than words)."""
    if len(passage) > len(candidate):
        return False
    if not cut_last or not passage:
        return candidate[:len(passage)] == passage
    last = len(passage) - 1
    return passage[:last] == candidate[:last] and candidate[last].startswith(passage[last])


@dataclass
class QueryIndex:
    """The candidates of one query, indexed by their first :data:`PREFIX_TOKENS` tokens.

    Attributes
    ----------
    qid, text : str
        The query.
    docs : dict
        docid -> normalised tokens.
    by_prefix : dict
        First :data:`PREFIX_TOKENS` tokens -> docids.
    texts : dict
        docid -> the text as a reranker shows it (whitespace collapsed, ``[n]`` written ``(n)``).
    """

    qid: str
    text: str
    docs: dict[str, list[str]] = field(default_factory=dict)
    by_prefix: dict[tuple, list[str]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    def add(self, docid: str, content: str) -> None:
        """Index a candidate; a docid seen before is kept as first given."""
        if docid in self.docs:
            return
        tokens = normalise(content)
        self.docs[docid] = tokens
        self.texts[docid] = _ID_IN_TEXT.sub(r"(\1)", " ".join(content.split()))
        self.by_prefix.setdefault(tuple(tokens[:PREFIX_TOKENS]), []).append(docid)

    def match(self, passage: str) -> list[str]:
        """The docids whose text the prompt passage is (a prefix of).

        Exact text first, so passages that differ only in punctuation stay apart (DL19 has such
        pairs with different grades), a whole passage beating the longer ones it starts; then
        normalised tokens, the last of which may be cut; then without a ``Title: ... Content:``
        framing; last, for 8+ tokens, the candidates sharing the most tokens (over half).

        Parameters
        ----------
        passage : str
            The passage as the prompt shows it.

        Returns
        -------
        list of str
            The matching docids; empty when none.
        """
        shown = " ".join(passage.split())
        exact = [d for d, text in self.texts.items() if text == shown]
        exact = exact or [d for d, text in self.texts.items() if text.startswith(shown + " ")]
        if exact:
            return exact
        tokens = normalise(passage)
        if not tokens:
            return []
        found = self._match_tokens(tokens)
        if not found and "content" in tokens:
            found = self._match_tokens(tokens[tokens.index("content") + 1:])
        if not found and len(tokens) >= 8:
            found = self._overlap(tokens)
        return found

    def _match_tokens(self, tokens: list[str]) -> list[str]:
        if not tokens:
            return []
        if len(tokens) >= PREFIX_TOKENS:
            candidates = self.by_prefix.get(tuple(tokens[:PREFIX_TOKENS]), [])
            if candidates:
                exact = [d for d in candidates if _is_prefix(tokens, self.docs[d])]
                cut = [d for d in candidates if _is_prefix(tokens, self.docs[d], cut_last=True)]
                return exact or cut or list(candidates)
        exact = [docid for docid, doc in self.docs.items() if _is_prefix(tokens, doc)]
        return exact or [d for d, doc in self.docs.items() if _is_prefix(tokens, doc, cut_last=True)]

    def _overlap(self, tokens: list[str]) -> list[str]:
        wanted = set(tokens)
        best, best_score = [], 0.5
        for docid, doc in self.docs.items():
            score = len(wanted & set(doc[:len(tokens) + 10])) / len(wanted)
            if score > best_score:
                best, best_score = [docid], score
            elif score == best_score and best:
                best.append(docid)
        return best


class Dataset:
    """Known queries with their candidates and relevance grades.

    Parameters
    ----------
    path : str or Path or None
        A folder with RankGPT-format candidate files, ``qrels*.txt`` and optionally
        ``topics*.txt``; or a qrels file, whose folder holds the rest. None for an empty dataset
        (see :meth:`from_requests`).
    candidates : str
        Glob of the candidate files in the folder.
    qrels : str
        Glob of the qrels files in the folder (the file itself when ``path`` is a file).

    Attributes
    ----------
    queries : dict
        qid -> :class:`QueryIndex`.
    qrels : dict
        qid -> docid -> grade.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the folder has no candidates.
    """

    def __init__(self, path: str | Path | None = None, candidates: str = DEFAULT_CANDIDATES,
                 qrels: str = DEFAULT_QRELS) -> None:
        self.queries: dict[str, QueryIndex] = {}
        self.by_text: dict[str, str] = {}          # query text -> qid
        self.qrels: dict[str, dict[str, int]] = {}
        self._lower: dict[str, str] = {}
        self.max_grade = 1
        if path is None:
            return
        path = Path(path)
        if path.is_file():
            path, qrels = path.parent, path.name
        if not path.is_dir():
            raise FileNotFoundError(f"data directory not found: {path}")
        for found in sorted(path.glob(candidates)):
            self._load_candidates(found)
        for found in sorted(path.glob("topics*.txt")):
            self._load_topics(found)
        for found in sorted(path.glob(qrels)):
            self._load_qrels(found)
        if not self.queries:
            raise ValueError(f"no RankGPT-format candidates ({candidates}) in {path}")
        self._indexed()

    @classmethod
    def from_requests(cls, requests, qrels: dict[str, dict[str, int]]) -> "Dataset":
        """A dataset of rerank's own requests (any input format rerank reads) and qrels.

        Parameters
        ----------
        requests : iterable of rerank.types.Request
            Queries with their candidates (a candidate's ``text``, as a prompt shows it).
        qrels : dict
            qid -> docid -> grade, as :func:`rerank.read_qrels` gives them.

        Returns
        -------
        Dataset
        """
        dataset = cls()
        for request in requests:
            index = dataset._query(request.query.qid, _WHITESPACE.sub(" ", request.query.text).strip())
            for candidate in request.candidates:
                index.add(candidate.docid, candidate.text)
        dataset.qrels = {qid: dict(judged) for qid, judged in qrels.items()}
        dataset._indexed()
        return dataset

    def _indexed(self) -> None:
        self._lower = {text.lower(): qid for text, qid in self.by_text.items()}
        self.max_grade = max([1, *(g for judged in self.qrels.values() for g in judged.values())])

    def _query(self, qid: str, text: str) -> QueryIndex:
        index = self.queries.get(qid)
        if index is None:
            index = self.queries[qid] = QueryIndex(qid, text)
        self.by_text.setdefault(text, qid)
        return index

    def _load_candidates(self, path: Path) -> None:
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        for entry in entries if isinstance(entries, list) else []:
            if not (isinstance(entry, dict) and isinstance(entry.get("query"), str)
                    and isinstance(entry.get("hits"), list)):
                continue
            text = _WHITESPACE.sub(" ", entry["query"]).strip()
            hits = [h for h in entry["hits"] if isinstance(h, dict) and "docid" in h]
            qid = str(hits[0]["qid"]) if hits and "qid" in hits[0] else self.by_text.get(text)
            if qid is None:
                continue
            index = self._query(qid, text)
            for hit in hits:
                index.add(str(hit["docid"]), str(hit.get("content", "")))

    def _load_topics(self, path: Path) -> None:
        for line in path.read_text(encoding="utf-8").splitlines():
            qid, _, text = line.partition("\t")
            text = _WHITESPACE.sub(" ", text).strip()
            if qid.strip() and text:
                self._query(qid.strip(), text)

    def _load_qrels(self, path: Path) -> None:
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 4 and re.fullmatch(r"-?[0-9]+", parts[3]):
                self.qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])

    def identify(self, text: str, fallback: str = "") -> str | None:
        """The qid of the longest known query whose text occurs in ``text`` (then ``fallback``).

        Parameters
        ----------
        text : str
            Searched first (a prompt without its passages, so that a passage quoting another
            query does not win).
        fallback : str
            Searched when ``text`` holds no known query.

        Returns
        -------
        str or None
            None when no known query occurs.
        """
        for haystack in (text, fallback):
            if not haystack:
                continue
            found = [q for q in self.by_text if q in haystack]
            if found:
                return self.by_text[max(found, key=len)]
            lowered = _WHITESPACE.sub(" ", haystack).lower()
            found = [q for q in self._lower if q in lowered]
            if found:
                return self._lower[max(found, key=len)]
        return None

    def grade(self, qid: str, passage: str) -> tuple[int, bool]:
        """The grade of a prompt's passage for query ``qid``.

        Returns
        -------
        grade : int
            The max grade among the docids carrying this text (0 when unjudged or unmatched).
        matched : bool
            Whether the text matched a candidate at all.
        """
        docids = self.queries[qid].match(passage)
        judged = self.qrels.get(qid, {})
        return max((judged.get(d, 0) for d in docids), default=0), bool(docids)
