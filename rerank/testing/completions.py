"""One chat completion request answered by a judge, as an OpenAI-compatible server answers it.

Shared by the HTTP server and the in-process backend, so both answer alike:

* The request is checked as OpenAI does (``messages``; ``logprobs`` and ``top_logprobs``, 0 to
  20); a bad one is answered HTTP 400 with OpenAI's error body.
* A last message with role ``assistant`` is the start of the answer, which is continued: the
  reply is the judge's answer without that start when the answer starts with it, else the whole
  answer (``continue_final_message`` and ``add_generation_prompt`` are accepted and ignored).
* ``max_tokens`` / ``max_completion_tokens`` cut the reply, with ``finish_reason: "length"``
  (unless ``honor_max_tokens`` is off); with ``context_window``, a longer prompt is refused
  with ``context_length_exceeded``.
* Log-probabilities (see :mod:`rerank.testing.logprobs`) when asked and ``logprobs`` is on.
* Reasoning (see :mod:`rerank.testing.reasoning`): ``visible`` writes a ``<think>`` block before
  the answer; ``hidden`` behaves as OpenAI's o-series models.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .counting import Tokens
from .judges import Judge
from .logprobs import first_token_options, logprobs_content
from .protocol import MAX_TOP_LOGPROBS, MODEL_ID, BadRequest, check_request, error_body
from .reading import read_prompt
from .reasoning import REASONING_MODES, Reasoning

@dataclass
class Reply:
    """A request's outcome.

    Attributes
    ----------
    status : int
        200, or 400 for a refused request.
    body : dict
        The chat completion, or OpenAI's error body.
    counts : dict
        What to add to the server's counters.
    record : dict or None
        The log entry of a completion (see :meth:`RunningServer.log`).
    """

    status: int
    body: dict
    counts: dict[str, int] = field(default_factory=dict)
    record: dict | None = None


@dataclass
class Responder:
    """Answers chat completion requests with a judge.

    Parameters
    ----------
    judge : Judge
    tokens : Tokens
    honor_max_tokens : bool
        Cut replies to ``max_tokens`` / ``max_completion_tokens``.
    context_window : int or None
        Refuse longer prompts with ``context_length_exceeded``.
    logprobs : bool
        Return log-probabilities when asked; False for a server that never does.
    reasoning : {None, "visible", "hidden"}
        None, or ``visible`` by default for the ``reasoning`` judge.
    think_tokens : int
        Tokens of reasoning at ``reasoning_effort`` medium.
    """

    judge: Judge
    tokens: Tokens = field(default_factory=Tokens)
    honor_max_tokens: bool = True
    context_window: int | None = None
    logprobs: bool = True
    reasoning: str | None = None
    think_tokens: int = 64

    def __post_init__(self) -> None:
        if self.reasoning is None and self.judge.name == "reasoning":
            self.reasoning = "visible"
        if self.reasoning not in (None, *REASONING_MODES):
            raise ValueError(f"reasoning must be one of {', '.join(REASONING_MODES)}, not {self.reasoning!r}")
        self._reasoning = Reasoning(self.reasoning, self.think_tokens, self.tokens) if self.reasoning else None

    def respond(self, request: Any, top_limit: int | None = MAX_TOP_LOGPROBS) -> Reply:
        """Answer one request (a decoded JSON body).

        Parameters
        ----------
        request : Any
            The body: ``model``, ``messages`` and the sampling parameters.
        top_limit : int or None
            The most ``top_logprobs`` allowed (None: no limit, for a caller in process).

        Returns
        -------
        Reply
        """
        try:
            request = check_request(request, top_limit)
            thinking = self._reasoning.check(request) if self._reasoning else None
        except BadRequest as exc:
            return Reply(400, exc.body(), {"bad_requests": 1})
        messages = request["messages"]
        prompt_tokens = self.tokens.prompt(messages)
        if self.context_window is not None and prompt_tokens > self.context_window:
            return Reply(400, error_body(
                f"This model's maximum context length is {self.context_window} tokens. However, your "
                f"messages resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
                "invalid_request_error", "context_length_exceeded", "messages"), {"bad_requests": 1})
        prefill = messages[-1]["content"] if messages[-1]["role"] == "assistant" else None
        verdict, notes = self.judge.judge(read_prompt(messages[:-1] if prefill is not None else messages))
        if verdict.word and request.get("logprobs") is True and not prefill:
            verdict = verdict.bare()      # the first token is then the label
        if thinking is not None:
            verdict = thinking.wrap(verdict)
        reply = verdict.continuation(verdict.text, prefill) if prefill else None
        start = prefill if reply is not None else ""
        reply = verdict.text if reply is None else reply
        reply, hidden, finish_reason = self._within_limit(request, reply, thinking.hidden_tokens if thinking else 0)
        completion_tokens = self.tokens.count(reply) + hidden
        content, thought = thinking.split(reply) if thinking is not None else (reply, None)
        logprobs = None
        if self.logprobs and request.get("logprobs") is True:
            options = first_token_options(self.tokens, verdict, start)
            logprobs = {"content": logprobs_content(self.tokens, content, options, request.get("top_logprobs") or 0)}
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        if thinking is not None and thinking.hidden:
            usage["completion_tokens_details"] = {"reasoning_tokens": hidden}
        message = {"role": "assistant", "content": content, "refusal": None}
        if thought is not None:
            message["reasoning_content"] = thought
        body = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                "created": int(time.time()), "model": request.get("model") or MODEL_ID,
                "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}],
                "usage": usage, "system_fingerprint": None}
        record = {"model": request.get("model"), "messages": messages, "answer": content,
                  "prompt_tokens": prompt_tokens, "finish_reason": finish_reason, "prefill": prefill,
                  **{name: request.get(name) for name in ("max_tokens", "max_completion_tokens", "logprobs",
                                                          "top_logprobs", "reasoning_effort")}}
        counts = {"completions": 1, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, **notes}
        return Reply(200, body, counts, record)

    def _within_limit(self, request: dict, reply: str, hidden: int) -> tuple[str, int, str]:
        """``(reply, hidden, finish_reason)`` within ``max_completion_tokens`` / ``max_tokens``:
        hidden reasoning tokens first, then the reply, cut with ``"length"``."""
        limit = request.get("max_completion_tokens", request.get("max_tokens"))
        if not self.honor_max_tokens or not isinstance(limit, int) or isinstance(limit, bool):
            return reply, hidden, "stop"
        hidden = min(hidden, limit)
        if self.tokens.count(reply) > limit - hidden:
            return self.tokens.truncate(reply, limit - hidden), hidden, "length"
        return reply, hidden, "stop"
