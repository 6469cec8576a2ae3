"""TREC measures over a run and qrels, with ir_measures (its trec_eval backend gives
trec_eval-identical numbers). Measures are ir_measures strings such as ``nDCG@10`` or ``RR@10``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import ConfigError
from ..formats import read_qrels, read_run

DEFAULT_METRICS = ("nDCG@10", "nDCG@5", "MAP@100", "R@100", "RR@10")


def parse_metrics(names: Sequence[str]) -> list:
    """ir_measures measure objects for measure strings, with a clear error for a bad one."""
    import ir_measures

    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError, AttributeError):
            raise ConfigError(f"unknown metric '{name}' (examples: nDCG@10, MAP@100, R@100, RR@10, P@5)") from None
    return measures


@dataclass(frozen=True)
class Evaluation:
    """Scores of one run.

    Attributes
    ----------
    metrics : tuple of str
        The measure strings, in the order asked for.
    aggregate : dict
        Measure string -> mean over the judged queries of the run.
    per_query : dict
        qid -> measure string -> value.
    """

    metrics: tuple[str, ...]
    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]


def evaluate(run_path: str, qrels_path: str, metrics: Sequence[str] = DEFAULT_METRICS) -> Evaluation:
    """Score the TREC run at ``run_path`` against the qrels at ``qrels_path``.

    Queries of the run without judgments, and judged queries the run does not hold, are left
    out of the mean, as trec_eval does (without ``-c``).
    """
    run = {qid: dict(ranking) for qid, ranking in read_run(run_path)}
    return evaluate_run(run, read_qrels(qrels_path), metrics)


def evaluate_run(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                 metrics: Sequence[str] = DEFAULT_METRICS) -> Evaluation:
    """Score an in-memory run (qid -> docid -> score) against in-memory qrels (qid -> docid -> grade)."""
    import ir_measures

    measures = parse_metrics(metrics)
    names = {measure: name for measure, name in zip(measures, metrics)}
    # ir_measures would score a judged query missing from the run as 0; trec_eval skips it.
    qrels = {qid: grades for qid, grades in qrels.items() if qid in run}
    aggregate = {names[m]: float(v) for m, v in ir_measures.calc_aggregate(measures, qrels, run).items()}
    per_query: dict[str, dict[str, float]] = {}
    for metric in ir_measures.iter_calc(measures, qrels, run):
        per_query.setdefault(metric.query_id, {})[names[metric.measure]] = float(metric.value)
    return Evaluation(tuple(metrics), {m: aggregate.get(m, 0.0) for m in metrics}, per_query)
