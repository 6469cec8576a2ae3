"""``rerank eval`` (score a run) and ``rerank compare`` (runs against a baseline), and the
comparison table and plots ``rerank experiment`` shares."""

from __future__ import annotations

import argparse
import sys

from ..evaluation.metrics import DEFAULT_METRICS, metric_names
from .options import add_comparison_arguments, add_dataset_argument, add_trial_arguments, dataset_qrels, select_trial


def add_compare_command(commands) -> None:
    """Add ``rerank compare``."""
    compare = commands.add_parser(
        "compare", help="compare runs: metrics, paired significance, wins/ties/losses, cost",
        description="One row per run: the metrics; paired t-test and Fisher randomization test against the "
                    "baseline, Holm-corrected across runs (* p < 0.05, ** p < 0.01); wins/ties/losses per "
                    "query; and the cost columns of runs made by rerank (from X.summary.json beside X.trec).")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="TREC run files")
    add_qrels_arguments(compare)
    compare.add_argument("--baseline", metavar="RUN", help="the run the others are tested against (default: the first)")
    add_comparison_arguments(compare)
    compare.add_argument("--force", action="store_true", help="replace existing plot files in --plots DIR")
    compare.set_defaults(handler=compare_command)


def add_eval_command(commands) -> None:
    """Add ``rerank eval``."""
    evaluate = commands.add_parser("eval", help="score a TREC run (or a candidates file's first stage) against qrels",
                                   description="Score a TREC run with ir_measures (trec_eval-identical numbers); "
                                               "given a candidates file (rank_llm JSONL or JSON, RankGPT JSON), "
                                               "score its first-stage order.")
    evaluate.add_argument("run", metavar="RUN", help="TREC run file, or a candidates file (its first stage is scored)")
    add_qrels_arguments(evaluate)
    evaluate.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), metavar="METRIC",
                          help="ir_measures measures, in any case, or trec_eval's names (ndcg_cut_10, map, recip_rank, "
                               f"P_5) (default: {' '.join(DEFAULT_METRICS)})")
    evaluate.add_argument("--per-query", action="store_true", help="one row per query, then the mean")
    add_trial_arguments(evaluate)
    evaluate.set_defaults(handler=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    """``rerank eval``."""
    from ..evaluation import check_scorable, evaluate_run, read_ranking
    from ..evaluation.tables import format_evaluation

    metrics = metric_names(args.metrics)  # ndcg_cut_10 as nDCG@10; an unknown name is one line, before reading
    run = dict(select_trial(args, read_ranking(args.run).items(), lambda item: item[0]))
    qrels, qrels_name = qrels_of(args)
    check_scorable(run, qrels, args.run, qrels_name)  # an empty run, or qrels of other queries: an error
    print(format_evaluation(evaluate_run(run, qrels, metrics), per_query=args.per_query))
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
    metrics = metric_names(args.metrics or ["nDCG@10"])
    qrels, qrels_name = qrels_of(args)
    rows = compare_rows(args, runs, qrels, baseline=args.baseline or runs[0], names=names, metrics=metrics,
                        qrels_name=qrels_name)
    if args.plots:
        from ..outputs import Outputs

        Path(args.plots).mkdir(parents=True, exist_ok=True)
        inputs = {f"RUN {run}": run for run in runs} | {"--qrels": args.qrels}
        with Outputs("compare", _plot_files(rows, args.plots, args.plot_format), inputs, force=args.force,
                     record=False):
            write_plots(rows, metrics[0], args.plots, args.plot_format)
    print(format_comparison(rows, fmt=args.format, metrics=metrics))
    return 0


def compare_rows(args: argparse.Namespace, runs: list[str], qrels, *, baseline: str, names, metrics,
                 qrels_name: str | None = None):
    """The rows of a comparison the comparison options describe (``qrels``: a file, or judgments
    in memory named ``qrels_name``)."""
    from ..evaluation.compare import compare_runs

    return compare_runs(runs, qrels, baseline=baseline, metrics=metrics, names=names,
                        price_per_million=tuple(args.price) if args.price else None,
                        trials=args.trials, seed=args.seed, qrels_name=qrels_name)


def add_qrels_arguments(parser: argparse.ArgumentParser) -> None:
    """``--qrels FILE`` or ``--dataset ID``: the judgments of ``eval`` and ``compare``, one of the two."""
    judgments = parser.add_mutually_exclusive_group(required=True)
    judgments.add_argument("--qrels", help="qrels file: qid 0|Q0 docid grade")
    add_dataset_argument(parser, "the qrels, instead of --qrels", container=judgments)


def qrels_of(args: argparse.Namespace):
    """The judgments ``--qrels`` or ``--dataset`` give (qid -> docid -> grade), and their name for
    messages: the file's path, or ``ir_datasets:ID``."""
    if args.qrels is not None:
        from ..formats import read_qrels

        return read_qrels(args.qrels), args.qrels
    return dataset_qrels(args, required=True), f"ir_datasets:{args.dataset}"


def have_matplotlib() -> bool:
    """Whether plots can be drawn."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _plot_files(rows, folder: str, fmt: str = "png") -> dict:
    """The files (``fmt``: png, pdf or svg) :func:`write_plots` draws for these rows."""
    from pathlib import Path

    files = {f"plot {row.name}": Path(folder) / f"per-query-{row.name}.{fmt}" for row in rows if not row.is_baseline}
    if any(row.costs for row in rows):
        files["plot quality-vs-cost"] = Path(folder) / f"quality-vs-cost.{fmt}"
    return files


def write_plots(rows, metric: str, folder: str, fmt: str = "png") -> None:
    """Per-query differences against the baseline, and quality against cost, as ``fmt`` files
    (png, pdf or svg)."""
    from pathlib import Path

    if not have_matplotlib():
        print("rerank: no plots: matplotlib is not installed (pip install 'rerank-llm[plots]')", file=sys.stderr)
        return
    from ..evaluation.plots import plot_per_query_differences, plot_quality_vs_cost

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    baseline = next(row for row in rows if row.is_baseline)
    base = {qid: values[metric] for qid, values in baseline.per_query.items()}
    for row in rows:
        if not row.is_baseline:
            plot_per_query_differences(base, {qid: v[metric] for qid, v in row.per_query.items()},
                                       out / f"per-query-{row.name}.{fmt}", f"{row.name} vs {baseline.name}: {metric} per query")
    points = [(row.name, row.costs["prompt_tokens_per_query"], row.values[metric]) for row in rows if row.costs]
    if points:
        plot_quality_vs_cost(points, out / f"quality-vs-cost.{fmt}")
