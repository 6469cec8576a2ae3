"""A judge as a rerank backend, in process: no server, no model, answers from the qrels.

Pick it with ``--backend judge`` and a model naming the judge::

    rerank run ../shared/data/dl19/bm25_top100.json -o dl19.jsonl --backend judge \\
        --model judge:oracle:../shared/data/dl19

The model is ``[judge:]NAME[+MODE][:PATH]``: ``NAME`` one of
:data:`~rerank.testing.judges.JUDGES`; ``+visible`` or ``+hidden`` to reason (see
:mod:`rerank.testing.reasoning`; ``reasoning`` is ``oracle+visible``); ``PATH`` a folder of
RankGPT-format candidates and qrels, or a qrels file whose folder holds the candidates (required
by ``oracle``, ``noisy`` and ``reasoning``). It answers exactly as the HTTP server does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..backends.base import Capabilities, Completion
from ..errors import BackendError, ConfigError, ContextOverflow
from ..tokens import TokenCounter, counter_for_model
from .completions import Responder
from .counting import Tokens
from .dataset import DEFAULT_CANDIDATES, Dataset
from .judges import JUDGES, NOISY_SWAP_PROBABILITY, Judge
from .reasoning import REASONING_MODES


def parse_model(spec: str) -> tuple[str, str | None, str | None]:
    """``(judge, reasoning, path)`` of a model written ``[judge:]NAME[+MODE][:PATH]``.

    Raises
    ------
    ConfigError
        For an unknown judge or reasoning mode.
    """
    rest = spec[len("judge:"):] if spec.startswith("judge:") else spec
    name, _, path = rest.partition(":")
    name, _, mode = name.partition("+")
    if name not in JUDGES:
        raise ConfigError(f"unknown judge '{name}' in --model {spec!r}: choose one of {', '.join(JUDGES)}")
    if mode and mode not in REASONING_MODES:
        raise ConfigError(f"unknown reasoning '+{mode}' in --model {spec!r}: +visible or +hidden")
    return name, mode or None, path or None


@dataclass
class JudgeBackend:
    """A :class:`~rerank.testing.judges.Judge` behind rerank's backend protocol.

    Parameters
    ----------
    judge : str
        One of :data:`~rerank.testing.judges.JUDGES`.
    data : str or None
        A :class:`~rerank.testing.dataset.Dataset` folder or qrels file.
    model : str
        The name calls are made and cached under.
    candidates : str
        Glob of the candidate files in the folder.
    seed, noise : int, float
        Of the garbage and noisy judges.
    reasoning : {None, "visible", "hidden"}
    think_tokens : int
        Reasoning tokens at medium effort.
    context_window : int or None
        Refuse longer prompts, as a server with that context does.
    dataset : Dataset or None
        What the judge knows, given directly (e.g. :meth:`Dataset.from_requests`) instead of
        ``data``.
    """

    judge: str = "oracle"
    data: str | None = None
    model: str = "judge"
    candidates: str = DEFAULT_CANDIDATES
    seed: int = 0
    noise: float = NOISY_SWAP_PROBABILITY
    reasoning: str | None = None
    think_tokens: int = 64
    context_window: int | None = None
    dataset: Dataset | None = field(default=None, repr=False, compare=False)
    _responder: Responder | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parse_model(f"{self.judge}+{self.reasoning}" if self.reasoning else self.judge)
        if self.judge in ("oracle", "noisy", "reasoning") and not self.data and self.dataset is None:
            raise ConfigError(f"the {self.judge} judge needs its data: --model judge:{self.judge}:PATH "
                              "(a folder of candidates and qrels, or a qrels file)")

    @classmethod
    def from_config(cls, config) -> "JudgeBackend":
        """Build from a :class:`~rerank.reranker.RerankerConfig` whose ``model`` names the judge."""
        if not config.model:
            raise ConfigError("--model names the judge with --backend judge, e.g. judge:oracle:DATA_DIR")
        name, reasoning, path = parse_model(config.model)
        return cls(judge=name, data=path, model=config.model, reasoning=reasoning)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_responder": None}   # the dataset is read again where it is used

    def responder(self) -> Responder:
        """The judge with its dataset, loaded on first use."""
        if self._responder is None:
            dataset = self.dataset
            try:
                if dataset is None and self.data:
                    dataset = Dataset(self.data, self.candidates)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"judge data {self.data}: {exc}") from None
            self._responder = Responder(Judge(self.judge, dataset, self.seed, self.noise), Tokens(),
                                        context_window=self.context_window, reasoning=self.reasoning,
                                        think_tokens=self.think_tokens)
        return self._responder

    def context_limit(self) -> int | None:
        """``context_window``: the judge has no context of its own."""
        return self.context_window

    async def prepare(self) -> Capabilities:
        """Nothing to load beyond the data: answers are well-formed already (nothing to
        constrain), with log-probabilities and, for the reasoning judge, reasoning."""
        return Capabilities(constrain=False, logprobs=True, context=self.context_window,
                            reasoning=self.reasoning is not None or self.judge == "reasoning")

    def token_counter(self) -> TokenCounter:
        """cl100k_base, as the judge counts."""
        return counter_for_model(self.model)

    async def complete(self, messages: list[dict], params: dict, *, constraint=None,
                       first_token_labels: list[str] | None = None) -> Completion:
        """Answer one chat request as the judges' server would.

        With ``first_token_labels`` and ``logprobs`` asked, the first token's alternatives cover
        at least that many (no limit of 20 here). ``constraint`` is ignored: the answers are
        well-formed already.

        Raises
        ------
        ContextOverflow
            For a prompt over ``context_window``.
        BackendError
            For a request a server would refuse (HTTP 400).
        """
        request = {**params, "model": self.model, "messages": messages}
        if first_token_labels and request.get("logprobs") is True:
            request["top_logprobs"] = max(request.get("top_logprobs") or 0, len(first_token_labels))
        started = time.perf_counter()
        responder = self.responder()
        reply = await asyncio.to_thread(responder.respond, request, None)
        if reply.status != 200:
            error = reply.body["error"]
            if error["code"] == "context_length_exceeded":
                raise ContextOverflow(error["message"], self.context_window, responder.tokens.prompt(messages))
            raise BackendError(f"the judge refused the request: {error['message']}")
        choice, usage = reply.body["choices"][0], reply.body["usage"]
        content = (choice["logprobs"] or {}).get("content") or []
        alternatives = None
        if content and request.get("top_logprobs"):
            alternatives = tuple((a["token"], a["logprob"]) for a in content[0]["top_logprobs"])
        message, details = choice["message"], usage.get("completion_tokens_details", {})
        return Completion(message["content"], usage["prompt_tokens"], usage["completion_tokens"],
                          choice["finish_reason"], time.perf_counter() - started, 1, alternatives,
                          message.get("reasoning_content"), details.get("reasoning_tokens", 0))

    async def aclose(self) -> None:
        """Nothing to release."""

