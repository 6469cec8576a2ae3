"""Token counting as the judges' server reports it: cl100k_base, or characters / 4."""

from __future__ import annotations

from typing import Sequence

from ..tokens import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, TiktokenCounter, count_message_tokens, get_encoding

__all__ = ["TOKENS_PER_MESSAGE", "TOKENS_PER_REPLY", "Tokens"]


class Tokens:
    """Counts, cuts and splits texts into tokens with cl100k_base.

    Parameters
    ----------
    estimate : bool
        Count ``len(text) // 4`` instead, and split into chunks of 4 characters: a stub's
        bookkeeping, whose own CPU barely competes with a client timed on the same cores. Also
        what happens when cl100k_base is unavailable.

    Attributes
    ----------
    encoding : tiktoken.Encoding or None
        None when estimating.
    """

    def __init__(self, estimate: bool = False) -> None:
        self.encoding = None if estimate else get_encoding("cl100k_base")
        self._counter = TiktokenCounter("cl100k_base") if self.encoding is not None else None

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""
        if self.encoding is None:
            return len(text) // 4
        return len(self.encoding.encode_ordinary(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The first ``max_tokens`` tokens of ``text``."""
        max_tokens = max(max_tokens, 0)
        if self._counter is None:
            return text[:max_tokens * 4]
        return self._counter.truncate(text, max_tokens)

    def pieces(self, text: str) -> list[bytes]:
        """The tokens of ``text`` as bytes (chunks of 4 characters when estimating)."""
        if self.encoding is None:
            return [text[i:i + 4].encode("utf-8") for i in range(0, len(text), 4)]
        return [self.encoding.decode_single_token_bytes(t) for t in self.encoding.encode_ordinary(text)]

    def prompt(self, messages: Sequence[dict]) -> int:
        """Prompt tokens of a chat request, with OpenAI's per-message framing."""
        if self._counter is None:
            return count_message_tokens(messages, self.count)
        return self._counter.count_messages(messages)
