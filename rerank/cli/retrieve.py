"""``rerank retrieve``: a first stage alone, and the first-stage helpers ``pipeline`` shares."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from ..errors import ConfigError
from .options import add_output_arguments, add_progress_interval, add_retriever_arguments, open_dataset, progress_options


def add_retrieve_command(commands) -> None:
    """Add ``rerank retrieve``."""
    retrieve = commands.add_parser(
        "retrieve", help="run a first stage (BM25, dense, run file, hybrid) alone",
        description="Retrieve candidates for each query from a corpus; writes rank_llm JSONL that "
                    "`rerank run` takes, and/or a TREC run.")
    add_retriever_arguments(retrieve)
    add_output_arguments(retrieve, required=False)
    retrieve.add_argument("--force", action="store_true",
                          help="replace existing outputs (without it an existing output is an error)")
    retrieve.add_argument("--quiet", action="store_true", help="no progress and no closing line")
    add_progress_interval(retrieve)
    retrieve.set_defaults(handler=retrieve_command)


def retrieve_command(args: argparse.Namespace) -> int:
    """``rerank retrieve``."""
    if not args.output and not args.trec:
        raise ConfigError("nothing to write: give -o CANDS.jsonl and/or --trec RUN.trec")
    from contextlib import ExitStack

    from ..outputs import Outputs
    from ..run_writer import RunFiles, open_writers

    retriever = make_first_stage(args)
    queries = first_stage_queries(args)
    k = positive_k(args.k)
    started = time.perf_counter()
    with Outputs("retrieve", {"-o": args.output, "--trec": args.trec}, retriever_inputs(args),
                 force=args.force, record=False), ExitStack() as stack:
        requests = asyncio.run(retriever.retrieve(queries, k))
        writers = open_writers(RunFiles(args.output, args.trec, args.tag), stack)
        for request in requests:
            for write in writers:
                write(request, None)
    loaded = getattr(retriever, "loaded_from_disk", None)
    index = "" if loaded is None else ("; index loaded from disk" if loaded else "; index built and saved")
    if not args.quiet:
        print(f"rerank: retrieved {len(requests)} queries with {args.retriever} in "
              f"{time.perf_counter() - started:.2f} s{index}", file=sys.stderr)
    return 0


def make_first_stage(args: argparse.Namespace):
    """The retriever the first-stage options name, over ``--corpus`` or ``--dataset``'s documents
    (checked: one or the other, with ``--queries`` or the dataset's queries); building its index
    shows progress as ``--quiet`` and ``--progress-interval`` say."""
    from ..retrieval import make_retriever, show_progress

    dataset = open_dataset(args)
    if dataset is None:
        missing = [flag for flag, value in (("--corpus", args.corpus), ("--queries", args.queries)) if value is None]
        if missing:
            raise ConfigError(f"give {' and '.join(missing)} FILE, or --dataset ID (an ir_datasets id)")
        return show_progress(make_retriever(args.retriever, corpus=args.corpus, index_dir=args.index_dir),
                             progress_options(args))
    given = [flag for flag, value in (("--corpus", args.corpus), ("--queries", args.queries)) if value is not None]
    if given:
        raise ConfigError(f"--dataset {dataset.id} gives the corpus and queries: drop {' and '.join(given)}")
    dataset.require("docs", "a first stage needs documents to retrieve")
    dataset.require("queries")
    return show_progress(make_retriever(args.retriever, corpus=dataset, index_dir=args.index_dir),
                         progress_options(args))


def first_stage_queries(args: argparse.Namespace):
    """The queries of a first stage: ``--dataset``'s, or those of the ``--queries`` file."""
    dataset = open_dataset(args)
    return dataset.query_list() if dataset is not None else read_query_file(args.queries)


def retriever_inputs(args: argparse.Namespace) -> dict:
    """The files a first stage reads: corpus, queries, and a run file (``run:FILE``)."""
    inputs = {"--corpus": args.corpus, "--queries": args.queries}
    for part in args.retriever.removeprefix("hybrid:").split("+"):
        if part.startswith("run:"):
            inputs[f"--retriever {part}"] = part[len("run:"):]
    return inputs


def read_query_file(path: str):
    """The queries of a ``--queries`` file."""
    from ..formats import read_queries
    from ..types import Query

    return [Query(qid=qid, text=text) for qid, text in read_queries(path).items()]


def positive_k(k: int) -> int:
    """``-k``, checked."""
    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    return k
