"""eval/gpu_train_smoke.py on the CPU: a tiny shape and a few steps, and the figures it reports."""

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "eval" / "gpu_train_smoke.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_train_smoke", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_rates_leave_out_the_first_steps():
    script = load_script()
    # Five slow steps of 100 tokens, then four of 200 tokens at one a second.
    marks = [(10.0 * step, 100 * step) for step in range(1, 6)]
    marks += [(50.0 + step, 500 + 200 * step) for step in range(1, 5)]
    found = script.rates(marks, runtime=54.0)
    assert found["train_tokens"] == 1300 and found["tokens_per_second"] == pytest.approx(1300 / 54)
    assert found["steady_steps"] == 4 and found["steady_tokens_per_second"] == pytest.approx(200.0)
    assert found["steady_seconds_per_step"] == pytest.approx(1.0)
    assert "steady_steps" not in script.rates(marks[:1], runtime=10.0)


def test_cpu_smoke_reports_its_figures(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from rerank.training.data import read_label_records

    figures_file, run = tmp_path / "figures.json", tmp_path / "run"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--shape", "tiny", "--steps", "3", "--passages", "10",
                           "--words", "20", "--queries", "4", "--output", str(run), "--json", str(figures_file)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(figures_file.read_text())
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [figures]  # stdout: the figures alone
    assert (figures["shape"], figures["steps"], figures["passages"], figures["words"]) == ("tiny", 3, 10, 20)
    # Each made-up word is one token: 200 words, and the template's turns around them.
    assert 200 < figures["prompt_tokens_mean"] <= figures["prompt_tokens_max"] < 1000
    # Batch 1, no padding: three examples, each its prompt, its answer and an end-of-turn token.
    assert 3 * figures["prompt_tokens_mean"] * 0.95 < figures["train_tokens"] < 3 * (figures["prompt_tokens_max"] + 80)
    assert figures["tokens_per_second"] == pytest.approx(figures["train_tokens"] / figures["train_runtime_s"])
    assert figures["steady_tokens_per_second"] > 0 and figures["peak_rss_gib"] > 0.1
    assert "peak_gpu_allocated_gib" not in figures and figures["device"].startswith("cpu")
    assert math.isfinite(figures["loss_first"]) and math.isfinite(figures["loss_last"])
    assert figures["gradient_checkpointing"] is True and figures["wall_s"] >= figures["train_call_s"]
    # The labels are those `rerank labels` writes: they read back, each target a permutation.
    records = read_label_records([str(run / "labels.jsonl")])
    assert len(records) == 4
    for record in records:
        assert sorted(int(k) for k in re.findall(r"\[(\d+)\]", record.target)) == list(range(1, 11))
    assert (run / "trained" / "config.json").is_file() and (run / "trained" / "rerank-train.json").is_file()


def test_refuses_a_non_empty_output(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    (tmp_path / "keep.txt").write_text("mine")
    assert load_script().main(["--shape", "tiny", "--output", str(tmp_path)]) == 2
    assert "--output" in capsys.readouterr().err and (tmp_path / "keep.txt").read_text() == "mine"
