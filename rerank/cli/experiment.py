"""``rerank experiment``: run a grid of variants from a YAML file and compare them."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..errors import ConfigError
from .options import add_comparison_arguments, add_resume_argument


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
    experiment.add_argument("--quiet", action="store_true", help="no per-variant progress lines")
    experiment.set_defaults(handler=experiment_command)


def experiment_command(args: argparse.Namespace) -> int:
    """``rerank experiment``."""
    from pathlib import Path

    from ..evaluation.tables import format_comparison
    from ..experiments import experiment_inputs, experiment_outputs, load_experiment, run_experiment
    from ..outputs import Outputs
    from .evaluate import compare_rows, have_matplotlib, write_plots

    experiment = load_experiment(args.file, results=args.results)
    metrics = args.metrics or list(experiment.metrics)
    plots = args.plots or str(experiment.results)
    names = ["first-stage", *(variant.name for variant in experiment.variants)]
    files = experiment_outputs(experiment)
    if have_matplotlib():
        files |= {f"plot {name}": Path(plots) / f"per-query-{name}.png" for name in names if name != experiment.baseline}
        files["plot quality-vs-cost"] = Path(plots) / "quality-vs-cost.png"
    if experiment.results.exists() and not experiment.results.is_dir():
        raise ConfigError(f"{experiment.results} is a file: the results folder must be a folder")
    for folder in (experiment.results, Path(plots)):
        folder.mkdir(parents=True, exist_ok=True)
    with Outputs("experiment", files, experiment_inputs(experiment), shared={"cache": experiment.cache},
                 resume=args.resume, force=args.force,
                 record=str(experiment.results / "experiment.summary.json")) as outputs:
        runs = {name: str(path) for name, path in asyncio.run(run_experiment(experiment, quiet=args.quiet)).items()}
        rows = compare_rows(args, list(runs.values()), str(experiment.qrels), baseline=runs[experiment.baseline],
                            names=list(runs), metrics=metrics)
        for fmt, suffix in (("markdown", "md"), ("csv", "csv"), ("latex", "tex")):
            (experiment.results / f"comparison.{suffix}").write_text(
                format_comparison(rows, fmt=fmt, metrics=metrics) + "\n", encoding="utf-8")
        write_plots(rows, metrics[0], plots)
        print(format_comparison(rows, fmt="terminal", metrics=metrics))
        outputs.finish({"state": "finished", "experiment": experiment.name, "variants": list(runs)})
    print(f"\nresults, tables (comparison.md, .csv, .tex) and plots in {experiment.results}", file=sys.stderr)
    return 0
