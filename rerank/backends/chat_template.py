"""A Hugging Face tokenizer and its chat template: the exact prompt tokens a model receives.

The vLLM backend builds every prompt with :meth:`ChatTemplateCounter.prompt_tokens`, and
``rerank train`` builds every training prompt with the same method, so a trained model sees at
inference the tokens it was trained on, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .base import answer_start


@dataclass(frozen=True)
class ChatTemplateCounter:
    """Counts tokens with a Hugging Face tokenizer and its chat template, as vLLM builds prompts."""

    tokenizer: object
    exact: bool = True

    def count(self, text: str) -> int:
        """Tokens of ``text`` alone."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` with at most ``max_tokens`` tokens, cut at a token edge."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text
        return text[:offsets[max(max_tokens, 0)][0]] if max_tokens > 0 else ""

    def count_messages(self, messages: Sequence[dict]) -> int:
        """Exact prompt tokens: the chat template rendered and tokenized."""
        return len(self.prompt_tokens(messages))

    def prompt_text(self, messages: Sequence[dict]) -> str:
        """The chat template rendered with the generation prompt; a last ``assistant`` message
        is continued, not closed."""
        prefill = answer_start(messages) is not None
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=not prefill,
                                                  continue_final_message=prefill)

    def prompt_tokens(self, messages: Sequence[dict]) -> list[int]:
        """The prompt's token ids: :meth:`prompt_text` tokenized."""
        # The rendered template carries its own special tokens (BOS and turn markers).
        return self.tokenizer(self.prompt_text(messages), add_special_tokens=False)["input_ids"]
