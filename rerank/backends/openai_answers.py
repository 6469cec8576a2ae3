"""Reading a chat completion's JSON: each field checked, the answer's text capped.

A 2xx body is trusted for nothing: a field of the wrong type, a text over
:data:`MAX_ANSWER_CHARS` or malformed ``logprobs`` is a :class:`MalformedResponse`, which the
backend retries; a usage count that is not a non-negative int is None, to be estimated.
"""

from __future__ import annotations

import math

#: The most characters of an answer's text; a longer one is refused as malformed.
MAX_ANSWER_CHARS = 1 << 20


class MalformedResponse(Exception):
    """A 2xx answer that is not a chat completion (a proxy's HTML page, a truncated body, a
    field of the wrong type, a body or text over the size limits); its message says why."""


def read_completion(data: object) -> tuple:
    """The fields of a parsed chat completion that a :class:`~rerank.backends.base.Completion`
    holds, each checked.

    Parameters
    ----------
    data : object
        The parsed JSON body of a 2xx ``/chat/completions`` answer.

    Returns
    -------
    tuple
        ``(text, prompt_tokens, completion_tokens, finish_reason, top_logprobs, reasoning,
        reasoning_tokens)``. A usage count that is not a non-negative int is None (to be
        estimated), as is a missing one; ``top_logprobs`` is
        :func:`first_token_alternatives`'s; ``reasoning`` is None when empty.

    Raises
    ------
    MalformedResponse
        When a field has the wrong type, or the text or the reasoning is over
        :data:`MAX_ANSWER_CHARS`.
    """
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (TypeError, KeyError, IndexError):
        raise MalformedResponse("it has no choices[0].message") from None
    if not isinstance(choice, dict) or not isinstance(message, dict):
        raise MalformedResponse("its choices[0].message is not an object")
    text = message.get("content")
    if text is None:
        text = ""
    elif not isinstance(text, str):
        raise MalformedResponse(f"its content is {_json_kind(text)}, not a string or null")
    if len(text) > MAX_ANSWER_CHARS:
        raise MalformedResponse(f"its content of {len(text)} characters is over the limit of "
                                f"{MAX_ANSWER_CHARS}")
    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise MalformedResponse(f"its finish_reason is {_json_kind(finish_reason)}, not a string or null")
    alternatives = first_token_alternatives(choice.get("logprobs"))
    # Reasoning returned apart: vLLM and SGLang's reasoning parsers ("reasoning_content"), and
    # the newer "reasoning" field.
    reasoning = message.get("reasoning_content", message.get("reasoning"))
    if reasoning is not None and (not isinstance(reasoning, str) or len(reasoning) > MAX_ANSWER_CHARS):
        raise MalformedResponse("its reasoning is not a string within the answer limit")
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}  # absent, null or not an object: estimated
    details = usage.get("completion_tokens_details")
    reasoning_tokens = _token_count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    return (text, _token_count(usage.get("prompt_tokens")), _token_count(usage.get("completion_tokens")),
            finish_reason, alternatives, reasoning or None, reasoning_tokens or 0)


def first_token_alternatives(logprobs: object) -> tuple[tuple[str, float], ...] | None:
    """The first generated token's ``top_logprobs`` from a chat completion's ``logprobs``.

    Parameters
    ----------
    logprobs : object
        A choice's ``logprobs`` field, as parsed from JSON.

    Returns
    -------
    tuple of (str, float) or None
        ``(token, logprob)`` pairs in the server's order. None when the answer carries none
        (``logprobs`` or its ``content`` null or absent, an empty ``content``, a first token
        without ``top_logprobs``: not asked, or a server that does not return them).

    Raises
    ------
    MalformedResponse
        When they are there but not ``{"content": [{"top_logprobs": [{"token": str,
        "logprob": number}, ...]}, ...]}``, a logprob being a number that is neither NaN nor
        positive infinity.
    """
    if logprobs is None:
        return None
    if not isinstance(logprobs, dict):
        raise MalformedResponse(f"its logprobs is {_json_kind(logprobs)}, not an object")
    content = logprobs.get("content")
    if content is None or content == []:
        return None
    if not isinstance(content, list) or not isinstance(content[0], dict):
        raise MalformedResponse("its logprobs.content is not a list of objects")
    entries = content[0].get("top_logprobs")
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise MalformedResponse(f"its top_logprobs is {_json_kind(entries)}, not a list")
    alternatives = []
    for entry in entries:
        token = entry.get("token") if isinstance(entry, dict) else None
        logprob = entry.get("logprob") if isinstance(entry, dict) else None
        if (not isinstance(token, str) or isinstance(logprob, bool) or not isinstance(logprob, (int, float))
                or math.isnan(logprob) or logprob == math.inf):
            raise MalformedResponse("its top_logprobs has an entry that is not "
                                    "{\"token\": string, \"logprob\": number}")
        alternatives.append((token, float(logprob)))
    return tuple(alternatives)


def _token_count(value) -> int | None:
    """A usage number; None (to be estimated) unless it is a non-negative int."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _json_kind(value: object) -> str:
    """What a JSON value is, for a message: ``a number``, ``a list``, ..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__
