"""The ``rerank`` command.

``rerank run`` reranks a file of requests; ``rerank retrieve`` runs a first stage alone;
``rerank pipeline`` retrieves then reranks; ``rerank eval`` scores a run; ``rerank demo`` shows
the whole path on a bundled sample with the embedded model. Heavy modules (openai, llama_cpp,
bm25s, ir_measures) are imported inside the subcommand that needs them, so ``rerank --help``
starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
import time
from collections import Counter
from contextlib import ExitStack
from typing import Sequence

from .cache_command import add_cache_command
from .errors import ConfigError, RerankError
from .evaluation.metrics import DEFAULT_METRICS

RETRIEVER_HELP = ("first stage: bm25, dense, run:FILE (a TREC run over the corpus), hybrid (bm25+dense "
                  "fused) or hybrid:A+B (default: bm25)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rerank`` command."""
    parser = argparse.ArgumentParser(
        prog="rerank", description="Rerank search results with LLMs (sliding window or full ranking).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run", help="rerank a file of queries and candidates with an LLM",
        description="Rerank INPUT (rank_llm JSONL, RankGPT JSON, or a TREC run with --corpus and "
                    "--queries; detected from the content) and write the reranked JSONL and TREC run.")
    run.add_argument("input", metavar="INPUT", help="candidates file")
    add_output_arguments(run, required=True)
    run.add_argument("--format", choices=("auto", "rankllm", "rankgpt", "trec"), default="auto",
                     help="input format (default: detected from the content)")
    run.add_argument("--corpus", help="corpus for a TREC run input: BEIR corpus.jsonl or docid<TAB>text")
    run.add_argument("--queries", help="queries for a TREC run input: qid<TAB>text or BEIR queries.jsonl")
    add_reranker_arguments(run)
    add_resume_argument(run)
    add_skip_argument(run)
    run.set_defaults(handler=_run_command)

    retrieve = commands.add_parser(
        "retrieve", help="run a first stage (BM25, dense, run file, hybrid) alone",
        description="Retrieve candidates for each query from a corpus; writes rank_llm JSONL that "
                    "`rerank run` takes, and/or a TREC run.")
    add_retriever_arguments(retrieve)
    add_output_arguments(retrieve, required=False)
    retrieve.add_argument("--force", action="store_true",
                          help="replace existing outputs (without it an existing output is an error)")
    retrieve.set_defaults(handler=_retrieve_command)

    pipeline = commands.add_parser(
        "pipeline", help="retrieve from a corpus, then rerank with an LLM",
        description="Retrieve candidates from a corpus for each query, then rerank them.")
    add_retriever_arguments(pipeline)
    add_output_arguments(pipeline, required=True)
    add_reranker_arguments(pipeline)
    add_resume_argument(pipeline)
    pipeline.set_defaults(handler=_pipeline_command)

    labels = commands.add_parser(
        "labels", help="complete listwise labels from a teacher, as training examples for full ranking",
        description="Rank every candidate of each request with a teacher over repeated sliding-window passes "
                    "and write training examples: the full-ranking prompt, the answer in label order and "
                    "the importance weight of each position (Liu et al., 2024).")
    labels.add_argument("input", metavar="INPUT", help="candidates file (as for `rerank run`)")
    labels.add_argument("-o", "--output", required=True, metavar="LABELS.jsonl",
                        help="one training example per line: qid, candidates, label, messages, target, weights")
    labels.add_argument("--sft", metavar="SFT.jsonl", help="also write chat-format SFT records (messages ending "
                                                           "with the assistant's answer)")
    labels.add_argument("--trec", metavar="LABELS.trec", help="also write the labels as a TREC run")
    labels.add_argument("--qrels", help="judgments: print Kendall tau and nDCG@10/@100 of the labels")
    labels.add_argument("--format", choices=("auto", "rankllm", "rankgpt", "trec"), default="auto",
                        help="input format (default: detected from the content)")
    labels.add_argument("--corpus", help="corpus for a TREC run input")
    labels.add_argument("--queries", help="queries for a TREC run input")
    add_reranker_arguments(labels, labels=True)
    add_resume_argument(labels)
    add_skip_argument(labels)
    labels.set_defaults(handler=_labels_command, tag="labels")

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
    experiment.set_defaults(handler=_experiment_command)

    compare = commands.add_parser(
        "compare", help="compare runs: metrics, paired significance, wins/ties/losses, cost",
        description="One row per run: the metrics; paired t-test and Fisher randomization test against the "
                    "baseline, Holm-corrected across runs (* p < 0.05, ** p < 0.01); wins/ties/losses per "
                    "query; and the cost columns of runs made by rerank (from X.summary.json beside X.trec).")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="TREC run files")
    compare.add_argument("--qrels", required=True, help="qrels file: qid 0|Q0 docid grade")
    compare.add_argument("--baseline", metavar="RUN", help="the run the others are tested against (default: the first)")
    add_comparison_arguments(compare)
    compare.add_argument("--force", action="store_true", help="replace existing plot files in --plots DIR")
    compare.set_defaults(handler=_compare_command)

    evaluate = commands.add_parser("eval", help="score a TREC run against qrels",
                                   description="Score a TREC run with ir_measures (trec_eval-identical numbers).")
    evaluate.add_argument("run", metavar="RUN", help="TREC run file")
    evaluate.add_argument("--qrels", required=True, help="qrels file: qid 0|Q0 docid grade")
    evaluate.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), metavar="METRIC",
                          help=f"ir_measures measures (default: {' '.join(DEFAULT_METRICS)})")
    evaluate.add_argument("--per-query", action="store_true", help="one row per query, then the mean")
    evaluate.set_defaults(handler=_eval_command)

    demo = commands.add_parser(
        "demo", help="BM25 then the embedded model on a bundled sample; no network, no arguments",
        description="Retrieve with BM25 from a small bundled corpus, rerank with the embedded llama.cpp "
                    "model, and print the first-stage and reranked top 5 side by side with nDCG@10.")
    demo.add_argument("--model", help="GGUF file (default: the bundled SmolLM2-135M-Instruct)")
    demo.set_defaults(handler=_demo_command)
    add_cache_command(commands)
    return parser


def add_skip_argument(parser: argparse.ArgumentParser) -> None:
    """``--skip-bad-lines``: report malformed input lines and go on."""
    parser.add_argument("--skip-bad-lines", action="store_true",
                        help="report a malformed input line or request on stderr and skip it, instead of stopping")
    parser.add_argument("--keep-duplicate-qids", action="store_true",
                        help="keep requests whose qid repeats an earlier one; the TREC run holds each qid's first result only")


def _bad_line_reporter(args: argparse.Namespace):
    if not getattr(args, "skip_bad_lines", False):
        return None
    return lambda error: print(f"rerank: skipped: {error}", file=sys.stderr)


def add_resume_argument(parser: argparse.ArgumentParser, what: str | None = None) -> None:
    """``--resume`` (finish a run whose outputs rerank wrote) and ``--force`` (replace them)."""
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help=what or "skip the queries the output already holds and append the rest (a torn "
                                       "last line from a killed run is dropped); only into outputs whose run "
                                       "record (OUT.summary.json) says rerank wrote them")
    existing.add_argument("--force", action="store_true",
                          help="replace existing outputs; without --force or --resume an existing output is an error")


def add_comparison_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of a comparison table, shared by ``compare`` and ``experiment``."""
    parser.add_argument("--metrics", nargs="+", metavar="METRIC", help="ir_measures measures; the first one gets "
                                                                       "the tests and wins/ties/losses (default: nDCG@10)")
    parser.add_argument("--format", choices=("terminal", "markdown", "csv", "latex"), default="terminal",
                        help="table format (default: terminal)")
    parser.add_argument("--price", nargs=2, type=float, metavar=("IN", "OUT"),
                        help="dollars per million prompt and completion tokens, for a price column")
    parser.add_argument("--plots", metavar="DIR", help="write PNG plots there (needs matplotlib: rerank[plots])")
    parser.add_argument("--trials", type=int, default=10000, help="randomization test trials (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="randomization test seed (default: 0)")


def add_output_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """``-o``, ``--trec`` and ``--tag``."""
    parser.add_argument("-o", "--output", required=required, metavar="OUT.jsonl",
                        help="requests with their candidates, rank_llm JSONL")
    parser.add_argument("--trec", metavar="OUT.trec", help="also write a TREC run (scores strictly decrease with rank)")
    parser.add_argument("--tag", default="rerank", help="run tag of the TREC run (default: rerank)")


def add_retriever_arguments(parser: argparse.ArgumentParser) -> None:
    """The first stage's options."""
    parser.add_argument("--corpus", required=True, help="BEIR corpus.jsonl, JSONL with id/text fields, or docid<TAB>text")
    parser.add_argument("--queries", required=True, help="qid<TAB>text or BEIR queries.jsonl")
    parser.add_argument("--retriever", default="bm25", help=RETRIEVER_HELP)
    parser.add_argument("-k", type=int, default=100, help="candidates per query (default: 100)")
    parser.add_argument("--index-dir", help="where indexes and embeddings are kept "
                                            "(default: $RERANK_INDEX_DIR or ~/.cache/rerank/indexes)")


def add_reranker_arguments(parser: argparse.ArgumentParser, labels: bool = False) -> None:
    """The reranker's options, shared by ``run``, ``pipeline`` and (without strategy and top-k,
    with more passes) ``labels``."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="model name for an endpoint, or a GGUF file for the embedded backend "
                                       "(default: the bundled SmolLM2-135M-Instruct, embedded)")
    model.add_argument("--backend", default="auto", help="auto (default), openai (any OpenAI-compatible "
                                                         "endpoint), llamacpp (embedded) or vllm (in-process, "
                                                         "--model is a model folder)")
    model.add_argument("--base-url", help="endpoint URL, e.g. http://127.0.0.1:8000/v1 (OpenAI when a model "
                                          "name is given without it); the API key comes from $OPENAI_API_KEY")
    model.add_argument("--api-key-file", metavar="PATH", help="read the API key from this file instead of "
                                                              "$OPENAI_API_KEY (it is never printed)")
    model.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default: 0)")
    model.add_argument("--max-tokens", type=int, help="answer token limit (default: 8 per passage + 32)")
    model.add_argument("--constrained", action=argparse.BooleanOptionalAction, default=None,
                       help="constrain answers to a ranking of the window's ids (default: on where the backend "
                            "supports it by default: llamacpp, vllm, and endpoints that list themselves as "
                            "vLLM, SGLang or llama.cpp servers; --constrained asks any endpoint)")
    model.add_argument("--timeout", type=float, default=120.0, help="deadline of one attempt in seconds: connect, headers and body (default: 120)")
    model.add_argument("--max-attempts", type=int, default=6, help="attempts per call on retryable errors (default: 6)")
    engine = parser.add_argument_group("vllm backend")
    engine.add_argument("--max-model-len", type=int, help="context length (default: the model's)")
    engine.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs to shard the model over (default: 1)")
    engine.add_argument("--gpu-memory-utilization", type=float, default=0.9,
                        help="share of GPU memory for weights and KV cache (default: 0.9)")
    engine.add_argument("--dtype", default="auto", help="auto (default), bfloat16, float16 or float32")
    ranking = parser.add_argument_group("ranking")
    if labels:
        ranking.add_argument("--variant", choices=("shrinking", "repeated"), default="shrinking",
                             help="shrinking: each pass fixes its top and ranks only the rest (the paper); "
                                  "repeated: full sliding passes over the whole list (the released code) "
                                  "(default: shrinking)")
    else:
        ranking.add_argument("--strategy", default="sliding",
                             help="sliding | full | shrinking | single-token (default: sliding)")
    ranking.add_argument("--window", type=int, default=20, help="passages per window, sliding (default: 20)")
    ranking.add_argument("--step", type=int, default=10, help="window step, sliding (default: 10)")
    ranking.add_argument("--passes", type=int, default=9 if labels else 1,
                         help=f"sliding passes (default: {9 if labels else 1})")
    if not labels:
        ranking.add_argument("--top-k", type=int, default=100, help="rerank the first K candidates; the rest keep their order beneath (default: 100)")
    ranking.add_argument("--prompt", default=None, help="prompt template name (rankgpt, rankzephyr, first) or path to a "
                         "YAML file (default: rankgpt; first for --strategy single-token)")
    ranking.add_argument("--max-passage-words", type=int, default=100, help="cut passages to this many words; 0 keeps them whole (default: 100)")
    ranking.add_argument("--context-size", type=int, default=32768, help="model context in tokens; longer prompts get shorter passages (default: 32768, or the embedded model's context if smaller)")
    execution = parser.add_argument_group("execution")
    execution.add_argument("--concurrency", type=int, default=16, help="LLM calls in flight at once (default: 16)")
    cache = execution.add_mutually_exclusive_group()
    cache.add_argument("--cache", metavar="PATH", help="call cache file (default: $RERANK_CACHE or ~/.cache/rerank/calls.sqlite)")
    cache.add_argument("--no-cache", action="store_true", help="do not read or write the call cache")
    execution.add_argument("--summary-json", metavar="PATH", help="also write the closing summary as JSON")
    execution.add_argument("--quiet", action="store_true", help="no progress line and no summary")
    execution.add_argument("--verbose", action="store_true", help="log every call and retry on stderr")


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


def reranker_config(args: argparse.Namespace):
    """The :class:`~rerank.reranker.RerankerConfig` the reranker options describe."""
    from .reranker import RerankerConfig

    return RerankerConfig(
        model=args.model, backend=args.backend, base_url=args.base_url,
        strategy=getattr(args, "strategy", "sliding"), window=args.window, step=args.step,
        passes=args.passes, top_k=getattr(args, "top_k", 100), prompt=args.prompt,
        max_passage_words=args.max_passage_words or None, context_size=args.context_size,
        concurrency=args.concurrency, cache=_cache_path(args),
        temperature=args.temperature, max_tokens=args.max_tokens, constrained=args.constrained,
        api_key_file=args.api_key_file,
        timeout=args.timeout, max_attempts=args.max_attempts, max_model_len=args.max_model_len,
        tensor_parallel_size=args.tensor_parallel_size, gpu_memory_utilization=args.gpu_memory_utilization,
        dtype=args.dtype)


def _run_command(args: argparse.Namespace) -> int:
    from .formats import read_requests
    from .reranker import Reranker
    from .resume import skip_finished

    reranker = Reranker(reranker_config(args))
    with _run_outputs(args, "run", {"INPUT": args.input, "--corpus": args.corpus, "--queries": args.queries}) as outputs:
        done = _finished(args)
        requests = read_requests(args.input, fmt=None if args.format == "auto" else args.format,
                                 corpus=args.corpus, queries=args.queries, on_bad_line=_bad_line_reporter(args),
                                 keep_duplicate_qids=args.keep_duplicate_qids)
        todo = skip_finished(requests, done)
        return asyncio.run(_write_results(args, reranker, lambda on_error: reranker.rerank_iter(todo, on_error=on_error),
                                          already=sum(done.values()), outputs=outputs))


def _pipeline_command(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    from .reranker import Reranker
    from .resume import skip_finished

    pipeline = Pipeline(_retriever(args), Reranker(reranker_config(args)), k=_positive_k(args.k))
    with _run_outputs(args, "pipeline", _retriever_inputs(args)) as outputs:
        done = _finished(args)
        queries = list(skip_finished(_read_queries(args.queries), done, lambda query: query.qid))
        return asyncio.run(_write_results(args, pipeline.reranker,
                                          lambda on_error: pipeline.run_iter(queries, on_error=on_error),
                                          already=sum(done.values()), outputs=outputs))


def _retrieve_command(args: argparse.Namespace) -> int:
    if not args.output and not args.trec:
        raise ConfigError("nothing to write: give -o CANDS.jsonl and/or --trec RUN.trec")
    from .outputs import Outputs

    retriever = _retriever(args)
    queries = _read_queries(args.queries)
    k = _positive_k(args.k)
    started = time.perf_counter()
    with Outputs("retrieve", {"-o": args.output, "--trec": args.trec}, _retriever_inputs(args),
                 force=args.force, record=False), ExitStack() as stack:
        requests = asyncio.run(retriever.retrieve(queries, k))
        writers = _open_writers(args, stack)
        for request in requests:
            for writer in writers:
                writer.write(request)
    loaded = getattr(retriever, "loaded_from_disk", None)
    index = "" if loaded is None else ("; index loaded from disk" if loaded else "; index built and saved")
    print(f"rerank: retrieved {len(requests)} queries with {args.retriever} in "
          f"{time.perf_counter() - started:.2f} s{index}", file=sys.stderr)
    return 0


def _retriever(args: argparse.Namespace):
    from .retrieval import make_retriever

    return make_retriever(args.retriever, corpus=args.corpus, index_dir=args.index_dir)


def _retriever_inputs(args: argparse.Namespace) -> dict:
    """The files a first stage reads: corpus, queries, and a run file (``run:FILE``)."""
    inputs = {"--corpus": args.corpus, "--queries": args.queries}
    for part in args.retriever.removeprefix("hybrid:").split("+"):
        if part.startswith("run:"):
            inputs[f"--retriever {part}"] = part[len("run:"):]
    return inputs


def _reranker_inputs(args: argparse.Namespace) -> dict:
    """The files the reranker options name: a prompt template file, an API key file."""
    from pathlib import Path

    prompt = args.prompt if args.prompt and Path(args.prompt).is_file() else None
    return {"--prompt": prompt, "--api-key-file": args.api_key_file}


def _cache_path(args: argparse.Namespace) -> str | None:
    from .paths import default_cache_path

    return None if args.no_cache else (args.cache or default_cache_path())


def _run_outputs(args: argparse.Namespace, command: str, inputs: dict):
    """The checked, locked outputs of a reranking run (see :mod:`rerank.outputs`)."""
    from .outputs import Outputs

    return Outputs(command, {"-o": args.output, "--trec": args.trec, "--summary-json": args.summary_json},
                   {**inputs, **_reranker_inputs(args)}, shared={"--cache": _cache_path(args)},
                   resume=args.resume, force=args.force)


def _finished(args: argparse.Namespace):
    """With ``--resume``: the queries the outputs hold, the outputs cut back to them."""
    from collections import Counter

    from .resume import finished_queries, keep_finished_trec

    if not args.resume:
        return Counter()
    done = finished_queries(args.output)
    keep_finished_trec(args.trec, done)
    return done


def _read_queries(path: str):
    from .formats import read_queries
    from .types import Query

    return [Query(qid, text) for qid, text in read_queries(path).items()]


def _positive_k(k: int) -> int:
    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    return k


def _open_writers(args: argparse.Namespace, stack: ExitStack) -> list:
    from .formats import RankLLMWriter, TrecRunWriter

    # The TREC run first: a JSONL line is the record that a query is finished (see rerank.resume).
    append = getattr(args, "resume", False)
    writers = []
    if args.trec:
        writers.append(stack.enter_context(TrecRunWriter(args.trec, tag=args.tag, append=append)))
    if args.output:
        writers.append(stack.enter_context(RankLLMWriter(args.output, append=append)))
    return writers


async def _write_results(args: argparse.Namespace, reranker, results, *, already: int, outputs) -> int:
    """Write results as they come (each line whole and flushed); report failures and interruptions.

    ``results(on_error)`` gives the async iterator of results; queries whose backend failed for
    good are reported to ``on_error`` and left out, so everything else is saved.
    """
    from .types import Usage

    usage = Usage()
    failures: list[tuple[str, str]] = []
    progress = Progress(enabled=not args.quiet and sys.stderr.isatty())
    entered = started = time.perf_counter()
    interrupted = False
    try:
        with ExitStack() as stack:
            writers = _open_writers(args, stack)  # an unwritable output is reported first
            await reranker.prepare()
            # The run's time starts when the endpoint is checked and the tokenizer loaded.
            started = time.perf_counter()
            async for result in results(lambda request, error: failures.append((request.query.qid, str(error)))):
                for writer in writers:
                    writer.write(result)
                usage.add_result(result)
                progress.update(usage, time.perf_counter() - started)
    except asyncio.CancelledError:  # Ctrl-C: what is finished is on disk
        interrupted = True
    finally:
        progress.close()
        await reranker.aclose()
    summary = {**usage.as_dict(), "wall_seconds": round(time.perf_counter() - started, 3),
               "startup_seconds": round(started - entered, 3), "already_done": already,
               "failed": [qid for qid, _ in failures],
               "state": "interrupted" if interrupted else "failed" if failures else "finished",
               "settings": public_settings(reranker.config)}
    outputs.finish(summary, copy_to=args.summary_json)
    if not args.quiet:
        print(format_summary(summary), file=sys.stderr)
    again = "run the same command with --resume to finish" + ("" if getattr(args, "resume", False) else " it")
    if interrupted:
        print(f"rerank: interrupted: {already + usage.queries} queries are in {args.output} "
              f"({usage.queries} this run); {again}", file=sys.stderr)
        return 130
    if failures:
        shown = ", ".join(qid for qid, _ in failures[:10]) + (" ..." if len(failures) > 10 else "")
        print(f"rerank: error: {len(failures)} queries failed and are not in the output ({shown}): "
              f"{failures[0][1]}; everything else is saved; {again}", file=sys.stderr)
        return 3
    return 0


class Progress:
    """A one-line progress display on stderr (only on a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._last = 0.0

    def update(self, usage, elapsed: float) -> None:
        """Redraw at most ten times a second."""
        if not self.enabled or elapsed - self._last < 0.1:
            return
        self._last = elapsed
        rate = usage.queries / elapsed if elapsed else 0.0
        sys.stderr.write(f"\r{usage.queries} queries, {usage.calls} calls "
                         f"({usage.cache_hits} cached), {elapsed:.1f} s, {rate:.1f} queries/s ")
        sys.stderr.flush()

    def close(self) -> None:
        """End the progress line."""
        if self.enabled and self._last:
            sys.stderr.write("\n")


def public_settings(config) -> dict:
    """A reranker's settings as a run summary shows them: no credentials in its URL."""
    from dataclasses import asdict

    from .secrets import public_url

    settings = asdict(config)
    if settings.get("base_url"):
        settings["base_url"] = public_url(settings["base_url"])
    return settings


def format_summary(summary: dict) -> str:
    """The closing summary of a run, as printed on stderr."""
    queries = summary["queries"] or 1
    return (
        f"rerank: {summary['queries']} queries in {summary['wall_seconds']:.2f} s: "
        f"{summary['calls']} LLM calls ({summary['calls'] / queries:.1f} per query, "
        f"{summary['rounds'] / queries:.1f} rounds), {summary['cache_hits']} from cache, "
        f"{summary['retries']} retries, {summary.get('context_retries', 0)} prompts shortened to fit\n"
        f"  tokens: {summary['prompt_tokens']:,} prompt ({summary['prompt_tokens'] / queries:,.0f} per query), "
        f"{summary['completion_tokens']:,} completion\n"
        f"  answers: {summary['parse_ok']} ok, {summary['parse_repaired']} repaired, "
        f"{summary['parse_unparseable']} unparseable")


def _labels_command(args: argparse.Namespace) -> int:
    from .formats import read_requests
    from .labels import teacher_config
    from .outputs import Outputs
    from .reranker import Reranker
    from .resume import finished_queries, keep_finished_trec, keep_lines, label_qid, skip_finished

    teacher = Reranker(teacher_config(reranker_config(args), args.variant))
    files = {"-o": args.output, "--sft": args.sft, "--trec": args.trec, "--summary-json": args.summary_json}
    inputs = {"INPUT": args.input, "--corpus": args.corpus, "--queries": args.queries, "--qrels": args.qrels,
              **_reranker_inputs(args)}
    with Outputs("labels", files, inputs, shared={"--cache": _cache_path(args)},
                 resume=args.resume, force=args.force) as outputs:
        done = finished_queries(args.output, label_qid) if args.resume else Counter()
        keep_lines(args.sft, sum(done.values()))
        keep_finished_trec(args.trec, done)
        requests = read_requests(args.input, fmt=None if args.format == "auto" else args.format,
                                 corpus=args.corpus, queries=args.queries, on_bad_line=_bad_line_reporter(args),
                                 keep_duplicate_qids=args.keep_duplicate_qids)
        return asyncio.run(_write_labels(args, teacher, skip_finished(requests, done), outputs))


async def _write_labels(args: argparse.Namespace, teacher, requests, outputs) -> int:
    from .evaluation import evaluate_run
    from .evaluation.correlation import label_tau
    from .formats import TrecRunWriter, read_qrels
    from .labels import make_labels, student_reranker
    from .types import Usage

    qrels = read_qrels(args.qrels) if args.qrels else None
    usage, taus, run = Usage(), [], {}
    started = time.perf_counter()
    interrupted = False
    mode = "a" if args.resume else "w"
    try:
        with ExitStack() as stack:
            # The side outputs first: a line of -o is the record that a query is finished.
            trec = stack.enter_context(TrecRunWriter(args.trec, tag=args.tag, append=args.resume)) if args.trec else None
            sft = stack.enter_context(open(args.sft, mode, encoding="utf-8")) if args.sft else None
            output = stack.enter_context(open(args.output, mode, encoding="utf-8"))
            await teacher.prepare()
            async for result, example in make_labels(teacher, student_reranker(teacher), requests):
                if trec:
                    trec.write(result)
                if sft:
                    sft.write(json.dumps(example.as_chat(), ensure_ascii=False) + "\n")
                    sft.flush()
                output.write(json.dumps(example.as_dict(), ensure_ascii=False) + "\n")
                output.flush()
                usage.add_result(result)
                if qrels is not None and result.query.qid in qrels:
                    taus.append(label_tau(example.label, qrels[result.query.qid]))
                    run[result.query.qid] = {c.docid: c.score for c in result.candidates}
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM: what is finished is on disk
        interrupted = True
    finally:
        await teacher.aclose()
    summary = {**usage.as_dict(), "wall_seconds": round(time.perf_counter() - started, 3),
               "state": "interrupted" if interrupted else "finished", "settings": public_settings(teacher.config)}
    if not args.quiet:
        print(format_summary(summary), file=sys.stderr)
    queries = usage.queries or 1
    print(f"labels ({args.variant}, window {args.window}, step {args.step}, up to {args.passes} passes): "
          f"{usage.calls / queries:.1f} calls, {usage.prompt_tokens / queries:,.0f} prompt and "
          f"{usage.completion_tokens / queries:,.0f} completion tokens per query", file=sys.stderr)
    defined = [tau for tau in taus if not math.isnan(tau)]
    summary["kendall_tau"] = sum(defined) / len(defined) if defined else None
    if run:
        scores = evaluate_run(run, qrels, ["nDCG@10", "nDCG@100"]).aggregate
        summary.update(ndcg_10=scores["nDCG@10"], ndcg_100=scores["nDCG@100"])
        print(f"label quality on {len(run)} judged queries: Kendall tau {summary['kendall_tau']:.4f}, "
              f"nDCG@10 {scores['nDCG@10']:.4f}, nDCG@100 {scores['nDCG@100']:.4f}", file=sys.stderr)
    outputs.finish(summary, copy_to=args.summary_json)
    if interrupted:
        print(f"rerank: interrupted: {usage.queries} queries labelled this run; run the same command with "
              "--resume to finish", file=sys.stderr)
        return 130
    return 0


def _compare_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    runs = list(args.runs)
    if args.baseline and args.baseline not in runs:
        runs.insert(0, args.baseline)
    stems = [Path(run).stem for run in runs]
    names = stems if len(set(stems)) == len(stems) else None  # full paths only when names clash
    metrics = args.metrics or ["nDCG@10"]
    rows = _compare_rows(args, runs, args.qrels, baseline=args.baseline or runs[0], names=names, metrics=metrics)
    if args.plots:
        from .outputs import Outputs

        Path(args.plots).mkdir(parents=True, exist_ok=True)
        inputs = {f"RUN {run}": run for run in runs} | {"--qrels": args.qrels}
        with Outputs("compare", _plot_files(rows, args.plots), inputs, force=args.force, record=False):
            _write_plots(rows, metrics[0], args.plots)
    print(format_comparison_table(rows, args.format, metrics))
    return 0


def _experiment_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .experiments import experiment_inputs, experiment_outputs, load_experiment, run_experiment
    from .outputs import Outputs

    experiment = load_experiment(args.file, results=args.results)
    metrics = args.metrics or list(experiment.metrics)
    plots = args.plots or str(experiment.results)
    names = ["first-stage", *(variant.name for variant in experiment.variants)]
    files = experiment_outputs(experiment)
    if _have_matplotlib():
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
        rows = _compare_rows(args, list(runs.values()), str(experiment.qrels), baseline=runs[experiment.baseline],
                             names=list(runs), metrics=metrics)
        for fmt, suffix in (("markdown", "md"), ("csv", "csv"), ("latex", "tex")):
            (experiment.results / f"comparison.{suffix}").write_text(
                format_comparison_table(rows, fmt, metrics) + "\n", encoding="utf-8")
        _write_plots(rows, metrics[0], plots)
        print(format_comparison_table(rows, "terminal", metrics))
        outputs.finish({"state": "finished", "experiment": experiment.name, "variants": list(runs)})
    print(f"\nresults, tables (comparison.md, .csv, .tex) and plots in {experiment.results}", file=sys.stderr)
    return 0


def _compare_rows(args: argparse.Namespace, runs: list[str], qrels: str, *, baseline: str, names, metrics):
    from .evaluation.compare import compare_runs

    return compare_runs(runs, qrels, baseline=baseline, metrics=metrics, names=names,
                        price_per_million=tuple(args.price) if args.price else None,
                        trials=args.trials, seed=args.seed)


def format_comparison_table(rows, fmt: str, metrics) -> str:
    """A comparison's rows as a table in ``fmt`` (terminal, markdown, csv, latex)."""
    from .evaluation.compare import format_comparison

    return format_comparison(rows, fmt=fmt, metrics=metrics)


def _have_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _plot_files(rows, folder: str) -> dict:
    """The PNG files :func:`_write_plots` draws for these rows."""
    from pathlib import Path

    files = {f"plot {row.name}": Path(folder) / f"per-query-{row.name}.png" for row in rows if not row.is_baseline}
    if any(row.costs for row in rows):
        files["plot quality-vs-cost"] = Path(folder) / "quality-vs-cost.png"
    return files


def _write_plots(rows, metric: str, folder: str) -> None:
    from pathlib import Path

    if not _have_matplotlib():
        print("rerank: no plots: matplotlib is not installed (pip install 'rerank[plots]')", file=sys.stderr)
        return
    from .evaluation.plots import plot_per_query_differences, plot_quality_vs_cost

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    baseline = next(row for row in rows if row.is_baseline)
    base = {qid: values[metric] for qid, values in baseline.per_query.items()}
    for row in rows:
        if not row.is_baseline:
            plot_per_query_differences(base, {qid: v[metric] for qid, v in row.per_query.items()},
                                       out / f"per-query-{row.name}.png", f"{row.name} vs {baseline.name}: {metric} per query")
    points = [(row.name, row.costs["prompt_tokens_per_query"], row.values[metric]) for row in rows if row.costs]
    if points:
        plot_quality_vs_cost(points, out / "quality-vs-cost.png")


def _eval_command(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    result = evaluate(args.run, args.qrels, args.metrics)
    metrics = list(result.metrics)
    if args.per_query:
        rows = [[qid] + [f"{result.per_query[qid].get(m, 0.0):.4f}" for m in metrics]
                for qid in sorted(result.per_query, key=_natural_key)]
        rows.append(["all"] + [f"{result.aggregate[m]:.4f}" for m in metrics])
        print(format_table(["qid"] + metrics, rows))
    else:
        print(format_table(["metric", "value"], [[m, f"{result.aggregate[m]:.4f}"] for m in metrics]))
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(model=args.model))


def _natural_key(qid: str):
    return (0, int(qid), "") if qid.isdigit() else (1, 0, qid)


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """An aligned plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
