"""``rerank demo``: BM25 then the embedded model on a small bundled collection.

The sample (``corpus.jsonl``, ``queries.tsv``, ``qrels.txt`` beside this file) is ours: 48 short
passages on six topics, with lexical traps (a spelling bee, cloud computing, a press conference)
that keyword matching falls for, 8 queries and graded judgments.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..paths import default_cache_path

SAMPLE_DIR = Path(__file__).resolve().parent
DEMO_TOP_K = 10  # one window of 10 per query: about 1,300 prompt tokens, a few seconds on a laptop CPU
SHOWN = 5


def _short(title: str | None, docid: str, grade: int | None, width: int) -> str:
    label = f"{docid} {title or ''}"
    mark = "-" if grade is None else str(grade)
    text = label if len(label) <= width - 4 else label[: width - 7] + "..."
    return f"[{mark}] {text}".ljust(width)


async def run_demo(model: str | None = None, out=sys.stdout) -> int:
    """Retrieve with BM25, rerank with the embedded model, print both top 5s and nDCG@10.

    Parameters
    ----------
    model : str or None
        A GGUF file; None for the bundled SmolLM2-135M-Instruct.
    out : file
        Where to print.
    """
    from ..evaluation import evaluate_run
    from ..formats import read_qrels, read_queries
    from ..reranker import Reranker
    from ..retrieval import BM25Retriever
    from ..types import Query

    queries = [Query(qid=qid, text=text) for qid, text in read_queries(SAMPLE_DIR / "queries.tsv").items()]
    qrels = read_qrels(SAMPLE_DIR / "qrels.txt")
    reranker = Reranker(model=model, backend="llamacpp", top_k=DEMO_TOP_K, cache=default_cache_path())
    print(f"rerank demo: {len(queries)} queries over a bundled corpus of 48 passages; BM25 top {DEMO_TOP_K} "
          f"reranked by {reranker.backend.model} (llama.cpp, grammar-constrained)\n", file=out)
    started = time.perf_counter()
    requests = await BM25Retriever(str(SAMPLE_DIR / "corpus.jsonl")).retrieve(queries, DEMO_TOP_K)
    first_stage = {r.query.qid: {c.docid: float(DEMO_TOP_K - i) for i, c in enumerate(r.candidates)}
                   for r in requests}
    reranked = {}
    width = 38
    async for result in reranker.rerank_iter(requests):
        request = next(r for r in requests if r.query.qid == result.query.qid)
        reranked[result.query.qid] = {c.docid: c.score for c in result.candidates}
        grades = qrels.get(result.query.qid, {})
        print(f"{result.query.qid}: {result.query.text}", file=out)
        print(f"  {'BM25'.ljust(width)}  reranked", file=out)
        for rank in range(min(SHOWN, len(result.candidates))):
            left, right = request.candidates[rank], result.candidates[rank]
            print(f"  {_short(left.title, left.docid, grades.get(left.docid), width)}  "
                  f"{_short(right.title, right.docid, grades.get(right.docid), width)}", file=out)
        calls = result.usage
        print(f"  ({calls.calls} call, {calls.prompt_tokens} prompt tokens, "
              f"{calls.cache_hits} from cache, answers: {calls.parse_ok} ok, {calls.parse_repaired} repaired, "
              f"{calls.parse_unparseable} unparseable)\n", file=out)
    await reranker.aclose()
    before = evaluate_run(first_stage, qrels, ["nDCG@10"])
    after = evaluate_run(reranked, qrels, ["nDCG@10"])
    print("nDCG@10 per query   " + "  ".join(f"{q.qid}" .rjust(5) for q in queries), file=out)
    for name, scores in (("BM25", before), ("reranked", after)):
        row = "  ".join(f"{scores.per_query.get(q.qid, {}).get('nDCG@10', 0.0):5.2f}" for q in queries)
        print(f"  {name.ljust(18)}{row}   mean {scores.aggregate['nDCG@10']:.4f}", file=out)
    print(f"\n[2] answers the query, [1] related, [0] judged not relevant. {time.perf_counter() - started:.1f} s.\n"
          "SmolLM2-135M is a tiny model: it shows the plumbing (retrieval, prompts, constrained decoding,\n"
          "caching, evaluation), not reranking quality. Point --model at a larger GGUF, or `rerank run\n"
          "--base-url` at a served model, for real gains.", file=out)
    return 0
