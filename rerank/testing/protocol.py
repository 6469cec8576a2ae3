"""OpenAI's checks of a chat completion request, and its error bodies."""

from __future__ import annotations

from typing import Any

MODEL_ID = "test-judge"
MAX_TOP_LOGPROBS = 20       # OpenAI's limit on top_logprobs


class BadRequest(Exception):
    """A request refused with HTTP 400.

    Parameters
    ----------
    message : str
    param, code : str or None
        OpenAI's ``param`` and ``code`` of the error.
    """

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code

    def body(self) -> dict:
        """OpenAI's error body."""
        return error_body(str(self), "invalid_request_error", self.code, self.param)


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def json_type(value: Any) -> str:
    """How OpenAI's errors name the JSON type of ``value`` (``an integer``, ``a string``, ...)."""
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a decimal"), (str, "a string"),
             (list, "an array"), (dict, "an object"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def _check_logprobs(request: dict, top_limit: int | None) -> None:
    logprobs, top = request.get("logprobs"), request.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise BadRequest(f"Invalid type for 'logprobs': expected a boolean, but got "
                         f"{json_type(logprobs)} instead.", "logprobs", "invalid_type")
    if top is None:
        return
    if not isinstance(top, int) or isinstance(top, bool):
        raise BadRequest(f"Invalid type for 'top_logprobs': expected an integer, but got "
                         f"{json_type(top)} instead.", "top_logprobs", "invalid_type")
    if top < 0:
        raise BadRequest("Invalid 'top_logprobs': integer below minimum value. Expected a value "
                         f">= 0, but got {top} instead.", "top_logprobs", "integer_below_min_value")
    if top_limit is not None and top > top_limit:
        raise BadRequest("Invalid 'top_logprobs': integer above maximum value. Expected a value "
                         f"<= {top_limit}, but got {top} instead.", "top_logprobs", "integer_above_max_value")
    if logprobs is not True:
        raise BadRequest("Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                         "'top_logprobs' is given.", "top_logprobs", "invalid_value")


def _content_text(content: Any) -> str:
    """Message content as text; a list of content parts contributes its text parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(part["text"] if isinstance(part, dict) and isinstance(part.get("text"), str)
                       else part if isinstance(part, str) else "" for part in content)
    raise BadRequest("Invalid type for 'messages[].content': expected a string or an array.")


def check_request(request: Any, top_limit: int | None = MAX_TOP_LOGPROBS) -> dict:
    """Check a decoded request body as OpenAI does.

    Parameters
    ----------
    request : Any
        The decoded JSON body.
    top_limit : int or None
        The most ``top_logprobs`` allowed; None for no limit.

    Returns
    -------
    dict
        The request, its messages as ``{"role", "content": str}`` (content parts joined).

    Raises
    ------
    BadRequest
        Not an object, no messages, a message without a role, a content that is neither text nor
        parts, or ``logprobs`` / ``top_logprobs`` of the wrong type or range.
    """
    if not isinstance(request, dict):
        raise BadRequest("The request body must be a JSON object.")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("Missing required parameter: 'messages'.")
    cleaned = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest("Invalid 'messages': each message needs a 'role' and 'content'.")
        cleaned.append({"role": message["role"], "content": _content_text(message.get("content"))})
    _check_logprobs(request, top_limit)
    return {**request, "messages": cleaned}
