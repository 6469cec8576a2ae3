"""Keeping secrets out of what rerank shows: error messages, log lines, reprs and summaries.

A base URL may carry credentials (``http://user:pass@host/v1``, ``...?api_key=...``); only its
public part is ever shown. Plain functions, no state.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# What a URL shows at most: a longer one is cut (a message stays one readable line).
MAX_SHOWN_URL = 200
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CONTROL = re.compile(r"[\x00-\x20\x7f]+")


def public_url(url: str | None) -> str:
    """The part of ``url`` that can be shown: ``scheme://host[:port]/path``.

    Userinfo (``user:pass@``), the query string and the fragment are dropped. Never raises:
    anything that is not a well-formed URL (a password with an unescaped ``/`` or ``?``, no
    scheme, a port that is not a number) is cut after its last ``@`` and at its first ``?`` or
    ``#`` after that, so what could be a credential is never shown. Control characters and
    whitespace are removed, and the result is at most :data:`MAX_SHOWN_URL` characters.

    Parameters
    ----------
    url : str or None
        A URL, or anything else (``str()`` of it is used).

    Returns
    -------
    str
        The public part; ``""`` for None.

    Examples
    --------
    >>> public_url("http://user:pass@127.0.0.1:8000/v1?api_key=secret#top")
    'http://127.0.0.1:8000/v1'
    """
    if url is None:
        return ""
    try:
        text = _CONTROL.sub("", str(url))
    except Exception:  # noqa: BLE001 - a str() that fails is garbage too
        return ""
    shown = _well_formed(text)
    if shown is None:
        shown = _cut(text)
    return shown if len(shown) <= MAX_SHOWN_URL else shown[:MAX_SHOWN_URL - 3] + "..."


def _well_formed(text: str) -> str | None:
    """``scheme://host[:port]/path`` of a URL that parses without doubt, else None."""
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
    except ValueError:  # an unreadable port or IPv6 address
        return None
    if not (parts.scheme and parts.netloc and host) or "@" in parts.path or not _SCHEME.match(text):
        return None  # an "@" in the path may be a password's tail: "http://u:1/x@host"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path}"


def _cut(text: str) -> str:
    """A garbled URL without anything up to its last ``@``, nor a query or fragment after that."""
    scheme = _SCHEME.match(text)
    prefix = scheme.group(0).lower() if scheme else ""
    rest = text[len(prefix):].rpartition("@")[2]
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    return prefix + rest


def url_secrets(url: str | None) -> list[str]:
    """The credentials ``url`` carries, to be masked wherever a server might echo them.

    The userinfo (``user:pass``, and the password apart, or a user name without a password, which
    is often a token), the query string and each query value, and the fragment; pieces shorter than 4 characters are left out, as masking
    them would garble a message more than it protects. Never raises.

    Parameters
    ----------
    url : str or None

    Returns
    -------
    list of str
        Longest first, so that masking a piece never leaves part of a longer one.
    """
    if not url:
        return []
    text = str(url)
    scheme = _SCHEME.match(text)
    rest = text[scheme.end():] if scheme else text
    pieces = []
    userinfo, at, after = rest.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        # A user name alone is often a token; beside a password it is a name.
        pieces += [userinfo, password if colon else user]
        rest = after
    _, mark, tail = re.split(r"([?#])", rest, maxsplit=1) if re.search(r"[?#]", rest) else (rest, "", "")
    if mark:
        query, _, fragment = tail.partition("#") if mark == "?" else ("", "", tail)
        pieces += [query, fragment]
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            pieces.append(value)
    return sorted({piece for piece in pieces if len(piece) >= 4}, key=len, reverse=True)


#: What a secret header's value is shown as.
MASK = "***"
_SECRET_HEADER = re.compile(r"auth|key|token|secret|passw|cookie|credential|session|signature", re.IGNORECASE)
# A long unbroken run of token characters holding letters and digits ("sk-or-v1-...", a JWT), or
# an authorization scheme's credentials.
_TOKEN = re.compile(r"(?=[^\s]*[A-Za-z])(?=[^\s]*[0-9])[A-Za-z0-9_\-.~+/=:]{20,}")
_SCHEME_CREDENTIALS = re.compile(r"^\s*(?:bearer|basic|token|digest)\s+\S", re.IGNORECASE)


def looks_secret(name: str, value: str) -> bool:
    """Whether a header's value may be a credential, by its name or its look.

    Parameters
    ----------
    name : str
        The header's name: ``Authorization``, ``X-Api-Key``, ``Cookie`` and the like are secret.
    value : str
        Its value: ``Bearer ...``, or a long run of letters and digits without spaces (a key, a
        token), is secret whatever the name.

    Returns
    -------
    bool

    Examples
    --------
    >>> looks_secret("X-Title", "rerank on DL19"), looks_secret("X-Custom", "sk-or-v1-0123456789abcdef0123")
    (False, True)
    """
    return bool(_SECRET_HEADER.search(name) or _SCHEME_CREDENTIALS.match(value) or _TOKEN.search(value))


def public_headers(headers: dict | None) -> dict:
    """Headers as a summary may show them: secret-looking values (:func:`looks_secret`) masked,
    URLs without credentials.

    Parameters
    ----------
    headers : dict or None
        Header names to values.

    Returns
    -------
    dict
        The same names; each value :data:`MASK`, its :func:`public_url`, or itself.

    Examples
    --------
    >>> public_headers({"HTTP-Referer": "https://me:pw@example.org/x", "Authorization": "Bearer abc"})
    {'HTTP-Referer': 'https://example.org/x', 'Authorization': '***'}
    """
    shown = {}
    for name, value in (headers or {}).items():
        text = str(value)
        if looks_secret(str(name), text):
            shown[name] = MASK
        elif _SCHEME.match(text):
            shown[name] = public_url(text)
        else:
            shown[name] = text
    return shown


def header_secrets(headers: dict | None) -> list[str]:
    """The values of ``headers`` to mask wherever a server might echo them: those that look
    secret (:func:`looks_secret`), whole and without an authorization scheme, and the
    credentials of URL values; pieces shorter than 4 characters are left out.

    Parameters
    ----------
    headers : dict or None

    Returns
    -------
    list of str
        Longest first.
    """
    pieces = []
    for name, value in (headers or {}).items():
        text = str(value)
        if looks_secret(str(name), text):
            pieces += [text, *text.split(None, 1)[1:]]  # whole, and without its "Bearer "
        elif _SCHEME.match(text):
            pieces += url_secrets(text)
    return sorted({piece for piece in pieces if len(piece) >= 4}, key=len, reverse=True)
