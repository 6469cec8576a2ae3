"""``rerank demo``: BM25, then the embedded model and the perfect judge, on a small bundled collection.

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


async def run_demo(model: str | None = None, out=sys.stdout, llm=None) -> int:
    """Retrieve with BM25, rerank with the embedded model and with the perfect judge, print the
    three top 5s side by side (with what moved), the nDCG@10 of each, and a legend of the marks.

    The perfect judge (:class:`~rerank.testing.backend.JudgeBackend`, in process) ranks from the
    sample's own qrels: no model, the upper bound of reranking these top 10s, shown so that a
    real gain is seen beside the tiny model's plumbing.

    Parameters
    ----------
    model : str or None
        A GGUF file; None for the bundled SmolLM2-135M-Instruct.
    out : file
        Where to print.
    llm : Backend or None
        Another backend in place of the embedded model (tests).
    """
    from ..evaluation import evaluate_run
    from ..formats import read_qrels, read_queries
    from ..reranker import Reranker
    from ..retrieval import BM25Retriever
    from ..testing.backend import JudgeBackend
    from ..testing.dataset import Dataset
    from ..types import Query
    from .display import COLUMN, LEGEND, Ranking, moved_note, query_block, score_table

    queries = [Query(qid=qid, text=text) for qid, text in read_queries(SAMPLE_DIR / "queries.tsv").items()]
    qrels = read_qrels(SAMPLE_DIR / "qrels.txt")
    tiny = Reranker(model=model, backend="llamacpp", top_k=DEMO_TOP_K, cache=default_cache_path(), llm=llm)
    name = getattr(tiny.backend, "model", None) or "the model"
    # Another model (--model) is named for what it is; the bundled one is labelled honestly.
    label = TINY if model is None else f"{Path(str(name)).stem[:COLUMN - 8]} (--model)"
    print(f"rerank demo: {len(queries)} queries over a bundled corpus of 48 passages; BM25's top {DEMO_TOP_K} "
          f"reranked two ways:\n  {label}: {name} (llama.cpp, grammar-constrained)\n  {JUDGE}: "
          "no model, it ranks by the sample's own relevance judgments (qrels)\n", file=out)
    started = time.perf_counter()
    requests = await BM25Retriever(str(SAMPLE_DIR / "corpus.jsonl")).retrieve(queries, DEMO_TOP_K)
    judge = Reranker(backend="judge", model="judge:oracle", top_k=DEMO_TOP_K, cache=None,
                     llm=JudgeBackend("oracle", dataset=Dataset.from_requests(requests, qrels), model="judge:oracle"))
    judged = {result.query.qid: result for result in await judge.rerank_batch(requests)}
    await judge.aclose()
    first_stage = {r.query.qid: {c.docid: float(DEMO_TOP_K - i) for i, c in enumerate(r.candidates)}
                   for r in requests}
    reranked, moved = {}, 0
    async for result in tiny.rerank_iter(requests):
        qid = result.query.qid
        request = next(r for r in requests if r.query.qid == qid)
        reranked[qid] = {c.docid: c.score for c in result.candidates}
        before = [c.docid for c in request.candidates]
        after = [c.docid for c in result.candidates]
        moved += before != after
        columns = [Ranking("BM25 (first stage)", before), Ranking(label, after),
                   Ranking(JUDGE, [c.docid for c in judged[qid].candidates])]
        titles = {c.docid: c.title for c in request.candidates}
        for line in query_block(qid, result.query.text, columns, qrels.get(qid, {}), titles, SHOWN):
            print(line, file=out)
        usage = result.usage
        print(f"  (model: {usage.calls} call, {usage.prompt_tokens:,} prompt tokens, {usage.cache_hits} cached; "
              f"answers: {usage.parse_ok} ok, {usage.parse_repaired} repaired, {usage.parse_unparseable} unparseable; "
              f"{moved_note(before, after)})\n", file=out)
    await tiny.aclose()
    rows = []
    for row, run in (("BM25 (first stage)", first_stage), (label, reranked),
                     (JUDGE, {qid: {c.docid: c.score for c in r.candidates} for qid, r in judged.items()})):
        scores = evaluate_run(run, qrels, ["nDCG@10"])
        rows.append((row, {q: v["nDCG@10"] for q, v in scores.per_query.items()}, scores.aggregate["nDCG@10"]))
    for line in score_table([q.qid for q in queries], rows):
        print(line, file=out)
    print(f"\n{LEGEND}\n{time.perf_counter() - started:.1f} s. " + (
          "The tiny model (SmolLM2-135M) shows the plumbing (retrieval, prompts,\nconstrained decoding, caching, "
          "evaluation), not reranking quality" if model is None else "The model") +
          f": it changed the order of {moved} of {len(queries)} queries.\nThe perfect judge is no model: it reads the "
          "qrels, so its row is the most reranking these top 10s can reach.\n"
          "Point --model at a larger GGUF, or `rerank run --base-url` at a served model, for real gains.", file=out)
    return 0


#: The columns' names: what each is, honestly.
TINY = "tiny model (plumbing only)"
JUDGE = "perfect judge from qrels (upper bound)"
