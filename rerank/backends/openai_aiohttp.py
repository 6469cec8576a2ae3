"""The OpenAI-compatible backend's fastest transport: requests sent straight on ``aiohttp``.

It keeps every bound of :mod:`~rerank.backends.openai_http`'s ``httpx`` transport (one deadline
for connecting, the headers and the whole body; a body over :data:`MAX_RESPONSE_BYTES` refused
while it is read, an error body cut at :data:`MAX_ERROR_BYTES`; same-origin redirects followed
and no other) and raises the same errors, the SDK's classes built as the SDK builds them; its
share of a call's CPU is about a quarter of ``httpx``'s (a call costs 0.48 ms instead of 0.77 ms,
``eval/bench_call_overhead.py``), because it goes through neither ``httpx``'s request and
response models nor ``anyio``. The ``httpx`` objects that the SDK's errors hold are made only
when a call fails.
"""

from __future__ import annotations

import asyncio
import base64

import openai

try:
    import aiohttp
    from yarl import URL
except ImportError:  # pragma: no cover - the transport refuses to start, with an install hint
    aiohttp = None

from ..errors import ConfigError
from .openai_answers import MalformedResponse
from .openai_http import (MAX_ERROR_BYTES, MAX_RESPONSE_BYTES, AttemptTimeout, CrossOriginRedirect, httpx,
                          origin_label, size_label, status_error, within)

#: Redirects followed per request (``httpx``'s default), then the request fails as a connection error.
MAX_REDIRECTS = 20
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class AiohttpTransport:
    """Sends the backend's requests on one ``aiohttp`` session, made inside the running loop.

    Parameters
    ----------
    trust_env : bool
        Take proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``...) and certificates
        from ``SSL_CERT_FILE``/``SSL_CERT_DIR``, as the SDK's ``httpx`` client does; resolved once
        per URL, not per request.

    Raises
    ------
    ConfigError
        When ``aiohttp`` is not installed.
    """

    def __init__(self, trust_env: bool = True):
        if aiohttp is None:
            raise ConfigError("the aiohttp HTTP client needs aiohttp: pip install aiohttp "
                              "(or choose http_client='httpx')")
        self._trust_env = trust_env
        self._session = None

    def url(self, url) -> "_Target":
        """``url`` (an ``httpx.URL`` from :func:`~rerank.backends.openai_endpoint.endpoint_url`)
        prepared for :meth:`fetch`: its proxy resolved, its credentials made a header."""
        return _Target(str(url), self._trust_env)

    def _open(self):
        # Our own deadline bounds every attempt: aiohttp's timers would only cost CPU. As with
        # httpx (whose requests are not built from the client's defaults), cookies are never sent
        # back and no compression is asked for (a server may still compress: it is decoded).
        ssl = httpx.create_ssl_context(trust_env=self._trust_env)
        connector = aiohttp.TCPConnector(limit=0, ssl=ssl)
        self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                              timeout=aiohttp.ClientTimeout(total=None, sock_connect=None,
                                                                            sock_read=None),
                                              auto_decompress=True, trust_env=False,
                                              skip_auto_headers=("Accept-Encoding",),
                                              # h11's (httpx's) bound on a header block, not 8 KiB a line
                                              max_line_size=16 << 10, max_field_size=16 << 10)
        return self._session

    async def fetch(self, method: str, target: "_Target", headers: dict[str, str], seconds: float,
                    content: bytes | None = None) -> bytes:
        """Send one request and read its 2xx body, all within ``seconds``.

        Parameters
        ----------
        method : str
            ``"GET"`` or ``"POST"``.
        target : _Target
            Where to send it (from :meth:`url`).
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
            Its subclass for the status on a 4xx or 5xx answer.
        AttemptTimeout
            When the deadline passes.
        openai.APIConnectionError
            When the connection fails or breaks, or after :data:`MAX_REDIRECTS` redirects.
        MalformedResponse
            For a body over :data:`MAX_RESPONSE_BYTES`.
        CrossOriginRedirect
            For a redirect to another origin.
        """
        session = self._session or self._open()
        try:
            return await within(seconds, self._send(session, method, target, headers, content))
        except asyncio.TimeoutError:  # TimeoutError on Python 3.11 and later
            raise AttemptTimeout(_request(method, target.url, headers), seconds) from None
        except (aiohttp.ClientError, OSError, ValueError):  # ValueError: an unreadable Location
            raise openai.APIConnectionError(request=_request(method, target.url, headers)) from None

    async def _send(self, session, method: str, target: "_Target", headers: dict[str, str],
                    content: bytes | None) -> bytes:
        url = target.url
        if target.authorization is not None:
            headers = {**headers, "Authorization": target.authorization}
        for _ in range(MAX_REDIRECTS + 1):
            async with session.request(method, url, headers=headers, data=content, allow_redirects=False,
                                       proxy=target.proxy, proxy_auth=target.proxy_auth) as response:
                status = response.status
                location = response.headers.get("Location") if status in _REDIRECTS else None
                if location is not None:
                    url, method, content = _redirect(url, location, status, method, content)
                    continue
                if status >= 400:
                    body = await _read(response, MAX_ERROR_BYTES, cut=True)
                    raise status_error(status, response.raw_headers, body, _request(method, url, headers))
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
                    response.close()  # drops the connection: the rest of the body is never read
                    raise MalformedResponse(f"its body of {int(length)} bytes is over the limit of "
                                            f"{size_label(MAX_RESPONSE_BYTES)}")
                return await _read(response, MAX_RESPONSE_BYTES)
        raise openai.APIConnectionError(message=f"over {MAX_REDIRECTS} redirects",
                                        request=_request(method, url, headers))

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Target:
    """A URL prepared once for :meth:`AiohttpTransport.fetch`: without its ``user:pass@`` (sent
    as Basic authorization, overriding the key's, as ``httpx`` does) and with its proxy."""

    __slots__ = ("url", "authorization", "proxy", "proxy_auth")

    def __init__(self, url: str, trust_env: bool):
        parsed = URL(url, encoded=True)
        self.authorization = None
        if parsed.raw_user is not None or parsed.raw_password is not None:
            userpass = f"{parsed.user or ''}:{parsed.password or ''}".encode()
            self.authorization = "Basic " + base64.b64encode(userpass).decode("ascii")
            parsed = parsed.with_user(None)
        self.url = parsed
        self.proxy = self.proxy_auth = None
        if trust_env:
            try:
                self.proxy, self.proxy_auth = aiohttp.helpers.get_env_proxy_for_url(parsed)
            except LookupError:
                pass


def _redirect(url, location: str, status: int, method: str, content: bytes | None):
    """Where a same-origin redirect goes, with what method and body (as ``httpx`` does: 303,
    302, and 301 after a POST, become a GET without a body).

    Raises
    ------
    CrossOriginRedirect
        When ``location`` has another scheme, host or port (a relative one never has).
    """
    target = url.join(URL(location, encoded=True))
    if target.host and _origin(target) != _origin(url):
        port = target.explicit_port
        shown = None if port == _DEFAULT_PORTS.get(target.scheme.lower()) else port  # as httpx shows it
        raise CrossOriginRedirect(origin_label(target.scheme, target.host, shown))
    if status in (302, 303) and method != "HEAD" or status == 301 and method == "POST":
        return target, "GET", None
    return target, method, content


def _origin(url) -> tuple[str, str, int | None]:
    scheme = url.scheme.lower()
    return scheme, (url.host or "").lower(), url.explicit_port or _DEFAULT_PORTS.get(scheme)


async def _read(response, limit: int, cut: bool = False) -> bytes:
    """The decoded body of ``response``, read until it ends or passes ``limit`` bytes (no
    further): past the limit, its first ``limit`` bytes with ``cut``, else
    :class:`MalformedResponse`."""
    stream = response.content
    chunks = []
    size = 0
    while chunk := await stream.readany():
        size += len(chunk)
        if size > limit:
            response.close()
            if cut:
                chunks.append(chunk[:len(chunk) - (size - limit)])
                break
            raise MalformedResponse(f"its body is over the limit of {size_label(limit)}")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _request(method: str, url, headers: dict[str, str]):
    """The ``httpx.Request`` that the SDK's errors hold, made only for an error."""
    return httpx.Request(method, str(url), headers=headers)
