"""The runner of a simulation: real prompts, answers from a simulated judge instead of a backend.

:class:`SimulatedRunner` is the reranker's :class:`~rerank.runner.Runner` with one step
replaced: each window's prompt is rendered and fitted exactly as a real call's (same template,
passage preparation, context budget and token counter), counted, and then answered by a
:class:`~rerank.simulation.judges.SimulatedJudge` from the qrels instead of being sent. The
rounds, the strategy, and the reading of the final order are the runner's own, so a strategy
cannot behave differently under simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..answers import Answer
from ..backends.base import Capabilities
from ..errors import BackendError
from ..runner import PromptBuilder, Runner
from ..strategies import Window
from ..tokens import TokenCounter, counter_for_model
from ..types import CallRecord, Request, Result
from .judges import SimulatedJudge


@dataclass
class SimulatedBackend:
    """What a reranker needs of a backend when no call is made: a name and a token counter.

    Parameters
    ----------
    model : str
        The model whose tokenizer counts the prompts (tiktoken's closest encoding).
    """

    model: str = "simulation"

    async def prepare(self) -> Capabilities:
        """Everything a strategy may ask for (log-probabilities included)."""
        return Capabilities(logprobs=True)

    async def complete(self, messages, params, *, constraint=None, first_token_labels=None):
        """Never called: the simulated runner answers windows itself."""
        raise BackendError("a simulation makes no LLM call")

    def token_counter(self) -> TokenCounter:
        """The offline counter of :attr:`model`."""
        return counter_for_model(self.model)

    async def aclose(self) -> None:
        """Nothing to release."""


@dataclass(slots=True)
class SimulatedRunner(Runner):
    """A :class:`~rerank.runner.Runner` whose windows a simulated judge answers.

    Attributes
    ----------
    judge : SimulatedJudge
    seed : int
        The run's seed (each call's seed also holds the query and the window).
    qrels : dict
        qid -> docid -> grade.
    prompt_tokens : dict
        Prompt token counts by (qid, window, prompt, kind), shared by the runs of one
        simulation: a window's prompt does not depend on the judge or the seed.
    """

    judge: SimulatedJudge = field(default_factory=SimulatedJudge)
    seed: int = 0
    qrels: dict = field(default_factory=dict)
    prompt_tokens: dict = field(default_factory=dict)
    _grades: dict = field(default_factory=dict)

    @classmethod
    def replacing(cls, runner: Runner, **simulation) -> "SimulatedRunner":
        """A simulated runner with ``runner``'s parts (strategy, templates, budget, ...)."""
        return cls(**{f.name: getattr(runner, f.name) for f in fields(Runner)}, **simulation)

    async def rerank(self, request: Request) -> Result:
        """Rerank one request, its windows answered from the qrels."""
        judged = self.qrels.get(request.query.qid, {})
        self._grades[request.query.qid] = [float(judged.get(c.docid, 0)) for c in request.candidates[: self.top_k]]
        try:
            return await Runner.rerank(self, request)
        finally:
            del self._grades[request.query.qid]

    async def answer(self, prompts: PromptBuilder, window: Window, round_number: int,
                     records: list[CallRecord], qid: str = "") -> Answer:
        """Count the prompt the window would send, and answer it from the grades."""
        kind, labels, ask = self.question(window)
        key = (qid, window.indices, window.prompt, kind)
        counted = self.prompt_tokens.get(key)
        if counted is None:
            call = await self.call(prompts, window)
            counted = self.prompt_tokens[key] = prompts.counter().count_messages(call.messages)
        grades = self._grades[qid]
        answer = self.judge.answer(kind, [grades[i] for i in window.indices],
                                   f"{self.seed}|{qid}|{window.prompt}|{kind.name}|{window.indices}")
        # The answer the judge gave, written as the kind asks for it, within the call's token limit
        # (a first-token answer is one token).
        written = prompts.counter().count(kind.target(answer.order, labels)) if answer.order else 0
        answer_tokens = min(written, ask.answer_tokens)
        records.append(CallRecord(len(window), round_number, counted, answer_tokens, 0.0, False, answer.status,
                                  0, "stop", 0, 0, kind.name))
        return answer
