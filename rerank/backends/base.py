"""The backend interface every LLM backend implements (OpenAI-compatible HTTP, llama.cpp, vLLM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

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
