"""The endpoint of the OpenAI-compatible backend: its API key, its URLs, and the check before
a run, which reads the server's model listing (``GET /models``) for what it tells of the server."""

from __future__ import annotations

import json
import os
from typing import Callable

import openai

from ..errors import BackendError, ConfigError
from .openai_answers import MalformedResponse
from .openai_http import CrossOriginRedirect

API_KEY_ENV = "OPENAI_API_KEY"
# Local servers ignore the key, but the SDK refuses to start without one.
PLACEHOLDER_API_KEY = "EMPTY"
# Servers whose model listing names them in ``owned_by`` and which constrain answers by the
# fields that ``complete`` sends.
CONSTRAINING_SERVERS = frozenset({"vllm", "sglang", "llamacpp"})


def api_key_for(api_key: str | None, api_key_file: str | None, base_url: str | None) -> str:
    """The API key to send.

    Parameters
    ----------
    api_key : str or None
        A key given outright; it comes first.
    api_key_file : str or None
        A file holding the key, read when no key is given outright.
    base_url : str or None
        The endpoint; None means OpenAI's API, which needs a real key.

    Returns
    -------
    str
        The key given, else the file's, else ``$OPENAI_API_KEY``, else, for a local server,
        :data:`PLACEHOLDER_API_KEY`.

    Raises
    ------
    ConfigError
        When the key file cannot be read or is empty, or when OpenAI's API would get no key.
    """
    key = api_key or _key_from_file(api_key_file) or os.environ.get(API_KEY_ENV)
    if not key:
        if base_url is None:
            raise ConfigError(f"no API key: set {API_KEY_ENV} (or give --base-url for a local server)")
        key = PLACEHOLDER_API_KEY
    return key


def _key_from_file(path: str | None) -> str | None:
    if not path:
        return None
    try:
        key = open(path, encoding="utf-8").read().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the API key file: {exc.strerror}") from None
    if not key:
        raise ConfigError(f"{path}: the API key file is empty")
    return key


def endpoint_url(base, route: bytes):
    """The URL of one route of the API, as the SDK builds it.

    Parameters
    ----------
    base : httpx.URL
        The client's base URL (its query string, if any, is kept).
    route : bytes
        E.g. ``b"/chat/completions"``.

    Returns
    -------
    httpx.URL
    """
    path, mark, query = base.raw_path.partition(b"?")
    return base.copy_with(raw_path=path.rstrip(b"/") + route + mark + query)


async def model_listing(transport, url, headers: dict[str, str], timeout: float,
                        describe: Callable[[BaseException], str]) -> object:
    """The server's model listing, asked once, without retries, within ``timeout`` seconds all told.

    Parameters
    ----------
    transport : AiohttpTransport or HttpxTransport
        The transport to ask on (:func:`~rerank.backends.openai_http.make_transport`).
    url : object
        The ``/models`` route, as ``transport.url`` prepared it.
    headers : dict of str to str
        The request's headers (the API key's included).
    timeout : float
        The deadline for the whole answer: a server that never answers, or drips its answer,
        fails the check.
    describe : callable
        The one line, without secrets, that a failure becomes.

    Returns
    -------
    object
        The parsed listing; None for any other answer (a server without that route included),
        which lets the run go on.

    Raises
    ------
    BackendError
        When the endpoint is down, refuses the key or redirects to another origin.
    """
    try:
        raw = await transport.fetch("GET", url, headers, timeout)
    except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError,
            CrossOriginRedirect) as exc:
        raise BackendError(describe(exc) + " (checked before the run)") from None
    except (openai.APIError, MalformedResponse):
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError included
        return None


def server_facts(listing: object, model: str) -> tuple[bool, int | None]:
    """What a ``GET /models`` answer tells of the server serving ``model``.

    Parameters
    ----------
    listing : object
        The parsed listing, or anything else (which tells nothing).
    model : str
        The model asked for; a listing of one model tells of it whatever its name.

    Returns
    -------
    constrains : bool
        Whether the server is one of :data:`CONSTRAINING_SERVERS` (vLLM, SGLang and llama.cpp
        name themselves in ``owned_by``).
    context : int or None
        The model's ``max_model_len`` (vLLM gives it), when positive.
    """
    try:
        cards = [card for card in listing["data"] if isinstance(card, dict)]
    except (TypeError, KeyError):
        return False, None
    card = next((c for c in cards if c.get("id") == model), cards[0] if len(cards) == 1 else None)
    if card is None:
        return False, None
    constrains = str(card.get("owned_by", "")).lower() in CONSTRAINING_SERVERS
    length = card.get("max_model_len")
    if isinstance(length, int) and not isinstance(length, bool) and length > 0:
        return constrains, length
    return constrains, None
