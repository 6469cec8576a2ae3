"""Significance tests, run comparison tables and comparison plots."""

import csv
import io
import json
import math
import random
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerank.errors import ConfigError
from rerank.evaluation import evaluate
from rerank.evaluation.compare import compare_runs, format_comparison, read_costs, summary_path
from rerank.evaluation.significance import (holm, paired_t_test, randomization_test,
                                            regularized_incomplete_beta, wins_ties_losses)

DL19 = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"


# --- paired t-test ---------------------------------------------------------------------------

def test_t_test_agrees_with_scipy_on_random_samples():
    np = pytest.importorskip("numpy")
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    sizes = [2, 3, 4, 5] * 100 + list(rng.integers(6, 60, 300)) + [300] * 50
    for n in sizes:
        a = rng.random(n)
        shift, spread = rng.normal(0, 0.2), rng.choice([1e-4, 0.01, 0.1, 1.0, 10.0])
        b = a + rng.normal(shift, spread, n)
        expected = stats.ttest_rel(a, b).pvalue
        assert paired_t_test(a.tolist(), b.tolist()) == pytest.approx(expected, abs=1e-6), n


def test_t_test_tiny_and_huge_statistics():
    stats = pytest.importorskip("scipy.stats")
    # tiny t: differences nearly symmetric around 0
    a, b = [0.5, 0.6, 0.4, 0.55], [0.5 + 1e-9, 0.6 - 1e-9, 0.4 + 2e-9, 0.55 - 1.99e-9]
    assert paired_t_test(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue, abs=1e-9)
    # huge t: a large consistent shift with little spread
    a = [1.0 + 1e-6 * i for i in range(30)]
    b = [0.0 - 1e-6 * (i % 3) for i in range(30)]
    assert paired_t_test(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue, abs=1e-12)
    assert paired_t_test(a, b) < 1e-30


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=80))
def test_t_test_agrees_with_scipy_property(pairs):
    stats = pytest.importorskip("scipy.stats")
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    diffs = [x - y for x, y in pairs]
    mean = math.fsum(diffs) / len(diffs)
    spread = math.fsum((d - mean) ** 2 for d in diffs)
    if all(d == 0 for d in diffs) or spread < 1e-20:  # scipy's nan, or a degenerate variance
        return
    assert paired_t_test(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue, abs=1e-6)


def test_t_test_edge_cases():
    assert paired_t_test([0.3, 0.5, 0.9], [0.3, 0.5, 0.9]) == 1.0
    assert paired_t_test([0.3], [0.1]) == 1.0
    assert paired_t_test([], []) == 1.0
    assert paired_t_test([1.0, 2.0, 3.0], [0.5, 1.5, 2.5]) == 0.0  # constant non-zero difference
    with pytest.raises(ValueError):
        paired_t_test([1.0, 2.0], [1.0])


def test_incomplete_beta_against_scipy():
    special = pytest.importorskip("scipy.special")
    for a, b, x in [(0.5, 0.5, 0.3), (1, 0.5, 0.99), (150, 0.5, 0.97), (2.5, 0.5, 1e-6), (10, 20, 0.4)]:
        assert regularized_incomplete_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), abs=1e-12)


# --- randomization test ----------------------------------------------------------------------

def _naive_randomization(a, b, trials, seed):
    """The sign-flip test written plainly, drawing the same bits as the fast one."""
    diffs = [x - y for x, y in zip(a, b)]
    n = len(diffs)
    observed = abs(sum(diffs) / n)
    rng = random.Random(seed)
    hits = 0
    for _ in range(trials):
        bits = rng.getrandbits(n)
        total = sum(-d if bits >> i & 1 else d for i, d in enumerate(diffs))
        hits += abs(total / n) >= observed - 1e-12
    return (hits + 1) / (trials + 1)


def test_randomization_matches_plain_implementation_and_is_reproducible():
    rng = random.Random(3)
    for n in (1, 2, 5, 8, 9, 43, 100):
        a = [rng.random() for _ in range(n)]
        b = [x + rng.gauss(0.02, 0.1) for x in a]
        p = randomization_test(a, b, trials=2000, seed=11)
        assert p == _naive_randomization(a, b, 2000, 11)
        assert p == randomization_test(a, b, trials=2000, seed=11)
    assert randomization_test(a, b, trials=2000, seed=1) != randomization_test(a, b, trials=2000, seed=2)


def test_randomization_edge_cases_and_shift():
    assert randomization_test([0.2, 0.4, 0.6], [0.2, 0.4, 0.6]) == 1.0
    assert randomization_test([], []) == 1.0
    rng = random.Random(5)
    a = [rng.random() for _ in range(43)]
    shifted = [x + 0.3 + rng.gauss(0, 0.02) for x in a]
    assert randomization_test(shifted, a, trials=10_000) == 1 / 10_001
    with pytest.raises(ValueError):
        randomization_test([1.0], [1.0], trials=0)


def test_randomization_near_t_test_for_large_n():
    rng = random.Random(9)
    for shift in (0.0, 0.01, 0.02):
        a = [rng.random() for _ in range(300)]
        b = [x + rng.gauss(shift, 0.15) for x in a]
        assert randomization_test(a, b, trials=10_000) == pytest.approx(paired_t_test(a, b), abs=0.02)


def test_randomization_is_fast():
    rng = random.Random(1)
    a = [rng.random() for _ in range(43)]
    b = [rng.random() for _ in range(43)]
    started = time.perf_counter()
    randomization_test(a, b, trials=10_000)
    assert time.perf_counter() - started < 0.5  # about 5 ms on a laptop core


# --- Holm, wins/ties/losses ------------------------------------------------------------------

def test_holm_against_hand_computation():
    # sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> 0.06 monotone)
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])
    assert holm([0.9, 0.001, 0.6]) == pytest.approx([1.0, 0.003, 1.0])
    assert holm([0.2]) == [0.2]
    assert holm([]) == []


def test_wins_ties_losses():
    assert wins_ties_losses([0.5, 0.4, 0.3, 0.2], [0.4, 0.4 + 1e-12, 0.35, 0.2]) == (1, 2, 1)


# --- comparing runs --------------------------------------------------------------------------

QRELS = "".join(f"q{q} 0 d{q}{d} {grade}\n" for q in range(1, 9) for d, grade in enumerate([3, 2, 0, 1, 0]))


def _write_run(path, order_by_query, tag="t"):
    """A TREC run from qid -> docids best first."""
    lines = [f"{qid} Q0 {docid} {rank} {len(docs) - rank + 1} {tag}\n"
             for qid, docs in order_by_query.items() for rank, docid in enumerate(docs, 1)]
    Path(path).write_text("".join(lines))
    return str(path)


@pytest.fixture
def small(tmp_path):
    """Qrels of eight queries, a good run, a reversed (bad) run and the good one again."""
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(QRELS)
    docs = {f"q{q}": [f"d{q}{d}" for d in range(5)] for q in range(1, 9)}
    good = _write_run(tmp_path / "good.trec", docs)
    bad = _write_run(tmp_path / "bad.trec", {q: list(reversed(d)) for q, d in docs.items()})
    mixed = _write_run(tmp_path / "mixed.trec",
                       {q: d if int(q[1:]) % 2 else list(reversed(d)) for q, d in docs.items()})
    return tmp_path, str(qrels), good, bad, mixed


def test_compare_values_equal_evaluate(small):
    folder, qrels, good, bad, mixed = small
    rows = compare_runs([bad, good, mixed], qrels, metrics=("nDCG@10", "RR@10"), trials=2000)
    assert [row.name for row in rows] == ["bad", "good", "mixed"]
    for row, path in zip(rows, [bad, good, mixed]):
        assert row.values == evaluate(path, qrels, ["nDCG@10", "RR@10"]).aggregate
    assert rows[0].is_baseline and rows[0].p_t is None and (rows[0].wins, rows[0].ties, rows[0].losses) == (0, 8, 0)
    assert (rows[1].wins, rows[1].ties, rows[1].losses) == (8, 0, 0)
    assert (rows[2].wins, rows[2].ties, rows[2].losses) == (4, 4, 0)
    # Holm over the two systems: each adjusted p is at least the raw one
    raw = paired_t_test([rows[2].per_query[q]["nDCG@10"] for q in sorted(rows[0].per_query)],
                        [rows[0].per_query[q]["nDCG@10"] for q in sorted(rows[0].per_query)])
    assert rows[2].p_t["nDCG@10"] >= raw
    assert rows[1].p_rand["nDCG@10"] < 0.05


def test_compare_baseline_choice_and_names(small):
    folder, qrels, good, bad, mixed = small
    rows = compare_runs([good, bad, mixed], qrels, baseline=mixed, names=["G", "B", "M"], trials=500)
    assert [row.name for row in rows] == ["M", "G", "B"]
    separate = _write_run(folder / "other.trec", {f"q{q}": [f"d{q}{d}" for d in (1, 0, 2, 3, 4)]
                                                  for q in range(1, 9)})
    rows = compare_runs([good, bad], qrels, baseline=separate, trials=500)
    assert [row.name for row in rows] == ["other", "good", "bad"]
    with pytest.raises(ConfigError, match="names"):
        compare_runs([good, bad], qrels, names=["one"])


def test_compare_refuses_runs_over_other_queries(small):
    folder, qrels, good, bad, mixed = small
    partial = _write_run(folder / "partial.trec", {f"q{q}": [f"d{q}0"] for q in range(1, 6)})
    with pytest.raises(ConfigError, match="partial"):
        compare_runs([good, partial], qrels, trials=100)


def test_cost_columns_and_price(small):
    folder, qrels, good, bad, mixed = small
    summary = {"queries": 8, "calls": 24, "rounds": 16, "prompt_tokens": 80_000, "completion_tokens": 2_000,
               "cache_hits": 3, "parse_ok": 20, "parse_repaired": 3, "parse_unparseable": 1, "retries": 0,
               "latency": 12.0, "wall_seconds": 5.5}
    (folder / "good.summary.json").write_text(json.dumps(summary))
    (folder / "mixed.trec.summary.json").write_text(json.dumps({**summary, "prompt_tokens": 40_000}))
    assert summary_path(good) == folder / "good.summary.json"
    assert summary_path(mixed) == folder / "mixed.trec.summary.json"
    assert summary_path(bad) is None
    rows = compare_runs([bad, good, mixed], qrels, price_per_million=(2.5, 10.0), trials=200)
    assert rows[0].costs is None
    costs = rows[1].costs
    assert costs["price"] == pytest.approx((80_000 * 2.5 + 2_000 * 10.0) / 1e6)
    assert costs["price_per_query"] == pytest.approx(costs["price"] / 8)
    assert costs["prompt_tokens_per_query"] == 10_000 and costs["latency_per_query"] == 1.5
    assert rows[2].costs["price"] == pytest.approx((40_000 * 2.5 + 2_000 * 10.0) / 1e6)
    text = format_comparison(rows)
    assert "prompt/q" in text and "$/q" in text and "10,000" in text  # terminal headings are short
    table = list(csv.reader(io.StringIO(format_comparison(rows, "csv"))))
    header = table[0]
    assert "price" in header and table[1][header.index("price")] == ""
    assert float(table[2][header.index("price")]) == pytest.approx(0.22)
    # without a price, no price columns; without any summary, no cost columns
    assert "$/q" not in format_comparison(compare_runs([bad, good], qrels, trials=200))
    assert "calls" not in format_comparison(compare_runs([bad, good], qrels, trials=200)[:1])
    assert read_costs(folder / "good.summary.json")["price"] is None


def test_formats(small):
    folder, qrels, good, bad, mixed = small
    rows = compare_runs([bad, good, mixed], qrels, metrics=("nDCG@10", "RR@10"), trials=2000)
    terminal = format_comparison(rows, "terminal")
    assert "Holm" in terminal and "8/0/0" in terminal and "**" in terminal
    markdown = format_comparison(rows, "markdown").strip().split("\n")
    table = [line for line in markdown if line.startswith("|")]
    assert table[1].startswith("|---|") and "---:" in table[1]
    assert len({line.count(" | ") for line in table if line != table[1]}) == 1
    assert len(table[1].split("|")) == len(table[0].split("|"))
    assert len(table) == 5 and "Holm" in markdown[-1]
    rows_csv = list(csv.reader(io.StringIO(format_comparison(rows, "csv"))))
    assert len(rows_csv) == 4 and len({len(r) for r in rows_csv}) == 1
    assert float(rows_csv[1][1]) == pytest.approx(rows[0].values["nDCG@10"])
    assert "*" not in "".join(rows_csv[2])
    latex = format_comparison(rows, "latex")
    assert r"\begin{tabular}" in latex and r"\toprule" in latex and r"\bottomrule" in latex
    assert "$^{**}$" in latex or "$^{*}$" in latex
    assert format_comparison(rows, metrics=["RR@10"]).count("RR@10") >= 1
    with pytest.raises(ConfigError):
        format_comparison(rows, "html")
    with pytest.raises(ConfigError):
        format_comparison(rows, metrics=["P@5"])


def test_latex_escapes(small):
    folder, qrels, good, bad, mixed = small
    rows = compare_runs([bad, good], qrels, names=["bm25_top", "gpt 50%"], trials=200)
    latex = format_comparison(rows, "latex")
    assert r"bm25\_top" in latex and r"gpt 50\%" in latex


# --- DL19 ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dl19_runs(tmp_path_factory):
    """The BM25 top-100 run and an ideal reranking of it (by qrels grade) of TREC DL 2019."""
    if not DL19.is_dir():
        pytest.skip(f"{DL19} not found")
    from rerank.formats import TrecRunWriter, read_qrels, read_requests
    from rerank.types import Candidate, Result

    folder = tmp_path_factory.mktemp("dl19")
    qrels = read_qrels(DL19 / "qrels.dl19-passage.txt")
    bm25, ideal = folder / "bm25.trec", folder / "ideal.trec"
    with TrecRunWriter(bm25, "bm25") as plain, TrecRunWriter(ideal, "ideal") as best:
        for request in read_requests(DL19 / "bm25_top100.json"):
            plain.write(Result(request.query, request.candidates))
            grades = qrels.get(request.query.qid, {})
            ranked = sorted(request.candidates, key=lambda c: -grades.get(c.docid, 0))
            best.write(Result(request.query, [Candidate(c.docid, c.text) for c in ranked]))
    return str(bm25), str(ideal), str(DL19 / "qrels.dl19-passage.txt")


def test_dl19_ideal_beats_bm25(dl19_runs):
    bm25, ideal, qrels = dl19_runs
    rows = compare_runs([bm25, ideal], qrels)
    assert rows[0].values["nDCG@10"] == evaluate(bm25, qrels, ["nDCG@10"]).aggregate["nDCG@10"]
    assert rows[1].values["nDCG@10"] == evaluate(ideal, qrels, ["nDCG@10"]).aggregate["nDCG@10"]
    assert rows[1].values["nDCG@10"] > rows[0].values["nDCG@10"]
    assert rows[1].p_t["nDCG@10"] < 0.01 and rows[1].p_rand["nDCG@10"] < 0.01
    assert "**" in format_comparison(rows).split("\n")[2]


def test_dl19_run_against_itself(dl19_runs, tmp_path):
    bm25, _, qrels = dl19_runs
    copy = tmp_path / "bm25_copy.trec"
    copy.write_text(Path(bm25).read_text())
    rows = compare_runs([bm25, str(copy)], qrels)
    assert len(rows[0].per_query) == 43
    assert rows[1].p_t["nDCG@10"] == 1.0 and rows[1].p_rand["nDCG@10"] == 1.0
    assert (rows[1].wins, rows[1].ties, rows[1].losses) == (0, 43, 0)
    assert "0/43/0" in format_comparison(rows)


# --- plots -----------------------------------------------------------------------------------

def _check_png(path):
    matplotlib_image = pytest.importorskip("matplotlib.image")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib_image.imread(str(path))
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0  # something was drawn


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from rerank.evaluation.plots import plot_per_query_differences, plot_quality_vs_cost

    rng = random.Random(2)
    base = {f"q{i}": rng.random() for i in range(43)}
    system = {q: min(1.0, v + rng.gauss(0.05, 0.1)) for q, v in base.items()}
    plot_per_query_differences(base, system, tmp_path / "diff.png", title="nDCG@10: system - BM25")
    _check_png(tmp_path / "diff.png")
    plot_quality_vs_cost([("bm25", 0.0, 0.506), ("window", 12_000.0, 0.68), ("full", 9_000.0, 0.66)],
                         tmp_path / "cost.png")
    _check_png(tmp_path / "cost.png")
    with pytest.raises(ConfigError):
        plot_per_query_differences({"a": 1.0}, {"b": 1.0}, tmp_path / "none.png")


def test_compare_module_is_light():
    import subprocess
    import sys

    code = ("import sys, rerank.evaluation.compare, rerank.evaluation.plots; "
            "print(any(m.startswith('matplotlib') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
