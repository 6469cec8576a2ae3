"""The endpoint of the OpenAI-compatible backend: its API key, its URLs, and the check before
a run, which reads the server's model listing (``GET /models``) for what it tells of the server."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

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


def api_key_for(api_key: str | None, api_key_file: str | None, base_url: str | None,
                api_key_env: str | None = None) -> str:
    """The API key to send.

    Parameters
    ----------
    api_key : str or None
        A key given outright; it comes first.
    api_key_file : str or None
        A file holding the key, read when no key is given outright.
    base_url : str or None
        The endpoint; None means OpenAI's API, which needs a real key.
    api_key_env : str or None
        The environment variable holding the key (``--api-key-env``, e.g.
        ``ANTHROPIC_API_KEY``), read when neither of the above is given; it must be set.

    Returns
    -------
    str
        The key given, else the file's, else ``$api_key_env``'s, else ``$OPENAI_API_KEY``, else,
        for a local server, :data:`PLACEHOLDER_API_KEY`.

    Raises
    ------
    ConfigError
        When the key file cannot be read or is empty, when ``api_key_env`` names a variable
        that is not set (or empty), or when OpenAI's API would get no key.
    """
    key = api_key or _key_from_file(api_key_file)
    if not key and api_key_env:
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise ConfigError(f"--api-key-env {api_key_env}: the environment variable {api_key_env} is not set")
    key = key or os.environ.get(API_KEY_ENV)
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
                        describe: Callable[[BaseException], str], key_checked: bool = True) -> object:
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
    key_checked : bool
        Whether a refused key fails the check; False where the listing may take the key in
        another header than the chat route does (Anthropic's ``x-api-key``).

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
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        if not key_checked:
            return None
        raise BackendError(describe(exc) + " (checked before the run)") from None
    except (openai.APIConnectionError, CrossOriginRedirect) as exc:
        raise BackendError(describe(exc) + " (checked before the run)") from None
    except (openai.APIError, MalformedResponse):
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError included
        return None


@dataclass(frozen=True)
class ServerFacts:
    """What the endpoint check learnt of the server and the model.

    Attributes
    ----------
    constrains : bool
        Whether the server is one of :data:`CONSTRAINING_SERVERS` (vLLM, SGLang and llama.cpp
        name themselves in ``owned_by``).
    context : int or None
        The model's context: vLLM's ``max_model_len``, OpenRouter's ``context_length``.
    logprobs : bool or None
        Whether the model gives log-probabilities: False for a provider that never does
        (Anthropic, Gemini), OpenRouter's ``supported_parameters``; None when unknown.
    provider : str or None
        ``anthropic``, ``gemini`` or ``openrouter`` when the base URL or the listing tells.
    """

    constrains: bool = False
    context: int | None = None
    logprobs: bool | None = None
    provider: str | None = None


#: Providers by the host of their OpenAI-compatible endpoint.
PROVIDER_HOSTS = {"api.anthropic.com": "anthropic", "generativelanguage.googleapis.com": "gemini",
                  "openrouter.ai": "openrouter", "api.openai.com": "openai"}
#: Providers whose OpenAI-compatible endpoint never returns log-probabilities (Anthropic ignores
#: ``logprobs``; Gemini's refuses the field).
NO_LOGPROBS_PROVIDERS = frozenset({"anthropic", "gemini"})


def provider_of(base_url: str | None) -> str | None:
    """The provider a base URL points at, by its host (``openai`` for None), else None.

    Examples
    --------
    >>> provider_of("https://api.anthropic.com/v1/"), provider_of("http://127.0.0.1:8000/v1")
    ('anthropic', None)
    """
    if base_url is None:
        return "openai"
    try:
        host = (urlsplit(base_url).hostname or "").lower()
    except ValueError:
        return None
    return PROVIDER_HOSTS.get(host)


def server_facts(listing: object, model: str, base_url: str | None = None) -> ServerFacts:
    """What a ``GET /models`` answer (and the base URL) tells of the server serving ``model``.

    Parameters
    ----------
    listing : object
        The parsed listing, or anything else (which tells nothing of the server).
    model : str
        The model asked for; a listing of one model tells of it whatever its name (Gemini's
        ``models/NAME`` is NAME).
    base_url : str or None
        The endpoint, whose host may name the provider (:func:`provider_of`).

    Returns
    -------
    ServerFacts
        The provider from the host, else from the listing's shape: Gemini's cards are
        ``owned_by: google``, Anthropic's have ``type: model``, OpenRouter's list
        ``supported_parameters``.
    """
    provider = provider_of(base_url)
    provider = None if provider == "openai" else provider
    try:
        cards = [card for card in listing["data"] if isinstance(card, dict)]
    except (TypeError, KeyError):
        cards = []
    card = next((c for c in cards if c.get("id") in (model, f"models/{model}")),
                cards[0] if len(cards) == 1 else None)
    if provider is None and cards:
        if any(str(c.get("owned_by", "")).lower() == "google" for c in cards):
            provider = "gemini"
        elif all(c.get("type") == "model" for c in cards):
            provider = "anthropic"
        elif all(isinstance(c.get("supported_parameters"), list) for c in cards):
            provider = "openrouter"
    logprobs = False if provider in NO_LOGPROBS_PROVIDERS else None
    if card is None:
        return ServerFacts(logprobs=logprobs, provider=provider)
    constrains = str(card.get("owned_by", "")).lower() in CONSTRAINING_SERVERS
    supported = card.get("supported_parameters")
    if isinstance(supported, list):
        logprobs = "logprobs" in supported
    length = card.get("max_model_len", card.get("context_length"))
    context = length if isinstance(length, int) and not isinstance(length, bool) and length > 0 else None
    return ServerFacts(constrains, context, logprobs, provider)
