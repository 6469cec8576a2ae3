"""Scoring runs with TREC measures (ir_measures, trec_eval-identical)."""

from .metrics import (DEFAULT_METRICS, Evaluation, check_scorable, evaluate, evaluate_run, metric_name,
                      metric_names, parse_metrics, read_ranking)

__all__ = ["DEFAULT_METRICS", "Evaluation", "check_scorable", "evaluate", "evaluate_run", "metric_name",
           "metric_names", "parse_metrics", "read_ranking"]
