"""The synchronous facade: ``rerank.rank`` and ``Reranker.rerank_sync``, in scripts and in running
event loops, against the in-process judge and a judges' server; the README's examples as scripts."""

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rerank
from llm_server import start_server
from rerank import Request, Reranker, read_qrels, read_requests
from rerank.errors import ConfigError, DuplicateId, InputError, InvalidJSON

REPO = Path(__file__).resolve().parents[1]


def judge(data) -> dict:
    """The in-process oracle judge's options, without a cache."""
    return {"backend": "judge", "model": f"judge:oracle:{data}", "cache": None}


def first_query(data, n=20, number=0) -> tuple[Request, list[int]]:
    """A DL19 query with its BM25 top ``n``, and each candidate's grade."""
    request = list(read_requests(Path(data) / "bm25_top100.json"))[number]
    request = Request(request.query, request.candidates[:n])
    qrels = read_qrels(Path(data) / "qrels.dl19-passage.txt")[request.query.qid]
    return request, [qrels.get(c.docid, 0) for c in request.candidates]


def check_ranking(ranked, documents, grades):
    """Every document once, ranks 1..n, scores strictly decreasing, in the oracle's order."""
    assert sorted(r.index for r in ranked) == list(range(len(documents)))
    assert [r.rank for r in ranked] == list(range(1, len(documents) + 1))
    assert all(a.score > b.score for a, b in zip(ranked, ranked[1:]))
    assert all(r.document is documents[r.index] for r in ranked)
    assert [grades[r.index] for r in ranked] == sorted(grades, reverse=True)


def test_strings_go_in_and_come_out_ranked_with_scores(dl19):
    request, grades = first_query(dl19)
    texts = [c.text for c in request.candidates]
    ranked = rerank.rank(request.query.text, texts, **judge(dl19))
    check_ranking(ranked, texts, grades)
    assert all(r.docid == str(r.index) and r.text == texts[r.index] for r in ranked)
    assert grades != sorted(grades, reverse=True)  # the first stage's order was not already the best


def test_dicts_and_candidates_keep_their_ids_and_match_the_async_api(dl19):
    request, grades = first_query(dl19, number=3)
    dicts = [{"id": c.docid, "contents": c.text, "score": c.score, "mine": i} for i, c in enumerate(request.candidates)]
    from_dicts = rerank.rank(request.query, dicts, **judge(dl19))
    check_ranking(from_dicts, dicts, grades)
    assert all(r.docid == dicts[r.index]["id"] for r in from_dicts)
    from_candidates = rerank.rank(request.query.text, request.candidates, **judge(dl19))
    check_ranking(from_candidates, request.candidates, grades)

    async def reranked():
        async with Reranker(**judge(dl19)) as reranker:
            return await reranker.rerank(request)
    expected = [c.docid for c in asyncio.run(reranked()).candidates]
    assert [r.docid for r in from_dicts] == [r.docid for r in from_candidates] == expected


def test_a_mistake_in_the_documents_is_named_and_no_documents_rank_to_nothing():
    with pytest.raises(InvalidJSON, match=r"field 'documents\[1\]': no passage text"):
        rerank.rank("q", ["a passage", {"docid": "x", "body": "no text key"}], backend="judge")
    with pytest.raises(DuplicateId, match=r"documents\[1\].docid.*appears twice"):
        rerank.rank("q", [{"docid": "a", "text": "one"}, {"docid": "a", "text": "two"}], backend="judge")
    with pytest.raises(InvalidJSON, match=r"documents\[0\]': expected a string, a dict or a Candidate, got int"):
        rerank.rank("q", [3], backend="judge")
    with pytest.raises(InputError, match=r"documents\[0\].score"):
        rerank.rank("q", [{"text": "a", "score": "high"}], backend="judge")
    assert rerank.rank("q", [], backend="judge", model="judge:identity", cache=None) == []
    with pytest.raises(ConfigError, match="unknown reranker option 'windw'"):
        rerank.rank("q", [], windw=3)
    reranker = Reranker(backend="judge", model="judge:identity", cache=None)
    with pytest.raises(ConfigError, match="either reranker= or the options"):
        rerank.rank("q", ["a"], reranker=reranker, window=3)
    with pytest.raises(TypeError, match="a Request, or a query and its documents"):
        reranker.rerank_sync("q")


def test_against_a_judges_server_from_a_script_and_inside_a_running_loop(dl19, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    request, grades = first_query(dl19)
    texts = [c.text for c in request.candidates]
    with start_server("oracle", data_dir=str(dl19)) as server:
        options = {"model": "judge", "base_url": server.base_url, "cache": None}
        check_ranking(rerank.rank(request.query.text, texts, **options), texts, grades)

        async def notebook_cell():
            asyncio.get_running_loop()  # a loop runs here, as in Jupyter
            return rerank.rank(request.query.text, texts, **options)
        check_ranking(asyncio.run(notebook_cell()), texts, grades)
        assert server.stats()["completions"] == 2  # one window of 20 each time


def test_one_reranker_used_sync_again_and_again_then_async_then_sync_inside_a_loop(dl19, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    request, grades = first_query(dl19)
    grade = dict(zip((c.docid for c in request.candidates), grades))
    requests = list(read_requests(Path(dl19) / "bm25_top100.json"))[:3]
    with start_server("oracle", data_dir=str(dl19)) as server:
        reranker = Reranker(model="judge", base_url=server.base_url, cache=None)
        expected = [c.docid for c in reranker.rerank_sync(request).candidates]
        assert [grade[docid] for docid in expected] == sorted(grades, reverse=True)
        for _ in range(2):
            assert [c.docid for c in reranker.rerank_sync(request).candidates] == expected
        texts = [c.text for c in request.candidates]
        for _ in range(2):
            check_ranking(rerank.rank(request.query.text, texts, reranker=reranker), texts, grades)

        async def plain_async():
            return await reranker.rerank(request)
        assert [c.docid for c in asyncio.run(plain_async()).candidates] == expected

        async def mixed():  # a notebook: a cell awaits, the next calls the sync API, then awaits again
            first = await reranker.rerank(request)
            second = reranker.rerank_sync(request)
            batch = reranker.rerank_batch_sync(requests)
            third = await reranker.rerank(request)
            return first, second, batch, third
        first, second, batch, third = asyncio.run(mixed())
        assert [c.docid for c in first.candidates] == [c.docid for c in second.candidates] == \
            [c.docid for c in third.candidates] == expected
        assert [r.query.qid for r in batch] == [r.query.qid for r in requests]
        assert all(len(r.candidates) == 100 and r.calls for r in batch)
        results = reranker.rerank_batch_sync(requests)
        assert [[c.docid for c in r.candidates] for r in results] == [[c.docid for c in r.candidates] for r in batch]
        reranker.close()
        # No cache: every call reached the server: 3 rerank_sync, 2 rank, 4 awaited or sync in a loop, 2 batches
        # of 3 queries of 9 windows.
        assert server.stats()["completions"] == 3 + 2 + 4 + 2 * 9 * len(requests)


def test_repeated_sync_calls_are_answered_from_the_cache(dl19, tmp_path):
    request, grades = first_query(dl19, n=40)
    with Reranker(**{**judge(dl19), "cache": str(tmp_path / "calls.sqlite")}) as reranker:
        first = reranker.rerank_sync(request)
        second = reranker.rerank_sync(request)
    assert len(first.calls) == 3 and not any(call.cached for call in first.calls)
    assert all(call.cached for call in second.calls)
    assert [c.docid for c in first.candidates] == [c.docid for c in second.candidates]
    with Reranker(**{**judge(dl19), "cache": str(tmp_path / "calls.sqlite")}) as again:  # written to the file
        assert all(call.cached for call in again.rerank_sync(request).calls)


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of a README section (``## NAME``), in order."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end != -1 else None], re.S)


def run_script(path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RERANK_CACHE": str(tmp_path / "calls.sqlite"), "OPENAI_API_KEY": "sk-test"}
    return subprocess.run([sys.executable, str(path)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_readme_python_examples_run_as_pasted_in_a_script(dl19, tmp_path):
    blocks = python_blocks("Python API")
    assert len(blocks) >= 3 and "await" not in blocks[0] and "rerank.rank(" in blocks[0]
    outputs = []
    for number, code in enumerate(blocks):
        script = tmp_path / f"example{number}.py"
        script.write_text(code)
        done = run_script(script, tmp_path)
        assert done.returncode == 0, f"README example {number}:\n{code}\n{done.stderr}"
        outputs.append(done.stdout)
    first = outputs[0].splitlines()
    assert [line.split()[0] for line in first] == ["1", "2", "3", "4"]
    assert first[0].split(maxsplit=3)[3].startswith("What is the temperature of the gas")  # graded 3, given last


def test_the_readme_sync_example_runs_inside_a_running_event_loop(dl19, tmp_path):
    example = tmp_path / "example.py"
    example.write_text(python_blocks("Python API")[0])
    cell = tmp_path / "notebook.py"
    cell.write_text("import asyncio\n\n"
                    "async def kernel():  # as Jupyter runs a cell: inside its running loop\n"
                    f"    code = open({str(example)!r}).read()\n"
                    "    exec(compile(code, 'cell', 'exec'), {'__name__': '__main__'})\n\n"
                    "asyncio.run(kernel())\n")
    in_loop, plain = run_script(cell, tmp_path), run_script(example, tmp_path)
    assert in_loop.returncode == 0, in_loop.stderr
    assert in_loop.stdout == plain.stdout and len(plain.stdout.splitlines()) == 4


def test_the_loop_runner_keeps_its_loop_and_works_inside_a_running_one():
    from rerank.sync import LoopRunner, run_sync

    async def where():
        return asyncio.get_running_loop(), __import__("threading").current_thread().name

    runner = LoopRunner()
    (first, thread), (second, _) = runner.run(where()), runner.run(where())
    assert first is second and thread == "MainThread" and not first.is_closed()  # kept between calls

    async def inside():
        return runner.run(where())  # a loop runs in this thread: the runner's own runs in a worker
    (third, worker) = asyncio.run(inside())
    assert third is first and worker.startswith("rerank-sync")

    async def fails():
        raise ValueError("boom")
    with pytest.raises(ValueError, match="boom"):
        runner.run(fails())

    async def leaves_a_task():
        asyncio.get_running_loop().create_task(asyncio.sleep(3600))
    runner.run(leaves_a_task())
    runner.close()
    assert first.is_closed() and runner.run(where())[0] is not first  # closed, then a new loop on use
    runner.close()
    assert run_sync(asyncio.sleep(0, "done")) == "done"
    assert asyncio.run(inside_run_sync()) == "done"


async def inside_run_sync():
    from rerank.sync import run_sync

    return run_sync(asyncio.sleep(0, "done"))
