"""What a run will cost, before it runs: calls, rounds and tokens per query, with no LLM call.

:func:`plan_run` runs a reranker's configuration over the requests through
:class:`~rerank.dry_run.runner.DryRunner`: every prompt is built and counted exactly as the run
builds it (template, passage preparation, context fitting, the real backend's token counter),
each window's cache key is looked up read-only in the call cache, and the windows the cache does
not answer are answered by a judge:

``identity``
    The order shown. The table's figures. For strategies whose calls do not depend on the
    answers (sliding, full, pointwise, pairwise all pairs, jointrank, single-token, shrinking
    labels) the calls and rounds are exact and the prompt tokens nearly so (which passages
    share a later window depends on earlier answers).
``perfect`` and ``reverse``
    The first stage's order is right, or its reverse is. Run beside the identity judge; the
    range of the three is reported for strategies whose calls depend on the answers (tdpart,
    setwise, pairwise sorts, tourrank): observed bounds, not proven ones.
"""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass, field, fields, replace
from typing import Sequence

from ..backends import backend_name_for, make_backend
from ..backends.base import Capabilities
from ..config import RerankerConfig
from ..errors import ConfigError
from ..reranker import Reranker
from ..run_summary import BATCH_PRICE_FACTORS
from ..simulation import SimulatedJudge
from ..tokens import EstimateCounter, TiktokenCounter, TokenCounter, counter_for_model, encoding_name_for_model
from ..types import Request, Result
from .runner import DryBackend, DryRunner, Tally
from .stored import StoredCalls

#: The judges of a dry run: the first answers the table, the others give the range.
DRY_JUDGES = ("identity", "perfect", "reverse")


@dataclass(frozen=True)
class Cost:
    """Calls and tokens, of one query or summed.

    Attributes
    ----------
    calls, rounds : int
    prompt_tokens : int
        Every call's prompt, counted as the run counts it.
    answer_tokens : int
        The answers expected (the judge's, written as the answer kind asks; a cached call's as stored).
    max_answer_tokens : int
        The calls' answer limits summed: the most the answers can cost (reasoning included).
    cached_calls : int
        Calls the call cache already answers.
    repeated_calls : int
        Calls identical to one an earlier run through the same cache pays for (an earlier
        experiment variant): paid once.
    new_prompt_tokens, new_answer_tokens : int
        The tokens of the calls to be paid for.
    """

    calls: int = 0
    rounds: int = 0
    prompt_tokens: int = 0
    answer_tokens: int = 0
    max_answer_tokens: int = 0
    cached_calls: int = 0
    repeated_calls: int = 0
    new_prompt_tokens: int = 0
    new_answer_tokens: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(a + b for a, b in zip(astuple(self), astuple(other))))

    @property
    def new_calls(self) -> int:
        """Calls to be paid for."""
        return self.calls - self.cached_calls - self.repeated_calls

    @classmethod
    def of(cls, result: Result, tally: Tally) -> "Cost":
        """One query's cost from its simulated result and its tally."""
        return cls(len(result.calls), result.rounds, sum(c.prompt_tokens for c in result.calls),
                   sum(c.completion_tokens for c in result.calls), tally.max_answer_tokens, tally.cached,
                   tally.repeated, tally.new_prompt_tokens, tally.new_answer_tokens)


@dataclass(frozen=True)
class Price:
    """``--price IN OUT``: dollars per million prompt and completion tokens.

    Attributes
    ----------
    prompt, completion : float
    factor : float
        The share of the list price paid (0.5 through OpenAI's Batch API, as ``rerank compare``
        prices such runs).
    """

    prompt: float
    completion: float
    factor: float = 1.0

    @classmethod
    def parse(cls, values: Sequence[float] | None, batch: str | None = None) -> "Price | None":
        """From ``--price``'s two numbers (None without them) and ``--batch``'s provider."""
        if values is None:
            return None
        if any(v < 0 for v in values):
            raise ConfigError(f"--price {values[0]:g} {values[1]:g}: prices cannot be negative")
        return cls(float(values[0]), float(values[1]), BATCH_PRICE_FACTORS.get(batch or "", 1.0))

    def of(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for that many tokens."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6 * self.factor


@dataclass(frozen=True)
class Plan:
    """A dry run of one reranking run.

    Attributes
    ----------
    name : str
        The command, or the experiment variant.
    strategy, model : str
    tokenizer : str
        What counted the tokens, in words.
    exact : bool
        Whether that counter is the one the model's provider counts with (else an estimate).
    cache : str or None
        The call cache consulted (None: ``--no-cache``).
    cache_entries : int
        Entries in it (0 when the file does not exist).
    queries : tuple of (str, Cost)
        Each query's cost under the identity judge (cache first).
    judges : dict
        Judge name -> the summed cost under it.
    max_rounds : int
        The most rounds of a query under the identity judge: the batches of a ``--batch`` run.
    notes : tuple of str
        What the figures assume.
    """

    name: str
    strategy: str
    model: str
    tokenizer: str
    exact: bool
    cache: str | None
    cache_entries: int
    queries: tuple[tuple[str, Cost], ...]
    judges: dict[str, Cost]
    max_rounds: int
    notes: tuple[str, ...] = field(default=())

    @property
    def total(self) -> Cost:
        """The summed cost under the identity judge."""
        return self.judges[DRY_JUDGES[0]]

    @property
    def varies(self) -> bool:
        """Whether calls or rounds differed between the judges (they depend on the answers)."""
        return len({(cost.calls, cost.rounds) for cost in self.judges.values()}) > 1

    def as_dict(self, price: Price | None = None) -> dict:
        """JSON-ready: every field, costs as dicts, and with ``price`` the dollars."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("queries", "judges")}
        data["notes"] = list(self.notes)
        data["total"] = _cost_dict(self.total, price)
        data["judges"] = {name: _cost_dict(cost, price) for name, cost in self.judges.items()}
        data["calls_depend_on_answers"] = self.varies
        data["queries"] = [{"qid": qid, **_cost_dict(cost, price)} for qid, cost in self.queries]
        if price is not None:
            data["price_per_million"] = {"prompt": price.prompt, "completion": price.completion,
                                         "factor": price.factor}
        return data


def _cost_dict(cost: Cost, price: Price | None) -> dict:
    data = {**asdict(cost), "new_calls": cost.new_calls}
    if price is not None:
        data["price"] = price.of(cost.prompt_tokens, cost.answer_tokens)
        data["new_price"] = price.of(cost.new_prompt_tokens, cost.new_answer_tokens)
        data["max_price"] = price.of(cost.prompt_tokens, cost.max_answer_tokens)
    return data


async def plan_run(name: str, config: RerankerConfig, requests: Sequence[Request], *,
                   planned: dict[str, set] | None = None) -> Plan:
    """Dry-run ``config`` over ``requests``: no LLM call, no endpoint asked, nothing written.

    Parameters
    ----------
    name : str
        What the plan is called (the command, an experiment variant).
    config : RerankerConfig
        The run's configuration; its ``cache`` is read, never written or created.
    requests : sequence of Request
    planned : dict or None
        Judge name -> keys already to be paid for by an earlier plan through the same cache
        (an experiment's earlier variants); updated.

    Returns
    -------
    Plan

    Raises
    ------
    ConfigError
        For what the real run would refuse before its first call (a strategy's options, a
        window that cannot fit, a backend that cannot be built).
    """
    requests = list(requests)
    backend = make_backend(config)
    backend_name = backend_name_for(config.backend, config.model, config.base_url)
    counter, tokenizer, exact, notes = token_counter_of(backend, backend_name)
    capabilities, more = await capabilities_of(backend, backend_name, config)
    notes = notes + more
    stored = StoredCalls(config.cache)
    planned = planned if planned is not None else {}
    memo: dict = {}
    lookups: dict = {}
    judges: dict[str, Cost] = {}
    queries: tuple = ()
    max_rounds = 0
    try:
        for judge in DRY_JUDGES:
            earlier = planned.setdefault(judge, set())
            results, runner = await _run(config, requests, judge, DryBackend(backend.model, counter, capabilities),
                                         stored, earlier, memo, lookups)
            earlier |= runner.paying
            costs = [(r.query.qid, Cost.of(r, runner.tallies.get(r.query.qid, Tally()))) for r in results]
            judges[judge] = sum((cost for _, cost in costs), Cost())
            if judge == DRY_JUDGES[0]:
                queries = tuple(costs)
                max_rounds = max((cost.rounds for _, cost in costs), default=0)
        entries = len(stored)
        if stored.problem is not None:
            notes += (f"the call cache could not be read ({stored.problem}): its calls count as not cached",)
    finally:
        stored.close()
    if config.reasoning() is not None:
        notes += ("reasoning tokens are not in the expected answer tokens: the answer limits (max) include "
                  "the reasoning budget",)
    return Plan(name, config.strategy, backend.model, tokenizer, exact, config.cache, entries, queries, judges,
                max_rounds, notes)


async def _run(config: RerankerConfig, requests: list[Request], judge: str, backend: DryBackend,
               stored: StoredCalls, planned: set, memo: dict, lookups: dict) -> tuple[list[Result], DryRunner]:
    """One pass over the requests with one judge: the results, and the runner's tallies and keys."""
    reranker = Reranker(replace(config, cache=None), llm=backend)
    try:
        await reranker.prepare(backend.capabilities)
        runner = DryRunner.replacing(reranker.runner, judge=SimulatedJudge(judge if judge == "identity" else "perfect"),
                                     qrels=_grades(requests, reverse=judge == "reverse"), prompt_tokens=memo,
                                     stored=stored, planned=planned, lookups=lookups)
        reranker.runner = runner
        return await reranker.rerank_batch(requests), runner
    finally:
        await reranker.aclose()


def _grades(requests: list[Request], reverse: bool) -> dict:
    """Grades that make the first stage's order right (or its reverse)."""
    grades: dict = {}
    for request in requests:
        n = len(request.candidates)
        grades[request.query.qid] = {c.docid: (i + 1 if reverse else n - i) for i, c in
                                     reversed(list(enumerate(request.candidates)))}
    return grades


def token_counter_of(backend, name: str) -> tuple[TokenCounter, str, bool, tuple[str, ...]]:
    """The real backend's token counter, without loading a model's weights.

    Returns
    -------
    (TokenCounter, str, bool, tuple of str)
        The counter, what it is in words, whether it is the provider's own count, and notes.
    """
    if name == "llamacpp":
        try:
            return gguf_counter(backend.model_path), "the GGUF's own tokenizer and chat template", True, ()
        except Exception as exc:  # noqa: BLE001 - any failure of llama.cpp's loader leaves the estimate
            counter = counter_for_model(backend.model)
            return counter, _describe(counter), False, (f"the GGUF's vocabulary could not be read ({exc}): "
                                                        "token counts are estimates",)
    if name == "vllm":
        try:
            return backend.token_counter(), "the model's own tokenizer and chat template", True, ()
        except ConfigError as exc:
            counter = counter_for_model(backend.model)
            return counter, _describe(counter), False, (f"{exc}: token counts are estimates",)
    counter = backend.token_counter()
    if name == "openai" and not _openai_model(backend.model):
        return counter, _describe(counter), False, (
            f"{backend.model} is not an OpenAI model: its server counts with its own tokenizer, so the prompt "
            "tokens are the run's own estimate (the one it fits prompts with)",)
    return counter, _describe(counter), isinstance(counter, TiktokenCounter), ()


def _describe(counter: TokenCounter) -> str:
    if isinstance(counter, TiktokenCounter):
        return f"{counter.encoding_name} (tiktoken)"
    if isinstance(counter, EstimateCounter):
        return "an estimate: 4 characters a token (tiktoken unavailable)"
    return type(counter).__name__


def _openai_model(model: str) -> bool:
    lowered = model.lower()
    return lowered.startswith(("gpt-", "chatgpt", "o1", "o3", "o4")) or \
        encoding_name_for_model(model) == "o200k_base"


def gguf_counter(path: str):
    """The llamacpp backend's counter (:class:`~rerank.backends.llamacpp.LlamaCppCounter`) over a
    GGUF's vocabulary and chat template alone: no weights, no context."""
    import llama_cpp
    from llama_cpp._internals import LlamaModel
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from ..backends.llamacpp import LlamaCppCounter

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = LlamaModel(path_model=path, params=params, verbose=False)
    template = model.metadata().get("tokenizer.chat_template")
    if not template:
        raise ConfigError(f"{path}: the GGUF has no chat template (tokenizer.chat_template)")
    eos, bos = model.token_eos(), model.token_bos()
    # As the backend builds it when it loads the model (rerank.backends.llamacpp).
    formatter = Jinja2ChatFormatter(template=template, stop_token_ids=[eos],
                                    eos_token=model.token_get_text(eos) if eos != -1 else "",
                                    bos_token=model.token_get_text(bos) if bos != -1 else "")
    return LlamaCppCounter(model, formatter)


async def capabilities_of(backend, name: str, config: RerankerConfig) -> tuple[Capabilities, tuple[str, ...]]:
    """What the run's backend can do, taken without asking an endpoint or loading a model.

    Returns
    -------
    (Capabilities, tuple of str)
        And notes on what was assumed.
    """
    if name == "llamacpp":
        from ..backends.llamacpp_model import MAX_DEFAULT_CONTEXT, trained_context

        context = getattr(backend, "n_ctx", None)
        if context is None:
            try:
                context = min(trained_context(backend.model_path), MAX_DEFAULT_CONTEXT)
            except Exception:  # noqa: BLE001 - unreadable metadata: the configured context stands
                context = None
        return Capabilities(constrain=True, constrain_by_default=True, logprobs=True, context=context), ()
    if name == "vllm":
        context = config.options.get("max_model_len")
        notes = () if context else ("the engine's max_model_len is not known without starting it: prompts are "
                                    "fitted to --context-size (give --max-model-len to fit them to it)",)
        return Capabilities(constrain=True, constrain_by_default=True, logprobs=True, context=context), notes
    if name == "openai":
        notes = () if config.constrained is not None else (
            "the endpoint is not asked: answers are taken as unconstrained (a vLLM, SGLang or llama.cpp server "
            "turns --constrained on, and its calls are cached apart) and the context as --context-size",)
        return Capabilities(constrain=True, logprobs=True, reasoning=True), notes
    if name == "judge":  # in process, from its data alone: nothing to call
        return await backend.prepare(), ()
    return Capabilities(constrain=True, logprobs=True), (f"the {name} backend is not asked what it can do",)

