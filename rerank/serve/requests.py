"""Cohere's rerank API, v1 and v2: a request body checked into a :class:`RerankCall`, or an
:class:`ApiError` with the status and message Cohere's API gives for the same mistake.

Both versions take ``query``, ``documents`` (strings, or objects whose ``rank_fields`` or
``text`` are ranked), ``top_n``, ``return_documents`` and ``max_tokens_per_doc``; ``model`` is
required in v2 and optional in v1 (the server's default model then). Pure Python: no web framework.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


class ApiError(Exception):
    """A request the API refuses: its HTTP status and the message of the error body.

    Parameters
    ----------
    status : int
        400 for a malformed request, 401 for a missing or wrong key, 404 for an unknown model,
        413 for a body over the limit, 502/503 when the LLM behind the server fails.
    message : str
        What was wrong, for the ``{"message": ...}`` body.
    """

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict:
        """The JSON error body, as Cohere's API writes it."""
        return {"message": self.message}


@dataclass(frozen=True)
class Limits:
    """What one request may hold; larger requests are refused with a 4xx, never half served.

    Attributes
    ----------
    max_documents : int
        Documents a request (Cohere's own limit: 1,000).
    max_request_bytes : int
        Bytes of the request body.
    max_query_bytes : int
        UTF-8 bytes of the query.
    max_tokens_per_doc : int
        The default and the largest ``max_tokens_per_doc``.
    """

    max_documents: int = 1000
    max_request_bytes: int = 10 * 2**20
    max_query_bytes: int = 32 * 2**10
    max_tokens_per_doc: int = 4096


@dataclass(frozen=True)
class RerankCall:
    """One checked rerank request.

    Attributes
    ----------
    version : int
        1 or 2: the API version the request came by (it shapes the response).
    model : str or None
        The model asked for (None: the server's default; v1 only).
    query : str
    documents : tuple of str
        The text ranked of each document, in input order.
    originals : tuple
        The documents as sent (strings or objects), for ``return_documents``.
    top_n : int or None
        How many results to return (None: all).
    return_documents : bool
    max_tokens_per_doc : int
        Each document is cut to this many tokens before ranking.
    """

    version: int
    model: str | None
    query: str
    documents: tuple[str, ...]
    originals: tuple
    top_n: int | None
    return_documents: bool
    max_tokens_per_doc: int

    def key(self) -> tuple:
        """What decides the ranking: identical keys in flight are ranked once."""
        return (self.model, self.query, self.documents, self.max_tokens_per_doc)


def parse_body(raw: bytes, version: int, limits: Limits) -> RerankCall:
    """Check a request body.

    Parameters
    ----------
    raw : bytes
        The body as received.
    version : int
        1 or 2, from the path.
    limits : Limits

    Returns
    -------
    RerankCall

    Raises
    ------
    ApiError
        413 for a body over ``limits.max_request_bytes``; 400 for anything else wrong, its
        message naming the field.
    """
    if len(raw) > limits.max_request_bytes:
        raise ApiError(413, f"request body too large: {len(raw):,} bytes, the limit is {limits.max_request_bytes:,}")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"invalid request: the body is not valid JSON ({exc})") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise ApiError(400, "invalid request: the body is not valid JSON (nested too deeply)") from None
    # A \uD800-style escape decodes to a lone surrogate, which no UTF-8 text (the LLM's prompt,
    # the response) can hold; only bodies with such an escape pay for the full check.
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(body):
        raise ApiError(400, "invalid request: the body holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF)")
    if not isinstance(body, dict):
        raise ApiError(400, "invalid request: the body must be a JSON object")
    model = body.get("model")
    if model is None and version == 2:
        raise ApiError(400, "invalid request: model must be specified")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ApiError(400, "invalid request: model must be a non-empty string")
    query = body.get("query")
    if query is None:
        raise ApiError(400, "invalid request: query must be specified")
    if not isinstance(query, str):
        raise ApiError(400, f"invalid request: query must be a string, not {_type(query)}")
    if not query.strip():
        raise ApiError(400, "invalid request: query must not be empty")
    if len(query.encode("utf-8")) > limits.max_query_bytes:
        raise ApiError(400, f"invalid request: query is too long ({len(query.encode('utf-8')):,} bytes, the limit "
                            f"is {limits.max_query_bytes:,})")
    documents = body.get("documents")
    if documents is None:
        raise ApiError(400, "invalid request: documents must be specified")
    if not isinstance(documents, list):
        raise ApiError(400, f"invalid request: documents must be a list, not {_type(documents)}")
    if not documents:
        raise ApiError(400, "invalid request: documents must not be empty")
    if len(documents) > limits.max_documents:
        raise ApiError(400, f"invalid request: too many documents: {len(documents):,}, the limit is "
                            f"{limits.max_documents:,}")
    rank_fields = body.get("rank_fields")
    if rank_fields is not None and (not isinstance(rank_fields, list) or not rank_fields
                                    or not all(isinstance(field, str) for field in rank_fields)):
        raise ApiError(400, "invalid request: rank_fields must be a non-empty list of strings")
    texts = tuple(document_text(document, index, rank_fields) for index, document in enumerate(documents))
    top_n = body.get("top_n")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise ApiError(400, f"invalid request: top_n must be a positive integer, not {top_n!r}")
    # Clients send null for a parameter left unset (LangChain's max_tokens_per_doc): the default then.
    return_documents = body.get("return_documents")
    return_documents = False if return_documents is None else return_documents
    if not isinstance(return_documents, bool):
        raise ApiError(400, f"invalid request: return_documents must be a boolean, not {_type(return_documents)}")
    max_tokens = body.get("max_tokens_per_doc")
    max_tokens = limits.max_tokens_per_doc if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ApiError(400, f"invalid request: max_tokens_per_doc must be a positive integer, not {max_tokens!r}")
    if max_tokens > limits.max_tokens_per_doc:
        raise ApiError(400, f"invalid request: max_tokens_per_doc must be at most {limits.max_tokens_per_doc:,}")
    return RerankCall(version, model, query, texts, tuple(documents), top_n, return_documents, max_tokens)


def document_text(document, index: int, rank_fields: list[str] | None) -> str:
    """The text ranked of one document: a string as it is; of an object, its ``rank_fields``
    (default ``text``) as ``field: value`` lines, as Cohere ranks structured documents.

    Raises
    ------
    ApiError
        400 for a document that is neither, an object missing its fields, or one nested deeper
        than :data:`MAX_NESTING` levels.
    """
    if isinstance(document, str):
        if not document.strip():
            raise ApiError(400, f"invalid request: documents[{index}] is empty")
        return document
    if not isinstance(document, dict):
        raise ApiError(400, f"invalid request: documents[{index}] must be a string or an object, not {_type(document)}")
    if _nested_deeper(document, MAX_NESTING):
        raise ApiError(400, f"invalid request: documents[{index}] is nested deeper than {MAX_NESTING} levels")
    if rank_fields is None:
        text = document.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, f"invalid request: documents[{index}] has no 'text' string (or give rank_fields)")
        return text
    missing = [field for field in rank_fields if field not in document]
    if missing:
        raise ApiError(400, f"invalid request: documents[{index}] lacks rank field {missing[0]!r}")
    return "\n".join(f"{field}: {_scalar(document[field])}" for field in rank_fields)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

#: Levels of lists and objects a document object may hold. Encoding one (``return_documents``,
#: a rank field's value) recurses once per level, nearer the recursion limit than decoding did.
MAX_NESTING = 32


def _nested_deeper(value, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _has_lone_surrogate(body) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except RecursionError:  # too deep to encode again here: the field checks judge it
        return False
    return False


def _scalar(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)
