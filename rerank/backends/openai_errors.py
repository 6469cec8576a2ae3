"""What the OpenAI-compatible backend makes of a failure: retry it or not, how long to wait,
and the one line that describes it (without secrets), or a :class:`ContextOverflow`."""

from __future__ import annotations

import datetime
import email.utils
import math
import re
import time

import openai

from ..errors import ContextOverflow
from ..secrets import public_url
from .openai_answers import MalformedResponse
from .openai_http import CrossOriginRedirect

_CONTEXT_NUMBERS = re.compile(r"maximum context length is (\d+) tokens.*?(\d+) tokens", re.DOTALL)


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed attempt is tried again.

    Parameters
    ----------
    exc : BaseException
        What the attempt raised.

    Returns
    -------
    bool
        True for rate limits, timeouts, connection errors, 5xx and malformed answers; False for
        other 4xx and redirects to another origin.
    """
    if isinstance(exc, (openai.APIConnectionError, MalformedResponse)):
        return True  # APITimeoutError and AttemptTimeout are subclasses
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 429) or exc.status_code >= 500
    return False


def retry_after_seconds(headers) -> float | None:
    """Seconds a server asks us to wait, from ``retry-after-ms`` or ``retry-after`` (seconds or date).

    Parameters
    ----------
    headers : mapping or None
        The response's headers.

    Returns
    -------
    float or None
        Never negative; None when neither header is there or readable (garbage, ``nan``,
        ``inf``, a malformed date).
    """
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        seconds = _finite_float(value)
        if seconds is not None:
            return max(seconds / 1000.0, 0.0)
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _finite_float(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None  # Python 3.10+ raises on an unreadable date instead of returning None
    if parsed.tzinfo is None:  # "-0000": an HTTP date is always GMT
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return max(parsed.timestamp() - time.time(), 0.0)


def _finite_float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def context_overflow(exc: BaseException, base_url: str | None) -> ContextOverflow | None:
    """The :class:`ContextOverflow` that ``exc`` is, when it is the server saying the prompt is too long.

    Parameters
    ----------
    exc : BaseException
        What a call raised.
    base_url : str or None
        The endpoint, for the message (None: OpenAI's API).

    Returns
    -------
    ContextOverflow or None
        With the server's context limit and the prompt's length when its message gives them;
        None for any other failure.
    """
    if not isinstance(exc, openai.BadRequestError):
        return None
    message = describe_error(exc, base_url)
    code = getattr(exc, "code", None)
    if code != "context_length_exceeded" and "maximum context length" not in message:
        return None
    numbers = _CONTEXT_NUMBERS.search(message)
    limit, actual = (int(numbers.group(1)), int(numbers.group(2))) if numbers else (None, None)
    return ContextOverflow(message, limit, actual)


def describe_error(exc: BaseException, base_url: str | None) -> str:
    """One line describing a backend failure, without secrets.

    Parameters
    ----------
    exc : BaseException
        What a call raised.
    base_url : str or None
        The endpoint (None: OpenAI's API), shown by :func:`~rerank.secrets.public_url`.

    Returns
    -------
    str
        At most a few hundred characters. The API key is never in it, unless a server echoed
        it: the backend masks it then.
    """
    where = public_url(base_url) if base_url else "the OpenAI API"
    if isinstance(exc, openai.APITimeoutError):
        seconds = getattr(exc, "seconds", None)
        return f"request to {where} timed out" + (f" after {seconds:g} s" if seconds is not None else "")
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot connect to {where}"
    if isinstance(exc, openai.APIStatusError):
        message = exc.message
        body = exc.body
        if isinstance(body, dict):
            message = (body.get("error") or {}).get("message", message) if isinstance(body.get("error"), dict) \
                else body.get("message", message)
        return f"{where} answered HTTP {exc.status_code}: {_one_line(message)}"
    if isinstance(exc, CrossOriginRedirect):
        return (f"{where} redirected the request to another origin ({exc.origin}); the redirect was "
                "not followed, so the request was not sent there")
    if isinstance(exc, MalformedResponse):
        reason = _one_line(exc)
        return f"{where} sent an answer that is not a chat completion" + (f": {reason}" if reason else "")
    return f"{type(exc).__name__}: {_one_line(exc)}"


def _one_line(message: object) -> str:
    """``message`` on one line of at most 300 characters."""
    return " ".join(str(message).split())[:300]
