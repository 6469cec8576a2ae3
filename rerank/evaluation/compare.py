"""Compare runs against a baseline: TREC measures, paired significance tests and costs.

:func:`compare_runs` scores each run with :func:`~rerank.evaluation.metrics.evaluate` (the
numbers ``rerank eval`` prints), tests each system against the baseline over the same queries
with a paired t-test and a paired randomization test, Holm-corrected across systems, and reads
the cost of each run from the summary JSON ``rerank run --summary-json`` wrote beside it.
:func:`format_comparison` writes the table for a terminal, Markdown, CSV or LaTeX.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import ConfigError, InputError
from ..formats import read_qrels
from ..run_summary import RunSummary
from .metrics import evaluate, metric_names
from .significance import holm, paired_t_test, randomization_test, wins_ties_losses
from .tables import FORMATS, format_comparison

__all__ = ["FORMATS", "SystemRow", "compare_runs", "format_comparison", "read_costs", "summary_path"]


@dataclass
class SystemRow:
    """One system of a comparison.

    Attributes
    ----------
    name : str
        The system's name (the run file's stem unless named).
    path : str
        The run file.
    values : dict
        Measure string -> mean over the paired queries.
    p_t : dict or None
        Measure string -> Holm-adjusted p-value of the paired t-test against the baseline;
        None for the baseline.
    p_rand : dict or None
        The same for the paired randomization test.
    wins, ties, losses : int
        Queries where the system beats, ties with and loses to the baseline on the first
        measure (all ties for the baseline).
    costs : dict or None
        From the run's summary JSON, None without one: ``queries``, ``calls``,
        ``prompt_tokens``, ``completion_tokens`` (totals), ``prompt_tokens_per_query``,
        ``completion_tokens_per_query``, ``rounds_per_query``, ``reasoning_tokens_per_query``,
        ``cache_hits``, ``wall_seconds``,
        ``latency_per_query`` (seconds of LLM calls per query), ``parse_repaired``,
        ``parse_unparseable``, ``price`` and ``price_per_query`` (dollars; None unless a
        price was given; half for a run through OpenAI's Batch API), ``batches`` (submissions of
        a ``--batch`` run, None otherwise).
    per_query : dict
        qid -> measure string -> value, over the paired queries.
    """

    name: str
    path: str
    values: dict[str, float]
    p_t: dict[str, float] | None
    p_rand: dict[str, float] | None
    wins: int
    ties: int
    losses: int
    costs: dict | None = None
    per_query: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)

    @property
    def is_baseline(self) -> bool:
        """Whether this row is the baseline (it has no p-values)."""
        return self.p_t is None


def summary_path(run_path: str | os.PathLike) -> Path | None:
    """The summary JSON beside a run, if there is one.

    Parameters
    ----------
    run_path : str or path-like
        The run; for ``X.trec`` the summary is ``X.summary.json`` or ``X.trec.summary.json``.

    Returns
    -------
    Path or None
        The first of those that exists.
    """
    run = Path(run_path)
    for candidate in (run.with_suffix(".summary.json"), run.with_name(run.name + ".summary.json")):
        if candidate.is_file():
            return candidate
    return None


def read_costs(path: str | os.PathLike,
               price_per_million: tuple[float, float] | None = None) -> dict | None:
    """The cost columns of a summary JSON written by ``rerank run`` (None for a run still going),
    read as a :class:`~rerank.run_summary.RunSummary`.

    Parameters
    ----------
    path : str or path-like
        The summary JSON.
    price_per_million : tuple of float or None
        Dollars per million (input, output) tokens; None leaves the price out. A run whose
        summary says it went through a batch API that discounts (``batch_provider``) is priced
        at its share (:attr:`~rerank.run_summary.RunSummary.price_factor`).

    Returns
    -------
    dict
        The keys described at :class:`SystemRow`.

    Raises
    ------
    InputError
        When the file is not a JSON object with the summary's keys.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            summary = RunSummary.from_json(json.load(handle))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read the run summary: {error}", str(path)) from None
    except ValueError as error:  # not an object, or without the core keys
        raise InputError(str(error), str(path)) from None
    if summary.state == "running":
        return None  # the record of a run still going, or killed: no costs to show yet
    queries = summary.queries

    def per_query(value: float | None) -> float | None:
        return None if value is None or not queries else value / queries

    costs = {
        "queries": queries,
        "calls": summary.calls,
        "rounds_per_query": per_query(summary.rounds),
        "reasoning_tokens_per_query": per_query(summary.reasoning_tokens),
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "prompt_tokens_per_query": per_query(summary.prompt_tokens),
        "completion_tokens_per_query": per_query(summary.completion_tokens),
        "cache_hits": summary.cache_hits,
        "wall_seconds": summary.wall_seconds,
        "latency_per_query": per_query(summary.latency),
        "parse_repaired": summary.parse_repaired,
        "parse_unparseable": summary.parse_unparseable,
        "price": None,
        "price_per_query": None,
        "batches": summary.extra.get("batches"),
    }
    if price_per_million is not None:
        price_in, price_out = price_per_million
        costs["price"] = ((summary.prompt_tokens * price_in + summary.completion_tokens * price_out) / 1e6
                          * summary.price_factor)
        costs["price_per_query"] = per_query(costs["price"])
    return costs


def _default_names(paths: Sequence[str]) -> list[str]:
    """Run file stems as system names, the whole paths where stems collide."""
    stems = [Path(path).stem for path in paths]
    return stems if len(set(stems)) == len(stems) else [str(path) for path in paths]


def compare_runs(runs: Sequence[str | os.PathLike], qrels: str | os.PathLike | Mapping[str, Mapping[str, int]], *,
                 baseline: str | os.PathLike | None = None, metrics: Sequence[str] = ("nDCG@10",),
                 names: Sequence[str] | None = None,
                 price_per_million: tuple[float, float] | None = None,
                 trials: int = 10_000, seed: int = 0, qrels_name: str | None = None) -> list[SystemRow]:
    """Score runs and test each against a baseline over the same queries.

    Parameters
    ----------
    runs : sequence of str or path-like
        TREC runs.
    qrels : str, path-like or mapping
        The judgments: a qrels file, or qid -> docid -> grade (an ir_datasets dataset's).
    baseline : str or path-like or None
        The baseline run: one of ``runs`` or another file; None takes the first run.
    metrics : sequence of str
        ir_measures measure strings; the first one also gives wins/ties/losses.
    names : sequence of str or None
        A name per run (in the order of ``runs``); None uses the file stems. A baseline that
        is not among the runs is named by its stem.
    price_per_million : tuple of float or None
        Dollars per million (input, output) tokens, for the price columns.
    trials : int
        Trials of the randomization test.
    seed : int
        Seed of the randomization test.
    qrels_name : str or None
        What messages call judgments given in memory (default: the file's path, or "the qrels").

    Returns
    -------
    list of SystemRow
        The baseline first, then the other runs in the order given. Values are means over the
        judged queries (trec_eval's convention), as ``rerank eval`` prints them; p-values are
        Holm-adjusted across the systems, per measure and per test.

    Raises
    ------
    ConfigError
        When there are no runs, names and runs differ in number, no metric is given, or a run
        does not cover the same judged queries as the baseline.
    """
    paths = [str(run) for run in runs]
    if not paths:
        raise ConfigError("compare needs at least one run")
    if not metrics:
        raise ConfigError("compare needs at least one metric")
    metrics = tuple(metric_names(metrics))  # the evaluations' keys
    if names is None:
        names = _default_names(paths)
    elif len(names) != len(paths):
        raise ConfigError(f"{len(names)} names for {len(paths)} runs")
    labelled = list(zip(names, paths))
    base_path = paths[0] if baseline is None else str(baseline)
    for index, (_, path) in enumerate(labelled):
        if path == base_path or (baseline is not None and _same_file(path, base_path)):
            base = labelled.pop(index)
            break
    else:
        base = (Path(base_path).stem, base_path)

    if isinstance(qrels, Mapping):
        judgments, qrels_name = qrels, qrels_name or "the qrels"
    else:  # read once for every run
        judgments, qrels_name = read_qrels(qrels), qrels_name or str(qrels)
    base_eval = evaluate(base[1], judgments, metrics, qrels_name=qrels_name)
    if not base_eval.per_query:
        raise ConfigError(f"baseline {base[0]} ({base[1]}) has no judged queries")
    qids = sorted(base_eval.per_query)
    evaluations = []
    for name, path in labelled:
        evaluation = evaluate(path, judgments, metrics, qrels_name=qrels_name)
        _check_queries(name, path, set(evaluation.per_query), set(qids), base[0])
        evaluations.append(evaluation)

    first = metrics[0]
    p_t: dict[str, list[float]] = {}
    p_rand: dict[str, list[float]] = {}
    for metric in metrics:
        base_values = [base_eval.per_query[q][metric] for q in qids]
        raw_t, raw_rand = [], []
        for evaluation in evaluations:
            values = [evaluation.per_query[q][metric] for q in qids]
            raw_t.append(paired_t_test(values, base_values))
            raw_rand.append(randomization_test(values, base_values, trials=trials, seed=seed))
        p_t[metric], p_rand[metric] = holm(raw_t), holm(raw_rand)

    def costs_of(path: str) -> dict | None:
        found = summary_path(path)
        return None if found is None else read_costs(found, price_per_million)

    rows = [SystemRow(base[0], base[1], dict(base_eval.aggregate), None, None, 0, len(qids), 0,
                      costs_of(base[1]), base_eval.per_query)]
    base_first = [base_eval.per_query[q][first] for q in qids]
    for index, ((name, path), evaluation) in enumerate(zip(labelled, evaluations)):
        wins, ties, losses = wins_ties_losses([evaluation.per_query[q][first] for q in qids], base_first)
        rows.append(SystemRow(
            name, path, dict(evaluation.aggregate),
            {metric: p_t[metric][index] for metric in metrics},
            {metric: p_rand[metric][index] for metric in metrics},
            wins, ties, losses, costs_of(path), evaluation.per_query))
    return rows


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_queries(name: str, path: str, have: set[str], want: set[str], base_name: str) -> None:
    """Refuse a run whose judged queries are not the baseline's: a paired test needs the same ones."""
    missing, extra = sorted(want - have), sorted(have - want)
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(f"lacks {len(missing)} judged queries of the baseline {base_name} "
                     f"(e.g. {', '.join(missing[:3])})")
    if extra:
        parts.append(f"has {len(extra)} judged queries the baseline lacks (e.g. {', '.join(extra[:3])})")
    raise ConfigError(f"run {name} ({path}) {' and '.join(parts)}; a paired comparison needs the same queries")
