"""``rerank experiment``: run a grid of variants from a YAML file and compare them."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..errors import ConfigError
from .dry_run import add_dry_run_arguments, check_dry_run, experiment_dry_run
from .options import add_comparison_arguments, add_progress_interval, add_resume_argument, progress_options


def add_experiment_command(commands) -> None:
    """Add ``rerank experiment``."""
    experiment = commands.add_parser(
        "experiment", help="run a grid of variants from a YAML file and compare them",
        description="Run every variant of an experiment file over every query through one shared call cache "
                    "(a rerun makes no LLM call), write each variant's TREC run, JSONL and cost summary, "
                    "then compare them against the baseline.")
    experiment.add_argument("file", metavar="FILE", help="experiment file (YAML), see eval/experiments/")
    experiment.add_argument("--results", metavar="DIR", help="results folder (default: from the file)")
    add_comparison_arguments(experiment)
    add_resume_argument(experiment, what="run every variant again through the cache (finished calls are "
                                         "free) into a results folder an earlier run of this experiment wrote")
    experiment.add_argument("--quiet", action="store_true", help="no progress and no per-variant lines")
    add_progress_interval(experiment)
    add_dry_run_arguments(experiment, price=False)  # --price is the comparison's, and prices the dry run too
    experiment.set_defaults(handler=experiment_command)


def experiment_command(args: argparse.Namespace) -> int:
    """``rerank experiment``."""
    from pathlib import Path

    from ..evaluation.metrics import metric_names
    from ..evaluation.tables import format_comparison
    from ..experiments import check_dataset, check_endpoints, experiment_inputs, experiment_qrels, experiment_outputs, load_experiment, run_experiment
    from ..outputs import Outputs
    from .evaluate import compare_rows, have_matplotlib, write_plots

    progress = progress_options(args)  # a wrong --progress-interval is reported before anything runs
    experiment = load_experiment(args.file, results=args.results)
    check_dataset(experiment)  # an ir_datasets id, and the parts taken from it, before anything runs
    if check_dry_run(args, price=False):
        return experiment_dry_run(args, experiment)
    metrics = metric_names(args.metrics) if args.metrics else list(experiment.metrics)
    plots = args.plots or str(experiment.results)
    names = ["first-stage", *(variant.name for variant in experiment.variants)]
    files = experiment_outputs(experiment)
    if have_matplotlib():
        files |= {f"plot {name}": Path(plots) / f"per-query-{name}.{args.plot_format}"
                  for name in names if name != experiment.baseline}
        files["plot quality-vs-cost"] = Path(plots) / f"quality-vs-cost.{args.plot_format}"
    if experiment.results.exists() and not experiment.results.is_dir():
        raise ConfigError(f"{experiment.results} is a file: the results folder must be a folder")
    for folder in (experiment.results, Path(plots)):
        folder.mkdir(parents=True, exist_ok=True)
    with Outputs("experiment", files, experiment_inputs(experiment), shared={"cache": experiment.cache},
                 resume=args.resume, force=args.force, create_later=True,
                 record=str(experiment.results / "experiment.summary.json")) as outputs:
        asyncio.run(check_endpoints(experiment))  # every variant's endpoint, before any output appears
        outputs.create()
        runs = {name: str(path) for name, path in
                asyncio.run(run_experiment(experiment, quiet=args.quiet, check=False,
                                           progress=progress)).items()}
        qrels, qrels_name = experiment_qrels(experiment)
        rows = compare_rows(args, list(runs.values()), qrels, qrels_name=qrels_name, baseline=runs[experiment.baseline],
                            names=list(runs), metrics=metrics)
        for fmt, suffix in (("markdown", "md"), ("csv", "csv"), ("latex", "tex")):
            (experiment.results / f"comparison.{suffix}").write_text(
                format_comparison(rows, fmt=fmt, metrics=metrics) + "\n", encoding="utf-8")
        write_plots(rows, metrics[0], plots, args.plot_format)
        print(format_comparison(rows, fmt="terminal", metrics=metrics))
        outputs.finish({"state": "finished", "experiment": experiment.name, "variants": list(runs)})
    print(f"\nresults, tables (comparison.md, .csv, .tex) and plots in {experiment.results}", file=sys.stderr)
    return 0
