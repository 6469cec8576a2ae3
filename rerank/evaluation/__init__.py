"""Scoring runs with TREC measures (ir_measures, trec_eval-identical)."""

from .metrics import DEFAULT_METRICS, Evaluation, evaluate, evaluate_run, parse_metrics

__all__ = ["DEFAULT_METRICS", "Evaluation", "evaluate", "evaluate_run", "parse_metrics"]
