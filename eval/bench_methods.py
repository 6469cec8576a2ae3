"""Every ranking method with a perfect judge on DL19 and DL20: real runs against the judges'
server beside ``rerank simulate``, and each method's cost against its definition.

For each collection and method this runs the reranker for real (HTTP calls to the oracle judge
server on 127.0.0.1, which recognises passages by their text; no cache) and simulated (the same
strategy and prompt builder, answered from the qrels in process), and prints nDCG@10, calls,
rounds and prompt tokens per query of both, whether they agree, and the method's targets:

- every method reaches nDCG@10 >= 0.885 on DL19 (upper bound 0.8922);
- tdpart: at most 0.75 x sliding's 9 calls per query on average, at most 4 rounds for most queries;
- tourrank r=2: 26 calls in 5 rounds; pairwise all pairs over the top 20: 380 calls in 1 round;
- setwise heapsort c=3, k=10: calls per query beside the paper's 125.4 (Flan-T5-large, DL19).

Where the two disagree it is the data, not the strategy: the server recognises a passage by its
text, so two candidates with the same text and different grades (one pair in DL20, query
1132532) look alike to it, while the simulation knows them by docid.

It also measures the position-bias claim: with a judge that puts the first passage shown first
half the time, pairwise sorting with both orders loses less nDCG@10 than with one order.

Usage: ``python eval/bench_methods.py [--collections dl19 dl20] [--queries N]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from rerank import Reranker  # noqa: E402
from rerank.evaluation import evaluate_run  # noqa: E402
from rerank.formats import read_qrels, read_requests  # noqa: E402
from rerank.simulation import StrategySpec, parse_judge, simulate  # noqa: E402
from rerank.testing import start_server  # noqa: E402

#: label -> (strategy spec, extra settings)
METHODS = {
    "sliding": ("sliding", {}),
    "full": ("full", {}),
    "tdpart": ("tdpart", {}),
    "setwise-heapsort": ("setwise", {}),
    "setwise-bubblesort": ("setwise:method=bubblesort", {}),
    "setwise-likelihood": ("setwise:scoring=likelihood", {}),
    "pairwise-allpair-top20": ("pairwise", {"top_k": 20}),
    "pairwise-heapsort": ("pairwise:method=heapsort", {}),
    "pairwise-bubblesort": ("pairwise:method=bubblesort", {}),
    "tourrank-r2": ("tourrank", {}),
    "jointrank": ("jointrank", {}),
    "pointwise": ("pointwise", {}),
    "single-token": ("single-token", {}),
    "reasonrank-sliding": ("sliding", {"prompt": "reasonrank", "reasoning_budget": 256}),
    "rearank-full": ("full", {"prompt": "rearank", "reasoning_budget": 256}),
}
#: Methods that need a model that reasons: answered by the reasoning judge (it thinks, then ranks).
REASONING = {"reasonrank-sliding", "rearank-full"}


async def real_run(spec: StrategySpec, settings: dict, base_url: str, requests):
    """The method run for real against the server."""
    async with Reranker(model="judge", base_url=base_url, strategy=spec.name, cache=None, concurrency=64,
                        **spec.options, **settings) as reranker:
        return await reranker.rerank_batch(requests)


def per_query(results, what) -> float:
    return sum(what(r) for r in results) / len(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", nargs="+", default=["dl19", "dl20"])
    parser.add_argument("--queries", type=int, default=None, help="the first N queries only")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    for collection in args.collections:
        folder = DATA / collection
        if not folder.is_dir():
            print(f"skipped {collection}: {folder} not found")
            continue
        requests = list(read_requests(folder / "bm25_top100.json"))[: args.queries]
        qrels = read_qrels(next(folder.glob("qrels.*")))
        print(f"\n{collection}: {len(requests)} queries, BM25 top 100, perfect judge")
        header = (f"{'method':24} {'nDCG@10':>8} {'sim':>8} {'calls/q':>8} {'sim':>8} {'rounds/q':>8} "
                  f"{'sim':>6} {'prompt tok/q':>12} {'agree':>5} {'rounds (queries)':>20} {'s':>6}")
        print(header)
        with start_server("oracle", data_dir=folder) as oracle, \
                start_server("reasoning", data_dir=folder) as thinking:
            for label in args.methods:
                text, settings = METHODS[label]
                server = thinking if label in REASONING else oracle
                spec = StrategySpec.parse(text)
                started = time.perf_counter()
                results = asyncio.run(real_run(spec, settings, server.base_url, requests))
                seconds = time.perf_counter() - started
                run = {r.query.qid: {c.docid: c.score for c in r.candidates} for r in results}
                ndcg = evaluate_run(run, qrels, ["nDCG@10"]).aggregate["nDCG@10"]
                calls = per_query(results, lambda r: len(r.calls))
                rounds = per_query(results, lambda r: r.rounds)
                prompt = per_query(results, lambda r: sum(c.prompt_tokens for c in r.calls))
                (row,) = simulate(requests, qrels, [spec], [parse_judge("perfect")],
                                  settings={"model": "judge", **settings})
                agree = (abs(row.mean - ndcg) < 1e-9 and abs(row.calls - calls) < 1e-9
                         and abs(row.rounds - rounds) < 1e-9 and abs(row.prompt_tokens - prompt) < 1e-6)
                depth = Counter(r.rounds for r in results)
                shown = " ".join(f"{k}:{v}" for k, v in sorted(depth.items())[:4])
                print(f"{label:24} {ndcg:8.4f} {row.mean:8.4f} {calls:8.1f} {row.calls:8.1f} {rounds:8.2f} "
                      f"{row.rounds:6.2f} {prompt:12,.0f} {'yes' if agree else 'NO':>5} {shown:>20} {seconds:6.1f}",
                      flush=True)
    bias_claim(DATA / "dl19")
    return 0


def bias_claim(folder: Path) -> None:
    """Pairwise with both orders against one order, under a judge biased to the first shown."""
    if not folder.is_dir():
        return
    requests = list(read_requests(folder / "bm25_top100.json"))
    qrels = read_qrels(next(folder.glob("qrels.*")))
    specs = [StrategySpec.parse(text) for text in (
        "pairwise", "pairwise:both_orders=false", "pairwise:method=heapsort",
        "pairwise:method=heapsort,both_orders=false", "pairwise:method=bubblesort",
        "pairwise:method=bubblesort,both_orders=false")]
    print("\nDL19, simulated judge preferring the first passage shown half the time (bias:0.5), 5 seeds, top 20")
    for row in simulate(requests, qrels, specs, [parse_judge("perfect"), parse_judge("bias:0.5")], seeds=5,
                        settings={"top_k": 20}):
        print(f"{row.strategy:45} {row.judge:9} nDCG@10 {row.mean:.4f} ± {row.interval:.4f}  calls/q {row.calls:7.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
