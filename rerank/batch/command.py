"""``rerank run --batch {openai,vllm}``: the batch driver the command's options describe."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..errors import ConfigError
from .driver import BatchDriver
from .state import BatchState, state_path

#: ``--batch``'s choices.
PROVIDERS = ("openai", "vllm")


def batch_folder(output: str) -> Path:
    """Where ``--batch vllm`` writes its input and output files: ``OUT.jsonl.batch/``."""
    return Path(f"{output}.batch")


def batch_driver(args: argparse.Namespace, reranker) -> BatchDriver:
    """The driver of ``--batch``, its state resumed with ``--resume``.

    Parameters
    ----------
    args : argparse.Namespace
        ``rerank run``'s options: ``batch``, ``poll_interval``, ``print_batch_command``,
        ``output``, ``resume``, ``quiet``.
    reranker : Reranker
        The run's reranker (an OpenAI-compatible backend, a call cache).

    Raises
    ------
    ConfigError
        For a backend other than an OpenAI-compatible one, no call cache, a poll interval that
        is not a positive number, or a state of another provider or model.
    """
    from ..backends import backend_name_for

    config = reranker.config
    backend = backend_name_for(config.backend, config.model, config.base_url)
    if backend != "openai":
        raise ConfigError(f"--batch sends the calls of an OpenAI-compatible endpoint, not of --backend {backend}: "
                          "give --model (and --base-url for a compatible server)")
    if not config.cache:
        raise ConfigError("--batch keeps every answer in the call cache, so that a rerun pays for nothing twice: "
                          "drop --no-cache")
    interval = args.poll_interval
    if interval is not None and not (math.isfinite(interval) and interval > 0):
        raise ConfigError(f"--poll-interval must be a positive number of seconds, got {interval}")
    if args.print_batch_command and args.batch != "vllm":
        raise ConfigError("--print-batch-command goes with --batch vllm")
    if args.batch == "openai":
        from .openai_batches import OpenAIBatches

        submitter = OpenAIBatches(config.base_url, config.api_key_file, config.timeout, config.max_attempts,
                                  config.api_key_env, config.headers)
    else:
        from .vllm_batches import VLLMRunBatch

        submitter = VLLMRunBatch(batch_folder(args.output), config.model, args.print_batch_command)
    path = state_path(args.output)
    state = BatchState.load(path) if args.resume else None
    if state is None:
        state = BatchState(args.batch, config.model)
    state.check(args.batch, config.model, path)
    report = None if args.quiet else (lambda line: print(f"rerank: {line}", file=sys.stderr, flush=True))
    return BatchDriver(reranker, submitter, path, state, interval, report=report)
