"""``rerank run`` (rerank a file of requests) and ``rerank pipeline`` (retrieve, then rerank)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .options import (add_input_arguments, add_output_arguments, add_reranker_arguments, add_resume_argument,
                      add_retriever_arguments, add_skip_argument, cache_path, read_input, reranker_config,
                      reranker_inputs)
from .retrieve import make_first_stage, positive_k, read_query_file, retriever_inputs


def add_run_command(commands) -> None:
    """Add ``rerank run``."""
    run = commands.add_parser(
        "run", help="rerank a file of queries and candidates with an LLM",
        description="Rerank INPUT (rank_llm JSONL, RankGPT JSON, or a TREC run with --corpus and "
                    "--queries; detected from the content) and write the reranked JSONL and TREC run.")
    run.add_argument("input", metavar="INPUT", help="candidates file")
    add_output_arguments(run, required=True)
    add_input_arguments(run, "corpus for a TREC run input: BEIR corpus.jsonl or docid<TAB>text",
                        "queries for a TREC run input: qid<TAB>text or BEIR queries.jsonl")
    add_reranker_arguments(run)
    add_resume_argument(run)
    add_skip_argument(run)
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
    pipeline.set_defaults(handler=pipeline_command)


def run_command(args: argparse.Namespace) -> int:
    """``rerank run``."""
    from ..reranker import Reranker
    from ..resume import skip_finished

    reranker = Reranker(reranker_config(args))
    with _run_outputs(args, "run", {"INPUT": args.input, "--corpus": args.corpus, "--queries": args.queries}) as outputs:
        done = _finished(args)
        todo = skip_finished(read_input(args), done)
        return asyncio.run(_write_results(args, reranker, lambda on_error: reranker.rerank_iter(todo, on_error=on_error),
                                          already=sum(done.values()), outputs=outputs))


def pipeline_command(args: argparse.Namespace) -> int:
    """``rerank pipeline``."""
    from ..pipeline import Pipeline
    from ..reranker import Reranker
    from ..resume import skip_finished

    pipeline = Pipeline(make_first_stage(args), Reranker(reranker_config(args)), k=positive_k(args.k))
    with _run_outputs(args, "pipeline", retriever_inputs(args)) as outputs:
        done = _finished(args)
        queries = list(skip_finished(read_query_file(args.queries), done, lambda query: query.qid))
        return asyncio.run(_write_results(args, pipeline.reranker,
                                          lambda on_error: pipeline.run_iter(queries, on_error=on_error),
                                          already=sum(done.values()), outputs=outputs))


def _run_outputs(args: argparse.Namespace, command: str, inputs: dict):
    """The checked, locked outputs of a reranking run (see :mod:`rerank.outputs`)."""
    from ..outputs import Outputs

    return Outputs(command, {"-o": args.output, "--trec": args.trec, "--summary-json": args.summary_json},
                   {**inputs, **reranker_inputs(args)}, shared={"--cache": cache_path(args)},
                   resume=args.resume, force=args.force)


def _finished(args: argparse.Namespace):
    """With ``--resume``: the queries the outputs hold, the outputs cut back to them."""
    from collections import Counter

    from ..resume import finished_queries, keep_finished_trec

    if not args.resume:
        return Counter()
    done = finished_queries(args.output)
    keep_finished_trec(args.trec, done)
    return done


async def _write_results(args: argparse.Namespace, reranker, results, *, already: int, outputs) -> int:
    """Write the run (see :func:`rerank.run_writer.write_run`); report failures and interruptions."""
    from ..run_writer import RunFiles, write_run

    summary = await write_run(reranker, results, RunFiles(args.output, args.trec, args.tag, append=args.resume),
                              outputs, already=already, copy_to=args.summary_json,
                              progress=not args.quiet and sys.stderr.isatty(), report=not args.quiet)
    again = "run the same command with --resume to finish" + ("" if args.resume else " it")
    if summary.state == "interrupted":
        print(f"rerank: interrupted: {already + summary.queries} queries are in {args.output} "
              f"({summary.queries} this run); {again}", file=sys.stderr)
        return 130
    if summary.failed:
        failed = summary.failed
        shown = ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else "")
        print(f"rerank: error: {len(failed)} queries failed and are not in the output ({shown}): "
              f"{summary.first_error}; everything else is saved; {again}", file=sys.stderr)
        return 3
    return 0
