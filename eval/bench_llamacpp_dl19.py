"""SmolLM2-135M (embedded llama.cpp, grammar-constrained) on the first DL19 queries.

Reranks BM25's top 100 of the first ``--queries`` DL19 queries with the sliding window (20/10,
9 windows a query) and prints: windows whose answer was unparseable / repaired / ok, nDCG@10 of
the reranking against BM25's on the same queries, and seconds per window. A tiny model ranks
badly: this proves the plumbing (a parseable permutation from every window), not quality.

Usage: ``python eval/bench_llamacpp_dl19.py [--queries 5] [--no-constrained]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from rerank import Reranker, read_qrels, read_requests
from rerank.evaluation import evaluate_run

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--constrained", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--model", help="GGUF file (default: bundled SmolLM2-135M-Instruct)")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found")
        return
    requests = []
    for request in read_requests(DATA / "bm25_top100.json"):
        requests.append(request)
        if len(requests) == args.queries:
            break
    qrels = read_qrels(DATA / "qrels.dl19-passage.txt")
    reranker = Reranker(model=args.model, backend="llamacpp", cache=None, constrained=args.constrained)
    started = time.perf_counter()
    results = [await reranker.rerank(request) for request in requests]  # one at a time: one model
    wall = time.perf_counter() - started
    await reranker.aclose()
    calls = [call for result in results for call in result.calls]
    statuses = {status: sum(call.parse_status == status for call in calls) for status in ("ok", "repaired", "unparseable")}
    bm25 = evaluate_run({r.query.qid: {c.docid: -i for i, c in enumerate(r.candidates)} for r in requests}, qrels, ["nDCG@10"])
    reranked = evaluate_run({r.query.qid: {c.docid: c.score for c in r.candidates} for r in results}, qrels, ["nDCG@10"])
    print(f"model: {reranker.backend.model}, constrained decoding: {reranker.constrained}")
    print(f"queries: {len(results)}, windows: {len(calls)} (9 per query expected)")
    print(f"answers: {statuses['ok']} ok, {statuses['repaired']} repaired, {statuses['unparseable']} unparseable "
          f"(target: 0 unparseable)")
    print(f"nDCG@10 on these queries: BM25 {bm25.aggregate['nDCG@10']:.4f}, reranked {reranked.aggregate['nDCG@10']:.4f}")
    print(f"seconds per window: {wall / max(len(calls), 1):.2f} (prompt tokens per window: "
          f"{sum(c.prompt_tokens for c in calls) / max(len(calls), 1):.0f}, completion tokens: "
          f"{sum(c.completion_tokens for c in calls) / max(len(calls), 1):.0f})")


if __name__ == "__main__":
    asyncio.run(main())
