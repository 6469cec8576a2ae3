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
