"""Reasoning first, then the answer: for models that think before they rank.

A reasoning model writes ``<think>...</think>`` before its answer (DeepSeek-R1, Qwen3), returns
its reasoning apart (vLLM's ``reasoning_content``), or hides it and reports only its tokens
(OpenAI's o-series). :class:`Reasoned` wraps any decoded kind: the call gets its own reasoning
budget on top of the answer's, no constraint (a grammar would forbid the thinking), and
``max_completion_tokens`` instead of ``max_tokens`` with no temperature unless one is set (what
reasoning models accept); the thinking is stripped before the inner kind parses and kept with the
answer; an answer cut by the limit has status ``truncated`` and is never cached. Models that
reason unasked (OpenAI's o-series and gpt-5, Gemini 2.5 and later) are always asked this way
(:meth:`rerank.config.RerankerConfig.reasons_by_default`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from ..fitting import ANSWER_SHARE
from .base import TRUNCATED, Answer, AnswerKind, Ask, CallSettings
from .ranking import split_thinking

#: Reasoning tokens allowed per call when ``--reasoning-budget`` is not given.
DEFAULT_REASONING_BUDGET = 2048
REASONING_EFFORTS = ("minimal", "low", "medium", "high")


@dataclass(frozen=True, slots=True)
class Reasoned:
    """``inner``'s answer, written after reasoning.

    Parameters
    ----------
    inner : AnswerKind
        The kind of the answer proper (a ranking, a choice, a relevance judgment); not
        ``FirstToken``, which reads the very first token.
    budget : int
        Tokens the reasoning may take, on top of the answer's.
    effort : str or None
        ``reasoning_effort`` for APIs that take it (``low``, ``medium``, ``high``).
    """

    inner: AnswerKind
    budget: int = DEFAULT_REASONING_BUDGET
    effort: str | None = None

    def __post_init__(self):
        if self.inner.name == "first-token":
            raise ValueError("single-token ranking reads the first token: it cannot follow reasoning")
        if self.budget < 1:
            raise ValueError(f"the reasoning budget must be at least 1 token, got {self.budget}")
        if self.effort is not None and self.effort not in REASONING_EFFORTS:
            raise ValueError(f"reasoning effort {self.effort!r}: choose one of {', '.join(REASONING_EFFORTS)}")

    @property
    def name(self) -> str:
        """``reasoned-`` and the inner kind's name."""
        return f"reasoned-{self.inner.name}"

    def ask(self, labels: Sequence[str], settings: CallSettings) -> Ask:
        """The inner request with room to reason, in the parameters reasoning models take."""
        inner = self.inner.ask(labels, replace(settings, constrained=False))
        tokens = max(1, min(self.budget + inner.answer_tokens, int(settings.context * ANSWER_SHARE)))
        params = {key: value for key, value in inner.params.items()
                  if key not in ("max_tokens", "temperature", "logprobs", "top_logprobs")}
        params["max_completion_tokens"] = tokens
        if settings.temperature is not None:
            params["temperature"] = settings.temperature
        if self.effort is not None:
            params["reasoning_effort"] = self.effort
        return Ask(params, tokens)

    def parse(self, completion, labels: Sequence[str]) -> Answer:
        """The inner kind's reading of what follows the thinking; ``truncated`` when the limit
        cut the answer (or the thinking) short."""
        text, thought = split_thinking(completion.text)
        reasoning = completion.reasoning or thought
        answer = self.inner.parse(replace(completion, text=text, top_logprobs=None, reasoning=reasoning),
                                  labels)
        if completion.finish_reason == "length":
            answer = replace(answer, status=TRUNCATED)
        return answer

    def cacheable(self, completion) -> bool:
        """Never an answer cut by the limit: a larger budget would get the whole one."""
        return completion.finish_reason != "length"

    def instructions(self, labels: Sequence[str]) -> str:
        """The inner kind's instructions (the model reasons of its own accord)."""
        return self.inner.instructions(labels)

    def target(self, order: Sequence[int], labels: Sequence[str]) -> str:
        """The inner kind's target (reasoning is not a training target here)."""
        return self.inner.target(order, labels)
