"""Cache keys of LLM calls: what makes two calls the same call (:func:`call_key`)."""

from __future__ import annotations

import hashlib
import json

#: Part of every key: raising it makes every entry of an existing cache a miss.
CACHE_SCHEMA_VERSION = 1

# Never part of a key: the same model behind another endpoint or account answers the same,
# and a secret must not be hashed into a file that may be shared.
_FORBIDDEN_PARAMS = frozenset({"api_key", "base_url"})


def call_key(model: str, messages: list[dict], params: dict) -> str:
    """Return the cache key of one LLM call.

    The key is the SHA-256 (hex) of a canonical JSON document (sorted keys, no whitespace,
    ASCII escapes) of ``{"schema": CACHE_SCHEMA_VERSION, "model": ..., "messages": ..., "params": ...}``,
    so it is stable across dict orderings and processes, and changes with the model, any
    message, any parameter or the cache schema version.

    API keys and base URLs are deliberately NOT part of the key: the same model served from
    another endpoint or account gives the same answer, and a secret must never reach a cache
    file. Never put them into ``params``; ``api_key`` and ``base_url`` entries are refused.

    Parameters
    ----------
    model : str
        The model name as sent to the backend.
    messages : list of dict
        The chat messages (``{"role": ..., "content": ...}``).
    params : dict
        Every other request setting that changes the answer (temperature, max_tokens, ...).
        Must be JSON-serialisable.

    Returns
    -------
    str
        64 lowercase hex digits.

    Raises
    ------
    ValueError
        If ``params`` holds an ``api_key`` or ``base_url`` entry.
    TypeError
        If the messages or params are not JSON-serialisable.
    """
    if not _FORBIDDEN_PARAMS.isdisjoint(params):
        raise ValueError("api_key and base_url must not be part of the cache key params")
    document = {"schema": CACHE_SCHEMA_VERSION, "model": model, "messages": messages,
                "params": params}
    # ASCII escapes: faster to encode than UTF-8 output, and a lone surrogate (from a badly
    # decoded passage) still gets a key.
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()
