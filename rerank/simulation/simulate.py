"""Simulate strategies before paying for them: quality and cost per query from the qrels alone.

:func:`simulate` reranks every request with each strategy and each simulated judge through the
reranker's own runner (:class:`~rerank.simulation.runner.SimulatedRunner`), over several seeds
for judges that are random, and reports per strategy and judge: the measure's mean over seeds
with a 95% interval, and calls, rounds, prompt tokens (the prompts the strategy would send,
counted with the real prompt builder and tokenizer) and answer tokens per query.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..config import RerankerConfig
from ..errors import ConfigError
from ..evaluation.metrics import evaluate_run, metric_name
from ..evaluation.significance import mean_interval
from ..options import declared
from ..reranker import Reranker
from ..strategies import strategy_class
from ..types import Request, Result
from .judges import SimulatedJudge
from .runner import SimulatedBackend, SimulatedRunner


@dataclass(frozen=True)
class StrategySpec:
    """A strategy and its own options, as ``NAME`` or ``NAME:OPTION=VALUE,OPTION=VALUE``.

    Attributes
    ----------
    label : str
        As written (the row's name).
    name : str
        The strategy (a registered name or ``module:Class``).
    options : dict
        Its options given in the spec (text, converted when the reranker is built).
    """

    label: str
    name: str
    options: dict

    @classmethod
    def parse(cls, text: str) -> "StrategySpec":
        """Read ``pairwise:method=heapsort,k=10`` (and ``module:Class:option=value``).

        Raises
        ------
        ConfigError
            For an option the strategy does not declare, or a part that is not ``NAME=VALUE``.
        """
        parts = text.split(":")
        first_option = next((i for i, part in enumerate(parts) if "=" in part), len(parts))
        name = ":".join(parts[:first_option])
        options: dict[str, str] = {}
        for item in ",".join(parts[first_option:]).split(",") if first_option < len(parts) else []:
            key, sep, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise ConfigError(f"--strategy {text}: expected NAME:OPTION=VALUE,OPTION=VALUE")
            options[key] = value.strip()
        own = {option.name for option in declared(strategy_class(name))}
        unknown = sorted(set(options) - own)
        if unknown:
            raise ConfigError(f"--strategy {text}: {name} has no option '{unknown[0]}' "
                              f"(it declares {', '.join(sorted(own)) or 'none'})")
        return cls(text, name, options)


@dataclass(frozen=True)
class SimulationRow:
    """One strategy under one judge.

    Attributes
    ----------
    strategy, judge : str
        As given (``pairwise:method=heapsort``, ``noise:0.5``).
    metric : str
        The measure (``nDCG@10``).
    mean, interval : float
        The measure's mean over seeds, and the half-width of its 95% interval (0 for one seed).
    seeds : tuple of float
        The measure of each seed.
    calls, rounds, prompt_tokens, answer_tokens : float
        Per query, averaged over seeds.
    queries : int
    """

    strategy: str
    judge: str
    metric: str
    mean: float
    interval: float
    seeds: tuple[float, ...]
    calls: float
    rounds: float
    prompt_tokens: float
    answer_tokens: float
    queries: int


def simulate(requests: Sequence[Request], qrels: Mapping[str, Mapping[str, int]],
             strategies: Sequence[StrategySpec], judges: Sequence[SimulatedJudge], *, seeds: int = 5,
             settings: Mapping[str, Any] | None = None, metric: str = "nDCG@10",
             results: dict | None = None) -> list[SimulationRow]:
    """Simulate every strategy with every judge.

    Parameters
    ----------
    requests : sequence of Request
    qrels : mapping
        qid -> docid -> grade.
    strategies : sequence of StrategySpec
    judges : sequence of SimulatedJudge
    seeds : int
        Runs of each random judge (seeds 0 to ``seeds - 1``); others run once.
    settings : mapping or None
        Reranker settings shared by all strategies (``top_k``, ``prompt``, ``max_passage_words``,
        ``context_size``, ``model`` for the tokenizer, and strategy options by name).
    metric : str
        The measure, an ir_measures string or another name :func:`~rerank.evaluation.metric_name`
        reads (``ndcg_cut_10``).
    results : dict or None
        When given, filled with each run's results by ``(strategy, judge, seed)``.

    Returns
    -------
    list of SimulationRow
        One per strategy and judge, in that order.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    metric = metric_name(metric)  # ndcg_cut_10 as nDCG@10: the key of the evaluation's scores
    requests = list(requests)
    if not requests:
        raise ConfigError("nothing to simulate: the input has no requests")
    judged = [r for r in requests if r.query.qid in qrels]
    if not judged:
        raise ConfigError("none of the input's queries is in the qrels")
    rows = []
    for spec in strategies:
        prompt_tokens: dict = {}
        for judge in judges:
            measured, costs = [], []
            for seed in range(seeds if judge.random else 1):
                ran = asyncio.run(_run(spec, judge, seed, requests, qrels, dict(settings or {}), prompt_tokens))
                if results is not None:
                    results[(spec.label, judge.spec, seed)] = ran
                run = {r.query.qid: {c.docid: c.score for c in r.candidates} for r in ran}
                measured.append(evaluate_run(run, qrels, [metric]).aggregate[metric])
                costs.append(_costs(ran))
            mean, interval = mean_interval(measured)
            rows.append(SimulationRow(spec.label, judge.spec, metric, mean, interval, tuple(measured),
                                      *(sum(c[i] for c in costs) / len(costs) for i in range(4)), len(requests)))
    return rows


async def _run(spec: StrategySpec, judge: SimulatedJudge, seed: int, requests: list[Request], qrels,
               settings: dict, prompt_tokens: dict) -> list[Result]:
    """One seed of one strategy and judge over all requests."""
    model = settings.pop("model", None) or SimulatedBackend.model
    config = RerankerConfig.from_dict({**settings, **spec.options, "strategy": spec.name, "model": model,
                                       "cache": None})
    reranker = Reranker(config, llm=SimulatedBackend(model))
    reranker.runner = SimulatedRunner.replacing(reranker.runner, judge=judge, seed=seed, qrels=qrels,
                                                prompt_tokens=prompt_tokens)
    async with reranker:
        return await reranker.rerank_batch(requests)


def _costs(results: list[Result]) -> tuple[float, float, float, float]:
    """Calls, rounds, prompt and answer tokens per query."""
    n = max(len(results), 1)
    return (sum(len(r.calls) for r in results) / n, sum(r.rounds for r in results) / n,
            sum(c.prompt_tokens for r in results for c in r.calls) / n,
            sum(c.completion_tokens for r in results for c in r.calls) / n)
