"""Batch files: the request lines of an input file, split at a provider's limits, and the
answers of its output and error files, by ``custom_id``.

OpenAI's Batch API and ``vllm run-batch`` share the format: a request a line,
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``; an answer a line,
``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``, in any order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

#: The route every line calls.
ENDPOINT = "/v1/chat/completions"


def request_line(custom_id: str, body: dict) -> bytes:
    """One line of a batch input file: the request ``body`` under ``custom_id``.

    The body is encoded as the online backend encodes it (compact, ASCII escapes).
    """
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, separators=(",", ":")).encode("ascii") + b"\n"


def split_lines(lines: Sequence[bytes], max_requests: int | None, max_bytes: int | None) -> list[list[int]]:
    """Indices of ``lines`` in consecutive files, each within the limits.

    Parameters
    ----------
    lines : sequence of bytes
        Encoded lines (:func:`request_line`).
    max_requests, max_bytes : int or None
        The most lines and bytes of one file; None for no limit.

    Returns
    -------
    list of list of int
        Non-empty files, in order. A line alone over ``max_bytes`` gets a file of its own (the
        provider refuses it, and its line fails there).
    """
    files: list[list[int]] = []
    size = 0
    for index, line in enumerate(lines):
        if not files or (max_requests is not None and len(files[-1]) >= max_requests) or \
                (max_bytes is not None and size + len(line) > max_bytes and files[-1]):
            files.append([])
            size = 0
        files[-1].append(index)
        size += len(line)
    return files


@dataclass(frozen=True, slots=True)
class LineResult:
    """What a batch says of one line.

    Attributes
    ----------
    custom_id : str
    body : dict or None
        The chat completion, for a line answered with status 200.
    error : str or None
        Why it failed, otherwise.
    """

    custom_id: str
    body: dict | None
    error: str | None = None


def read_results(content: bytes) -> dict[str, LineResult]:
    """The lines of an output or error file, by ``custom_id``.

    A line that is not a JSON object with a string ``custom_id`` is skipped (its request is then
    unanswered, and submitted again); where a ``custom_id`` comes twice, an answer wins over a
    failure.
    """
    results: dict[str, LineResult] = {}
    for raw in content.splitlines():
        try:
            line = json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError included
            continue
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            continue
        result = _result(line)
        if result.body is not None or result.custom_id not in results:
            results[result.custom_id] = result
    return results


def _result(line: dict) -> LineResult:
    custom_id = line["custom_id"]
    response = line.get("response")
    response = response if isinstance(response, dict) else {}
    body = response.get("body")
    if response.get("status_code") == 200 and isinstance(body, dict) and not line.get("error"):
        return LineResult(custom_id, body)
    return LineResult(custom_id, None, _error_text(line.get("error"), response))


def _error_text(error: object, response: dict) -> str:
    """One line saying why a line failed: its error's code and message, or its response's."""
    if isinstance(error, dict):
        parts = [str(error[key]) for key in ("code", "message") if error.get(key)]
        if parts:
            return ": ".join(parts)[:300]
    status = response.get("status_code")
    body = response.get("body")
    detail = body.get("error") if isinstance(body, dict) else None
    message = detail.get("message") if isinstance(detail, dict) else None
    text = f"status {status}" if status is not None else "no response"
    return (f"{text}: {message}" if isinstance(message, str) and message else text)[:300]
