"""The round loop: a strategy's rounds of windows, each window asked, answered and read.

For every window: the answer kind says what to ask (:class:`~rerank.answers.Ask`), the prompt
builder renders and fits the prompt, the cached backend answers, the kind reads the answer; a
context-overflow refusal lowers the shared budget and the window is asked again.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

from ..answers import Answer, AnswerKind, Ask, CallSettings, Reasoned
from ..errors import BackendError, ContextOverflow
from ..passages import prepare_passage
from ..strategies import Strategy, Window, as_ranking
from ..types import CallRecord, Candidate, Request, Result
from ..cached_calls import Answer as CachedAnswer
from .budget import ContextBudget
from .cached_backend import CachedBackend
from .prompt_builder import PromptBuilder, Templates

# Tries to fit a prompt the server found too long, each with a smaller budget.
MAX_CONTEXT_RETRIES = 4
#: The least relative gap between consecutive scores of a result: single precision (trec_eval's)
#: tells apart values 1.2e-7 apart, relative.
SCORE_GAP = 1e-6

_LOG = logging.getLogger("rerank")


@dataclass(frozen=True, slots=True)
class Reasoning:
    """``--reasoning-budget`` and ``--reasoning-effort``: every answer written after reasoning."""

    budget: int
    effort: str | None = None

    def wrap(self, kind: AnswerKind) -> AnswerKind:
        """``kind`` asked after reasoning."""
        return Reasoned(kind, self.budget, self.effort)


@dataclass(frozen=True, slots=True)
class Call:
    """One window's call as built: what it asks for and the messages sent.

    Attributes
    ----------
    kind : AnswerKind
        The answer asked for (after reasoning, when asked).
    labels : list of str
        The identifiers the prompt shows its passages with.
    ask : Ask
        The request's parameters, constraint and answer start.
    messages : list of dict
        The chat messages, fitted to the budget, the answer's start appended.
    shortened : bool
        Whether passages (or the query) were shortened to fit.
    """

    kind: AnswerKind
    labels: list[str]
    ask: Ask
    messages: list[dict]
    shortened: bool


@dataclass(slots=True)
class Runner:
    """Runs one request through a strategy: the parts of a reranker a call needs.

    Attributes
    ----------
    strategy : Strategy
    templates : Templates
    budget : ContextBudget
    calls : CachedBackend
    top_k : int
        Candidates reranked; the rest keep their order below them.
    max_passage_words : int or None
    temperature, max_tokens
        ``--temperature`` and ``--max-tokens`` (None: the answer kind's defaults).
    constrained : bool
        Whether answers are held to their format where the backend can.
    reasoning : Reasoning or None
        Whether every answer comes after reasoning, and its budget.
    """

    strategy: Strategy
    templates: Templates
    budget: ContextBudget
    calls: CachedBackend
    top_k: int
    max_passage_words: int | None
    temperature: float | None
    max_tokens: int | None
    constrained: bool
    reasoning: Reasoning | None = None

    async def rerank(self, request: Request, answer_round=None) -> Result:
        """Rerank one request: its windows run in the order the strategy needs.

        Parameters
        ----------
        request : Request
        answer_round : callable or None
            ``answer_round(prompts, windows, round_number, records, qid)`` answers one round's
            windows, in order; :meth:`answer_round` (every window online, at once) by default, a
            batch driver's otherwise.
        """
        answer_round = answer_round or self.answer_round
        top = request.candidates[: self.top_k]
        prompts = self.prompts(request)
        records: list[CallRecord] = []
        rounds = self.strategy.rounds(len(top))
        round_number = 0
        try:
            windows = next(rounds)
            while True:
                answers = await answer_round(prompts, windows, round_number, records, request.query.qid)
                round_number += 1
                windows = rounds.send(answers)
        except StopIteration as stop:
            return self.result(request, stop.value, records, round_number)

    async def answer_round(self, prompts: PromptBuilder, windows: list[Window], round_number: int,
                           records: list[CallRecord], qid: str) -> list[Answer]:
        """Ask a round's windows at once; their answers in the windows' order."""
        if len(windows) == 1:
            return [await self.answer(prompts, windows[0], round_number, records, qid)]
        return list(await asyncio.gather(*(self.answer(prompts, w, round_number, records, qid) for w in windows)))

    def result(self, request: Request, order, records: list[CallRecord], rounds: int) -> Result:
        """The result of ``request`` from its strategy's final order (a list of indices or a
        :class:`~rerank.strategies.Ranking`): its top candidates reordered and scored, the rest
        below them."""
        ranking = as_ranking(order)
        top = request.candidates[: self.top_k]
        reordered = [top[i] for i in ranking.order] + request.candidates[self.top_k:]
        return Result(request.query, _scored(reordered, ranking.scores), records, rounds)

    def prompts(self, request: Request) -> PromptBuilder:
        """The prompt builder of ``request``'s top candidates."""
        top = request.candidates[: self.top_k]
        return PromptBuilder(self.templates, self.calls.backend.token_counter, request.query.text,
                             [prepare_passage(c, self.max_passage_words) for c in top], self.budget.size())

    def kind(self, window: Window) -> AnswerKind:
        """The kind a window's call asks for: the window's own, after reasoning when asked."""
        return window.kind if self.reasoning is None else self.reasoning.wrap(window.kind)

    def settings(self, template_prefix: str) -> CallSettings:
        """What the answer kinds build their requests from, now."""
        return CallSettings(self.budget.size(), self.temperature, self.max_tokens, self.constrained,
                            template_prefix)

    def question(self, window: Window) -> tuple[AnswerKind, list[str], Ask]:
        """What one window's call asks, with the budget as it is now: its answer kind, the labels
        its passages are shown with, and the request parameters."""
        kind = self.kind(window)
        template = self.templates.get(window.prompt)
        labels = template.labels(len(window))
        return kind, labels, kind.ask(labels, self.settings(template.answer_prefix))

    async def call(self, prompts: PromptBuilder, window: Window) -> Call:
        """Build one window's call with the budget as it is now: what it asks and its messages."""
        kind, labels, ask = self.question(window)
        messages, shortened = await prompts.build(window.indices, window.prompt, kind, ask,
                                                  self.budget.size() - ask.answer_tokens)
        return Call(kind, labels, ask, messages, shortened)

    async def answer(self, prompts: PromptBuilder, window: Window, round_number: int,
                     records: list[CallRecord], qid: str = "") -> Answer:
        """Ask one window, read its answer and record the call."""
        overflows = 0
        while True:
            call = await self.call(prompts, window)
            try:
                got = await self.calls.complete(call.messages, call.ask, call.kind)
            except ContextOverflow as overflow:
                overflows += 1
                if overflows > MAX_CONTEXT_RETRIES:
                    raise
                counted = prompts.counter().count_messages(call.messages)
                self.budget.shrink(overflow, counted, call.ask.answer_tokens)
                continue
            break
        return self.read(call, got, round_number, records, qid, len(window), overflows)

    def read(self, call: Call, got: CachedAnswer, round_number: int, records: list[CallRecord],
             qid: str, window_size: int, overflows: int = 0) -> Answer:
        """Read a call's answer, however it came (online, cached, from a batch), and record the call.

        Parameters
        ----------
        call : Call
            The call as built by :meth:`call`.
        got : rerank.cached_calls.Answer
            Its completion, and whether it was paid for.
        round_number : int
            The strategy round the call belongs to.
        records : list of CallRecord
            The query's calls; this one is appended.
        qid : str
            For the debug log.
        window_size : int
            Passages the window shows.
        overflows : int
            Times the server refused the prompt as too long before.

        Raises
        ------
        BackendError
            When a first-token answer has no ``top_logprobs``.
        """
        completion, kind = got.completion, call.kind
        if call.ask.first_token_labels is not None and completion.top_logprobs is None:
            raise BackendError(f"{self.calls.backend.model}: the answer has no top_logprobs; --strategy "
                               "single-token needs an endpoint that returns them (OpenAI, vLLM, "
                               "SGLang, llama.cpp's server)")
        answer = kind.parse(completion, call.labels)
        if _LOG.isEnabledFor(logging.DEBUG):
            _LOG.debug("%s: window of %d, round %d, %s: %s, %d prompt + %d completion tokens, %.3f s, %s",
                       qid, window_size, round_number, kind.name, "cached" if got.cached else "called",
                       completion.prompt_tokens, completion.completion_tokens, completion.latency, answer.status)
        records.append(CallRecord(window_size, round_number, completion.prompt_tokens,
                                  completion.completion_tokens, completion.latency, got.cached,
                                  answer.status, completion.attempts, completion.finish_reason,
                                  overflows, got.bad_entries, kind.name, completion.reasoning_tokens,
                                  answer.reasoning, call.shortened))
        return answer


def _scored(candidates: list[Candidate], scores: list[float] | None) -> list[Candidate]:
    """The candidates with new scores: the strategy's, above rank-based ones for the rest; or
    ``total - rank`` for all."""
    total = len(candidates)
    if scores is None:
        return [Candidate(c.docid, c.text, c.title, float(total - rank)) for rank, c in enumerate(candidates)]
    # Ties (equal points) and the unranked tail (beyond --top-k) go just below the score above
    # them: a run's scores must strictly decrease for evaluation tools, which sort by score. And
    # visibly so: trec_eval holds scores in single precision and breaks ties by docid, so each
    # score stays at least SCORE_GAP (relative; many float32 steps) below the one above it.
    new: list[float] = []
    for score in [*scores, *[-math.inf] * (len(candidates) - len(scores))]:
        if score == -math.inf:  # below the last score given
            score = new[-1] - 1.0 if new else 0.0
        elif new:
            score = min(score, new[-1] - max(abs(new[-1]), 1.0) * SCORE_GAP)
        new.append(float(score))
    return [Candidate(c.docid, c.text, c.title, score) for c, score in zip(candidates, new)]
