"""The option groups several commands share, and the one place they become a reranker config.

:func:`add_reranker_arguments` declares the model, vLLM, ranking and execution options of
``run``, ``pipeline`` and ``labels``; :func:`reranker_config` turns them into a
:class:`~rerank.reranker.RerankerConfig`. Options a strategy declares would be added here too.
"""

from __future__ import annotations

import argparse
import sys

from ..backends import backend_options
from ..strategies import STRATEGIES, strategy_options

RETRIEVER_HELP = ("first stage: bm25, dense, run:FILE (a TREC run over the corpus), hybrid (bm25+dense "
                  "fused) or hybrid:A+B (default: bm25)")


def add_skip_argument(parser: argparse.ArgumentParser) -> None:
    """``--skip-bad-lines``: report malformed input lines and go on."""
    parser.add_argument("--skip-bad-lines", action="store_true",
                        help="report a malformed input line or request on stderr and skip it, instead of stopping")
    parser.add_argument("--keep-duplicate-qids", action="store_true",
                        help="keep requests whose qid repeats an earlier one; the TREC run holds each qid's first result only")


def bad_line_reporter(args: argparse.Namespace):
    """With ``--skip-bad-lines``: what reports a skipped input line on stderr."""
    if not getattr(args, "skip_bad_lines", False):
        return None
    return lambda error: print(f"rerank: skipped: {error}", file=sys.stderr)


def add_input_arguments(parser: argparse.ArgumentParser, corpus_help: str, queries_help: str) -> None:
    """``--format``, ``--corpus`` and ``--queries`` of a candidates file (``run``, ``labels``)."""
    parser.add_argument("--format", choices=("auto", "rankllm", "rankgpt", "trec"), default="auto",
                        help="input format (default: detected from the content)")
    parser.add_argument("--corpus", help=corpus_help)
    parser.add_argument("--queries", help=queries_help)


def read_input(args: argparse.Namespace):
    """The requests of ``INPUT`` as the input options describe them, or of ``--dataset`` (its first
    stage, or the TREC run INPUT over its documents) (streamed; with ``--shard``,
    those of the slice; with ``--qids`` and ``--limit``, those of the trial)."""
    from ..formats import read_requests

    dataset = open_dataset(args)
    depth = DEFAULT_DEPTH if getattr(args, "depth", None) is None else args.depth
    requests = dataset.requests(args.input, depth=depth, on_bad_line=bad_line_reporter(args)) \
        if dataset is not None else read_requests(
            args.input, fmt=None if args.format == "auto" else args.format, corpus=args.corpus,
            queries=args.queries, on_bad_line=bad_line_reporter(args), keep_duplicate_qids=args.keep_duplicate_qids)
    return select_trial(args, select_shard(args, requests))


def add_trial_arguments(parser: argparse.ArgumentParser) -> None:
    """``--limit N`` and ``--qids QID,...|FILE``: a quick trial on a few queries (see :mod:`rerank.trials`)."""
    trial = parser.add_argument_group("quick trials")
    trial.add_argument("--limit", type=int, metavar="N", help="only the first N queries (after --qids and --shard)")
    trial.add_argument("--qids", metavar="QID,...|FILE",
                       help="only these queries: comma-separated qids, or a file of one qid a line (its first column)")


def select_trial(args: argparse.Namespace, items, qid_of=lambda request: request.query.qid):
    """The items (requests, queries, with ``qid_of``) that ``--qids`` and ``--limit`` keep; all without them."""
    from ..trials import QuerySelection

    selection = QuerySelection.parse(getattr(args, "limit", None), getattr(args, "qids", None))
    return selection.select(items, qid_of) if selection.active else items


def add_shard_argument(parser: argparse.ArgumentParser) -> None:
    """``--shard I/N``: only the I-th of N disjoint slices of the input (see :mod:`rerank.sharding`)."""
    parser.add_argument("--shard", metavar="I/N",
                        help="only the I-th of N disjoint slices of the input, by a stable hash of the qid "
                             "(one task of a SLURM array); join the slices' outputs with `rerank merge-runs`")


def shard_of(args: argparse.Namespace):
    """The :class:`~rerank.sharding.Shard` ``--shard`` names, or None for the whole input."""
    from ..sharding import Shard

    spec = getattr(args, "shard", None)
    return None if spec is None else Shard.parse(spec)


def select_shard(args: argparse.Namespace, items, qid_of=lambda request: request.query.qid):
    """The requests (or, with ``qid_of``, queries) of ``--shard``'s slice; all without it."""
    shard = shard_of(args)
    return items if shard is None else shard.select(items, qid_of)


def check_shard(args: argparse.Namespace, output: str) -> None:
    """Check ``--shard`` before any output is opened.

    Parameters
    ----------
    args : argparse.Namespace
        The command's options.
    output : str
        The run's first output, whose run record says which slice it holds (``--resume``).

    Raises
    ------
    ConfigError
        For a malformed ``--shard``, or ``--resume`` into outputs of another slice.
    """
    from ..sharding import check_resumed_shard

    shard = shard_of(args)
    if getattr(args, "resume", False):
        check_resumed_shard(output, shard)


def add_progress_interval(parser) -> None:
    """``--progress-interval SECONDS``: how often progress is written when stderr is not a terminal."""
    from ..progress import DEFAULT_INTERVAL

    parser.add_argument("--progress-interval", type=float, default=DEFAULT_INTERVAL, metavar="SECONDS",
                        help="when stderr is a file or pipe (a SLURM log), write a progress line every SECONDS "
                             f"(default: {DEFAULT_INTERVAL:g}); on a terminal a progress bar is drawn instead")


def progress_options(args: argparse.Namespace):
    """The :class:`~rerank.progress.ProgressOptions` of ``--quiet`` and ``--progress-interval``."""
    from ..errors import ConfigError
    from ..progress import DEFAULT_INTERVAL, ProgressOptions

    interval = getattr(args, "progress_interval", DEFAULT_INTERVAL)
    if not interval > 0:
        raise ConfigError(f"--progress-interval must be a positive number of seconds, got {interval:g}")
    return ProgressOptions(enabled=not getattr(args, "quiet", False), interval=interval)


def input_total(args: argparse.Namespace) -> int | None:
    """How many queries :func:`read_input` will give (``--shard``, ``--qids``, ``--limit`` applied),
    counted cheaply for the progress total; None when unknown."""
    from ..progress import count_queries
    from ..trials import QuerySelection

    if getattr(args, "input", None) is None or getattr(args, "quiet", False):  # nothing to count, or to show
        return None
    shard = shard_of(args)
    trial = QuerySelection.parse(getattr(args, "limit", None), getattr(args, "qids", None))
    def kept(qid: str) -> bool:
        return (shard is None or shard.holds(qid)) and (trial.qids is None or qid in trial.qids)

    keep = None if shard is None and trial.qids is None else kept
    return count_queries(args.input, None if args.format == "auto" else args.format, keep, trial.limit)


def shard_note(args: argparse.Namespace) -> dict:
    """The run record's note of ``--shard`` (``rerank merge-runs`` reads it): ``{"shard": "I/N"}``,
    or empty for the whole input."""
    shard = shard_of(args)
    return {} if shard is None else {"shard": str(shard)}


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--ray-address`` and ``--actors``: one process, or Ray (``run``, ``labels``)."""
    engine = parser.add_argument_group("engine")
    engine.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process (default); ray: a Ray Dataset reranked by a pool of actors, "
                             "each with its own reranker and call cache (needs rerank-llm[ray])")
    engine.add_argument("--ray-address", metavar="ADDRESS",
                        help="with --engine ray: the cluster to join (auto: the one running here; default: "
                             "start a local one)")
    engine.add_argument("--actors", type=int, default=2,
                        help="with --engine ray: actors, each running --concurrency calls (default: 2)")


def ray_options(args: argparse.Namespace):
    """The :class:`~rerank.distributed.RayOptions` of ``--engine ray`` (None for one process);
    Ray's absence is reported here, before any output is opened."""
    urls = args.base_url or []
    if args.engine != "ray":
        return None  # several --base-url without it: refused by reranker_config
    from ..distributed import RayOptions, require_ray

    require_ray()
    return RayOptions(actors=args.actors, address=args.ray_address, base_urls=tuple(urls))


def add_resume_argument(parser: argparse.ArgumentParser, what: str | None = None) -> None:
    """``--resume`` (finish a run whose outputs rerank wrote) and ``--force`` (replace them)."""
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help=what or "skip the queries the output already holds and append the rest (a torn "
                                       "last line from a killed run is dropped); only into outputs whose run "
                                       "record (OUT.summary.json) says rerank wrote them")
    existing.add_argument("--force", action="store_true",
                          help="replace existing outputs; without --force or --resume an existing output is an error")


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """``--batch``, ``--poll-interval`` and ``--print-batch-command``: the run through a batch API
    (see :mod:`rerank.batch`)."""
    batch = parser.add_argument_group("batch APIs")
    batch.add_argument("--batch", choices=("openai", "vllm"),
                       help="send each round of every query as one batch: openai (OpenAI's Batch API, half "
                            "price, hours) or vllm (files for `vllm run-batch`, run here); as many batches "
                            "as the strategy has rounds (sliding 9, full 1); resumable with --resume")
    batch.add_argument("--poll-interval", type=float, metavar="SECONDS",
                       help="seconds between looks at a running batch (default: 30 for openai, 1 for vllm)")
    batch.add_argument("--print-batch-command", action="store_true",
                       help="with --batch vllm: write the batch's input, print the `vllm run-batch` command "
                            "and stop; run it on a GPU machine, then rerun with --resume")


def add_output_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """``-o``, ``--trec`` and ``--tag``."""
    parser.add_argument("-o", "--output", required=required, metavar="OUT.jsonl",
                        help="requests with their candidates, rank_llm JSONL")
    parser.add_argument("--trec", metavar="OUT.trec", help="also write a TREC run (scores strictly decrease with rank)")
    parser.add_argument("--tag", default="rerank", help="run tag of the TREC run (default: rerank)")


def add_retriever_arguments(parser: argparse.ArgumentParser) -> None:
    """The first stage's options."""
    parser.add_argument("--corpus", help="BEIR corpus.jsonl, JSONL with id/text fields, or docid<TAB>text")
    parser.add_argument("--queries", help="qid<TAB>text or BEIR queries.jsonl")
    add_dataset_argument(parser, "the corpus and the queries, instead of --corpus and --queries")
    parser.add_argument("--retriever", default="bm25", help=RETRIEVER_HELP)
    parser.add_argument("-k", type=int, default=100, help="candidates per query (default: 100)")
    parser.add_argument("--index-dir", help="where indexes and embeddings are kept "
                                            "(default: $RERANK_INDEX_DIR or ~/.cache/rerank/indexes)")


def add_reranker_arguments(parser: argparse.ArgumentParser, labels: bool = False,
                           api_key_flag: str = "--api-key-env", batch_job: bool = True) -> None:
    """The reranker's options, shared by ``run``, ``pipeline``, ``serve`` and (without strategy
    and top-k, with more passes) ``labels``; ``serve`` names the LLM endpoint's key variable
    ``--llm-api-key-env`` (its own ``--api-key-env`` is the key clients send) and, not being a
    job that ends (``batch_job=False``), takes no summary, quiet or progress flags."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="model name for an endpoint, or a GGUF file for the embedded backend "
                                       "(default: the bundled SmolLM2-135M-Instruct, embedded)")
    model.add_argument("--backend", default="auto", help="auto (default), openai (any OpenAI-compatible "
                                                         "endpoint), llamacpp (embedded) or vllm (in-process, "
                                                         "--model is a model folder)")
    model.add_argument("--base-url", action="append", metavar="URL",
                       help="endpoint URL, e.g. http://127.0.0.1:8000/v1 (OpenAI when a model name is given "
                            "without it); the API key comes from $OPENAI_API_KEY. Repeat it with --engine ray: "
                            "actor i uses URL i mod count (round robin)")
    model.add_argument("--api-key-file", metavar="PATH", help="read the API key from this file instead of "
                                                              "$OPENAI_API_KEY (it is never printed)")
    model.add_argument(api_key_flag, dest="api_key_env", metavar="NAME",
                       help="read the LLM endpoint's API key from this environment variable "
                                                             "instead of $OPENAI_API_KEY, e.g. ANTHROPIC_API_KEY "
                                                             "(it must be set; never printed)")
    model.add_argument("--extra-body", metavar="JSON", help="a JSON object of provider-specific fields merged into "
                                                            "every request body, e.g. '{\"provider\": {\"sort\": "
                                                            "\"price\"}}' for OpenRouter (part of the cache key)")
    model.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                       help="an extra HTTP header of every request, e.g. OpenRouter's 'X-Title: my-run' (repeat "
                            "it; secret-looking values are never shown)")
    model.add_argument("--reasoning-model", action=argparse.BooleanOptionalAction, default=None,
                       help="the model reasons before it answers and refuses max_tokens and temperature "
                            "(default: by its name: OpenAI's o-series and gpt-5, Gemini 2.5 and later)")
    model.add_argument("--temperature", type=float, default=None,
                       help="sampling temperature (default: 0; after reasoning, the server's default)")
    model.add_argument("--max-tokens", type=int, help="answer token limit (default: 8 per passage + 32)")
    model.add_argument("--reasoning-budget", type=int, metavar="TOKENS",
                       help="let the model reason before it answers, in at most this many tokens on top "
                            "of the answer's (sent as max_completion_tokens; no constrained decoding)")
    model.add_argument("--reasoning-effort", choices=("minimal", "low", "medium", "high"),
                       help="reasoning_effort for APIs that take it (OpenAI's reasoning models); implies "
                            "reasoning (budget 2048 unless --reasoning-budget)")
    model.add_argument("--constrained", action=argparse.BooleanOptionalAction, default=None,
                       help="constrain answers to a ranking of the window's ids (default: on where the backend "
                            "supports it by default: llamacpp, vllm, and endpoints that list themselves as "
                            "vLLM, SGLang or llama.cpp servers; --constrained asks any endpoint)")
    model.add_argument("--timeout", type=float, default=120.0, help="deadline of one attempt in seconds: connect, headers and body (default: 120)")
    model.add_argument("--max-attempts", type=int, default=6, help="attempts per call on retryable errors (default: 6)")
    # Each backend declares its options once (vLLM's engine, llama.cpp's context and threads).
    engine = parser.add_argument_group("backend options")
    for option in backend_options().values():
        engine.add_argument(option.flag, default=None, metavar=_metavar(option),
                            help=f"{option.help}" + (f" (default: {option.default})" if option.default is not None else ""))
    ranking = parser.add_argument_group("ranking")
    if labels:
        ranking.add_argument("--variant", choices=("shrinking", "repeated"), default="shrinking",
                             help="shrinking: each pass fixes its top and ranks only the rest (the paper); "
                                  "repeated: full sliding passes over the whole list (the released code) "
                                  "(default: shrinking)")
    else:
        ranking.add_argument("--strategy", default="sliding",
                             help=f"{' | '.join(STRATEGIES)}, or module:Class for a strategy of your own "
                                  "(default: sliding)")
    # Each strategy declares its options once; its flags come from there.
    for option in strategy_options().values():
        # An option whose default depends on others (--step: half the window) says so in its help.
        default = "" if option.default is None else f" (default: {default_text(option)}" + (
            "; for labels: until the order is complete (shrinking), or enough for 100 candidates (repeated))"
            if option.name == "passes" and labels else ")")
        ranking.add_argument(option.flag, default=None, metavar=_metavar(option), help=option.help + default)
    ranking.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                         help="an option of the strategy by name (for a module:Class strategy's own)")
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
    if batch_job:
        execution.add_argument("--summary-json", metavar="PATH", help="also write the closing summary as JSON")
        execution.add_argument("--quiet", action="store_true", help="no progress and no summary")
        add_progress_interval(execution)
    execution.add_argument("--verbose", action="store_true", help="log every call and retry on stderr")



def default_text(option) -> str:
    """A strategy option's default for ``--help``: one value, or each strategy's where they differ
    (``--method``: allpair for pairwise, heapsort for setwise)."""
    from ..strategies import option_defaults

    defaults = option_defaults(option.name)
    if len(set(map(str, defaults.values()))) <= 1:
        return str(option.default)
    by_value: dict[str, list[str]] = {}
    for strategy, value in defaults.items():
        by_value.setdefault(str(value), []).append(strategy)
    return ", ".join(f"{value} for {' and '.join(names)}" for value, names in by_value.items())


def _metavar(option) -> str:
    """What a declared option's flag takes; its value is converted and checked when the config is
    built (one line naming the flag when it is wrong)."""
    if option.choices:
        return "{" + ",".join(map(str, option.choices)) + "}"
    return {bool: "true|false"}.get(option.type, option.type.__name__.upper())


def reranker_config(args: argparse.Namespace):
    """The :class:`~rerank.reranker.RerankerConfig` the reranker options describe (the strategy's
    own options, ``window``, ``step``, ``passes``, given flat beside the fields)."""
    from ..config import extra_body_from_json, headers_from_flags
    from ..errors import ConfigError
    from ..reranker import RerankerConfig

    if len(args.base_url or []) > 1 and getattr(args, "engine", "local") != "ray":
        raise ConfigError("several --base-url are spread over the actors of --engine ray; one process uses one")
    strategy = getattr(args, "strategy", "sliding")
    return RerankerConfig.from_dict(dict(
        model=args.model, backend=args.backend, base_url=args.base_url[0] if args.base_url else None,
        strategy=strategy, **strategy_values(args, strategy), top_k=getattr(args, "top_k", 100), prompt=args.prompt,
        max_passage_words=args.max_passage_words or None, context_size=args.context_size,
        concurrency=args.concurrency, cache=cache_path(args),
        temperature=args.temperature, max_tokens=args.max_tokens, constrained=args.constrained,
        reasoning_budget=args.reasoning_budget, reasoning_effort=args.reasoning_effort,
        api_key_file=args.api_key_file, timeout=args.timeout, max_attempts=args.max_attempts,
        api_key_env=args.api_key_env, extra_body=extra_body_from_json(args.extra_body),
        headers=headers_from_flags(args.header), reasoning_model=args.reasoning_model,
        **{name: getattr(args, name) for name in backend_options() if getattr(args, name, None) is not None}))


def strategy_values(args: argparse.Namespace, strategy: str) -> dict:
    """The strategy options given: their flags, and ``--option NAME=VALUE`` (checked against
    what ``strategy`` declares)."""
    from ..errors import ConfigError
    from ..options import declared
    from ..strategies import strategy_class

    values = {name: getattr(args, name) for name in strategy_options() if getattr(args, name, None) is not None}
    own = {option.name: option for option in declared(strategy_class(strategy))}
    for item in getattr(args, "option", None) or []:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in own:
            known = ", ".join(own) or "none"
            raise ConfigError(f"--option {item}: expected NAME=VALUE with a NAME that --strategy {strategy} "
                              f"declares ({known})")
        values[name] = own[name].convert(value, f"--option {name}")
    return values


def reranker_inputs(args: argparse.Namespace) -> dict:
    """The files the reranker options name: a prompt template file, an API key file."""
    from pathlib import Path

    prompt = args.prompt if args.prompt and Path(args.prompt).is_file() else None
    return {"--prompt": prompt, "--api-key-file": args.api_key_file}


def cache_path(args: argparse.Namespace) -> str | None:
    """The call cache the options name: ``--cache``, none with ``--no-cache``, else the default."""
    from ..paths import default_cache_path

    return None if args.no_cache else (args.cache or default_cache_path())


def add_plot_format_argument(parser: argparse.ArgumentParser) -> None:
    """``--plot-format png|pdf|svg``, for the commands that draw plots."""
    from ..evaluation.plots import PLOT_FORMATS

    parser.add_argument("--plot-format", choices=PLOT_FORMATS, default=PLOT_FORMATS[0],
                        help=f"the plots' file format (default: {PLOT_FORMATS[0]})")


def add_comparison_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of a comparison table, shared by ``compare`` and ``experiment``."""
    parser.add_argument("--metrics", nargs="+", metavar="METRIC",
                        help="ir_measures measures (any case; trec_eval's names such as ndcg_cut_10 too); the first "
                             "one gets the tests and wins/ties/losses (default: nDCG@10)")
    parser.add_argument("--format", choices=("terminal", "markdown", "csv", "latex"), default="terminal",
                        help="table format (default: terminal)")
    parser.add_argument("--price", nargs=2, type=float, metavar=("IN", "OUT"),
                        help="dollars per million prompt and completion tokens, for a price column")
    parser.add_argument("--plots", metavar="DIR", help="write plots there (needs matplotlib: rerank-llm[plots])")
    add_plot_format_argument(parser)
    parser.add_argument("--trials", type=int, default=10000, help="randomization test trials (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="randomization test seed (default: 0)")


#: Candidates a query from a dataset's own first stage without ``--depth``.
DEFAULT_DEPTH = 100


def add_dataset_argument(parser: argparse.ArgumentParser, what: str, depth: bool = False, container=None) -> None:
    """``--dataset ID``: an ir_datasets dataset gives ``what`` (see :mod:`rerank.formats.irds`);
    with ``depth``, also ``--depth K`` of its own first stage. ``container``: the group to add
    it to (e.g. one where it excludes ``--qrels``); default: an "ir_datasets" group."""
    group = container if container is not None else parser.add_argument_group("ir_datasets")
    group.add_argument("--dataset", metavar="ID",
                       help=f"an ir_datasets id (e.g. msmarco-passage/trec-dl-2019/judged, beir/scifact/test) giving "
                            f"{what}; documents are looked up by id; datasets of your own: $RERANK_DATASET_MODULES "
                            "(needs rerank-llm[datasets])")
    if depth:
        group.add_argument("--depth", type=int, metavar="K",
                           help="with --dataset and no INPUT: the first K candidates of each query from the "
                                "dataset's own first stage (scoreddocs), by score (default: 100)")


def open_dataset(args: argparse.Namespace):
    """The :class:`~rerank.formats.irds.IrDataset` ``--dataset`` names, or None without it."""
    dataset_id = getattr(args, "dataset", None)
    if dataset_id is None:
        return None
    from ..formats.irds import IrDataset

    return IrDataset(dataset_id)


def check_input(args: argparse.Namespace) -> dict:
    """Check ``INPUT``, ``--dataset`` and the input options before any output is opened.

    Parameters
    ----------
    args : argparse.Namespace
        The options of ``run`` or ``labels``.

    Returns
    -------
    dict
        The files they name, for the output checks (:class:`~rerank.outputs.Outputs`).

    Raises
    ------
    ConfigError
        For no INPUT and no ``--dataset``; ``--corpus`` or ``--queries`` beside ``--dataset``;
        an INPUT beside ``--dataset`` that is not a TREC run; an unknown dataset, or one without
        the documents, queries or (without INPUT) first stage the run needs.
    """
    from ..errors import ConfigError

    dataset = open_dataset(args)
    if dataset is None:
        if args.input is None:
            raise ConfigError("nothing to rerank: give INPUT (a candidates file) or --dataset ID (an ir_datasets id)")
        if args.depth is not None:
            raise ConfigError("--depth cuts the first stage of --dataset, and no --dataset is given")
        return {"INPUT": args.input, "--corpus": args.corpus, "--queries": args.queries}
    given = [flag for flag, value in (("--corpus", args.corpus), ("--queries", args.queries)) if value is not None]
    if given:
        raise ConfigError(f"--dataset {dataset.id} gives the documents and queries: drop {' and '.join(given)}")
    if args.input is not None:
        from ..formats import detect_format

        fmt = detect_format(args.input) if args.format == "auto" else args.format
        if fmt != "trec":
            raise ConfigError(f"with --dataset, INPUT is a TREC run over the dataset's documents; {args.input} is "
                              f"{fmt}, which holds its own texts (drop --dataset)")
        if args.depth is not None:
            raise ConfigError("--depth cuts the dataset's own first stage, and INPUT replaces it: drop --depth")
    dataset.require("docs", "it cannot give the passages to rerank")
    dataset.require("queries")
    if args.input is None:
        dataset.require("scoreddocs", "give a TREC run of your own first stage as INPUT, or use `rerank pipeline`")
    return {"INPUT": args.input}


def dataset_qrels(args: argparse.Namespace, required: bool = False) -> dict | None:
    """The qrels of ``--dataset``: qid -> docid -> grade.

    Parameters
    ----------
    args : argparse.Namespace
        The command's options.
    required : bool
        Whether the command needs them: then a dataset without qrels is an error; else it
        gives None.

    Returns
    -------
    dict or None
        The judgments; None without ``--dataset``, or for a dataset without qrels when not
        ``required``.

    Raises
    ------
    ConfigError
        When ``required`` and the dataset has no qrels.
    """
    dataset = open_dataset(args)
    if dataset is None or not (required or dataset.has("qrels")):
        return None
    return dataset.qrels()
