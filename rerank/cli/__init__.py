"""The ``rerank`` command: a parser built from one thin module per command.

``rerank run`` reranks a file of requests; ``rerank retrieve`` runs a first stage alone;
``rerank pipeline`` retrieves then reranks; ``rerank eval`` scores a run; ``rerank train`` fine-tunes a full-ranking model on labels; ``rerank serve`` answers Cohere's rerank API; ``rerank simulate`` tries strategies with judges from the qrels; ``rerank demo`` shows
the whole path on a bundled sample with the embedded model; ``rerank merge-runs`` joins the outputs
of ``--shard I/N`` runs. Heavy modules (openai, llama_cpp,
bm25s, ir_measures) are imported inside the subcommand that needs them, so ``rerank --help``
starts fast. Options several commands share live in :mod:`rerank.cli.options`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Sequence

from ..errors import RerankError
from .cache import add_cache_command
from .demo import add_demo_command
from .evaluate import add_compare_command, add_eval_command
from .experiment import add_experiment_command
from .labels import add_labels_command
from .merge_runs import add_merge_runs_command
from .options import reranker_config
from .retrieve import add_retrieve_command
from .run import add_pipeline_command, add_run_command
from .serve import add_serve_command
from .simulate import add_simulate_command
from .train import add_train_command

__all__ = ["DISTRIBUTION", "build_parser", "main", "package_version", "reranker_config"]

#: The name rerank is installed under (``pip install rerank-llm``); ``rerank`` is the import name.
DISTRIBUTION = "rerank-llm"


def package_version() -> str:
    """The installed distribution's version, or ``rerank.__version__`` when it is not installed
    (run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        from .. import __version__

        return __version__


class _VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked (``rerank --help`` stays fast)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"rerank {package_version()} ({DISTRIBUTION})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rerank`` command."""
    parser = argparse.ArgumentParser(
        prog="rerank", description="Rerank search results with LLMs (sliding window or full ranking).")
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in (add_run_command, add_retrieve_command, add_pipeline_command, add_labels_command,
                        add_train_command, add_experiment_command, add_simulate_command, add_compare_command, add_eval_command, add_demo_command,
                        add_cache_command, add_merge_runs_command, add_serve_command):
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rerank`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    # SIGTERM (kill, a scheduler's stop) ends a run as Ctrl-C does: finished work is on disk,
    # the summary says how to resume.
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    except ValueError:  # not the main thread (main() called from a thread): leave signals alone
        previous = None
    try:
        return _handle(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _handle(args: argparse.Namespace) -> int:
    """Run the chosen command; turn user mistakes and interruptions into one line and an exit code."""
    if getattr(args, "verbose", False):
        # Only rerank's own logger: the SDK's and httpx's debug logs would show request headers.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("rerank: %(message)s"))
        logger = logging.getLogger("rerank")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        return args.handler(args)
    except RerankError as exc:
        print(f"rerank: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # An output that cannot be written (missing folder, no permission, disk full).
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"rerank: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rerank: interrupted", file=sys.stderr)
        return 130


def _interrupt_on_sigterm(signum, frame) -> None:
    os.kill(os.getpid(), signal.SIGINT)
