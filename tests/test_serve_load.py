"""`rerank serve` under a small load: distinct requests at once overlap (one LLM call each, all in
flight together), each client gets its own ranking, and nothing is kept per request.

The full load (200 requests at once, p50/p99, memory over 5,000) is eval/bench_serve.py; this is its
lean version for CI, with no timing finer than "they overlapped".
"""

import asyncio
import json
import time
from pathlib import Path

import pytest

from conftest import data_dir
from llm_server import start_server
from serve_process import ServeProcess, read_metrics

pytestmark = pytest.mark.integration

#: Seconds the judge takes per call.
DELAY = 0.5
#: Distinct requests sent at once.
CONCURRENT = 50
#: Documents per request.
DOCUMENTS = 20


@pytest.fixture(scope="module")
def dl19_data():
    for package in ("starlette", "uvicorn"):
        pytest.importorskip(package)
    return data_dir("dl19")


@pytest.fixture(scope="module")
def bodies(dl19_data):
    """Distinct v2 bodies, each a DL19 query with 20 of its BM25 hits (windows at different
    offsets), with the grades of those hits."""
    from rerank.formats import read_qrels

    queries = json.loads((dl19_data / "bm25_top100.json").read_text(encoding="utf-8"))
    qrels = read_qrels(next(dl19_data.glob("qrels.*")))
    found = []
    for offset in range(0, 80, 10):
        for query in queries:
            hits = query["hits"][offset:offset + DOCUMENTS]
            judged = qrels.get(str(hits[0]["qid"]), {})
            found.append(({"model": "full", "query": query["query"], "documents": [hit["content"] for hit in hits]},
                          [judged.get(str(hit["docid"]), 0) for hit in hits]))
    return found


@pytest.fixture(scope="module")
def judge(dl19_data):
    with start_server("oracle", data_dir=dl19_data, delay=DELAY) as server:
        yield server


@pytest.fixture(scope="module")
def served(judge):
    with ServeProcess("--model", "judge", "--base-url", judge.base_url, "--strategy", "full", "--serve-model",
                      "full=full", "--concurrency", "256", "--no-cache") as server:
        yield server


async def send_all(url: str, bodies: list) -> list:
    """Every body at once, each on its own connection; ``(status, answer)`` of each."""
    import aiohttp

    async def send(session, body):
        async with session.post(f"{url}/v2/rerank", json=body) as response:
            return response.status, await response.json()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        return await asyncio.gather(*(send(session, body) for body, _ in bodies))


def assert_each_got_its_ranking(bodies: list, answers: list) -> None:
    """All 200, and each answer ranks its own documents, the judged-best first (answers crossed
    between concurrent requests would fail this)."""
    assert [status for status, _ in answers] == [200] * len(bodies), answers
    for (body, grades), (_, answer) in zip(bodies, answers):
        order = [result["index"] for result in answer["results"]]
        assert sorted(order) == list(range(len(body["documents"])))
        assert grades[order[0]] == max(grades)


def metrics(server) -> dict:
    import urllib.request

    with urllib.request.urlopen(server.url + "/metrics", timeout=30) as response:
        return read_metrics(response.read().decode("utf-8"))


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_distinct_requests_at_once_overlap_and_each_gets_its_own_ranking(served, judge, bodies):
    batch = bodies[:CONCURRENT]
    before = judge.stats()["requests"]
    started = time.monotonic()
    answers = asyncio.run(send_all(served.url, batch))
    wall = time.monotonic() - started
    assert_each_got_its_ranking(batch, answers)
    stats = judge.stats()
    assert stats["requests"] - before == CONCURRENT  # one call each: full ranking, nothing deduplicated
    # One after another they would take CONCURRENT * DELAY (25 s): they overlapped.
    assert wall < CONCURRENT * DELAY / 4
    assert stats["max_in_flight"] >= 10


def test_nothing_is_kept_per_request(served, judge, bodies):
    """After 300 distinct requests no request is in flight, each made one LLM call, and the
    server's memory has not grown with them (a generous bound, robust on a busy machine: it
    catches a leak of 150 KiB a request; finer ones are eval/bench_serve.py's, over 5,000)."""
    if not Path(f"/proc/{served.process.pid}/status").exists():
        pytest.skip("needs /proc to read the server's memory")
    sizes = {}
    for wave in range(300 // CONCURRENT):
        batch = [(dict(body, query=f"{body['query']} #{wave}"), grades)
                 for body, grades in bodies[wave * CONCURRENT:(wave + 1) * CONCURRENT]]
        assert_each_got_its_ranking(batch, asyncio.run(send_all(served.url, batch)))
        sizes[(wave + 1) * CONCURRENT] = resident_mib(served.process.pid)
    values = metrics(served)
    assert values["rerank_requests_in_flight"] == 0
    assert values['rerank_requests_total{path="/v2/rerank",code="200"}'] >= 300
    assert values["rerank_rankings_total"] == values["rerank_llm_calls_total"] >= 300
    assert sizes[300] - sizes[100] < 30, sizes
