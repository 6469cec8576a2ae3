"""``rerank run`` (rerank a file of requests) and ``rerank pipeline`` (retrieve, then rerank)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..errors import ConfigError
from .options import (add_dataset_argument, check_input, add_batch_arguments, add_engine_arguments, add_input_arguments, add_output_arguments, add_reranker_arguments, add_resume_argument,
                      add_retriever_arguments, add_shard_argument, add_skip_argument, cache_path, check_shard,
                      ray_options, read_input, reranker_config, reranker_inputs, select_shard, shard_note,
                      add_trial_arguments, select_trial, input_total, progress_options)
from .dry_run import add_dry_run_arguments, check_dry_run, run_dry_run
from .retrieve import first_stage_queries, make_first_stage, positive_k, retriever_inputs


def add_run_command(commands) -> None:
    """Add ``rerank run``."""
    run = commands.add_parser(
        "run", help="rerank a file of queries and candidates with an LLM",
        description="Rerank INPUT (rank_llm JSONL, RankGPT JSON, or a TREC run with --corpus and "
                    "--queries; detected from the content) and write the reranked JSONL and TREC run.")
    run.add_argument("input", metavar="INPUT", nargs="?",
                     help="candidates file; with --dataset, a TREC run over its documents, or none for its own first stage")
    add_output_arguments(run, required=True)
    add_input_arguments(run, "corpus for a TREC run input: BEIR corpus.jsonl or docid<TAB>text",
                        "queries for a TREC run input: qid<TAB>text or BEIR queries.jsonl")
    add_dataset_argument(run, "the candidates (its first stage, scoreddocs) or, with a TREC run INPUT, the "
                              "documents and queries", depth=True)
    add_reranker_arguments(run)
    add_resume_argument(run)
    add_shard_argument(run)
    add_trial_arguments(run)
    add_skip_argument(run)
    add_engine_arguments(run)
    add_batch_arguments(run)
    add_dry_run_arguments(run)
    run.set_defaults(handler=run_command)


def add_pipeline_command(commands) -> None:
    """Add ``rerank pipeline``."""
    pipeline = commands.add_parser(
        "pipeline", help="retrieve from a corpus, then rerank with an LLM",
        description="Retrieve candidates from a corpus for each query, then rerank them.")
    add_retriever_arguments(pipeline)
    add_output_arguments(pipeline, required=True)
    add_reranker_arguments(pipeline)
    add_resume_argument(pipeline)
    add_shard_argument(pipeline)
    add_trial_arguments(pipeline)
    pipeline.set_defaults(handler=pipeline_command)


def run_command(args: argparse.Namespace) -> int:
    """``rerank run``."""
    from ..reranker import Reranker
    from ..resume import skip_finished

    if check_dry_run(args):
        check_input(args)
        return run_dry_run(args)
    reranker = Reranker(reranker_config(args))
    engine = ray_options(args)
    if args.batch and engine is not None:
        raise ConfigError("--batch and --engine ray are two ways to run the calls: choose one")
    with _run_outputs(args, "run", check_input(args)) as outputs:
        done = _finished(args)
        todo = skip_finished(read_input(args), done)
        runner, results = reranker, lambda on_error: reranker.rerank_iter(todo, on_error=on_error)
        if engine is not None:
            from ..distributed import ray_engine

            runner, results = ray_engine(reranker, todo, engine, report=not args.quiet)
        from ..batch.provider import BatchPending

        note = None
        if args.batch:
            from ..batch import batch_driver

            runner = batch_driver(args, reranker)
            results, note = runner.results(todo), runner.summary
        try:
            return asyncio.run(_write_results(args, runner, results, already=sum(done.values()), outputs=outputs,
                                              note=note, total=input_total(args)))
        except BatchPending as pending:  # --print-batch-command: the command is printed, to be run
            print(f"rerank: {pending}", file=sys.stderr)
            return pending.exit_code


def pipeline_command(args: argparse.Namespace) -> int:
    """``rerank pipeline``."""
    from ..pipeline import Pipeline
    from ..reranker import Reranker
    from ..resume import skip_finished

    pipeline = Pipeline(make_first_stage(args), Reranker(reranker_config(args)), k=positive_k(args.k))
    with _run_outputs(args, "pipeline", retriever_inputs(args)) as outputs:
        done = _finished(args)
        queries = list(skip_finished(select_trial(args, select_shard(args, first_stage_queries(args),
                                                                     lambda query: query.qid), lambda query: query.qid),
                                     done, lambda query: query.qid))
        return asyncio.run(_write_results(args, pipeline.reranker,
                                          lambda on_error: pipeline.run_iter(queries, on_error=on_error),
                                          already=sum(done.values()), outputs=outputs,
                                          total=sum(done.values()) + len(queries)))


def _run_outputs(args: argparse.Namespace, command: str, inputs: dict):
    """The checked, locked outputs of a reranking run (see :mod:`rerank.outputs`)."""
    from ..outputs import Outputs

    check_shard(args, args.output)
    files = {"-o": args.output, "--trec": args.trec, "--summary-json": args.summary_json}
    if getattr(args, "batch", None):  # the batches submitted: --resume polls them, --force forgets them
        from ..batch import state_path

        files["batch state"] = state_path(args.output)
    return Outputs(command, files,
                   {**inputs, **reranker_inputs(args)}, shared={"--cache": cache_path(args)},
                   resume=args.resume, force=args.force, create_later=True)  # created once prepared


def _finished(args: argparse.Namespace):
    """With ``--resume``: the queries the outputs hold, the outputs cut back to them."""
    from collections import Counter

    from ..resume import finished_queries, keep_finished_trec

    if not args.resume:
        return Counter()
    done = finished_queries(args.output)
    keep_finished_trec(args.trec, done)
    return done


async def _write_results(args: argparse.Namespace, reranker, results, *, already: int, outputs,
                         note=None, total: int | None = None) -> int:
    """Write the run (see :func:`rerank.run_writer.write_run`); report failures and interruptions.
    ``note()`` gives keys for the summary (a batch run's); ``total``: the queries, for the progress."""
    from ..run_writer import RunFiles, run_outcome, write_run

    summary = await write_run(reranker, results, RunFiles(args.output, args.trec, args.tag, append=args.resume),
                              outputs, already=already, copy_to=args.summary_json, extra=lambda: {**shard_note(args), **(note() if note else {})},
                              progress=progress_options(args), total=total, report=not args.quiet)
    return run_outcome(summary, args.output, already=already, resumed=args.resume)
