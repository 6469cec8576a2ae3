"""Reasoning models: a judge that thinks before it answers, visibly or as OpenAI's o-series.

``visible`` (the ``reasoning`` judge's default)
    The reply is ``<think>\\n`` + N tokens of thinking + ``\\n</think>\\n\\n`` + the answer. The
    thinking counts against ``max_tokens``: a budget that runs out inside it cuts the reply
    there, with ``finish_reason: "length"`` and no answer.
``separate`` (vLLM's and SGLang's reasoning parsers)
    As ``visible``, but the thinking comes apart, in ``message.reasoning_content``, and
    ``content`` holds the answer alone (empty when the budget ran out inside the thinking).
``hidden`` (o-series)
    ``max_tokens`` is refused (HTTP 400, ``unsupported_parameter``: use
    ``max_completion_tokens``), and so is a ``temperature`` other than 1 (``unsupported_value``);
    ``reasoning_effort`` is accepted. The reply is the answer alone; the N reasoning tokens are
    reported in ``usage.completion_tokens_details.reasoning_tokens`` and counted in
    ``completion_tokens``. They come out of ``max_completion_tokens`` first: a budget they use up
    leaves an empty reply with ``finish_reason: "length"``.

N is ``think_tokens`` times 0, 0.5, 1 or 2 for a ``reasoning_effort`` of minimal, low, medium
(the default) or high.
"""

from __future__ import annotations

from dataclasses import dataclass

from .counting import Tokens
from .judges import Verdict
from .protocol import BadRequest

REASONING_MODES = ("visible", "separate", "hidden")
EFFORTS = {"minimal": 0.0, "low": 0.5, "medium": 1.0, "high": 2.0}
#: Thinking without digits, brackets, capitals or yes/no words: nothing a parser could take
#: for an answer.
_THOUGHT = "weighing each passage against the query, and which of them answers it best; "


@dataclass
class Thinking:
    """The reasoning of one request.

    Attributes
    ----------
    text : str
        The thinking (visible mode), without its tags.
    hidden_tokens : int
        Reasoning tokens not shown (hidden mode), before any budget cut.
    hidden : bool
    """

    text: str
    hidden_tokens: int
    mode: str

    @property
    def hidden(self) -> bool:
        """Whether the reasoning is hidden (o-series)."""
        return self.mode == "hidden"

    def wrap(self, verdict: Verdict) -> Verdict:
        """The answer as given after the thinking (visible, separate), or unchanged (hidden)."""
        if self.hidden:
            return verdict
        text = f"<think>\n{self.text}\n</think>\n\n{verdict.text}"
        return Verdict(text, [(text, None)])

    def split(self, reply: str) -> tuple[str, str | None]:
        """``(content, reasoning_content)`` of a reply written by :meth:`wrap` (maybe cut)."""
        if self.mode != "separate":
            return reply, None
        thought, closed, answer = reply.partition("</think>")
        return answer.lstrip("\n") if closed else "", thought.removeprefix("<think>").strip("\n")


@dataclass
class Reasoning:
    """How a server reasons.

    Parameters
    ----------
    mode : {"visible", "hidden"}
    think_tokens : int
        Tokens of reasoning at medium effort.
    tokens : Tokens
    """

    mode: str
    think_tokens: int
    tokens: Tokens

    def check(self, request: dict) -> Thinking:
        """The reasoning of ``request``.

        Raises
        ------
        BadRequest
            In hidden mode, for ``max_tokens`` or a ``temperature`` other than 1; in both, for an
            unknown ``reasoning_effort``.
        """
        hidden = self.mode == "hidden"
        if hidden and request.get("max_tokens") is not None:
            raise BadRequest("Unsupported parameter: 'max_tokens' is not supported with this model. "
                             "Use 'max_completion_tokens' instead.", "max_tokens", "unsupported_parameter")
        temperature = request.get("temperature")
        if hidden and temperature is not None and temperature != 1:
            raise BadRequest(f"Unsupported value: 'temperature' does not support {temperature} with this "
                             "model. Only the default (1) value is supported.", "temperature", "unsupported_value")
        effort = request.get("reasoning_effort")
        if effort is not None and effort not in EFFORTS:
            raise BadRequest(f"Invalid value: {effort!r}. Supported values are: "
                             f"{', '.join(repr(e) for e in EFFORTS)}.", "reasoning_effort", "invalid_value")
        count = int(self.think_tokens * EFFORTS[effort or "medium"])
        if hidden:
            return Thinking("", count, self.mode)
        text = self.tokens.truncate(_THOUGHT * (count // 4 + 1), count).strip()
        return Thinking(text, 0, self.mode)
