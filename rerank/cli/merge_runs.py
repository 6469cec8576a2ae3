"""``rerank merge-runs``: join the outputs of a sharded run (``--shard I/N``) in the input's order."""

from __future__ import annotations

import argparse
import sys

from .options import add_input_arguments, add_skip_argument


def add_merge_runs_command(commands) -> None:
    """Add ``rerank merge-runs``."""
    merge = commands.add_parser(
        "merge-runs", help="join the outputs of `--shard I/N` runs into one run",
        description="Join the JSONL outputs of the shards of a run (`rerank run`, `pipeline` or `labels` with "
                    "--shard I/N) into one JSONL, in the input's order with --input (else shard by shard), and "
                    "write its TREC run as `rerank run` does. The merge of all the slices is byte-identical to "
                    "the unsharded run. A qid in two shards, or a file rerank did not write, is an error; so is "
                    "anything missing (a slice not given, an unfinished shard, failed queries, --input queries "
                    "in no shard) unless --allow-missing.")
    merge.add_argument("shards", nargs="+", metavar="SHARD.jsonl", help="the shards' -o outputs")
    merge.add_argument("-o", "--output", required=True, metavar="OUT.jsonl", help="the merged JSONL")
    merge.add_argument("--trec", metavar="OUT.trec",
                       help="also write the merged TREC run (run and pipeline shards)")
    merge.add_argument("--tag", default="rerank", help="run tag of the TREC run, as the shards' --tag (default: rerank)")
    merge.add_argument("--input", metavar="INPUT",
                       help="the input the shards were cut from, for its order and to find queries in no shard: "
                            "INPUT of `rerank run` or `labels`, or --queries of `rerank pipeline`")
    add_input_arguments(merge, "corpus of a TREC run --input", "queries of a TREC run --input")
    add_skip_argument(merge)
    merge.add_argument("--allow-missing", action="store_true",
                       help="merge what the shards hold even when part of the input is missing; what is missing "
                            "is listed on stderr and in the run record (state failed)")
    merge.add_argument("--force", action="store_true",
                       help="replace existing outputs; without --force an existing output is an error")
    merge.set_defaults(handler=merge_runs_command, resume=False)


def merge_runs_command(args: argparse.Namespace) -> int:
    """``rerank merge-runs``."""
    from ..merging import merge_shards, merged_summary, read_shard_file
    from ..output_record import record_path
    from ..outputs import Outputs

    shards = [read_shard_file(path) for path in args.shards]
    inputs = {"--input": args.input, "--corpus": args.corpus, "--queries": args.queries}
    for number, shard in enumerate(shards, 1):
        inputs[f"shard {number}"] = shard.path
        inputs[f"run record of shard {number}"] = str(record_path(shard.path))
    with Outputs("merge-runs", {"-o": args.output, "--trec": args.trec}, inputs, force=args.force) as outputs:
        result = merge_shards(shards, args.output, args.trec, tag=args.tag, order=_input_order(args, shards),
                              allow_missing=args.allow_missing)
        outputs.finish(merged_summary(shards, result))
    for what in result.missing:
        print(f"rerank: warning: not merged: {what}", file=sys.stderr)
    print(f"merged {result.queries} queries from {len(shards)} shards into {args.output}"
          + (f" and {args.trec}" if args.trec else ""), file=sys.stderr)
    return 0


def _input_order(args: argparse.Namespace, shards):
    """The qids of ``--input`` in its order (streamed), or None without it."""
    from .options import read_input
    from .retrieve import read_query_file

    if args.input is None:
        return None
    if shards[0].command == "pipeline":
        return (query.qid for query in read_query_file(args.input))
    return (request.query.qid for request in read_input(args))
