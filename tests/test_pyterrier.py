"""PyTerrier and pandas: the LLMReranker transformer in pipelines and pt.Experiment (skipped
without PyTerrier), and rank_frame; no Java (the candidates frame comes from DL19's BM25 top 100)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")

import rerank  # noqa: E402
from rerank import Reranker, read_qrels, read_requests  # noqa: E402
from rerank.errors import ConfigError, DuplicateId, EmptyPassage, MissingField  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def judge(data) -> dict:
    return {"backend": "judge", "model": f"judge:oracle:{data}", "cache": None}


@pytest.fixture
def pt():
    return pytest.importorskip("pyterrier")


@pytest.fixture
def LLMReranker(pt):
    from rerank.integrations.pyterrier import LLMReranker

    return LLMReranker


@pytest.fixture
def candidates(dl19):
    """DL19's BM25 top 100 as PyTerrier's frame (ranks from 0)."""
    return rerank.to_frame(read_requests(Path(dl19) / "bm25_top100.json"), first_rank=0)


def test_in_pt_experiment_the_oracle_reaches_its_bound(dl19, candidates, pt, LLMReranker):
    bm25 = pt.Transformer.from_df(candidates)
    llm = LLMReranker(**judge(dl19))
    topics = candidates[["qid", "query"]].drop_duplicates()
    qrels = rerank.qrels_frame(read_qrels(Path(dl19) / "qrels.dl19-passage.txt"))
    table = pt.Experiment([bm25, bm25 >> llm], topics, qrels, eval_metrics=[pt.measures.nDCG@10], names=["BM25", "LLM"])
    scores = dict(zip(table["name"], table["nDCG@10"]))
    assert round(scores["BM25"], 4) == 0.5058
    assert round(scores["LLM"], 4) == 0.8922


def test_the_transformer_follows_pyterriers_conventions_and_composes(dl19, candidates, pt, LLMReranker):
    first_two = candidates[candidates["qid"].isin(candidates["qid"].unique()[:2])].copy()
    first_two["feature"] = range(len(first_two))           # another column rides along with its row
    shuffled = first_two.sample(frac=1.0, random_state=1)  # the order comes from rank, not the rows
    llm = LLMReranker(**judge(dl19))
    out = llm.transform(shuffled)
    assert list(out.columns) == list(shuffled.columns)
    assert len(out) == len(shuffled) and out.index.tolist() == list(range(len(out)))
    expected_qids = list(dict.fromkeys(shuffled["qid"]))
    assert list(dict.fromkeys(out["qid"])) == expected_qids
    for qid, rows in out.groupby("qid", sort=False):
        assert rows["rank"].tolist() == list(range(len(rows)))                  # from 0, in order
        assert rows["score"].is_monotonic_decreasing and rows["score"].is_unique
    merged = out.merge(first_two[["qid", "docno", "feature"]], on=["qid", "docno"], suffixes=("", "_given"))
    assert (merged["feature"] == merged["feature_given"]).all() and len(merged) == len(out)
    assert str(llm).startswith("LLMReranker(model=")
    assert llm.transform_outputs(list(shuffled.columns)) == list(shuffled.columns)

    source = pt.Transformer.from_df(first_two)
    topics = first_two[["qid", "query"]].drop_duplicates()
    pipeline = source >> llm
    assert isinstance(pipeline, pt.Transformer)
    piped = pipeline(topics)
    columns = ["qid", "docno", "rank"]
    assert piped[columns].values.tolist() == llm(source(topics))[columns].values.tolist()
    cut = (source >> llm % 10)(topics)
    assert len(cut) == 20 and cut["rank"].max() == 9
    assert llm.transform(first_two.iloc[:0]).empty


def test_rank_frame_reranks_pandas_frames_with_docids_and_names_bad_rows(dl19, candidates):
    frame = candidates[candidates["qid"] == candidates["qid"].iloc[0]].rename(columns={"docno": "docid"})
    frame = frame.drop(columns=["rank"])
    out = rerank.rank_frame(frame, **judge(dl19))
    assert out["rank"].tolist() == list(range(1, len(frame) + 1))
    qrels = read_qrels(Path(dl19) / "qrels.dl19-passage.txt")[frame["qid"].iloc[0]]
    grades = [qrels.get(docid, 0) for docid in out["docid"]]
    assert grades[:10] == sorted(grades, reverse=True)[:10]

    with pytest.raises(MissingField, match=r"no column 'text' \(add the passages' text first"):
        rerank.rank_frame(frame.drop(columns=["text"]), **judge(dl19))
    holed = frame.copy()
    holed.loc[holed.index[3], "text"] = None
    with pytest.raises(EmptyPassage, match=rf"rows\[{holed.index[3]}\].text"):
        rerank.rank_frame(holed, **judge(dl19))
    twice = pd.concat([frame.iloc[:3], frame.iloc[:1]])
    with pytest.raises(DuplicateId, match="appears twice for qid"):
        rerank.rank_frame(twice, **judge(dl19))
    with pytest.raises(ConfigError, match="either reranker= or"):
        rerank.rank_frame(frame, reranker=Reranker(**judge(dl19)), window=4)


def test_requests_results_and_qrels_become_frames(dl19):
    requests = list(read_requests(Path(dl19) / "bm25_top100.json"))[:2]
    frame = rerank.to_frame(requests)
    assert list(frame.columns) == ["qid", "query", "docno", "text", "score", "rank"] and len(frame) == 200
    assert frame["rank"].tolist()[:3] == [1, 2, 3] and frame["rank"].dtype == "int64"
    first = requests[0]
    assert frame.iloc[0].tolist()[:3] == [first.query.qid, first.query.text, first.candidates[0].docid]
    with Reranker(**judge(dl19)) as reranker:
        results = reranker.rerank_batch_sync(requests)
    reranked = rerank.to_frame(results, first_rank=0)
    assert reranked["docno"].tolist()[:100] == [c.docid for c in results[0].candidates]
    assert rerank.rank_frame(frame, **judge(dl19))["docno"].tolist() == reranked["docno"].tolist()
    qrels = rerank.qrels_frame({"q1": {"d1": 2, "d2": 0}})
    assert list(qrels.columns) == ["qid", "docno", "label"]
    assert qrels.values.tolist() == [["q1", "d1", 2], ["q1", "d2", 0]]
    assert rerank.rank_frame(frame.iloc[:0], **judge(dl19)).empty


def test_without_pyterrier_the_import_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyterrier", None)
    monkeypatch.delitem(sys.modules, "rerank.integrations.pyterrier", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'rerank-llm\[pyterrier\]'"):
        import rerank.integrations.pyterrier  # noqa: F401


def test_the_readme_pyterrier_example_runs_as_a_script(dl19, tmp_path, pt):
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n## PyTerrier and pandas\n"):]
    section = section[:section.index("\n## ", 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    script = tmp_path / "pyterrier_example.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RERANK_CACHE": str(tmp_path / "calls.sqlite")})
    assert done.returncode == 0, done.stderr
    scores = dict(re.findall(r"(BM25|BM25 >> LLM)\s+(0\.\d+)\s*$", done.stdout, re.M))
    assert {name: round(float(value), 4) for name, value in scores.items()} == {"BM25": 0.5058, "BM25 >> LLM": 0.8922}
