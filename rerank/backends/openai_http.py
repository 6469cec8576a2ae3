"""The HTTP transport of the OpenAI-compatible backend, bounded against hostile servers.

Requests are sent on an ``httpx`` client as prepared bytes and the answer is read as a stream,
so that:

* every attempt (connect, headers and body) has a deadline, however slowly the bytes come,
  and ends as a retryable :class:`AttemptTimeout`;
* a body over :data:`MAX_RESPONSE_BYTES` is refused while it is read (no more is read), as a
  :class:`~rerank.backends.openai_answers.MalformedResponse`; of an error response, only its
  first :data:`MAX_ERROR_BYTES` are read, for its message;
* a redirect to another origin (scheme, host or port) is not followed
  (:class:`CrossOriginRedirect`), so a prompt never goes to a host it was not sent to; a
  same-origin redirect is.

Failures are raised as the SDK's error classes, built as the SDK builds them.

The backend sends on a *transport* (:func:`make_transport`): an object with ``url(url)``, which
prepares a URL once, ``fetch(method, url, headers, seconds, content)``, which is :func:`fetch`'s
contract, and ``aclose()``. :data:`HTTP_CLIENTS` names them: ``aiohttp``
(:mod:`~rerank.backends.openai_aiohttp`, the default: the least CPU per call) and ``httpx`` (the
SDK's default client, this module), with the same bounds and errors. The SDK's own aiohttp
transport (``DefaultAioHttpClient``, ``httpx``'s client on aiohttp's connections) is not one: it
costs more CPU than ours, reports a refused connection as a timeout, and refuses a base URL
with credentials (``eval/bench_call_overhead.py`` measures it).
"""

from __future__ import annotations

import asyncio
import json
import sys

import anyio
import openai

# The HTTP library of the installed SDK, whose objects its errors and clients take: httpx2 from
# openai 3, httpx before (another package may have installed the other one beside it).
if int(openai.__version__.split(".", 1)[0]) >= 3:
    import httpx2 as httpx
else:  # pragma: no cover - openai 1 and 2
    import httpx

from ..errors import ConfigError
from ..secrets import public_url
from .openai_answers import MalformedResponse

#: The most bytes of a response body that are read: a larger answer is refused as malformed,
#: and reading stops there (a 50 MB answer costs neither its size in memory nor its parsing).
MAX_RESPONSE_BYTES = 8 << 20
#: The most bytes of an error response (4xx, 5xx) that are read, for its message.
MAX_ERROR_BYTES = 64 << 10
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Headers of a streamed body that no longer hold for the bytes read from it.
_BODY_HEADER_NAMES = frozenset((b"content-encoding", b"content-length", b"transfer-encoding"))
#: The transports, by the name of the backend's ``http_client``.
HTTP_CLIENTS = ("aiohttp", "httpx")
_STATUS_ERRORS = {400: openai.BadRequestError, 401: openai.AuthenticationError,
                  403: openai.PermissionDeniedError, 404: openai.NotFoundError,
                  409: openai.ConflictError, 422: openai.UnprocessableEntityError,
                  429: openai.RateLimitError}


class AttemptTimeout(openai.APITimeoutError):
    """An attempt that did not end within its deadline (connect, headers and body together).

    Attributes
    ----------
    seconds : float
        The deadline that passed.
    """

    def __init__(self, request, seconds: float):
        super().__init__(request=request)
        self.seconds = seconds


class CrossOriginRedirect(Exception):
    """A server redirected a request to another origin; the redirect was not followed.

    Attributes
    ----------
    origin : str
        ``scheme://host[:port]`` of the redirect's target, without credentials.
    """

    def __init__(self, origin: str):
        super().__init__(f"redirect to another origin ({origin}) not followed")
        self.origin = origin


def make_transport(name: str, timeout: float):
    """The transport that :data:`HTTP_CLIENTS` names ``name``.

    Parameters
    ----------
    name : str
        ``aiohttp`` or ``httpx``.
    timeout : float
        The ``httpx`` client's own timeout in seconds (each phase; every transport bounds an
        attempt whole).

    Returns
    -------
    AiohttpTransport or HttpxTransport

    Raises
    ------
    ConfigError
        For another name, or for an aiohttp transport without aiohttp installed.
    """
    if name == "aiohttp":
        from .openai_aiohttp import AiohttpTransport

        return AiohttpTransport()
    if name == "httpx":
        return HttpxTransport(http_client(timeout))
    raise ConfigError(f"unknown HTTP client '{name}': choose one of {', '.join(HTTP_CLIENTS)}")


class HttpxTransport:
    """Sends the backend's requests on an ``httpx`` client (from :func:`http_client`) with :func:`fetch`.

    Parameters
    ----------
    http : httpx.AsyncClient
        The client; closed by :meth:`aclose`.
    """

    def __init__(self, http):
        self.http = http

    def url(self, url):
        """``url`` as :func:`fetch` takes it (an ``httpx.URL``, unchanged)."""
        return url

    async def fetch(self, method: str, url, headers: dict[str, str], seconds: float,
                    content: bytes | None = None) -> bytes:
        """:func:`fetch` on this transport's client."""
        return await fetch(self.http, method, url, headers, seconds, content)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.http.aclose()


def http_client(timeout: float):
    """The SDK's default ``httpx`` client, refusing redirects to another origin.

    Parameters
    ----------
    timeout : float
        The client's own timeout in seconds (each phase; :func:`fetch` bounds an attempt whole).

    Returns
    -------
    httpx.AsyncClient
        Follows same-origin redirects; :func:`refuse_cross_origin_redirect` refuses the others.
    """
    return openai.DefaultAsyncHttpxClient(timeout=timeout,
                                          event_hooks={"response": [refuse_cross_origin_redirect]})


async def refuse_cross_origin_redirect(response) -> None:
    """An ``httpx`` response hook that refuses a redirect to another origin.

    Parameters
    ----------
    response : httpx.Response
        A response, before any redirect it asks for is followed.

    Raises
    ------
    CrossOriginRedirect
        On a redirect whose ``Location`` has another scheme, host or port than the request (a
        relative one never has).
    """
    if not response.has_redirect_location:
        return
    request_url = response.request.url
    try:
        target = request_url.join(response.headers["location"])
    except Exception:  # noqa: BLE001 - an unreadable Location: httpx refuses it itself
        return
    if target.host and _origin(target) != _origin(request_url):
        raise CrossOriginRedirect(origin_label(target.scheme, target.host, target.port))


def _origin(url) -> tuple[str, str, int | None]:
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme)


def origin_label(scheme: str, host: str, port: int | None) -> str:
    """``scheme://host[:port]`` of a redirect's target, as :class:`CrossOriginRedirect` shows it.

    Parameters
    ----------
    scheme, host : str
        The target's scheme and host (an IPv6 host without brackets).
    port : int or None
        Its port when the ``Location`` gave one.

    Returns
    -------
    str
        Without credentials (:func:`~rerank.secrets.public_url`).
    """
    host = f"[{host}]" if ":" in host else host
    return public_url(f"{scheme}://{host}{f':{port}' if port else ''}")


async def fetch(http, method: str, url, headers: dict[str, str], seconds: float,
                content: bytes | None = None) -> bytes:
    """Send one request and read its 2xx body, all within ``seconds``.

    Parameters
    ----------
    http : httpx.AsyncClient
        The client to send on (from :func:`http_client`).
    method : str
        ``"GET"`` or ``"POST"``.
    url : httpx.URL
        Where to send it.
    headers : dict of str to str
        The request's headers (the API key's included).
    seconds : float
        The attempt's deadline: connecting, the headers and the whole body together.
    content : bytes or None
        The request body.

    Returns
    -------
    bytes
        The decoded body, at most :data:`MAX_RESPONSE_BYTES`.

    Raises
    ------
    openai.APIStatusError
        Its subclass for the status (``BadRequestError`` for 400, ..., ``InternalServerError``
        for 5xx) on a 4xx or 5xx answer.
    AttemptTimeout
        When the deadline passes.
    openai.APIConnectionError
        When the connection fails or breaks.
    MalformedResponse
        For a body over :data:`MAX_RESPONSE_BYTES`.
    CrossOriginRedirect
        For a redirect to another origin.
    """
    request = httpx.Request(method, url, headers=headers, content=content)
    try:
        return await within(seconds, _send(http, request))
    except (asyncio.TimeoutError, httpx.TimeoutException):
        raise AttemptTimeout(request, seconds) from None
    except (httpx.RequestError, OSError, anyio.EndOfStream, anyio.BrokenResourceError):
        raise openai.APIConnectionError(request=request) from None


if sys.version_info >= (3, 11):
    async def within(seconds: float, awaitable):
        """``await awaitable``, cancelled after ``seconds``: raises :class:`TimeoutError` then."""
        async with asyncio.timeout(seconds):
            return await awaitable
else:  # pragma: no cover - Python 3.10
    async def within(seconds: float, awaitable):
        """``await awaitable``, cancelled after ``seconds``: raises :class:`asyncio.TimeoutError` then."""
        return await asyncio.wait_for(awaitable, seconds)


async def _send(http, request) -> bytes:
    response = await http.send(request, stream=True)
    try:
        if response.status_code >= 400:
            content = await _read(response, MAX_ERROR_BYTES, cut=True)
            raise status_error(response.status_code, response.headers.raw, content, response.request)
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
            raise MalformedResponse(f"its body of {int(length)} bytes is over the limit of "
                                    f"{size_label(MAX_RESPONSE_BYTES)}")
        return await _read(response, MAX_RESPONSE_BYTES)
    finally:
        await response.aclose()


async def _read(response, limit: int, cut: bool = False) -> bytes:
    """The decoded body of a streamed ``response``, read until it ends or passes ``limit`` bytes
    (no further): past the limit, its first ``limit`` bytes with ``cut``, else
    :class:`MalformedResponse`."""
    chunks = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            if cut:
                chunks.append(chunk[:len(chunk) - (size - limit)])
                break
            raise MalformedResponse(f"its body is over the limit of {size_label(limit)}")
        chunks.append(chunk)
    return b"".join(chunks)


def size_label(size: int) -> str:
    """``8 MiB``, ``64 KiB`` or ``1000 bytes``."""
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


def status_error(status: int, headers, content: bytes, request) -> openai.APIStatusError:
    """The SDK's error for a 4xx or 5xx answer, built as the SDK builds it.

    Parameters
    ----------
    status : int
        The answer's status.
    headers : list of (bytes, bytes)
        Its raw headers (those of the body's encoding and length are dropped: ``content`` is
        decoded, and perhaps cut).
    content : bytes
        Its decoded body, perhaps cut at :data:`MAX_ERROR_BYTES`.
    request : httpx.Request
        The request it answered.

    Returns
    -------
    openai.APIStatusError
        ``BadRequestError`` for 400, ..., ``RateLimitError`` for 429, ``InternalServerError`` for
        5xx, holding an ``httpx.Response`` as the SDK's errors do.
    """
    headers = [(name, value) for name, value in headers if name.lower() not in _BODY_HEADER_NAMES]
    response = httpx.Response(status, headers=headers, content=content, request=request)
    text = content.decode("utf-8", errors="replace").strip()
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        body = text
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]  # Gemini's errors come as a list
    error = body.get("error", body) if isinstance(body, dict) else body
    message = f"Error code: {response.status_code}"
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        message += f" - {error['message']}"
    status = response.status_code
    kind = _STATUS_ERRORS.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return kind(message, response=response, body=error)
