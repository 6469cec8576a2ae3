"""The backend interface every LLM backend implements (OpenAI-compatible HTTP, llama.cpp, vLLM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    latency: float = 0.0
    attempts: int = 1


class Backend(Protocol):
    """An async chat-completion backend.

    Implementations are plain objects built from their options; any client, connection or model
    is created lazily on first use, so a backend can be rebuilt from its config in another process.
    """

    model: str

    async def complete(self, messages: list[dict], params: dict) -> Completion:
        """Answer one chat request; ``params`` holds the sampling parameters (temperature, max_tokens, ...).

        Raises
        ------
        BackendError
            When the backend fails for good (after its retries) or refuses the request.
        """

    def token_counter(self) -> TokenCounter:
        """The token counter that best matches this backend's model, for context budgeting."""

    async def aclose(self) -> None:
        """Release connections or models."""
