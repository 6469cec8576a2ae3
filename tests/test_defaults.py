"""Defaults that surprise nobody: the step follows the window, metric names as users write them
(any case, trec_eval's names), plots as PNG, PDF or SVG, and ``rerank --version``."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import read_summary, run_cli
from rerank.errors import ConfigError
from rerank.evaluation.metrics import evaluate_run, metric_name, metric_names
from rerank.strategies import SlidingWindow, make_strategy, window_schedule

STEPPED = ("sliding", "single-token", "shrinking")


# --- the step follows the window ---------------------------------------------------------------

@pytest.mark.parametrize("name", STEPPED)
@pytest.mark.parametrize("window,step", [(20, 10), (10, 5), (9, 4), (3, 1), (2, 1), (100, 50)])
def test_step_defaults_to_half_the_window(name, window, step):
    assert make_strategy(name, {"window": window}).step == step


@pytest.mark.parametrize("name", STEPPED)
def test_default_geometry_stays_rankgpts_20_10(name):
    strategy = make_strategy(name)
    assert (strategy.window, strategy.step) == (20, 10)
    assert SlidingWindow() == SlidingWindow(window=20, step=10)
    assert window_schedule(100, strategy.window, strategy.step)[:2] == [(80, 100), (70, 90)]


@pytest.mark.parametrize("name", STEPPED)
def test_a_given_step_is_kept_and_still_checked(name):
    assert make_strategy(name, {"window": 10, "step": 3}).step == 3
    with pytest.raises(ConfigError, match="--step"):
        make_strategy(name, {"window": 10, "step": 10})


@given(window=st.integers(2, 500))
def test_any_window_alone_gives_a_valid_step(window):
    strategy = make_strategy("sliding", {"window": window})
    assert strategy.step == window // 2 and 1 <= strategy.step < strategy.window


def test_run_with_window_10_alone(tmp_path, dl19):
    """``--window 10`` with no ``--step``: windows of 10 moving by 5 (5 windows over a top 30)."""
    from rerank.formats import RankLLMWriter, read_requests

    requests = []
    for request in read_requests(dl19 / "bm25_top100.json"):
        requests.append(request)
        if len(requests) == 2:
            break
    path = tmp_path / "two.jsonl"
    with RankLLMWriter(path) as writer:
        for request in requests:
            writer.write(request)
    proc = run_cli("run", path, "-o", tmp_path / "out.jsonl", "--backend", "judge", "--model",
                   f"judge:oracle:{dl19}", "--no-cache", "--quiet", "--top-k", 30, "--window", 10,
                   "--summary-json", tmp_path / "summary.json")
    assert proc.returncode == 0, proc.stderr
    summary = read_summary(tmp_path / "summary.json")
    assert (summary["queries"], summary["calls"]) == (2, 2 * len(window_schedule(30, 10, 5)))


def test_help_says_the_step_follows_the_window():
    for command in ("run", "labels", "simulate"):
        help_text = " ".join(run_cli(command, "--help").stdout.split())
        assert "half the window" in help_text and "(default: None)" not in help_text


# --- metric names ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("nDCG@10", "nDCG@10"), ("MAP@100", "MAP@100"), ("RR@10", "RR@10"),  # ir_measures' own: as written
    ("ndcg@10", "nDCG@10"), ("NDCG_CUT_10", "nDCG@10"), ("ndcg_cut_10", "nDCG@10"), ("ndcg_cut.10", "nDCG@10"),
    ("map", "AP"), ("Map", "AP"), ("map_cut_100", "AP@100"), ("map@100", "AP@100"),
    ("recip_rank", "RR"), ("mrr@10", "RR@10"), ("rr@10", "RR@10"),
    ("P_5", "P@5"), ("p_5", "P@5"), ("P.5", "P@5"), ("p@5", "P@5"),
    ("recall_100", "R@100"), ("r@100", "R@100"), ("recall@100", "R@100"),
    ("ndcg", "nDCG"), ("bpref", "Bpref"), ("rprec", "Rprec"), ("success_10", "Success@10"),
    ("judged@10", "Judged@10"), (" nDCG@10 ", "nDCG@10"),
])
def test_metric_names_users_write(name, expected):
    assert metric_name(name) == expected


@pytest.mark.parametrize("name,message", [
    ("", "unknown metric"), ("foo", "unknown metric"), ("nDCG@x", "unknown metric"),
    ("ndcg_cut", "trec_eval's name of 9 measures"),
])
def test_bad_metric_names_say_what_to_write(name, message):
    with pytest.raises(ConfigError, match=message) as error:
        metric_name(name)
    assert "nDCG@10" in str(error.value)


def _any_case(draw_randoms, text: str) -> str:
    return "".join(c.upper() if draw_randoms.random() < 0.5 else c.lower() for c in text)


@given(pair=st.sampled_from([("nDCG@10", "nDCG@10"), ("RR@10", "RR@10"), ("P@5", "P@5"), ("R@100", "R@100"),
                             ("AP@100", "AP@100"), ("ndcg_cut_10", "nDCG@10"), ("recip_rank", "RR"),
                             ("map", "AP"), ("P_5", "P@5"), ("recall_100", "R@100"), ("map_cut_20", "AP@20")]),
       randoms=st.randoms())
def test_metric_names_are_case_insensitive(pair, randoms):
    import ir_measures

    name, expected = pair
    assert ir_measures.parse_measure(metric_name(_any_case(randoms, name))) == ir_measures.parse_measure(expected)


@settings(max_examples=300)
@given(st.text(max_size=24))
def test_any_text_is_a_measure_or_a_config_error(text):
    import ir_measures

    try:
        name = metric_name(text)
    except ConfigError:
        return
    ir_measures.parse_measure(name)


def test_evaluation_keys_are_the_names_as_read():
    run = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"d": 2.0, "e": 1.0}}
    qrels = {"q1": {"a": 0, "b": 2, "c": 1}, "q2": {"d": 1, "e": 0}}
    evaluation = evaluate_run(run, qrels, ["ndcg_cut_10", "MAP", "map", "recip_rank"])
    assert evaluation.metrics == ("nDCG@10", "MAP", "AP", "RR")
    # Two names of one measure each get its value (MAP and AP are one measure).
    assert evaluation.aggregate["MAP"] == evaluation.aggregate["AP"] > 0
    assert evaluation.aggregate["RR"] == pytest.approx((0.5 + 1.0) / 2)
    assert set(evaluation.per_query["q1"]) == {"nDCG@10", "MAP", "AP", "RR"}
    assert metric_names(["P_5", "ndcg"]) == ["P@5", "nDCG"]


def _write_run_and_qrels(folder: Path) -> tuple[Path, Path, Path]:
    rng = random.Random(3)
    qrels_lines, base_lines, other_lines = [], [], []
    for q in range(8):
        docs = [f"d{q}_{i}" for i in range(10)]
        qrels_lines += [f"q{q} 0 {doc} {rng.randint(0, 2)}" for doc in docs]
        for lines, order in ((base_lines, docs), (other_lines, rng.sample(docs, len(docs)))):
            lines += [f"q{q} Q0 {doc} {rank} {10 - rank} t" for rank, doc in enumerate(order, start=1)]
    paths = folder / "qrels.txt", folder / "base.trec", folder / "other.trec"
    for path, lines in zip(paths, (qrels_lines, base_lines, other_lines)):
        path.write_text("\n".join(lines) + "\n")
    return paths


def test_eval_reads_trec_eval_names(tmp_path):
    qrels, run, _ = _write_run_and_qrels(tmp_path)
    ours = run_cli("eval", run, "--qrels", qrels, "--metrics", "nDCG@10", "AP", "RR", "P@5")
    theirs = run_cli("eval", run, "--qrels", qrels, "--metrics", "ndcg_cut_10", "map", "recip_rank", "p_5")
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    assert theirs.stdout == ours.stdout
    for name in ("nDCG@10", "AP", "RR", "P@5"):
        assert name in theirs.stdout


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_an_unknown_metric_is_one_line(tmp_path, command):
    qrels, run, _ = _write_run_and_qrels(tmp_path)
    proc = run_cli(command, run, "--qrels", qrels, "--metrics", "ndcg_cut_10", "nDGC@10")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown metric 'nDGC@10'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# --- plots in PNG, PDF or SVG ------------------------------------------------------------------

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}


def _check_plot(path: Path, fmt: str) -> None:
    data = path.read_bytes()
    if fmt == "svg":
        assert b"<svg" in data[:2000] and data.rstrip().endswith(b"</svg>")
    else:
        assert data.startswith(MAGIC[fmt])


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_plots_in_every_format(tmp_path, fmt):
    pytest.importorskip("matplotlib")
    from rerank.evaluation.plots import plot_groups, plot_per_query_differences, plot_quality_vs_cost

    rng = random.Random(2)
    base = {f"q{i}": rng.random() for i in range(20)}
    plot_per_query_differences(base, {q: v + rng.gauss(0, 0.1) for q, v in base.items()}, tmp_path / f"d.{fmt}")
    plot_quality_vs_cost([("bm25", 0.0, 0.5), ("full", 9000.0, 0.66)], tmp_path / f"c.{fmt}")
    plot_groups({"perfect": [("sliding", 9.0, 0.89)], "identity": [("sliding", 9.0, 0.5)]}, tmp_path / f"g.{fmt}",
                title="t", xlabel="x", ylabel="y")
    for stem in "dcg":
        _check_plot(tmp_path / f"{stem}.{fmt}", fmt)


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_pdf_and_svg_plots_are_reproducible(tmp_path, fmt):
    pytest.importorskip("matplotlib")
    from rerank.evaluation.plots import plot_quality_vs_cost

    for name in ("a", "b"):
        plot_quality_vs_cost([("bm25", 0.0, 0.5), ("full", 9000.0, 0.66)], tmp_path / f"{name}.{fmt}")
    assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"b.{fmt}").read_bytes()


def test_a_plot_of_another_format_is_refused(tmp_path):
    pytest.importorskip("matplotlib")
    from rerank.evaluation.plots import plot_quality_vs_cost

    with pytest.raises(ConfigError, match="png, pdf, svg"):
        plot_quality_vs_cost([("bm25", 0.0, 0.5)], tmp_path / "c.jpg")


def test_compare_writes_svg_plots(tmp_path):
    pytest.importorskip("matplotlib")
    qrels, base, other = _write_run_and_qrels(tmp_path)
    proc = run_cli("compare", base, other, "--qrels", qrels, "--metrics", "ndcg_cut_10",
                   "--plots", tmp_path / "plots", "--plot-format", "svg", "--trials", 200)
    assert proc.returncode == 0, proc.stderr
    _check_plot(tmp_path / "plots" / "per-query-other.svg", "svg")
    assert not list((tmp_path / "plots").glob("*.png"))
    assert "nDCG@10" in proc.stdout


def test_plot_format_is_checked(tmp_path):
    qrels, base, other = _write_run_and_qrels(tmp_path)
    proc = run_cli("compare", base, other, "--qrels", qrels, "--plots", tmp_path / "p", "--plot-format", "jpg")
    assert proc.returncode == 2 and "--plot-format" in proc.stderr and "Traceback" not in proc.stderr


# --- rerank --version --------------------------------------------------------------------------

def test_version():
    import rerank
    from rerank.cli import DISTRIBUTION, package_version

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"rerank {package_version()} ({DISTRIBUTION})"
    assert package_version() == rerank.__version__
