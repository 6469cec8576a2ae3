"""`rerank experiment` and `rerank compare` on DL19 with the test judges."""

import json

import pytest

from conftest import REPO, run_cli
from llm_server import start_server
from rerank.errors import ConfigError
from rerank.formats import TrecRunWriter, read_requests
from rerank.experiments import load_experiment

pytestmark = pytest.mark.integration
EXPERIMENT = REPO / "eval" / "experiments" / "dl19_judges.yaml"


def test_published_setups_parse():
    for name in ("dl19_published", "dl20_published"):
        experiment = load_experiment(REPO / "eval" / "experiments" / f"{name}.yaml")
        assert [v.name for v in experiment.variants] == ["rankgpt-sliding", "rankzephyr-sliding", "full-100"]
        assert experiment.references["bm25"] in (0.5058, 0.4796)
    for name in ("methods_dl19", "methods_dl20"):
        experiment = load_experiment(REPO / "eval" / "experiments" / f"{name}.yaml")
        strategies = {v.settings["strategy"] for v in experiment.variants}
        assert strategies == {"sliding", "full", "tdpart", "setwise", "pairwise", "tourrank", "jointrank", "pointwise"}


def test_bad_experiment_files(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("candidates: a.json\nqrels: q.txt\ngrid: {strategy: [sliding]}\nsettings: {windw: 3}\n")
    with pytest.raises(ConfigError, match=r"x.yaml: field 'settings.windw': unknown setting"):
        load_experiment(path)
    path.write_text("candidates: a.json\nqrels: q.txt\nsettings: {window: '${NOPE_NOT_SET}'}\n")
    with pytest.raises(ConfigError, match="NOPE_NOT_SET is not set"):
        load_experiment(path)
    path.write_text("candidates: a.json\nqrels: q.txt\nsettings: {window: 'big'}\n")
    with pytest.raises(ConfigError, match="field 'settings.window': 'big' is not a valid int"):
        load_experiment(path)


def test_experiment_with_the_judges_runs_in_one_command_and_reruns_free(dl19, tmp_path):
    """As the README says: one command, the judges in process, no server."""
    results = tmp_path / "results"
    names = ["identity-sliding", "identity-full", "oracle-sliding", "oracle-full", "noisy-sliding", "noisy-full"]
    first = run_cli("experiment", EXPERIMENT, "--results", results)
    assert first.returncode == 0, first.stderr
    paid = sum(json.loads((results / f"{name}.summary.json").read_text())["calls"] for name in names)
    assert paid == 3 * 43 * (9 + 1)
    second = run_cli("experiment", EXPERIMENT, "--results", results, "--resume")
    assert second.returncode == 0, second.stderr
    for name in names:
        summary = json.loads((results / f"{name}.summary.json").read_text())
        assert summary["cache_hits"] == summary["calls"] > 0  # the rerun's
        assert (results / f"{name}.trec").exists() and (results / f"{name}.jsonl").exists()
    # Same metrics, tests and wins/ties/losses; only the cost columns (cache hits, time) differ.
    assert [line.split()[:7] for line in first.stdout.splitlines()] == \
        [line.split()[:7] for line in second.stdout.splitlines()]
    table = {line.split()[0]: line.split() for line in first.stdout.splitlines() if line.split()}
    assert table["oracle-sliding"][1].startswith("0.8922") and table["oracle-sliding"][1].endswith("**")
    assert table["identity-full"][1] == "0.5058"
    markdown = (results / "comparison.md").read_text()
    assert markdown.splitlines()[1].startswith("|") and "---" in markdown.splitlines()[1]
    assert (results / "comparison.csv").exists() and "tabular" in (results / "comparison.tex").read_text()
    pngs = sorted(p.name for p in results.glob("*.png"))
    if pngs:  # matplotlib installed
        assert "quality-vs-cost.png" in pngs and len(pngs) == len(names) + 1
        assert all((results / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_compare_marks_the_perfect_judge_and_ties_a_run_with_itself(dl19, tmp_path):
    with start_server("oracle", data_dir=dl19) as oracle:
        proc = run_cli("run", dl19 / "bm25_top100.json", "-o", tmp_path / "o.jsonl", "--trec", tmp_path / "oracle.trec",
                       "--model", "oracle", "--base-url", oracle.base_url, "--no-cache",
                       "--summary-json", tmp_path / "oracle.summary.json")
    assert proc.returncode == 0, proc.stderr
    bm25 = tmp_path / "bm25.trec"
    with TrecRunWriter(bm25, tag="bm25") as writer:
        for request in read_requests(dl19 / "bm25_top100.json"):
            writer.write(request)
    qrels = dl19 / "qrels.dl19-passage.txt"
    compared = run_cli("compare", bm25, tmp_path / "oracle.trec", "--qrels", qrels, "--format", "csv",
                       "--price", "1", "2")
    assert compared.returncode == 0, compared.stderr
    import csv
    rows = list(csv.DictReader(compared.stdout.splitlines()))
    oracle_row = rows[1]
    assert oracle_row["system"] == "oracle"
    assert float(oracle_row["p_t nDCG@10"]) < 0.01 and float(oracle_row["p_rand nDCG@10"]) < 0.01
    evaluated = run_cli("eval", tmp_path / "oracle.trec", "--qrels", qrels, "--metrics", "nDCG@10").stdout.split()[-1]
    assert f"{float(oracle_row['nDCG@10']):.4f}" == evaluated
    assert float(oracle_row["prompt_tokens_per_query"]) > 0  # the cost columns, from oracle.summary.json
    assert float(oracle_row["price"]) > 0
    itself = run_cli("compare", bm25, bm25, "--qrels", qrels, "--format", "csv")
    same = list(csv.DictReader(itself.stdout.splitlines()))[1]
    assert float(same["p_t nDCG@10"]) == 1.0 and float(same["p_rand nDCG@10"]) == 1.0
    assert (same["wins"], same["ties"], same["losses"]) == ("0", "43", "0")


@pytest.mark.integration
@pytest.mark.parametrize("collection", ["dl19", "dl20"])
def test_every_method_in_one_table_whose_rows_equal_rerank_eval(collection, tmp_path):
    """eval/experiments/methods_*.yaml, on 3 queries against the oracle judge: one row per method."""
    import csv

    import yaml

    from conftest import data_dir

    data = data_dir(collection)
    spec = yaml.safe_load((REPO / "eval" / "experiments" / f"methods_{collection}.yaml").read_text())
    source = tmp_path / "in.json"
    source.write_text(json.dumps(json.loads((data / "bm25_top100.json").read_text())[:3]))
    spec |= {"candidates": str(source), "qrels": str(next(data.glob("qrels.*"))), "results": str(tmp_path / "results")}
    experiment = tmp_path / "methods.yaml"
    experiment.write_text(yaml.safe_dump(spec))
    with start_server("oracle", data_dir=data) as oracle:
        env = {"RERANK_MODEL": "judge", "RERANK_REASONING_MODEL": "judge", "RERANK_BASE_URL": oracle.base_url}
        proc = run_cli("experiment", experiment, "--format", "csv", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {row["system"]: row for row in csv.DictReader((tmp_path / "results" / "comparison.csv").open())}
    assert set(rows) == {"first-stage", *spec["grid"]["method"]}
    for name, row in rows.items():
        evaluated = run_cli("eval", tmp_path / "results" / f"{name}.trec", "--qrels", spec["qrels"],
                            "--metrics", "nDCG@10", "nDCG@5", "MAP@100")
        values = dict(line.split() for line in evaluated.stdout.splitlines()[1:])
        for metric in ("nDCG@10", "nDCG@5", "MAP@100"):
            assert f"{float(row[metric]):.4f}" == values[metric], (name, metric)
