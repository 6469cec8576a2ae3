"""``rerank labels``: complete listwise labels from a teacher, as training examples."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys

from .dry_run import add_dry_run_arguments, check_dry_run, labels_dry_run
from .options import (add_dataset_argument, add_engine_arguments, add_input_arguments, add_reranker_arguments,
                      add_resume_argument, add_shard_argument, add_skip_argument, add_trial_arguments, cache_path,
                      check_input, check_shard, dataset_qrels, input_total, progress_options, ray_options,
                      read_input, reranker_config, reranker_inputs, shard_note)


def add_labels_command(commands) -> None:
    """Add ``rerank labels``."""
    labels = commands.add_parser(
        "labels", help="complete listwise labels from a teacher, as training examples for full ranking",
        description="Rank every candidate of each request with a teacher over repeated sliding-window passes "
                    "and write training examples: the full-ranking prompt, the answer in label order and "
                    "the importance weight of each position (Liu et al., 2024).")
    labels.add_argument("input", metavar="INPUT", nargs="?",
                        help="candidates file (as for `rerank run`; with --dataset, a TREC run or none)")
    labels.add_argument("-o", "--output", required=True, metavar="LABELS.jsonl",
                        help="one training example per line: qid, candidates, label, messages, target, weights")
    labels.add_argument("--sft", metavar="SFT.jsonl", help="also write chat-format SFT records (messages ending "
                                                           "with the assistant's answer)")
    labels.add_argument("--trec", metavar="LABELS.trec", help="also write the labels as a TREC run")
    labels.add_argument("--qrels", help="judgments: print Kendall tau and nDCG@10/@100 of the labels "
                                        "(default: --dataset's qrels, where it has them)")
    add_input_arguments(labels, "corpus for a TREC run input", "queries for a TREC run input")
    add_dataset_argument(labels, "the candidates (its first stage) or the texts of a TREC run INPUT, and its qrels",
                         depth=True)
    add_reranker_arguments(labels, labels=True)
    add_resume_argument(labels)
    add_shard_argument(labels)
    add_trial_arguments(labels)
    add_skip_argument(labels)
    add_engine_arguments(labels)
    add_dry_run_arguments(labels)
    labels.set_defaults(handler=labels_command, tag="labels")


def labels_command(args: argparse.Namespace) -> int:
    """``rerank labels``."""
    from collections import Counter

    from ..labels import teacher_config
    from ..outputs import Outputs
    from ..reranker import Reranker
    from ..resume import finished_queries, keep_finished_trec, keep_lines, label_qid, skip_finished

    if check_dry_run(args):
        check_input(args)
        return labels_dry_run(args)
    teacher = Reranker(teacher_config(reranker_config(args), args.variant))
    engine = ray_options(args)
    files = {"-o": args.output, "--sft": args.sft, "--trec": args.trec, "--summary-json": args.summary_json}
    inputs = {**check_input(args), "--qrels": args.qrels, **reranker_inputs(args)}
    check_shard(args, args.output)
    with Outputs("labels", files, inputs, shared={"--cache": cache_path(args)},
                 resume=args.resume, force=args.force, create_later=True) as outputs:
        done = finished_queries(args.output, label_qid) if args.resume else Counter()
        keep_lines(args.sft, sum(done.values()))
        keep_finished_trec(args.trec, done)
        requests = skip_finished(read_input(args), done)
        return asyncio.run(_write_labels(args, teacher, requests, outputs, already=sum(done.values()), engine=engine,
                                         total=input_total(args)))


async def _write_labels(args: argparse.Namespace, teacher, requests, outputs, *, already: int, engine=None,
                        total: int | None = None) -> int:
    """Label the requests into the outputs (see :func:`rerank.run_writer.write_run`), print the
    closing summary and label quality, and give the exit code as ``rerank run`` does (3 when
    queries failed for good: they are listed, the rest is saved)."""
    from ..evaluation import evaluate_run
    from ..evaluation.correlation import label_tau
    from ..formats import read_qrels
    from ..labels import UNTIL_COMPLETE, make_labels, student_reranker
    from ..run_writer import RunFiles, run_outcome, write_run

    qrels = read_qrels(args.qrels) if args.qrels else dataset_qrels(args)
    taus, run = [], {}

    def judge_label(qid: str, label: list[str]) -> None:
        if qrels is not None and qid in qrels:
            taus.append(label_tau(label, qrels[qid]))
            run[qid] = {docid: float(len(label) - rank) for rank, docid in enumerate(label)}

    def judge(result, example) -> None:
        judge_label(result.query.qid, example.label)

    if qrels is not None and already:  # the quality covers the labels a resumed run already holds
        for qid, label in finished_labels(args.output):
            judge_label(qid, label)

    def quality() -> dict:
        defined = [tau for tau in taus if not math.isnan(tau)]
        found = {"kendall_tau": sum(defined) / len(defined) if defined else None, **shard_note(args)}
        if run:
            scores = evaluate_run(run, qrels, ["nDCG@10", "nDCG@100"]).aggregate
            found.update(ndcg_10=scores["nDCG@10"], ndcg_100=scores["nDCG@100"])
        return found

    files = RunFiles(args.output, args.trec, args.tag, sft=args.sft, examples=True, append=args.resume)
    runner, results = teacher, lambda on_error: make_labels(teacher, student_reranker(teacher), requests,
                                                            on_error=on_error)
    if engine is not None:
        from ..distributed import ray_engine

        runner, results = ray_engine(teacher, requests, engine, labels=True, report=not args.quiet)
    summary = await write_run(runner, results,
                              files, outputs, already=already, copy_to=args.summary_json, report=not args.quiet,
                              progress=progress_options(args), total=total, on_result=judge, extra=quality)
    if not args.quiet:
        queries = summary.queries or 1
        used = teacher.settings()
        passes = "passes until complete" if used["passes"] >= UNTIL_COMPLETE else f"up to {used['passes']} passes"
        print(f"labels ({args.variant}, window {used['window']}, step {used['step']}, {passes}): "
              f"{summary.calls / queries:.1f} calls, {summary.prompt_tokens / queries:,.0f} prompt and "
              f"{summary.completion_tokens / queries:,.0f} completion tokens per query", file=sys.stderr)
        if run:
            found = summary.extra
            print(f"label quality on {len(run)} judged queries: Kendall tau {found['kendall_tau']:.4f}, "
                  f"nDCG@10 {found['ndcg_10']:.4f}, nDCG@100 {found['ndcg_100']:.4f}", file=sys.stderr)
    return run_outcome(summary, args.output, already=already, resumed=args.resume)


def finished_labels(path: str):
    """``(qid, label)`` of each line a labels output already holds (``--resume``; the file was
    checked and cut back to whole lines by :func:`rerank.resume.finished_queries`)."""
    import json

    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                yield str(record["qid"]), list(record["label"])
