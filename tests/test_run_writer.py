"""One way to write a run: the run writer and the summary it returns, without a server."""

import asyncio
import json
from dataclasses import dataclass

import pytest

from rerank.evaluation.compare import read_costs
from rerank.run_summary import RunSummary
from rerank.run_writer import RunFiles, SummaryFile, write_run
from rerank.types import CallRecord, Candidate, Query, Request, Result, Usage


@dataclass
class FakeConfig:
    model: str = "judge"
    base_url: str = "http://user:secret@127.0.0.1:9/v1?key=abc"


class FakeBackend:
    model = "judge-7b"


class FakeReranker:
    """What write_run needs of a reranker: prepare, aclose, config and backend."""

    def __init__(self):
        self.config, self.backend = FakeConfig(), FakeBackend()
        self.prepared = self.closed = False

    async def prepare(self):
        self.prepared = True

    async def aclose(self):
        self.closed = True


def result(qid: str, calls: int = 2) -> Result:
    records = [CallRecord(window_size=3, round=i, prompt_tokens=100, completion_tokens=10, latency=0.5,
                          cached=i == 0, parse_status="ok" if i else "repaired", attempts=2,
                          reasoning_tokens=4) for i in range(calls)]
    candidates = [Candidate(docid, f"text {docid}", score=float(3 - i)) for i, docid in enumerate("abc")]
    return Result(Query(qid=qid, text=f"query {qid}"), candidates, records, rounds=calls)


def stream(*qids: str, fail: tuple = (), interrupt_after: int | None = None):
    """``results(on_error)``: the results of ``qids``; those in ``fail`` reported as failed."""
    def results(on_error):
        async def iterate():
            for number, qid in enumerate(qids):
                if interrupt_after is not None and number == interrupt_after:
                    raise asyncio.CancelledError
                if qid in fail:
                    on_error(Request(Query(qid=qid, text=""), []), RuntimeError(f"backend gave up on {qid}"))
                    continue
                yield result(qid)
        return iterate()
    return results


def run(tmp_path, results, files=None, **options):
    reranker = FakeReranker()
    files = files or RunFiles(str(tmp_path / "out.jsonl"), str(tmp_path / "out.trec"), "mine")
    summary = asyncio.run(write_run(reranker, results, files, SummaryFile(tmp_path / "out.summary.json"),
                                    **options))
    assert reranker.prepared and reranker.closed
    return summary


def test_usage_is_summed_and_results_written(tmp_path):
    summary = run(tmp_path, stream("q1", "q2", "q3"), already=2, copy_to=str(tmp_path / "copy.json"))
    assert summary.state == "finished" and summary.failed == [] and summary.already_done == 2
    assert (summary.queries, summary.calls, summary.rounds) == (3, 6, 6)
    assert (summary.prompt_tokens, summary.completion_tokens, summary.reasoning_tokens) == (600, 60, 24)
    assert (summary.cache_hits, summary.retries, summary.parse_ok, summary.parse_repaired) == (3, 6, 3, 3)
    assert summary.latency == pytest.approx(3.0)
    assert summary.backend == "FakeBackend" and summary.model == "judge" and summary.rerank_version  # as the settings show it
    assert "secret" not in json.dumps(summary.settings) and summary.settings["base_url"] == "http://127.0.0.1:9/v1"
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["query"]["qid"] for line in lines] == ["q1", "q2", "q3"]
    assert (tmp_path / "out.trec").read_text().splitlines()[0] == "q1 Q0 a 1 3.0 mine"
    written = json.loads((tmp_path / "out.summary.json").read_text())
    assert written == json.loads((tmp_path / "copy.json").read_text()) == summary.to_json()
    assert written["calls"] == 6 and written["state"] == "finished" and written["reasoning_tokens"] == 24
    assert "first_error" not in written


def test_failed_queries_are_listed_and_left_out(tmp_path):
    summary = run(tmp_path, stream("q1", "q2", "q3", "q4", fail=("q2", "q4")))
    assert summary.state == "failed" and summary.failed == ["q2", "q4"] and summary.queries == 2
    assert summary.first_error == "backend gave up on q2"
    assert [json.loads(line)["query"]["qid"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == ["q1", "q3"]
    assert json.loads((tmp_path / "out.summary.json").read_text())["failed"] == ["q2", "q4"]


def test_an_interrupted_run_keeps_what_is_finished(tmp_path):
    summary = run(tmp_path, stream("q1", "q2", "q3", interrupt_after=2))
    assert summary.state == "interrupted" and summary.queries == 2
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    assert json.loads((tmp_path / "out.summary.json").read_text())["state"] == "interrupted"


def test_examples_go_to_the_output_and_sft_with_extra_keys(tmp_path):
    class Example:
        def __init__(self, qid):
            self.qid = qid

        def as_dict(self):
            return {"qid": self.qid, "label": ["c", "b", "a"]}

        def as_chat(self):
            return {"messages": [{"role": "assistant", "content": f"ranked {self.qid} – done"}]}

    def pairs(on_error):
        async def iterate():
            for qid in ("q1", "q2"):
                yield result(qid), Example(qid)
        return iterate()

    seen = []
    files = RunFiles(str(tmp_path / "labels.jsonl"), str(tmp_path / "labels.trec"), "labels",
                     sft=str(tmp_path / "sft.jsonl"), examples=True)
    summary = run(tmp_path, pairs, files, on_result=lambda result, example: seen.append(example.qid),
                  extra=lambda: {"kendall_tau": 0.5, "qids": list(seen)})
    assert [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()] == [
        {"qid": "q1", "label": ["c", "b", "a"]}, {"qid": "q2", "label": ["c", "b", "a"]}]
    assert "– done" in (tmp_path / "sft.jsonl").read_text(encoding="utf-8")  # not escaped
    assert len((tmp_path / "labels.trec").read_text().splitlines()) == 6
    assert summary.extra["kendall_tau"] == 0.5 and summary.extra["qids"] == ["q1", "q2"]
    assert summary.to_json()["kendall_tau"] == 0.5


def test_summary_round_trip():
    usage = Usage()
    usage.add_result(result("q1", calls=3))
    summary = RunSummary.from_usage(usage, wall_seconds=1.5, startup_seconds=0.25, already_done=4,
                                    failed=["q9"], state="failed", settings={"window": 20}, rerank_version="0.1.0",
                                    backend="openai", model="judge", extra={"variant": "sliding"})
    document = summary.to_json()
    assert {"queries", "calls", "rounds", "prompt_tokens", "completion_tokens", "reasoning_tokens", "cache_hits",
            "cache_bad_entries", "wall_seconds", "startup_seconds", "parse_ok", "parse_repaired",
            "parse_unparseable", "retries", "failed", "state", "already_done", "settings", "variant"} <= set(document)
    assert set(usage.as_dict()) <= set(document)  # every usage total, named or not
    again = RunSummary.from_json(json.loads(json.dumps(document)))
    assert again == summary and again.to_json() == document
    assert again.extra["variant"] == "sliding"


def test_summary_from_records_and_older_files():
    running = RunSummary.from_json({"state": "running", "command": "run", "outputs": {}})
    assert running.state == "running" and running.extra == {"command": "run", "outputs": {}}
    older = RunSummary.from_json({"queries": 2, "calls": 4, "prompt_tokens": 10, "completion_tokens": 2})
    assert older.wall_seconds is None and older.cache_hits is None and older.failed == []
    assert "wall_seconds" not in older.to_json()
    with pytest.raises(ValueError, match="lacks calls, prompt_tokens"):
        RunSummary.from_json({"queries": 2, "completion_tokens": 2})
    with pytest.raises(ValueError, match="JSON object"):
        RunSummary.from_json([1, 2])


def test_compare_reads_costs_through_the_summary(tmp_path):
    run(tmp_path, stream("q1", "q2"))
    costs = read_costs(tmp_path / "out.summary.json", price_per_million=(1.0, 2.0))
    assert costs["calls"] == 4 and costs["prompt_tokens_per_query"] == 200 and costs["latency_per_query"] == 1.0
    assert costs["price"] == pytest.approx((400 * 1.0 + 40 * 2.0) / 1e6)
    (tmp_path / "bad.json").write_text(json.dumps({"queries": 1}))
    from rerank.errors import InputError

    with pytest.raises(InputError, match="lacks calls"):
        read_costs(tmp_path / "bad.json")
