"""The runner of a dry run: the simulation's runner, with the call cache consulted first.

:class:`DryRunner` is :class:`~rerank.simulation.SimulatedRunner` (the reranker's own runner,
each window's prompt rendered, fitted and counted as a real call's, answered by a judge instead
of a backend) with one step added: before a judge answers, the window's cache key is computed as
the real call computes it (:meth:`rerank.runner.CachedBackend.key`) and looked up, read-only,
in the call cache. A stored answer is read as the run would read it, so the dry run follows the
path the real run will take where the cache already decides it; only the other windows are
answered by the judge, and only those are to be paid for.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..answers import Answer
from ..backends.base import Capabilities
from ..cached_calls import Answer as CachedAnswer
from ..runner import PromptBuilder
from ..simulation import SimulatedBackend, SimulatedRunner
from ..strategies import Window
from ..tokens import TokenCounter
from ..types import CallRecord
from .stored import StoredCalls


@dataclass
class DryBackend(SimulatedBackend):
    """The real backend's name (calls are cached under it) and token counter, and no calls.

    Parameters
    ----------
    model : str
        The name the real backend sends and caches calls under.
    counter : TokenCounter
        The real backend's token counter.
    capabilities : Capabilities
        What the run is taken to be able to do (see :func:`rerank.dry_run.plan.capabilities_of`).
    """

    counter: TokenCounter | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)

    async def prepare(self) -> Capabilities:
        """What the run is taken to be able to do; nothing is asked of any endpoint."""
        return self.capabilities

    def token_counter(self) -> TokenCounter:
        """The real backend's counter."""
        return self.counter


@dataclass
class Tally:
    """What one query's calls would cost beyond what :class:`~rerank.types.CallRecord` holds.

    Attributes
    ----------
    cached : int
        Calls the call cache already answers.
    repeated : int
        Calls identical to one an earlier run through the same cache pays for.
    new_prompt_tokens, new_answer_tokens : int
        Tokens of the calls to be paid for.
    max_answer_tokens : int
        The calls' answer token limits summed (``max_tokens``, or the reasoning budget and the
        answer): the most the answers can cost.
    """

    cached: int = 0
    repeated: int = 0
    new_prompt_tokens: int = 0
    new_answer_tokens: int = 0
    max_answer_tokens: int = 0


@dataclass(slots=True)
class DryRunner(SimulatedRunner):
    """A :class:`~rerank.simulation.SimulatedRunner` that answers from the call cache first.

    Attributes
    ----------
    stored : StoredCalls or None
        The call cache, read-only.
    planned : set of str
        Keys of the calls earlier runs through the same cache pay for (an experiment's earlier
        variants): the same call here is free. Within one run an identical call is counted as
        paid: under the identity judge a second sliding pass would repeat the first one's
        windows, which a model that moves passages does not.
    paying : set of str
        Keys of the calls this run pays for.
    lookups : dict
        ``(qid, window, prompt, kind)`` -> ``(key, stored answer or None)``, shared by the judges
        of one estimate.
    tallies : dict
        qid -> :class:`Tally`.
    """

    stored: StoredCalls | None = None
    planned: set = field(default_factory=set)
    paying: set = field(default_factory=set)
    lookups: dict = field(default_factory=dict)
    tallies: dict = field(default_factory=dict)

    async def answer(self, prompts: PromptBuilder, window: Window, round_number: int,
                     records: list[CallRecord], qid: str = "") -> Answer:
        """Build the window's call as the run would; answer it from the cache, else from the judge."""
        call = await self.call(prompts, window)
        memo = (qid, window.indices, window.prompt, call.kind)
        counted = self.prompt_tokens.get(memo)
        if counted is None:  # the simulated runner reads the count from here
            counted = self.prompt_tokens[memo] = prompts.counter().count_messages(call.messages)
        found = self.lookups.get(memo)
        if found is None:
            key = self.calls.key(call.messages, call.ask)
            stored = self.stored.get(key, call.kind.cacheable) if self.stored is not None else None
            found = self.lookups[memo] = (key, stored)
        key, stored = found
        tally = self.tallies.setdefault(qid, Tally())
        tally.max_answer_tokens += call.ask.answer_tokens
        if stored is not None:
            tally.cached += 1
            answer = self.read(call, CachedAnswer(stored, True), round_number, records, qid, len(window))
            records[-1] = replace(records[-1], prompt_tokens=counted)  # counted as the others are
            return answer
        answer = await SimulatedRunner.answer(self, prompts, window, round_number, records, qid)
        if key in self.planned:
            tally.repeated += 1
        else:
            self.paying.add(key)
            tally.new_prompt_tokens += counted
            tally.new_answer_tokens += records[-1].completion_tokens
        return answer
