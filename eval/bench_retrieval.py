"""First-stage retrieval on SciFact: BM25 index build vs reload, and nDCG@10 of each retriever.

Prints, for BM25, the wall time of a first run (read, tokenize, index and save the corpus, then
retrieve the test queries) and of a second run with a fresh retriever (load the saved index,
then retrieve), and their ratio (target: the second under a third of the first); then the
nDCG@10 of BM25, dense (all-MiniLM-L6-v2; encoding the corpus takes minutes on a CPU) and their
reciprocal-rank fusion. The BM25 index always goes to a fresh temporary folder; the dense
embeddings too, unless ``--dense-index-dir`` names a folder to keep them in (a second run then
skips the encoding). Skips cleanly when the data or an optional dependency is missing.

Usage: ``python eval/bench_retrieval.py [--data ../shared/data/scifact]
[--dense-index-dir DIR] [--k 100] [--no-dense]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from rerank.errors import ConfigError
from rerank.evaluation import evaluate
from rerank.formats import TrecRunWriter, read_queries
from rerank.retrieval import BM25Retriever, DenseRetriever, FusionRetriever, Retriever
from rerank.types import Query, Request

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "scifact"
TARGET_RATIO = 1 / 3


def ndcg10(requests: list[Request], data: Path, folder: Path, name: str) -> float:
    """nDCG@10 of requests against the test qrels (the run is written under ``folder``)."""
    path = folder / f"{name}.run"
    with TrecRunWriter(path, tag=name) as writer:
        for request in requests:
            writer.write(request)
    return evaluate(str(path), str(data / "qrels.test.txt"), ["nDCG@10"]).aggregate["nDCG@10"]


async def timed(retriever: Retriever, queries: list[Query], k: int) -> tuple[list[Request], float]:
    """The requests of a retrieval and its wall time in seconds."""
    start = time.perf_counter()
    requests = await retriever.retrieve(queries, k)
    return requests, time.perf_counter() - start


async def bench(data: Path, scratch: Path, dense_index_dir: Path | None, k: int,
                dense: bool) -> None:
    """Run the measures and print them."""
    corpus = data / "corpus.jsonl"
    queries = [Query(qid=qid, text=text) for qid, text in read_queries(data / "queries.test.tsv").items()]
    index_dir = scratch / "indexes"
    print(f"SciFact: {len(queries)} test queries, k={k}")

    first = BM25Retriever(corpus, index_dir=index_dir)
    requests, build = await timed(first, queries, k)
    second = BM25Retriever(corpus, index_dir=index_dir)
    reloaded, load = await timed(second, queries, k)
    print(f"bm25 first run  ({'built' if first.built else 'loaded'}): {build:7.2f} s")
    print(f"bm25 second run ({'loaded' if second.loaded_from_disk else 'built'}): {load:7.2f} s")
    verdict = "ok" if load < TARGET_RATIO * build else "ABOVE TARGET"
    print(f"second / first: {load / build:.3f} (target < {TARGET_RATIO:.3f}: {verdict})")
    same = [[c.docid for c in r.candidates] for r in reloaded] == \
        [[c.docid for c in r.candidates] for r in requests]
    print(f"reloaded index gives identical rankings: {same}")
    cli_times = [cli_wall(data, scratch / "cli-index", run) for run in range(2)]
    print(f"`rerank retrieve` wall time, start-up included: first {cli_times[0]:.2f} s, second "
          f"{cli_times[1]:.2f} s, ratio {cli_times[1] / cli_times[0]:.3f} (target < {TARGET_RATIO:.3f})")
    print(f"nDCG@10 bm25   {ndcg10(requests, data, scratch, 'bm25'):.4f}")
    if not dense:
        return
    try:
        retriever = DenseRetriever(corpus, index_dir=dense_index_dir or index_dir)
    except ConfigError as error:
        print(f"dense skipped: {error}")
        return
    dense_requests, seconds = await timed(retriever, queries, k)
    how = "encoded the corpus" if retriever.built else "loaded the embeddings"
    print(f"dense run ({how}): {seconds:7.2f} s")
    print(f"nDCG@10 dense  {ndcg10(dense_requests, data, scratch, 'dense'):.4f}")
    hybrid, seconds = await timed(FusionRetriever(second, retriever), queries, k)
    print(f"hybrid run (both indexes in memory): {seconds:7.2f} s")
    print(f"nDCG@10 hybrid {ndcg10(hybrid, data, scratch, 'hybrid'):.4f}")


def cli_wall(data: Path, index_dir: Path, run: int) -> float:
    """Wall time of one `rerank retrieve` process over SciFact, as a user sees it."""
    import subprocess
    import sys

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rerank", "retrieve", "--corpus", str(data / "corpus.jsonl"),
                    "--queries", str(data / "queries.test.tsv"), "-k", "100", "--index-dir", str(index_dir),
                    "--trec", str(index_dir.parent / f"cli-{run}.trec")], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    """Parse the arguments, run the benchmark, return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SciFact folder")
    parser.add_argument("--dense-index-dir", type=Path, default=None,
                        help="index root for the dense embeddings, kept between runs"
                             " (default: a temporary folder)")
    parser.add_argument("--k", type=int, default=100, help="candidates per query")
    parser.add_argument("--no-dense", action="store_true", help="BM25 only")
    args = parser.parse_args()
    if not (args.data / "corpus.jsonl").is_file():
        print(f"skipped: {args.data} not found (the evaluation data lives beside the project)")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as scratch:
        try:
            asyncio.run(bench(args.data, Path(scratch), args.dense_index_dir, args.k,
                              not args.no_dense))
        except ConfigError as error:  # BM25's dependencies are missing
            print(f"skipped: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
