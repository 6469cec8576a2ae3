"""``rerank simulate``: strategies against judges built from the qrels, before paying for a model."""

from __future__ import annotations

import argparse

from ..strategies import STRATEGIES, strategy_options
from .options import _metavar, add_plot_format_argument, default_text


def add_simulate_command(commands) -> None:
    """Add ``rerank simulate``."""
    simulate = commands.add_parser(
        "simulate", help="quality and cost of strategies with judges built from qrels, no LLM",
        description="Run each strategy over INPUT with judges that answer from the qrels (perfect, Gaussian "
                    "noise on the grades, position bias, identity), through the same runner and prompt builder "
                    "as a real run, and report per query: the measure (mean over seeds with a 95%% interval), "
                    "calls, rounds, and the prompt and answer tokens the strategy would spend.")
    simulate.add_argument("input", metavar="INPUT", help="candidates: rank_llm JSONL, RankGPT JSON or a TREC run "
                                                         "(with --corpus and --queries)")
    simulate.add_argument("--qrels", required=True, help="qrels file: qid 0|Q0 docid grade")
    simulate.add_argument("--strategy", nargs="+", required=True, metavar="NAME",
                          help=f"strategies to simulate: {' | '.join(STRATEGIES)} or module:Class, each "
                               "optionally with its own options as NAME:OPTION=VALUE,OPTION=VALUE "
                               "(e.g. pairwise:method=heapsort)")
    simulate.add_argument("--judge", nargs="+", default=["perfect"], metavar="JUDGE",
                          help="perfect, noise:SIGMA (Gaussian noise on the grades), bias:P (the first shown "
                               "passage first with probability P), identity (default: perfect)")
    simulate.add_argument("--seeds", type=int, default=5, help="runs of each random judge (default: 5)")
    simulate.add_argument("--metric", default="nDCG@10",
                          help="ir_measures measure, in any case, or trec_eval's name (default: nDCG@10)")
    simulate.add_argument("--format", choices=("terminal", "markdown", "csv"), default="terminal",
                          help="table format (default: terminal)")
    simulate.add_argument("--plots", metavar="DIR", help="write quality-vs-calls.png and quality-vs-rounds.png "
                                                         "there (needs matplotlib: rerank-llm[plots])")
    add_plot_format_argument(simulate)
    simulate.add_argument("--force", action="store_true", help="replace existing plot files in --plots DIR")
    source = simulate.add_argument_group("input")
    source.add_argument("--input-format", choices=("auto", "rankllm", "rankgpt", "trec"), default="auto",
                        help="input format (default: detected from the content)")
    source.add_argument("--corpus", help="passages of a TREC-run INPUT")
    source.add_argument("--queries", help="queries of a TREC-run INPUT")
    ranking = simulate.add_argument_group("ranking (as in rerank run)")
    ranking.add_argument("--model", default=None,
                         help="the model whose tokenizer counts prompt tokens (tiktoken's closest encoding; "
                              "default: cl100k_base)")
    ranking.add_argument("--top-k", type=int, default=100, help="rerank the first K candidates (default: 100)")
    ranking.add_argument("--prompt", default=None, help="prompt template name or YAML file (default: the strategy's)")
    ranking.add_argument("--max-passage-words", type=int, default=100,
                         help="cut passages to this many words; 0 keeps them whole (default: 100)")
    ranking.add_argument("--context-size", type=int, default=32768, help="model context in tokens (default: 32768)")
    for option in strategy_options().values():
        default = "" if option.default is None else f" (default: {default_text(option)})"
        ranking.add_argument(option.flag, default=None, metavar=_metavar(option),
                             help=f"{option.help}{default}; for every strategy that has it")
    simulate.set_defaults(handler=simulate_command)


def simulate_command(args: argparse.Namespace) -> int:
    """``rerank simulate``."""
    from pathlib import Path

    from ..evaluation.metrics import metric_name
    from ..formats import read_qrels, read_requests
    from ..outputs import Outputs
    from ..simulation import StrategySpec, parse_judge, simulate
    from ..simulation.report import format_simulation, plot_simulation
    from .evaluate import have_matplotlib

    args.metric = metric_name(args.metric)  # ndcg_cut_10 as nDCG@10; an unknown name is one line
    specs = [StrategySpec.parse(text) for text in args.strategy]
    judges = [parse_judge(text) for text in args.judge]
    settings = {"top_k": args.top_k, "prompt": args.prompt, "max_passage_words": args.max_passage_words or None,
                "context_size": args.context_size, "model": args.model,
                **{name: getattr(args, name) for name in strategy_options() if getattr(args, name, None) is not None}}
    requests = list(read_requests(args.input, fmt=None if args.input_format == "auto" else args.input_format,
                                  corpus=args.corpus, queries=args.queries))
    rows = simulate(requests, read_qrels(args.qrels), specs, judges, seeds=args.seeds, settings=settings,
                    metric=args.metric)
    if args.plots:
        if not have_matplotlib():
            from ..errors import ConfigError

            raise ConfigError("--plots needs matplotlib: pip install 'rerank-llm[plots]'")
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        files = {f"plot {cost}": Path(args.plots) / f"quality-vs-{cost}.{args.plot_format}"
                 for cost in ("calls", "rounds")}
        with Outputs("simulate", files, {"INPUT": args.input, "--qrels": args.qrels}, force=args.force, record=False):
            plot_simulation(rows, args.plots, args.plot_format)
    print(format_simulation(rows, args.format), end="")
    return 0
