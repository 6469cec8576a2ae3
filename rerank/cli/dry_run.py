"""``--dry-run`` of ``rerank run``, ``labels`` and ``experiment``: the calls and their cost, before paying.

Nothing is called (no LLM, no endpoint check) and nothing is written: not the outputs, not their
run record, not the call cache (read only where it exists). See :mod:`rerank.dry_run`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..errors import ConfigError


def add_dry_run_arguments(parser: argparse.ArgumentParser, price: bool = True) -> None:
    """``--dry-run``, ``--json`` and (unless the command has it already) ``--price IN OUT``."""
    group = parser.add_argument_group("dry run")
    group.add_argument("--dry-run", action="store_true",
                       help="print the calls, rounds and prompt tokens the run will send (counted with its own "
                            "prompt builder and tokenizer), the expected answer tokens, the price (--price) and "
                            "how many calls the call cache already answers; no LLM is called, no file written")
    if price:
        group.add_argument("--price", nargs=2, type=float, metavar=("IN", "OUT"),
                           help="with --dry-run: dollars per million prompt and completion tokens (as "
                                "`rerank compare --price`; half with --batch openai)")
    group.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")


def check_dry_run(args: argparse.Namespace, price: bool = True) -> bool:
    """Whether ``--dry-run`` was given; its companion flags without it are an error."""
    if args.dry_run:
        return True
    if args.json:
        raise ConfigError("--json prints a dry run: give --dry-run too")
    if price and args.price is not None:
        raise ConfigError("--price prices a dry run: give --dry-run too (`rerank compare --price` prices "
                          "finished runs)")
    return False


def run_dry_run(args: argparse.Namespace) -> int:
    """``rerank run --dry-run``."""
    from ..dry_run import plan_run
    from .options import read_input, reranker_config

    config = reranker_config(args)
    plan = asyncio.run(plan_run("rerank run", config, read_input(args)))
    return _print(args, "run", [plan], getattr(args, "batch", None))


def labels_dry_run(args: argparse.Namespace) -> int:
    """``rerank labels --dry-run``: the teacher's passes over every request."""
    from ..dry_run import plan_run
    from ..labels import teacher_config
    from .options import read_input, reranker_config

    config = teacher_config(reranker_config(args), args.variant)
    plan = asyncio.run(plan_run(f"rerank labels ({args.variant})", config, read_input(args)))
    return _print(args, "labels", [plan])


def experiment_dry_run(args: argparse.Namespace, experiment) -> int:
    """``rerank experiment --dry-run``: every variant through the experiment's shared cache (a call
    an earlier variant pays for is free to the later ones)."""
    from ..config import RerankerConfig
    from ..dry_run import plan_run
    from ..experiments import experiment_requests

    planned: dict = {}
    plans = []
    for variant in experiment.variants:
        config = RerankerConfig.from_dict({**variant.settings, "cache": str(experiment.cache)})
        plans.append(asyncio.run(plan_run(variant.name, config, experiment_requests(experiment, variant.candidates),
                                       planned=planned)))
    return _print(args, "experiment", plans)


def _print(args: argparse.Namespace, command: str, plans: list, batch: str | None = None) -> int:
    from ..dry_run import Price, format_plan, format_plans, plans_json

    price = Price.parse(args.price, batch)
    if args.json:
        text = plans_json(command, plans, price)
    elif command == "experiment":
        text = format_plans(plans, price)
    else:
        text = format_plan(plans[0], price)
    sys.stdout.write(text)
    return 0
