"""``rerank eval`` (score a run) and ``rerank compare`` (runs against a baseline), and the
comparison table and plots ``rerank experiment`` shares."""

from __future__ import annotations

import argparse
import sys

from ..evaluation.metrics import DEFAULT_METRICS
from .options import add_comparison_arguments


def add_compare_command(commands) -> None:
    """Add ``rerank compare``."""
    compare = commands.add_parser(
        "compare", help="compare runs: metrics, paired significance, wins/ties/losses, cost",
        description="One row per run: the metrics; paired t-test and Fisher randomization test against the "
                    "baseline, Holm-corrected across runs (* p < 0.05, ** p < 0.01); wins/ties/losses per "
                    "query; and the cost columns of runs made by rerank (from X.summary.json beside X.trec).")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="TREC run files")
    compare.add_argument("--qrels", required=True, help="qrels file: qid 0|Q0 docid grade")
    compare.add_argument("--baseline", metavar="RUN", help="the run the others are tested against (default: the first)")
    add_comparison_arguments(compare)
    compare.add_argument("--force", action="store_true", help="replace existing plot files in --plots DIR")
    compare.set_defaults(handler=compare_command)


def add_eval_command(commands) -> None:
    """Add ``rerank eval``."""
    evaluate = commands.add_parser("eval", help="score a TREC run against qrels",
                                   description="Score a TREC run with ir_measures (trec_eval-identical numbers).")
    evaluate.add_argument("run", metavar="RUN", help="TREC run file")
    evaluate.add_argument("--qrels", required=True, help="qrels file: qid 0|Q0 docid grade")
    evaluate.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), metavar="METRIC",
                          help=f"ir_measures measures (default: {' '.join(DEFAULT_METRICS)})")
    evaluate.add_argument("--per-query", action="store_true", help="one row per query, then the mean")
    evaluate.set_defaults(handler=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    """``rerank eval``."""
    from ..evaluation import evaluate
    from ..evaluation.tables import format_evaluation

    print(format_evaluation(evaluate(args.run, args.qrels, args.metrics), per_query=args.per_query))
    return 0


def compare_command(args: argparse.Namespace) -> int:
    """``rerank compare``."""
    from pathlib import Path

    from ..evaluation.tables import format_comparison

    runs = list(args.runs)
    if args.baseline and args.baseline not in runs:
        runs.insert(0, args.baseline)
    stems = [Path(run).stem for run in runs]
    names = stems if len(set(stems)) == len(stems) else None  # full paths only when names clash
    metrics = args.metrics or ["nDCG@10"]
    rows = compare_rows(args, runs, args.qrels, baseline=args.baseline or runs[0], names=names, metrics=metrics)
    if args.plots:
        from ..outputs import Outputs

        Path(args.plots).mkdir(parents=True, exist_ok=True)
        inputs = {f"RUN {run}": run for run in runs} | {"--qrels": args.qrels}
        with Outputs("compare", _plot_files(rows, args.plots), inputs, force=args.force, record=False):
            write_plots(rows, metrics[0], args.plots)
    print(format_comparison(rows, fmt=args.format, metrics=metrics))
    return 0


def compare_rows(args: argparse.Namespace, runs: list[str], qrels: str, *, baseline: str, names, metrics):
    """The rows of a comparison the comparison options describe."""
    from ..evaluation.compare import compare_runs

    return compare_runs(runs, qrels, baseline=baseline, metrics=metrics, names=names,
                        price_per_million=tuple(args.price) if args.price else None,
                        trials=args.trials, seed=args.seed)


def have_matplotlib() -> bool:
    """Whether plots can be drawn."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _plot_files(rows, folder: str) -> dict:
    """The PNG files :func:`write_plots` draws for these rows."""
    from pathlib import Path

    files = {f"plot {row.name}": Path(folder) / f"per-query-{row.name}.png" for row in rows if not row.is_baseline}
    if any(row.costs for row in rows):
        files["plot quality-vs-cost"] = Path(folder) / "quality-vs-cost.png"
    return files


def write_plots(rows, metric: str, folder: str) -> None:
    """Per-query differences against the baseline, and quality against cost, as PNG files."""
    from pathlib import Path

    if not have_matplotlib():
        print("rerank: no plots: matplotlib is not installed (pip install 'rerank[plots]')", file=sys.stderr)
        return
    from ..evaluation.plots import plot_per_query_differences, plot_quality_vs_cost

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    baseline = next(row for row in rows if row.is_baseline)
    base = {qid: values[metric] for qid, values in baseline.per_query.items()}
    for row in rows:
        if not row.is_baseline:
            plot_per_query_differences(base, {qid: v[metric] for qid, v in row.per_query.items()},
                                       out / f"per-query-{row.name}.png", f"{row.name} vs {baseline.name}: {metric} per query")
    points = [(row.name, row.costs["prompt_tokens_per_query"], row.values[metric]) for row in rows if row.costs]
    if points:
        plot_quality_vs_cost(points, out / "quality-vs-cost.png")
