"""Complete listwise labels: the shrinking strategy, training examples, and `rerank labels`
against perfect and noisy judges on DL19."""

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import read_summary, run_cli
from llm_server import start_server
from rerank import Candidate, Query, Request, Reranker
from rerank.evaluation.correlation import kendall_tau_b, label_tau
from rerank.formats import read_qrels, read_requests
from rerank.labels import student_reranker, teacher_config, training_example
from rerank.strategies import ShrinkingWindow, run_with_judge
from rerank.types import Result

pytestmark = pytest.mark.integration


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 160), window=st.integers(2, 30), seed=st.integers(0, 10**6), data=st.data())
def test_shrinking_with_a_perfect_judge_sorts_everything(n, window, seed, data):
    step = data.draw(st.integers(1, window - 1))
    relevance = list(range(n))
    random.Random(seed).shuffle(relevance)
    order, calls, _ = run_with_judge(ShrinkingWindow(window, step, passes=10**6), n,
                                     lambda w: sorted(w, key=lambda i: -relevance[i]))
    assert [relevance[i] for i in order] == sorted(relevance, reverse=True)


def test_shrinking_makes_45_calls_over_100_candidates():
    assert run_with_judge(ShrinkingWindow(20, 10, 9), 100, lambda w: w)[1:] == (45, 45)
    # Fewer passes: the rest keeps the last pass's order.
    assert run_with_judge(ShrinkingWindow(20, 10, 1), 100, lambda w: w)[1] == 9
    assert run_with_judge(ShrinkingWindow(20, 10, 2), 100, lambda w: w)[1] == 17


def test_kendall_tau_b_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(3)
    for _ in range(100):
        n = rng.randint(2, 40)
        x, y = [rng.randint(0, 5) for _ in range(n)], [rng.randint(0, 3) for _ in range(n)]
        ours, theirs = kendall_tau_b(x, y), scipy_stats.kendalltau(x, y).statistic
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == pytest.approx(theirs, abs=1e-12)
    assert label_tau(["a", "b", "c"], {"a": 2, "b": 1}) == pytest.approx(1.0)


def test_training_example_names_the_candidates_in_label_order():
    request = Request(Query(qid="q", text="fleas"), [Candidate(f"d{i}", f"passage {i} [7]") for i in range(1, 5)])
    teacher = Reranker(teacher_config(Reranker(model="m", base_url="http://127.0.0.1:9/v1", cache=None).config,
                                      "shrinking"))
    label = ["d3", "d1", "d4", "d2"]
    result = Result(request.query, [Candidate(d, "") for d in label])
    example = training_example(student_reranker(teacher), request, result)
    assert example.candidates == ["d1", "d2", "d3", "d4"] and example.label == label
    assert example.target == "[3] > [1] > [4] > [2]"
    assert example.weights == pytest.approx([1 + 1 / math.log2(r + 1) for r in range(1, 5)])
    assert example.messages == student_reranker(teacher).full_prompt(request)
    assert "passage 1 (7)" in json.dumps(example.messages)  # prepared as the full strategy prepares
    assert example.as_chat()["messages"][-1] == {"role": "assistant", "content": example.target}


def _labels(dl19, server, tmp_path, variant, passes, cache, name=None):
    name = name or f"{variant}-{passes}"
    out, summary = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json"
    proc = run_cli("labels", dl19 / "bm25_top100.json", "-o", out, "--model", "teacher", "--base-url",
                   server.base_url, "--variant", variant, "--passes", passes, "--cache", cache,
                   "--qrels", dl19 / "qrels.dl19-passage.txt", "--summary-json", summary,
                   "--sft", tmp_path / f"{name}.sft.jsonl", "--concurrency", 32)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in out.read_text().splitlines()], read_summary(summary), proc


@pytest.mark.parametrize("variant,calls", [("shrinking", 45), ("repeated", 81)])
def test_perfect_teacher_gives_complete_labels(dl19, tmp_path, variant, calls):
    qrels = read_qrels(dl19 / "qrels.dl19-passage.txt")
    texts = {r.query.qid: {c.docid: " ".join(c.text.split()[:100]) for c in r.candidates}
             for r in read_requests(dl19 / "bm25_top100.json")}
    with start_server("oracle", data_dir=dl19) as server:
        examples, summary, proc = _labels(dl19, server, tmp_path, variant, 9, tmp_path / "cache.sqlite")
    assert len(examples) == 43 and summary["calls"] == 43 * calls
    for example in examples:
        assert sorted(example["label"]) == sorted(example["candidates"]) and len(example["label"]) == 100
        grades = [qrels[example["qid"]].get(d, 0) for d in example["label"]]
        for i in range(99):
            if grades[i] < grades[i + 1]:  # only passages the judge cannot tell apart
                seen = texts[example["qid"]]
                assert seen[example["label"][i]] == seen[example["label"][i + 1]]
        position = {d: i for i, d in enumerate(example["candidates"], 1)}
        assert example["target"] == " > ".join(f"[{position[d]}]" for d in example["label"])
        assert len(example["weights"]) == 100 and example["weights"][0] == 2.0
        assert example["messages"][-1]["role"] == "user"
    assert summary["kendall_tau"] > 0.3 and summary["ndcg_10"] >= 0.891
    assert "Kendall tau" in proc.stderr and "calls" in proc.stderr
    sft = [json.loads(line) for line in (tmp_path / f"{variant}-9.sft.jsonl").read_text().splitlines()]
    assert sft[0]["messages"][-1] == {"role": "assistant", "content": examples[0]["target"]}


def test_second_variant_reuses_the_cache(dl19, tmp_path):
    cache = tmp_path / "cache.sqlite"
    with start_server("oracle", data_dir=dl19) as server:
        _labels(dl19, server, tmp_path, "shrinking", 9, cache)
        before = server.stats()["completions"]
        _, summary, _ = _labels(dl19, server, tmp_path, "repeated", 9, cache)
        paid = server.stats()["completions"] - before
        _, again, _ = _labels(dl19, server, tmp_path, "repeated", 9, cache, name="again")
        assert server.stats()["completions"] - before == paid  # a rerun pays nothing
    # The first pass of both variants is the same 9 windows a query.
    assert summary["cache_hits"] >= 43 * 9 and paid == summary["calls"] - summary["cache_hits"]
    assert again["cache_hits"] == again["calls"]


@pytest.mark.parametrize("variant", ["shrinking", "repeated"])
def test_more_passes_never_lower_tau_with_a_noisy_teacher(dl19, tmp_path, variant, capsys):
    taus = {}
    with start_server("noisy", data_dir=dl19, seed=11) as server:
        for passes in (1, 3, 9):
            taus[passes] = _labels(dl19, server, tmp_path, variant, passes, tmp_path / "cache.sqlite")[1]["kendall_tau"]
    with capsys.disabled():
        print(f"\n{variant} labels, noisy teacher, mean Kendall tau over DL19 by passes: {taus}")
    assert taus[1] <= taus[3] <= taus[9]


# --- `rerank labels` as a long job: refuses to overwrite, resumes exactly, lists failures ---------

def _job_args(dl19, server, out, cache, *more):
    """Labels with every side output, so that resuming is checked on all of them."""
    return ["labels", dl19 / "bm25_top100.json", "-o", out, "--sft", f"{out}.sft", "--trec", f"{out}.trec",
            "--model", "teacher", "--base-url", server.base_url, "--passes", 3, "--cache", cache,
            "--qrels", dl19 / "qrels.dl19-passage.txt", "--concurrency", 8, *more]


def _outputs(out):
    return [path.read_bytes() for path in (out, out.parent / f"{out.name}.sft", out.parent / f"{out.name}.trec")]


def _start_cli(*args):
    import os
    import subprocess
    import sys

    from conftest import REPO

    return subprocess.Popen([sys.executable, "-m", "rerank", *map(str, args)], cwd=REPO,
                            env={**os.environ, "OPENAI_API_KEY": "sk-test"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_labels_refuse_to_overwrite_an_output(dl19, tmp_path):
    out = tmp_path / "labels.jsonl"
    out.write_text("precious\n")
    proc = run_cli("labels", dl19 / "bm25_top100.json", "-o", out, "--model", "m", "--base-url", "http://127.0.0.1:9/v1")
    assert proc.returncode == 2 and "exists" in proc.stderr and "--resume" in proc.stderr, proc.stderr
    assert out.read_text() == "precious\n"


def test_labels_killed_at_random_moments_then_resumed_equal_an_uninterrupted_run(dl19, tmp_path):
    import signal

    rng = random.Random(19)
    with start_server("oracle", data_dir=dl19, delay=0.02) as server:
        clean = run_cli(*_job_args(dl19, server, tmp_path / "clean.jsonl", tmp_path / "clean.sqlite"))
        assert clean.returncode == 0, clean.stderr
        calls = server.stats()["completions"]
        out = tmp_path / "killed.jsonl"
        args = _job_args(dl19, server, out, tmp_path / "killed.sqlite")
        for attempt in range(2):
            start = server.stats()["completions"]
            proc = _start_cli(*args, *(["--resume"] if attempt else []))
            # A random moment, reached on the server's count of answers (any machine speed).
            target = start + rng.randint(calls // 10, calls // 3)
            server.wait_for(lambda stats: stats["completions"] >= target or proc.poll() is not None, timeout=300)
            assert proc.poll() is None, "the run ended before it was killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            lines = out.read_bytes().split(b"\n")
            assert all(json.loads(line) for line in lines[:-1])  # every complete line is whole
        final = run_cli(*args, "--resume")
        assert final.returncode == 0, final.stderr
    assert _outputs(out) == _outputs(tmp_path / "clean.jsonl")
    assert len(out.read_text().splitlines()) == 43
    # The resumed run's summary judges every label, those of the killed runs included.
    assert read_summary(tmp_path / "killed.summary.json")["kendall_tau"] == \
        pytest.approx(read_summary(tmp_path / "clean.summary.json")["kendall_tau"])


def test_labels_list_the_queries_that_failed_and_resume_finishes_them(dl19, tmp_path):
    inputs = {r.query.qid: [c.docid for c in r.candidates] for r in read_requests(dl19 / "bm25_top100.json")}
    with start_server("oracle", data_dir=dl19) as good:
        assert run_cli(*_job_args(dl19, good, tmp_path / "clean.jsonl", tmp_path / "clean.sqlite")).returncode == 0
    out = tmp_path / "o.jsonl"
    # One call in a hundred fails at once (no retry): about a fifth of the queries fail.
    with start_server("oracle", data_dir=dl19, fail_rate=0.01, seed=3) as flaky:
        proc = run_cli(*_job_args(dl19, flaky, out, tmp_path / "c.sqlite", "--max-attempts", 1))
    assert proc.returncode == 3, proc.stderr
    assert "queries failed and are not in the output" in proc.stderr and "--resume" in proc.stderr
    summary = read_summary(tmp_path / "o.summary.json")
    labelled = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["state"] == "failed" and summary["failed"] and len(labelled) + len(summary["failed"]) == 43
    assert not {example["qid"] for example in labelled} & set(summary["failed"])
    for example in labelled:  # each example is its own request's, failures before it or not
        assert example["candidates"] == inputs[example["qid"]]
    with start_server("oracle", data_dir=dl19) as good:
        resumed = run_cli(*_job_args(dl19, good, out, tmp_path / "c.sqlite"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    # Failed queries are finished after the others, so the files hold the same lines in another order.
    for ours, clean in zip(_outputs(out), _outputs(tmp_path / "clean.jsonl")):
        assert sorted(ours.splitlines()) == sorted(clean.splitlines())


def test_default_passes_follow_the_window():
    """``--window 10`` alone gives complete labels: shrinking passes until the order is complete,
    repeated passes enough for 100 candidates."""
    from rerank.labels import UNTIL_COMPLETE, label_passes, teacher_config
    from rerank.reranker import RerankerConfig
    from rerank.strategies import make_strategy, run_with_judge

    assert label_passes({}, "repeated") == 9 and label_passes({"window": "10"}, "repeated") == 19
    assert label_passes({"window": 10}, "shrinking") == UNTIL_COMPLETE
    assert teacher_config(RerankerConfig(cache=None, options={"passes": 3}), "shrinking").options["passes"] == 3
    grades = [(i * 37) % 11 for i in range(100)]
    for variant, strategy in (("shrinking", "shrinking"), ("repeated", "sliding")):
        options = {"window": 10, "passes": label_passes({"window": 10}, variant)}
        order, _, _ = run_with_judge(make_strategy(strategy, options), 100,
                                     lambda w: sorted(w.indices, key=lambda i: -grades[i]))
        assert [grades[i] for i in order] == sorted(grades, reverse=True), variant
