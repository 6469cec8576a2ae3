"""A local HTTP server that speaks the OpenAI chat completions API, for integration tests.

It answers listwise reranking prompts with a configurable *judge* instead of a language model:

``oracle``
    A perfect judge. It identifies the query and the passages of the prompt in the data directory
    (RankGPT-format candidate files and TREC qrels) and ranks the passages by relevance grade.
``identity`` / ``reverse``
    ``[1] > [2] > ... > [n]`` and ``[n] > ... > [1]`` (``[A] > [B] > ...`` for letter identifiers).
``garbage``
    Text without a single digit or bracket (and, when the passages are named by letters, without
    an uppercase letter), so nothing in it can be read as a passage identifier.
``noisy``
    The oracle's order with some adjacent swaps, deterministic per prompt.

Use it from Python::

    with start_server("oracle", data_dir=".../dl19") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        ...
        server.stats()   # {"requests": ..., "completions": ..., "failures": ..., ...}

or as a script, which prints ``READY http://127.0.0.1:PORT/v1`` once it listens::

    python tests/llm_server.py --judge oracle --data-dir ../shared/data/dl19 --port 0

How a prompt is read (nothing else about the template is assumed):

* Passages are the lines of user messages that match ``^\\[(\\d+|[A-Z])\\] (.*)$``: a number, or a
  single uppercase letter (``[A]`` is passage 1, ``[B]`` passage 2, ...). A prompt names its
  passages one way, that of its first passage line; lines of the other kind are ignored, and the
  answer names passages the same way (``[C] > [A] > [B]``). The first occurrence of each
  identifier wins. Lines whose text starts with ``>`` are format examples such as ``[1] > [2]``,
  not passages, and are skipped. ``n`` is the number of identifiers found.
* When the last message has role ``assistant``, it is the start of the answer, which the model
  continues (vLLM's ``continue_final_message``, llama.cpp's trailing assistant message): the reply
  is the judge's answer without that prefix when the answer starts with it, else the whole
  answer. The prompt is read from the messages before it (``continue_final_message`` and
  ``add_generation_prompt`` are accepted and otherwise ignored).
* The query is the known query (from the data directory) whose text occurs in the user messages.
  Text outside the passage lines is searched first, so a passage that happens to quote another
  query does not win; among several matches the longest query wins.
* A passage is mapped to a candidate of that query by normalised text: lowercase alphanumeric
  tokens (``re.findall(r"[a-z0-9]+", text.lower())``); the prompt passage, which the reranker may
  have cut to its first words or tokens, must be a prefix of the candidate. The last token of the
  passage may itself be cut (token-level truncation), so it only needs to be a prefix of the
  candidate's token at that position. A leading ``Title: ... Content:`` is tolerated, and as a
  last resort the candidate with the largest token overlap (more than half; passages of 8+ tokens) is taken.
* When several docids of the query share the passage's text (duplicates in the collection), the
  passage gets the **maximum** grade among them. Unjudged docids and unmatched passages have
  grade 0. The oracle sorts by grade descending, ties by identifier ascending.

Fault injection: with ``fail_rate`` p each chat request fails with probability p, uniformly one of
HTTP 429 (``Retry-After: 0``), HTTP 500, or a dropped connection (the socket is shut down before
any byte of a response is written). The draws come from ``random.Random(seed)`` behind a lock, so a
server's sequence of outcomes is deterministic in the order requests arrive.

Hostile servers, for the client's deadlines, size limits and redirect policy. Each applies to chat
requests (``POST .../chat/completions``); ``drip``, ``drip_headers``, ``hang`` and ``redirect``
also to ``GET /models`` with ``fault_models=True`` / ``--fault-models`` (the endpoint check):

``drip=D`` / ``--drip D``
    The status line and headers go out at once (with ``Content-Length``), then the body one byte
    every ``D`` seconds: no read ever waits long, but the answer takes ``D`` times its size.
``drip_headers=D`` / ``--drip-headers D``
    The status line and the headers go out one byte every ``D`` seconds (then the body, dripped
    too with ``drip``).
``hang=True`` / ``--hang``
    The request is read, and never answered (the connection stays open until the server stops).
``redirect=URL`` / ``--redirect URL``
    Chat requests are answered ``307 Temporary Redirect`` to ``URL + "/chat/completions"``
    (``/models`` to ``URL + "/models"``), ``URL`` being a base URL such as another server's
    ``base_url``, or a path such as ``/moved/v1`` for a redirect to the same origin, which this
    server then answers as it would ``/v1``.
``wrong_types=True`` / ``--wrong-types``
    ``message.content`` is a number, a list, an object, in turn (per server, in the order the
    requests arrive); the rest of the answer is well-formed.
``huge=N`` / ``--huge N``
    The answer is a body of about ``N`` MiB (the judge's answer and then filler words in
    ``content``, no ``usage``), sent without ``Content-Length`` (the body ends when the
    connection closes) in 64 KiB writes, so a client must count what it reads.

Counters of the faults, in :meth:`RunningServer.stats`: ``redirects``, ``hung`` (requests left
unanswered), ``disconnects`` (answers the client stopped reading: a write failed) and
``body_bytes`` (bytes of chat answer bodies written). :meth:`RunningServer.wait_for` waits until a
condition on the counters holds (a test waits on an event, never a fixed sleep).

The server honours ``max_tokens`` / ``max_completion_tokens`` as a real one does: an answer longer
than that is cut to that many tokens and reported with ``finish_reason: "length"``
(``honor_max_tokens=False`` / ``--ignore-max-tokens`` turns this off). With ``context_window`` set,
a prompt with more tokens than that is refused with HTTP 400 ``context_length_exceeded``.

Log-probabilities: with ``logprobs: true`` (and ``top_logprobs``, 0 to 20, validated as OpenAI
does) ``choices[0].logprobs`` is ``{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}``,
one entry per token of the reply (after the ``max_tokens`` cut). The first token of a ranking
carries the judge's preference: its alternatives are the first tokens the reply would start with,
had each identifier not yet written been ranked at the place being written (``A``, ``B``, ... after
a ``[`` prefix; ``12`` for passage 12), in the judge's order, with the log-softmax of logits
0, -1, -2, ...; the token itself is the best of them. Every other token has logprob 0.0 and itself
as its only alternative. ``logprobs=False`` / ``--no-logprobs`` makes a server that never returns
them (``"logprobs": null``).

Only the standard library is needed, plus ``rerank.tokens`` for counting tokens with cl100k_base
(``len(text) // 4`` when the encoding is unavailable, or with ``--estimate-usage``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import random
import re
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

MODEL_ID = "test-judge"
JUDGES = ("oracle", "identity", "reverse", "garbage", "noisy")
FAILURE_KINDS = ("429", "500", "drop")
WRONG_CONTENTS = (42, ["[1] > [2]"], {"text": "[1] > [2]"})   # what wrong_types sends, in turn
HUGE_CHUNK = 64 << 10       # huge answers are written this many bytes at a time
_FILLER = b" lorem ipsum dolor sit amet" * 2500
PREFIX_TOKENS = 12          # K: passages are indexed by their first K normalised tokens
NOISY_SWAP_PROBABILITY = 0.25
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3
MAX_TOP_LOGPROBS = 20       # OpenAI's limit on top_logprobs

_PASSAGE_LINE = re.compile(r"^\[(\d+|[A-Z])\] (.*)$", re.MULTILINE)
_WORD = re.compile(r"[a-z0-9]+")
_WHITESPACE = re.compile(r"\s+")


# --------------------------------------------------------------------------------------------
# Token counting
# --------------------------------------------------------------------------------------------

def _load_get_encoding() -> Callable[[str], Any] | None:
    """``rerank.tokens.get_encoding``; loaded from its file when the package does not import."""
    try:
        from rerank.tokens import get_encoding
        return get_encoding
    except Exception:  # noqa: BLE001 - the package may be mid-edit or not on the path
        pass
    path = Path(__file__).resolve().parents[1] / "rerank" / "tokens.py"
    try:
        spec = importlib.util.spec_from_file_location("_llm_server_rerank_tokens", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_encoding
    except Exception:  # noqa: BLE001
        return None


SEPARATOR = "<|endoftext|>"


class Tokens:
    """Counts and truncates with cl100k_base, or ``len(text) // 4`` when it is unavailable or
    ``estimate`` is asked for (a stub's bookkeeping, for timing benchmarks on a small machine)."""

    def __init__(self, estimate: bool = False) -> None:
        get_encoding = None if estimate else _load_get_encoding()
        encoding = None
        if get_encoding is not None:
            try:
                encoding = get_encoding("cl100k_base")
            except Exception:  # noqa: BLE001
                encoding = None
        self.encoding = encoding

    def count(self, text: str) -> int:
        if self.encoding is None:
            return len(text) // 4
        return len(self.encoding.encode_ordinary(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        max_tokens = max(max_tokens, 0)
        if self.encoding is None:
            return text[:max_tokens * 4]
        tokens = self.encoding.encode_ordinary(text)
        return text if len(tokens) <= max_tokens else self.encoding.decode(tokens[:max_tokens])

    def pieces(self, text: str) -> list[bytes]:
        """The tokens of ``text`` as bytes; chunks of 4 characters when estimating."""
        if self.encoding is None:
            return [text[i:i + 4].encode("utf-8") for i in range(0, len(text), 4)]
        return [self.encoding.decode_single_token_bytes(t) for t in self.encoding.encode_ordinary(text)]

    def prompt(self, messages: list[dict]) -> int:
        contents = [m["content"] for m in messages]
        framing = TOKENS_PER_MESSAGE * len(contents) + TOKENS_PER_REPLY
        if self.encoding is None or not contents or any(SEPARATOR in c for c in contents):
            return sum(map(self.count, contents)) + framing
        # One call for all messages: tiktoken encodes the parts between allowed special tokens
        # apart, so this is the sum of the messages' counts (100-passage prompts have 200+).
        tokens = self.encoding.encode(SEPARATOR.join(contents), allowed_special={SEPARATOR},
                                      disallowed_special=())
        return len(tokens) - (len(contents) - 1) + framing


# --------------------------------------------------------------------------------------------
# Data: queries, candidates and qrels
# --------------------------------------------------------------------------------------------

_ID_IN_TEXT = re.compile(r"\[\s*(\d+)\s*\]")


def normalise(text: str) -> list[str]:
    """Lowercase alphanumeric word tokens of ``text``."""
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
    """The candidates of one query, indexed by their first :data:`PREFIX_TOKENS` tokens."""

    qid: str
    text: str
    docs: dict[str, list[str]] = field(default_factory=dict)          # docid -> tokens
    by_prefix: dict[tuple, list[str]] = field(default_factory=dict)   # first K tokens -> docids
    texts: dict[str, str] = field(default_factory=dict)               # docid -> text as shown

    def add(self, docid: str, content: str) -> None:
        if docid in self.docs:
            return
        tokens = normalise(content)
        self.docs[docid] = tokens
        # As a reranker shows it: whitespace collapsed, "[n]" rewritten to "(n)".
        self.texts[docid] = _ID_IN_TEXT.sub(r"(\1)", " ".join(content.split()))
        self.by_prefix.setdefault(tuple(tokens[:PREFIX_TOKENS]), []).append(docid)

    def _scan(self, tokens: list[str]) -> list[str]:
        exact = [docid for docid, doc in self.docs.items() if _is_prefix(tokens, doc)]
        return exact or [d for d, doc in self.docs.items() if _is_prefix(tokens, doc, cut_last=True)]

    def match(self, passage: str) -> list[str]:
        """The docids whose text the prompt passage is (a prefix of); empty when none."""
        # Exact text first: passages that differ only in punctuation stay apart (DL19 has
        # several such pairs with different grades).
        # A whole passage beats the longer ones it is a prefix of.
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
            # "Title: ... Content: ..." framing added by the prompt but not in the data.
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
        return self._scan(tokens)

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


# Only the candidates the reranker is shown: merging another run's passages (SPLADE's) into the
# index makes more texts ambiguous at 100 words and costs the oracle its perfect order.
DEFAULT_CANDIDATES = "bm25_top100.json"


class Dataset:
    """Known queries with their candidates (RankGPT JSON files) and relevance grades (qrels)."""

    def __init__(self, data_dir: str | Path, candidates: str = DEFAULT_CANDIDATES) -> None:
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"data directory not found: {self.data_dir}")
        self.queries: dict[str, QueryIndex] = {}   # qid -> index
        self.by_text: dict[str, str] = {}          # query text -> qid
        self.qrels: dict[str, dict[str, int]] = {}
        for path in sorted(self.data_dir.glob(candidates)):
            self._load_candidates(path)
        for path in sorted(self.data_dir.glob("topics*.txt")):
            self._load_topics(path)
        for path in sorted(self.data_dir.glob("qrels*.txt")):
            self._load_qrels(path)
        if not self.queries:
            raise ValueError(f"no RankGPT-format candidates ({candidates}) in {self.data_dir}")
        self._lower = {text.lower(): qid for text, qid in self.by_text.items()}

    def _query(self, qid: str, text: str) -> QueryIndex:
        index = self.queries.get(qid)
        if index is None:
            index = self.queries[qid] = QueryIndex(qid, text)
        self.by_text.setdefault(text, qid)
        return index

    def _load_candidates(self, path: Path) -> None:
        """Every RankGPT-format file: ``[{"query": str, "hits": [{"qid", "docid", "content"}]}]``."""
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(entries, list):
            return
        for entry in entries:
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
            if len(parts) >= 4:
                try:
                    grade = int(parts[3])
                except ValueError:
                    continue
                self.qrels.setdefault(parts[0], {})[parts[2]] = grade

    def identify(self, text: str, fallback: str = "") -> str | None:
        """The qid of the longest known query whose text occurs in ``text`` (then ``fallback``)."""
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
        """(grade, matched): the max grade among the docids carrying this passage's text."""
        docids = self.queries[qid].match(passage)
        judged = self.qrels.get(qid, {})
        return max((judged.get(d, 0) for d in docids), default=0), bool(docids)


# --------------------------------------------------------------------------------------------
# Reading prompts and judging
# --------------------------------------------------------------------------------------------

@dataclass
class Prompt:
    passages: dict[int, str]     # identifier -> passage text, in order of first appearance
    user_text: str               # all user contents, joined by newlines
    outside_text: str            # user_text without the passage lines
    digest: str                  # sha256 of the messages
    letters: bool = False        # passages named [A], [B], ... (identifiers 1, 2, ...)


def _is_letter(label: str) -> bool:
    return len(label) == 1 and "A" <= label <= "Z"


def read_prompt(messages: list[dict]) -> Prompt:
    user = "\n".join(m["content"] for m in messages if m.get("role") == "user")
    passages: dict[int, str] = {}
    letters: bool | None = None      # the kind of the first passage line
    for match in _PASSAGE_LINE.finditer(user):
        name, text = match.group(1), match.group(2)
        if text.lstrip().startswith(">"):   # a format example such as "[1] > [2]"
            continue
        if letters is None:
            letters = _is_letter(name)
        if _is_letter(name) != letters:
            continue
        ident = ord(name) - ord("A") + 1 if letters else int(name)
        passages.setdefault(ident, text)
    outside = _PASSAGE_LINE.sub("", user)
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
    return Prompt(passages, user, outside, digest, bool(letters))


def label(ident: int, letters: bool = False) -> str:
    """How the answer names passage ``ident``: ``"3"``, or ``"C"`` with letters."""
    return chr(ord("A") + ident - 1) if letters else str(ident)


def format_ranking(order: list[int], letters: bool = False) -> str:
    return " > ".join(f"[{label(i, letters)}]" for i in order)


_GARBAGE_TEXTS = (
    "I'm sorry, I can't rank these passages.",
    "",
    "Passages ranked: alpha > beta > gamma",
)
_GARBAGE_ALPHABET = string.ascii_letters + " .,;:!?-'\"()"


class Judge:
    """Produces the answer to a prompt; records what it could not match in ``notes``."""

    def __init__(self, name: str, dataset: Dataset | None, seed: int, noise: float) -> None:
        if name not in JUDGES:
            raise ValueError(f"unknown judge {name!r}; choose from {', '.join(JUDGES)}")
        if name in ("oracle", "noisy") and dataset is None:
            raise ValueError(f"the {name} judge needs a data directory")
        self.name = name
        self.dataset = dataset
        self.seed = seed
        self.noise = noise
        self._garbage_rng = random.Random(f"garbage:{seed}")
        self._lock = threading.Lock()

    def answer(self, prompt: Prompt) -> tuple[str, dict[str, int]]:
        order, text, notes = self.rank(prompt)
        return text, notes

    def rank(self, prompt: Prompt) -> tuple[list[int] | None, str, dict[str, int]]:
        """(order, answer, notes): the judge's order of the identifiers (None for garbage) and
        the answer that writes it, in the prompt's kind of identifiers."""
        order, notes = self._order(prompt)
        if order is None:
            text = self._garbage()
            return None, text.lower() if prompt.letters else text, notes
        return order, format_ranking(order, prompt.letters), notes

    def _order(self, prompt: Prompt) -> tuple[list[int] | None, dict[str, int]]:
        ids = sorted(prompt.passages)
        notes = {"unidentified_queries": 0, "unmatched_passages": 0}
        if self.name == "identity":
            return ids, notes
        if self.name == "reverse":
            return ids[::-1], notes
        if self.name == "garbage":
            return None, notes
        order = self._oracle(prompt, notes)
        if self.name == "noisy":
            rng = random.Random(f"{self.seed}:{prompt.digest}")
            i = 0
            while i < len(order) - 1:
                if rng.random() < self.noise:
                    order[i], order[i + 1] = order[i + 1], order[i]
                    i += 1
                i += 1
        return order, notes

    def _oracle(self, prompt: Prompt, notes: dict[str, int]) -> list[int]:
        ids = sorted(prompt.passages)
        qid = self.dataset.identify(prompt.outside_text, prompt.user_text) if ids else None
        if qid is None:
            notes["unidentified_queries"] += 1 if ids else 0
            return ids
        grades = {}
        for ident in ids:
            grades[ident], matched = self.dataset.grade(qid, prompt.passages[ident])
            notes["unmatched_passages"] += 0 if matched else 1
        return sorted(ids, key=lambda i: (-grades[i], i))

    def _garbage(self) -> str:
        with self._lock:
            kind = self._garbage_rng.randrange(len(_GARBAGE_TEXTS) + 1)
            if kind < len(_GARBAGE_TEXTS):
                return _GARBAGE_TEXTS[kind]
            length = self._garbage_rng.randint(5, 80)
            return "".join(self._garbage_rng.choice(_GARBAGE_ALPHABET) for _ in range(length))


# --------------------------------------------------------------------------------------------
# Log-probabilities
# --------------------------------------------------------------------------------------------

def first_token_alternatives(tokens: Tokens, full: str, order: list[int], letters: bool,
                             start: int) -> list[bytes]:
    """The first tokens of ``full[start:]`` had each identifier not yet written been ranked at the
    place being written at ``start``, in the judge's order, duplicates dropped.

    ``full`` is ``format_ranking(order, letters)``; ``start`` is where the reply begins in it
    (the length of a prefilled start). Identifiers that do not fit that start (``[1`` written
    before ``2]``) are left out.
    """
    begin = 0
    for slot, ident in enumerate(order):
        end = begin + len(label(ident, letters)) + 2
        if end > start:
            break
        begin = end + len(" > ")
    else:
        return []
    seen: list[bytes] = []
    for ident in order[slot:]:
        text = f"{full[:begin]}[{label(ident, letters)}]{full[end:]}"
        if text[:start] != full[:start]:
            continue
        first = tokens.pieces(text[start:])[:1]
        if first and first[0] not in seen:
            seen.append(first[0])
    return seen


def _token_entry(piece: bytes, logprob: float, alternatives: list[tuple[bytes, float]],
                 top: int) -> dict:
    def item(token: bytes, value: float) -> dict:
        return {"token": token.decode("utf-8", errors="replace"), "logprob": value,
                "bytes": list(token)}
    return {**item(piece, logprob), "top_logprobs": [item(t, v) for t, v in alternatives[:top]]}


def logprobs_content(tokens: Tokens, reply: str, alternatives: list[bytes], top: int) -> list[dict]:
    """``choices[0].logprobs.content`` for ``reply``: the first token's ``alternatives`` get the
    log-softmax of logits 0, -1, -2, ... (the token itself first); every other token logprob 0."""
    entries = []
    for position, piece in enumerate(tokens.pieces(reply)):
        ranked = [piece]
        if position == 0:
            ranked += [a for a in alternatives if a != piece]
        norm = math.log(sum(math.exp(-k) for k in range(len(ranked))))
        scored = [(token, -k - norm) for k, token in enumerate(ranked)]
        entries.append(_token_entry(piece, scored[0][1], scored, top))
    return entries


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

def _error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else "null"


def _check_logprobs(request: dict) -> None:
    """OpenAI's checks of ``logprobs`` and ``top_logprobs``."""
    logprobs, top = request.get("logprobs"), request.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise _BadRequest(f"Invalid type for 'logprobs': expected a boolean, but got "
                          f"{_json_type(logprobs)} instead.", "logprobs", "invalid_type")
    if top is None:
        return
    if not isinstance(top, int) or isinstance(top, bool):
        raise _BadRequest(f"Invalid type for 'top_logprobs': expected an integer, but got "
                          f"{_json_type(top)} instead.", "top_logprobs", "invalid_type")
    if top < 0:
        raise _BadRequest("Invalid 'top_logprobs': integer below minimum value. Expected a value "
                          f">= 0, but got {top} instead.", "top_logprobs", "integer_below_min_value")
    if top > MAX_TOP_LOGPROBS:
        raise _BadRequest("Invalid 'top_logprobs': integer above maximum value. Expected a value "
                          f"<= {MAX_TOP_LOGPROBS}, but got {top} instead.", "top_logprobs",
                          "integer_above_max_value")
    if logprobs is not True:
        raise _BadRequest("Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                          "'top_logprobs' is given.", "top_logprobs", "invalid_value")


def _content_text(content: Any) -> str:
    """Message content as text; a list of content parts contributes its text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    raise _BadRequest("Invalid type for 'messages[].content': expected a string or an array.")


def _parse_request(body: bytes) -> dict:
    try:
        request = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadRequest(f"We could not parse the JSON body of your request. ({exc})") from None
    if not isinstance(request, dict):
        raise _BadRequest("The request body must be a JSON object.")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("Missing required parameter: 'messages'.")
    cleaned = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _BadRequest("Invalid 'messages': each message needs a 'role' and 'content'.")
        cleaned.append({"role": message["role"], "content": _content_text(message.get("content"))})
    request["messages"] = cleaned
    _check_logprobs(request)
    return request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llm-test-server/1.0"
    server: "_Server"
    _faulty = False     # this request gets the server's faults (drip, drip_headers, hang)
    _answer = False     # this response is a chat answer (its body counts in body_bytes)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.state.verbose:
            super().log_message(format, *args)

    # -- plumbing ------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write (below); no Nagle delay on keep-alive answers.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _path(self) -> str:
        path = urlsplit(self.path).path.rstrip("/")
        return path or "/"

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self._send([data])

    def _send(self, body: Iterable[bytes]) -> None:
        """End the headers and send them with the pieces of ``body``: headers and a one-piece
        body in one write, or a byte at a time for a faulty request (``drip``, ``drip_headers``).
        A client that stops reading is counted (``disconnects``) and the connection closed."""
        state = self.server.state
        head = b"".join(getattr(self, "_headers_buffer", [])) + b"\r\n"
        self._headers_buffer = []
        drip = state.drip if self._faulty else 0.0
        try:
            if self._faulty and state.drip_headers > 0:
                self._drip(head, state.drip_headers)
                head = b""
            for piece in body:
                if drip > 0:
                    if head:
                        self.wfile.write(head)
                        head = b""
                    self._drip(piece, drip)
                else:
                    self.wfile.write(head + piece)
                    head = b""
                if self._answer:
                    state.count(body_bytes=len(piece))
            if head:
                self.wfile.write(head)
        except _Stopping:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            state.count(disconnects=1)
            self.close_connection = True

    def _drip(self, data: bytes, interval: float) -> None:
        """Write ``data`` one byte every ``interval`` seconds; :class:`_Stopping` when the server stops."""
        for index in range(len(data)):
            if self.server.state.stopping.wait(interval):
                raise _Stopping
            self.wfile.write(data[index:index + 1])

    def _hang(self) -> None:
        """Answer nothing until the server stops; then close the connection."""
        self.server.state.count(hung=1)
        self.server.state.stopping.wait()
        self.close_connection = True

    def _redirect(self, route: str = "/chat/completions") -> None:
        """``307 Temporary Redirect`` to the ``redirect`` URL's ``route``."""
        state = self.server.state
        state.count(redirects=1)
        self.send_response(307)
        self.send_header("Location", state.redirect.rstrip("/") + route)
        self.send_header("Content-Length", "0")
        self._send([])

    def _send_huge(self, payload: dict) -> None:
        """``payload`` (a chat completion) with its content padded to about ``huge`` MiB of body,
        without ``usage`` or ``Content-Length``, in :data:`HUGE_CHUNK` writes."""
        message = payload["choices"][0]["message"]
        answer, message["content"] = message["content"], "\u0000"
        payload.pop("usage", None)
        before, after = json.dumps(payload).split('"\\u0000"')
        before = (before + json.dumps(answer)[:-1]).encode("utf-8")
        after = ('"' + after).encode("utf-8")
        size = int(self.server.state.huge * (1 << 20))

        def pieces():
            yield before
            left = size - len(before) - len(after)
            while left > 0:
                chunk = _FILLER[:min(left, HUGE_CHUNK)]
                left -= len(chunk)
                yield chunk
            yield after

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")   # the body ends when the connection closes
        self.close_connection = True
        self._send(pieces())

    def _drop(self) -> None:
        """Close the connection without sending a single byte of a response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routes --------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        path = self._path()
        state = self.server.state
        self._answer = False
        moved = f"{state.redirect_base}/models" if state.redirect_base is not None else None
        models = ("/v1/models", "/models", moved)
        self._faulty = state.fault_models and path in models
        if self._faulty and state.hang:
            self._hang()
        elif self._faulty and state.redirect is not None and path != moved:
            self._redirect("/models")
        elif path in models:
            self._send_json(200, {"object": "list", "data": [_model_card(state.owned_by, state.max_model_len)]})
        elif path in (f"/v1/models/{MODEL_ID}", f"/models/{MODEL_ID}"):
            self._send_json(200, _model_card(state.owned_by, state.max_model_len))
        elif path == "/stats":
            self._send_json(200, self.server.state.stats())
        else:
            self._not_found()

    def do_POST(self) -> None:  # noqa: N802
        body = self._read_body()
        path = self._path()
        state = self.server.state
        self._answer = False
        self._faulty = path in ("/v1/chat/completions", "/chat/completions") or path == state.redirect_path
        if self._faulty:
            self._chat(body, redirect=state.redirect is not None and path != state.redirect_path)
        elif path == "/stats/reset":
            self.server.state.reset()
            self._send_json(200, self.server.state.stats())
        else:
            self._not_found()

    def _not_found(self) -> None:
        self._send_json(404, _error_body(f"Unknown request URL: {self.command} {self.path}.",
                                         "invalid_request_error", "unknown_url"))

    def _chat(self, body: bytes, redirect: bool = False) -> None:
        state = self.server.state
        state.begin()
        # Answers go out `delay` seconds after the request arrived: the judge's own work happens
        # within that time, as a real server's compute does, instead of adding to it.
        deadline = time.monotonic() + state.delay
        try:
            if redirect:
                self._redirect()
                return
            if state.hang:
                self._hang()
                return
            failure = state.draw_failure()
            if failure is not None and state.delay > 0:
                time.sleep(state.delay)
            if failure == "drop":
                self._drop()
            elif failure == "429":
                self._send_json(429, _error_body(
                    "Rate limit reached for test-judge (injected by the test server). "
                    "Please try again in 0s.", "rate_limit_exceeded", "rate_limit_exceeded"),
                    headers={"Retry-After": "0", "retry-after-ms": "0"})
            elif failure == "500":
                self._send_json(500, _error_body(
                    "The server had an error while processing your request (injected by the "
                    "test server).", "server_error", "internal_server_error"))
            else:
                try:
                    self._complete(body, deadline)
                except (BrokenPipeError, ConnectionResetError):
                    raise
                except Exception as exc:  # noqa: BLE001 - a bug here must not look like a hang
                    state.count(internal_errors=1)
                    self._send_json(500, _error_body(f"test server bug: {exc!r}", "server_error"))
        finally:
            state.end()

    def _complete(self, body: bytes, deadline: float = 0.0) -> None:
        state = self.server.state
        try:
            request = _parse_request(body)
        except _BadRequest as exc:
            state.count(bad_requests=1)
            self._send_json(400, _error_body(str(exc), "invalid_request_error", exc.code, exc.param))
            return
        messages = request["messages"]
        prompt_tokens = state.tokens.prompt(messages)
        if state.context_window is not None and prompt_tokens > state.context_window:
            state.count(bad_requests=1)
            self._send_json(400, _error_body(
                f"This model's maximum context length is {state.context_window} tokens. However, "
                f"your messages resulted in {prompt_tokens} tokens. Please reduce the length of "
                "the messages.", "invalid_request_error", "context_length_exceeded", "messages"))
            return
        # A last assistant message is the start of the answer, to be continued (prefill).
        prefill = messages[-1]["content"] if messages[-1]["role"] == "assistant" else None
        prompt = read_prompt(messages[:-1] if prefill is not None else messages)
        order, full, notes = state.judge.rank(prompt)
        answer, start = full, 0
        if prefill and full.startswith(prefill):
            answer, start = full[len(prefill):], len(prefill)
        finish_reason = "stop"
        limit = request.get("max_completion_tokens", request.get("max_tokens"))
        if state.honor_max_tokens and isinstance(limit, int) and not isinstance(limit, bool):
            if state.tokens.count(answer) > limit:
                answer, finish_reason = state.tokens.truncate(answer, limit), "length"
        logprobs = None
        if state.logprobs and request.get("logprobs") is True:
            alternatives = (first_token_alternatives(state.tokens, full, order, prompt.letters, start)
                            if order else [])
            logprobs = {"content": logprobs_content(state.tokens, answer, alternatives,
                                                    request.get("top_logprobs") or 0)}
        completion_tokens = state.tokens.count(answer)
        state.count(completions=1, prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens, **notes)
        state.record({"model": request.get("model"), "messages": messages, "answer": answer,
                      "prompt_tokens": prompt_tokens, "finish_reason": finish_reason,
                      "prefill": prefill, "max_tokens": request.get("max_tokens"),
                      "max_completion_tokens": request.get("max_completion_tokens"),
                      "logprobs": request.get("logprobs"),
                      "top_logprobs": request.get("top_logprobs")})
        time.sleep(max(deadline - time.monotonic(), 0.0))
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or MODEL_ID,
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": answer, "refusal": None},
                         "logprobs": logprobs, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "system_fingerprint": None,
        }
        self._answer = True
        if state.wrong_types:
            payload["choices"][0]["message"]["content"] = state.next_wrong_content()
        if state.huge > 0:
            self._send_huge(payload)
        else:
            self._send_json(200, payload)


def _model_card(owned_by: str = "tests", max_model_len: int | None = None) -> dict:
    card = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": owned_by}
    if max_model_len is not None:  # as vLLM lists its models
        card["max_model_len"] = max_model_len
    return card


_COUNTERS = ("requests", "completions", "failures", "prompt_tokens", "completion_tokens",
             "bad_requests", "internal_errors", "unidentified_queries", "unmatched_passages",
             "redirects", "hung", "disconnects", "body_bytes")


class _Stopping(Exception):
    """The server is stopping: a dripping answer ends."""


class _State:
    """Everything the handlers share: the judge, the fault injection and the counters."""

    def __init__(self, judge: Judge, tokens: Tokens, *, fail_rate: float, seed: int, delay: float,
                 honor_max_tokens: bool, context_window: int | None, verbose: bool,
                 logprobs: bool = True, owned_by: str = "tests", max_model_len: int | None = None,
                 drip: float = 0.0, drip_headers: float = 0.0, hang: bool = False,
                 redirect: str | None = None, wrong_types: bool = False, huge: float = 0.0,
                 fault_models: bool = False) -> None:
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if min(drip, drip_headers, huge) < 0:
            raise ValueError("drip, drip_headers and huge must not be negative")
        self.drip = drip
        self.drip_headers = drip_headers
        self.hang = hang
        self.redirect = redirect
        # The base path a redirect goes to when it is on this server (a path: a same-origin
        # redirect), served as /v1 is.
        same_origin = redirect is not None and not urlsplit(redirect).netloc
        self.redirect_base = urlsplit(redirect).path.rstrip("/") if same_origin else None
        self.redirect_path = f"{self.redirect_base}/chat/completions" if same_origin else None
        self.wrong_types = wrong_types
        self.huge = huge
        self.fault_models = fault_models
        self.stopping = threading.Event()   # set when the server stops: hung and dripping answers end
        self._wrong = 0
        self.judge = judge
        self.tokens = tokens
        self.fail_rate = fail_rate
        self.delay = delay
        self.honor_max_tokens = honor_max_tokens
        self.context_window = context_window
        self.verbose = verbose
        self.logprobs = logprobs
        self.owned_by = owned_by
        self.max_model_len = max_model_len
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)   # notified whenever a counter changes
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(_COUNTERS, 0)
            self._by_kind = dict.fromkeys(FAILURE_KINDS, 0)
            self._in_flight_max = getattr(self, "_in_flight", 0)
            self._in_flight = getattr(self, "_in_flight", 0)
            self._log: list[dict] = []

    def begin(self) -> None:
        with self._lock:
            self._counts["requests"] += 1
            self._in_flight += 1
            self._in_flight_max = max(self._in_flight_max, self._in_flight)
            self._changed.notify_all()

    def end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._changed.notify_all()

    def draw_failure(self) -> str | None:
        if self.fail_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.fail_rate:
                return None
            kind = self._rng.choice(FAILURE_KINDS)
            self._counts["failures"] += 1
            self._by_kind[kind] += 1
            return kind

    def count(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._counts[name] += amount
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float) -> bool:
        """Wait until ``predicate(self.stats())`` holds, at most ``timeout`` seconds; whether it does."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.stats()), timeout)

    def next_wrong_content(self) -> Any:
        """The next of :data:`WRONG_CONTENTS`, in turn."""
        with self._lock:
            value = WRONG_CONTENTS[self._wrong % len(WRONG_CONTENTS)]
            self._wrong += 1
            return value

    def record(self, entry: dict) -> None:
        with self._lock:
            self._log.append(entry)

    def log(self) -> list[dict]:
        with self._lock:
            return list(self._log)

    def stats(self) -> dict:
        with self._lock:
            return {**self._counts, "failures_by_kind": dict(self._by_kind),
                    "in_flight": self._in_flight, "max_in_flight": self._in_flight_max}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024      # the listen backlog: bursts of 64+ connections must not stall
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open keep-alive connection, so that their threads finish."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class RunningServer:
    """A server serving in a background thread. Use :func:`start_server` to make one."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="llm-test-server", daemon=True)
        self._thread.start()
        self._stopped = False

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``, where ``/stats`` lives."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the ``base_url`` of an OpenAI client."""
        return f"{self.root_url}/v1"

    def stats(self) -> dict:
        """Counters: requests, completions, failures, prompt_tokens, and some more."""
        return self._server.state.stats()

    def reset_stats(self) -> None:
        self._server.state.reset()

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        """Wait until ``predicate(stats)`` holds (a counter reached, a request in flight), at
        most ``timeout`` seconds; returns the stats, and raises :class:`TimeoutError` when it
        still does not hold."""
        if not self._server.state.wait_for(predicate, timeout):
            raise TimeoutError(f"server stats never met the condition within {timeout} s: {self.stats()}")
        return self.stats()

    def log(self) -> list[dict]:
        """Every successful completion: model, messages, answer (the reply), prompt_tokens,
        finish_reason, prefill (the continued assistant start, or None), and the request's
        max_tokens, max_completion_tokens, logprobs and top_logprobs (None when not sent)."""
        return self._server.state.log()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.state.stopping.set()   # hung and dripping answers end
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def make_server(judge: str, *, data_dir: str | Path | None = None, fail_rate: float = 0.0,
                seed: int = 0, delay: float = 0.0, port: int = 0, noise: float = NOISY_SWAP_PROBABILITY,
                honor_max_tokens: bool = True, context_window: int | None = None,
                verbose: bool = False, candidates: str = DEFAULT_CANDIDATES,
                estimate_usage: bool = False, logprobs: bool = True, owned_by: str = "tests",
                max_model_len: int | None = None, drip: float = 0.0, drip_headers: float = 0.0,
                hang: bool = False, redirect: str | None = None, wrong_types: bool = False,
                huge: float = 0.0, fault_models: bool = False) -> _Server:
    """A bound (listening) server that does not serve yet."""
    dataset = Dataset(data_dir, candidates) if data_dir is not None else None
    state = _State(Judge(judge, dataset, seed, noise), Tokens(estimate_usage), fail_rate=fail_rate, seed=seed,
                   delay=delay, honor_max_tokens=honor_max_tokens,
                   context_window=context_window, verbose=verbose, logprobs=logprobs,
                   owned_by=owned_by, max_model_len=max_model_len, drip=drip,
                   drip_headers=drip_headers, hang=hang, redirect=redirect, wrong_types=wrong_types,
                   huge=huge, fault_models=fault_models)
    return _Server(("127.0.0.1", port), state)


def start_process(*options: str) -> tuple[subprocess.Popen, str]:
    """The server as a process of its own, so that its CPU is apart from the caller's.

    ``options`` are the script's (``"--judge", "identity", "--delay", "1"``); returns the process
    and its base URL once it listens. Terminate the process to stop it.
    """
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return proc, proc.stdout.readline().split()[1]


def start_server(judge: str, *, data_dir: str | Path | None = None, fail_rate: float = 0.0,
                 seed: int = 0, delay: float = 0.0, port: int = 0,
                 noise: float = NOISY_SWAP_PROBABILITY, honor_max_tokens: bool = True,
                 context_window: int | None = None, verbose: bool = False,
                 candidates: str = DEFAULT_CANDIDATES, logprobs: bool = True, owned_by: str = "tests",
                 max_model_len: int | None = None, drip: float = 0.0, drip_headers: float = 0.0,
                 hang: bool = False, redirect: str | None = None, wrong_types: bool = False,
                 huge: float = 0.0, fault_models: bool = False) -> RunningServer:
    """Start a server on 127.0.0.1 in a background thread.

    Parameters
    ----------
    judge : {"oracle", "identity", "reverse", "garbage", "noisy"}
    data_dir : directory with RankGPT-format ``*.json`` candidates and ``qrels*.txt`` (and
        optionally ``topics*.txt``); required by ``oracle`` and ``noisy``.
    fail_rate : probability that a chat request fails (429, 500 or dropped connection).
    seed : seeds the failures, the garbage answers and the noisy judge.
    delay : seconds each chat request sleeps before it is answered.
    port : 0 for a free port.
    noise : the noisy judge's probability of swapping an adjacent pair.
    honor_max_tokens : cut answers to ``max_tokens`` with ``finish_reason: "length"``.
    context_window : refuse prompts over this many tokens with ``context_length_exceeded``.
    candidates : glob of the RankGPT-format candidate files in ``data_dir`` the judge knows.
    logprobs : return log-probabilities when asked; False for a server that never does.
    owned_by, max_model_len : what ``GET /models`` says of the model (``"vllm"`` and a length
        pass for a vLLM server).
    drip : send chat answer bodies one byte every ``drip`` seconds (0: at once).
    drip_headers : send the status line and headers one byte every ``drip_headers`` seconds.
    hang : read chat requests and never answer them.
    redirect : answer chat requests with a 307 to ``redirect + "/chat/completions"`` (a base
        URL of another origin, or a path on this server).
    wrong_types : ``message.content`` is a number, a list, an object, in turn.
    huge : answers of about ``huge`` MiB, without usage or ``Content-Length``.
    fault_models : ``drip``, ``drip_headers``, ``hang`` and ``redirect`` apply to ``GET /models`` too.
    """
    return RunningServer(make_server(judge, data_dir=data_dir, fail_rate=fail_rate, seed=seed,
                                     delay=delay, port=port, noise=noise,
                                     honor_max_tokens=honor_max_tokens,
                                     context_window=context_window, verbose=verbose,
                                     candidates=candidates, logprobs=logprobs, owned_by=owned_by,
                                     max_model_len=max_model_len, drip=drip, drip_headers=drip_headers,
                                     hang=hang, redirect=redirect, wrong_types=wrong_types, huge=huge,
                                     fault_models=fault_models))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", choices=JUDGES, required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=NOISY_SWAP_PROBABILITY)
    parser.add_argument("--context-window", type=int, default=None)
    parser.add_argument("--ignore-max-tokens", action="store_true")
    parser.add_argument("--no-logprobs", action="store_true",
                        help="answer \"logprobs\": null even when they are asked for")
    parser.add_argument("--candidates", default=DEFAULT_CANDIDATES, help="glob of candidate files in --data-dir")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--estimate-usage", action="store_true",
                        help="report usage as characters / 4 instead of counting cl100k tokens, so the "
                             "server's own CPU does not compete with a client timed on the same cores")
    faults = parser.add_argument_group("hostile server (see the module docstring)")
    faults.add_argument("--drip", type=float, default=0.0, metavar="D",
                        help="send chat answer bodies one byte every D seconds")
    faults.add_argument("--drip-headers", type=float, default=0.0, metavar="D",
                        help="send the status line and headers one byte every D seconds")
    faults.add_argument("--hang", action="store_true", help="read chat requests, never answer them")
    faults.add_argument("--redirect", metavar="URL",
                        help="answer chat requests with a 307 to URL/chat/completions")
    faults.add_argument("--wrong-types", action="store_true",
                        help="content is a number, a list, an object, in turn")
    faults.add_argument("--huge", type=float, default=0.0, metavar="N",
                        help="answers of about N MiB, without usage or Content-Length")
    faults.add_argument("--fault-models", action="store_true",
                        help="--drip, --drip-headers, --hang and --redirect apply to GET /models too")
    args = parser.parse_args(argv)
    server = make_server(args.judge, data_dir=args.data_dir, fail_rate=args.fail_rate,
                         seed=args.seed, delay=args.delay, port=args.port, noise=args.noise,
                         honor_max_tokens=not args.ignore_max_tokens,
                         context_window=args.context_window, verbose=args.verbose,
                         candidates=args.candidates, estimate_usage=args.estimate_usage,
                         logprobs=not args.no_logprobs, drip=args.drip, drip_headers=args.drip_headers,
                         hang=args.hang, redirect=args.redirect, wrong_types=args.wrong_types,
                         huge=args.huge, fault_models=args.fault_models)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.state.stopping.set()
        server.server_close()
        print(json.dumps(server.state.stats()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
