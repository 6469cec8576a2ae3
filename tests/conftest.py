"""Shared fixtures: the data folder beside the project, and running the real CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests judge correctness, never speed: a loaded CI machine must not fail them on time.
settings.register_profile("rerank", deadline=None)
settings.load_profile("rerank")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def data_dir(name: str) -> Path:
    """A collection folder of ../shared/data, or skip the test when it is absent."""
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} not found (the evaluation data lives beside the project)")
    return path


def run_cli(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    """Run ``python -m rerank ARGS`` as a user would, capturing its output."""
    environment = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key", **(env or {})}
    return subprocess.run([sys.executable, "-m", "rerank", *map(str, args)], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def read_summary(path: Path) -> dict:
    """The JSON summary a run wrote with --summary-json."""
    return json.loads(Path(path).read_text())


@pytest.fixture
def dl19():
    return data_dir("dl19")


def collection_grades(folder: Path, limit: int | None = None) -> tuple[list, dict]:
    """``([(qid, docids, grades), ...], qrels)`` of a collection's BM25 top 100 (its first
    ``limit`` queries), each candidate's grade from the qrels (0 when unjudged)."""
    from rerank.formats import read_qrels, read_requests

    qrels = read_qrels(next(Path(folder).glob("qrels.*")))
    queries = []
    for number, request in enumerate(read_requests(Path(folder) / "bm25_top100.json")):
        if limit is not None and number >= limit:
            break
        docids = [c.docid for c in request.candidates]
        judged = qrels.get(request.query.qid, {})
        queries.append((request.query.qid, docids, [judged.get(d, 0) for d in docids]))
    return queries, qrels


def run_collection_with_judge(folder: Path, strategy, judge_for) -> tuple[float, list[int], list[int]]:
    """Every query of a collection's BM25 top 100 through ``strategy``, each window answered by
    ``judge_for(grades)``: ``(nDCG@10, calls, rounds)``, the last two one entry per query."""
    from rerank.evaluation import evaluate_run
    from rerank.strategies import run_with_judge

    queries, qrels = collection_grades(folder)
    run, calls, rounds = {}, [], []
    for qid, docids, grades in queries:
        order, made, taken = run_with_judge(strategy, len(docids), judge_for(grades))
        run[qid] = {docids[i]: float(len(order) - rank) for rank, i in enumerate(order)}
        calls.append(made)
        rounds.append(taken)
    return evaluate_run(run, qrels, ["nDCG@10"]).aggregate["nDCG@10"], calls, rounds
