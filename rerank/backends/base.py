"""The backend interface every LLM backend implements (OpenAI-compatible HTTP, llama.cpp, vLLM)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from ..tokens import TokenCounter

if TYPE_CHECKING:
    from ..answers.constraints import Constraint


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
    reasoning : str or None
        Reasoning the API returned apart from the content (vLLM's ``reasoning_content``).
    reasoning_tokens : int
        Tokens spent reasoning, counted within ``completion_tokens`` (OpenAI's
        ``completion_tokens_details.reasoning_tokens``), when the backend reports them.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    latency: float = 0.0
    attempts: int = 1
    top_logprobs: tuple[tuple[str, float], ...] | None = None
    reasoning: str | None = None
    reasoning_tokens: int = 0

    def to_json(self) -> dict:
        """The answer as a JSON-ready dict: what the call cache stores.

        Latency and attempts are left out (they describe the call, not the answer), and so is
        ``top_logprobs`` when None.

        Returns
        -------
        dict
            ``text``, ``prompt_tokens``, ``completion_tokens``, ``finish_reason`` and, when
            present, ``top_logprobs`` as a list of ``[token, logprob]`` pairs, ``reasoning`` and
            ``reasoning_tokens``.
        """
        value = {"text": self.text, "prompt_tokens": self.prompt_tokens,
                 "completion_tokens": self.completion_tokens, "finish_reason": self.finish_reason}
        if self.top_logprobs is not None:
            value["top_logprobs"] = [[token, logprob] for token, logprob in self.top_logprobs]
        if self.reasoning is not None:
            value["reasoning"] = self.reasoning
        if self.reasoning_tokens:
            value["reasoning_tokens"] = self.reasoning_tokens
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
        reasoning = value.get("reasoning")
        if reasoning is not None and (not isinstance(reasoning, str) or len(reasoning) > MAX_TEXT_CHARS):
            raise ValueError("reasoning is not a string of at most %d characters" % MAX_TEXT_CHARS)
        reasoning_tokens = value.get("reasoning_tokens", 0)
        if not (type(reasoning_tokens) is int and 0 <= reasoning_tokens <= MAX_TOKENS):
            raise ValueError("reasoning_tokens is not a non-negative integer")
        return cls(text, counts[0], counts[1], finish, 0.0, 0, _alternatives(value.get("top_logprobs")),
                   reasoning, reasoning_tokens)


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


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, as its :meth:`Backend.prepare` found out.

    Attributes
    ----------
    constrain : bool
        Whether it can hold an answer to a format (a grammar or a regular expression).
    constrain_by_default : bool
        Whether it does so unless told otherwise (llama.cpp, vLLM, and servers that list
        themselves as vLLM, SGLang or llama.cpp).
    logprobs : bool
        Whether it returns the first token's alternatives (single-token ranking, relevance).
    context : int or None
        The model's context window in tokens, when known.
    reasoning : bool
        Whether it returns reasoning apart from the answer, or reports reasoning tokens.
    """

    constrain: bool = False
    constrain_by_default: bool = False
    logprobs: bool = True
    context: int | None = None
    reasoning: bool = False


class Backend(Protocol):
    """An async chat-completion backend.

    Implementations are plain objects built from their options; any client, connection or model
    is created lazily on first use, so a backend can be rebuilt from its config in another process.

    Attributes
    ----------
    model : str
        The model name or path.
    """

    model: str

    async def prepare(self) -> Capabilities:
        """Check the endpoint or load the model, once, and say what the backend can do.

        Raises
        ------
        BackendError
            When the endpoint is down, refuses the key, or the model cannot be loaded.
        """

    async def complete(self, messages: list[dict], params: dict, *,
                       constraint: "Constraint | None" = None,
                       first_token_labels: list[str] | None = None) -> Completion:
        """Answer one chat request; ``params`` holds the sampling parameters (temperature, max_tokens, ...).

        With ``params["top_logprobs"] = k`` (and ``"logprobs": True``) the completion carries the
        first token's ``k`` most likely alternatives; a backend that can score given tokens also
        returns those of ``first_token_labels`` (the window's identifiers), likely or not. A last
        message with role ``assistant`` is the start of the answer, to be continued rather than
        answered.

        With a ``constraint`` (:class:`~rerank.answers.Constraint`) the answer is held to its
        ranking format (only asked of a backend whose capabilities say it can constrain). Token
        limits come as ``max_tokens``, or as ``max_completion_tokens`` from reasoning answers.

        Raises
        ------
        BackendError
            When the backend fails for good (after its retries) or refuses the request.
        """

    def token_counter(self) -> TokenCounter:
        """The token counter that best matches this backend's model, for context budgeting."""

    async def aclose(self) -> None:
        """Release connections or models."""
