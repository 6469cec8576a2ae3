"""The HTTP routes of OpenAI's Files and Batch APIs on the judges' server.

``POST /v1/files`` (multipart: ``file`` and ``purpose``), ``GET /v1/files`` (``purpose``,
``after``, ``limit``, ``order``), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``,
``DELETE /v1/files/{id}``; ``POST /v1/batches``, ``GET /v1/batches`` (``after``, ``limit``),
``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``. The same paths without ``/v1`` too.
Mistakes are answered as OpenAI answers them: 400, 404 (an unknown id) or 409 (cancelling a
batch that has ended), with OpenAI's error body.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qs, urlsplit

from .batches import Batches, Conflict, page_of
from .files import NotFound
from .protocol import BadRequest, error_body

_ROUTE = re.compile(r"^(?:/v1)?/(files|batches)(?:/([^/]+))?(?:/(content|cancel))?/?$")
_PARAM = re.compile(r';\s*([\w-]+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: a status and a JSON object, or bytes (a file's content)."""

    status: int
    body: dict | bytes


def route(batches: Batches, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer | None:
    """Answer a request of the Files or Batch API; None when ``target`` is not one.

    Parameters
    ----------
    batches : Batches
    method : str
        ``GET``, ``POST`` or ``DELETE``.
    target : str
        The request's path and query.
    headers : Mapping
        The request's headers (``Content-Type`` of an upload).
    body : bytes
    """
    url = urlsplit(target)
    match = _ROUTE.match(url.path)
    if match is None:
        return None
    kind, ident, action = match.groups()
    query = {name: values[-1] for name, values in parse_qs(url.query).items()}
    try:
        if kind == "files":
            return _files(batches, method, ident, action, query, headers, body)
        return _batches(batches, method, ident, action, query, body)
    except BadRequest as exc:
        return Answer(400, exc.body())
    except NotFound as exc:
        return Answer(404, error_body(str(exc), "invalid_request_error", None, "id"))
    except Conflict as exc:
        return Answer(409, error_body(str(exc), "invalid_request_error"))


def _files(batches: Batches, method: str, ident: str | None, action: str | None, query: dict,
           headers: Mapping[str, str], body: bytes) -> Answer | None:
    store = batches.files
    if ident is None and action is None and method == "POST":
        fields, files = read_multipart(headers.get("Content-Type", ""), body)
        if "file" not in files:
            raise BadRequest("Missing required parameter: 'file'.", "file", "missing_required_parameter")
        if "purpose" not in fields:
            raise BadRequest("Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter")
        filename, content = files["file"]
        return Answer(200, batches.upload(filename, fields["purpose"], content))
    if ident is None and action is None and method == "GET":
        cards = [stored.card() for stored in store.all()
                 if query.get("purpose") in (None, stored.purpose)]
        if query.get("order", "desc") == "desc":
            cards.reverse()
        after = query.get("after")
        start = next((i + 1 for i, card in enumerate(cards) if card["id"] == after), 0) if after else 0
        limit = _limit(query, 10_000, 10_000)
        return Answer(200, page_of(cards[start:start + limit], start + limit < len(cards)))
    if ident is not None and action is None and method == "GET":
        return Answer(200, store.get(ident).card())
    if ident is not None and action is None and method == "DELETE":
        store.delete(ident)
        return Answer(200, {"id": ident, "object": "file", "deleted": True})
    if ident is not None and action == "content" and method == "GET":
        return Answer(200, store.get(ident).content)
    return None


def _batches(batches: Batches, method: str, ident: str | None, action: str | None, query: dict,
             body: bytes) -> Answer | None:
    if ident is None and action is None and method == "POST":
        try:
            request = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"We could not parse the JSON body of your request. ({exc})") from None
        return Answer(200, batches.create(request))
    if ident is None and action is None and method == "GET":
        return Answer(200, batches.list(query.get("after"), _limit(query, 20, 100)))
    if ident is not None and action is None and method == "GET":
        return Answer(200, batches.get(ident))
    if ident is not None and action == "cancel" and method == "POST":
        return Answer(200, batches.cancel(ident))
    return None


def _limit(query: dict, default: int, most: int) -> int:
    text = query.get("limit", str(default))
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise BadRequest(f"Invalid 'limit': expected an integer from 1 to {most}.", "limit", "invalid_value")
    return int(text)


def read_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """The fields of a ``multipart/form-data`` body.

    Parameters
    ----------
    content_type : str
        The request's ``Content-Type``, with its ``boundary``.
    body : bytes

    Returns
    -------
    fields : dict
        Name to text, for the parts without a filename.
    files : dict
        Name to ``(filename, content)``, for the parts with one.

    Raises
    ------
    BadRequest
        Not multipart, or no boundary.
    """
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/form-data") or boundary is None:
        raise BadRequest("The request must be multipart/form-data, with a boundary.")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in body.split(b"--" + boundary.group(1).encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break      # the closing boundary
        head, _, content = part.partition(b"\r\n\r\n")
        content = content[:-2] if content.endswith(b"\r\n") else content
        disposition = next((line for line in head.decode("utf-8", "replace").split("\r\n")
                            if line.lower().startswith("content-disposition:")), "")
        params = {name.lower(): value for name, value in _PARAM.findall(disposition)}
        if "name" not in params:
            continue
        if "filename" in params:
            files[params["name"]] = (params["filename"], content)
        else:
            fields[params["name"]] = content.decode("utf-8", "replace")
    return fields, files
