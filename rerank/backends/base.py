"""The backend interface every LLM backend implements (OpenAI-compatible HTTP, llama.cpp, vLLM)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from ..tokens import TokenCounter


@dataclass(frozen=True, slots=True)
class Completion:
    """One answer from a backend.

    Attributes
    ----------
    text : str
        The assistant message content.
    prompt_tokens, completion_tokens : int
        Usage as reported by the backend (estimated when it reports none).
    finish_reason : str or None
        ``"stop"``, ``"length"`` (cut off by ``max_tokens``), ...
    latency : float
        Seconds from the first attempt to the answer, retries included.
    attempts : int
        Attempts made, 1 when no retry was needed.
    top_logprobs : tuple of (str, float) pairs, or None
        The first generated token's most likely alternatives and their log-probabilities, best
        first, when the call asked for them (``params["top_logprobs"]``) and the backend gave them.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    latency: float = 0.0
    attempts: int = 1
    top_logprobs: tuple[tuple[str, float], ...] | None = None

    def to_json(self) -> dict:
        """The answer as a JSON-ready dict: what the call cache stores.

        Latency and attempts are left out (they describe the call, not the answer), and so is
        ``top_logprobs`` when None.

        Returns
        -------
        dict
            ``text``, ``prompt_tokens``, ``completion_tokens``, ``finish_reason`` and, when
            present, ``top_logprobs`` as a list of ``[token, logprob]`` pairs.
        """
        value = {"text": self.text, "prompt_tokens": self.prompt_tokens,
                 "completion_tokens": self.completion_tokens, "finish_reason": self.finish_reason}
        if self.top_logprobs is not None:
            value["top_logprobs"] = [[token, logprob] for token, logprob in self.top_logprobs]
        return value

    @classmethod
    def from_json(cls, value: Any) -> "Completion":
        """Rebuild an answer from :meth:`to_json`'s dict, checking every field.

        Parameters
        ----------
        value : Any
            A decoded JSON value, e.g. read back from the cache. Unknown keys are ignored.

        Returns
        -------
        Completion
            With ``latency`` 0 and ``attempts`` 0: no call was made to get it.

        Raises
        ------
        ValueError
            If ``value`` is not a dict, ``text`` is not a str of at most ``MAX_TEXT_CHARS``
            characters, a token count is not a non-negative int, ``finish_reason`` is neither a
            short str nor None, or ``top_logprobs`` is not a list of at most
            ``MAX_ALTERNATIVES`` ``[str, finite float]`` pairs.
        """
        if not isinstance(value, dict):
            raise ValueError(f"a completion is a JSON object, not {type(value).__name__}")
        text = value.get("text")
        if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
            raise ValueError("text is not a string of at most %d characters" % MAX_TEXT_CHARS)
        counts = [value.get("prompt_tokens"), value.get("completion_tokens")]
        if not all(type(n) is int and 0 <= n <= MAX_TOKENS for n in counts):
            raise ValueError("a token count is not a non-negative integer")
        finish = value.get("finish_reason")
        if finish is not None and (not isinstance(finish, str) or len(finish) > 64):
            raise ValueError("finish_reason is neither a short string nor null")
        return cls(text, counts[0], counts[1], finish, 0.0, 0, _alternatives(value.get("top_logprobs")))


# Bounds a stored answer must keep: a ranking of 1,000 passages is ~8,000 characters.
MAX_TEXT_CHARS = 1 << 20
MAX_TOKENS = 1 << 40
MAX_ALTERNATIVES = 1024


def _alternatives(value: Any) -> tuple[tuple[str, float], ...] | None:
    """``top_logprobs`` of a stored answer, checked: None, or [str, finite float] pairs."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_ALTERNATIVES:
        raise ValueError("top_logprobs is not a list of at most %d pairs" % MAX_ALTERNATIVES)
    pairs = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and len(pair[0]) <= 256
                and type(pair[1]) in (int, float) and math.isfinite(pair[1])):
            raise ValueError("a top_logprobs entry is not a [token, finite log-probability] pair")
        pairs.append((pair[0], float(pair[1])))
    return tuple(pairs)


def answer_start(messages: Sequence[dict]) -> str | None:
    """The start of the answer a request carries as its last message, with role ``assistant``,
    for the model to continue (single-token ranking's ``[``); None when it carries none."""
    return messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else None


class Backend(Protocol):
    """An async chat-completion backend.

    Implementations are plain objects built from their options; any client, connection or model
    is created lazily on first use, so a backend can be rebuilt from its config in another process.

    Attributes
    ----------
    model : str
        The model name or path.
    constrained_default : bool or None
        Whether the backend can constrain an answer to a ranking of the window's identifiers:
        None when it cannot, else whether it does so unless told otherwise.
    """

    model: str
    constrained_default: bool | None

    def context_limit(self) -> int | None:
        """The model's context window in tokens, when the backend knows it (None otherwise)."""

    async def complete(self, messages: list[dict], params: dict, *,
                       ranking_size: int | None = None,
                       first_token_labels: list[str] | None = None) -> Completion:
        """Answer one chat request; ``params`` holds the sampling parameters (temperature, max_tokens, ...).

        With ``params["top_logprobs"] = k`` (and ``"logprobs": True``) the completion carries the
        first token's ``k`` most likely alternatives; a backend that can score given tokens also
        returns those of ``first_token_labels`` (the window's identifiers), likely or not. A last
        message with role ``assistant`` is the start of the answer, to be continued rather than
        answered.

        With ``ranking_size`` the answer is constrained to a ranking of identifiers ``1..ranking_size``
        (only asked of a backend whose ``constrained_default`` is not None).

        Raises
        ------
        BackendError
            When the backend fails for good (after its retries) or refuses the request.
        """

    def token_counter(self) -> TokenCounter:
        """The token counter that best matches this backend's model, for context budgeting."""

    async def aclose(self) -> None:
        """Release connections or models."""
