"""ir_datasets datasets by id (``--dataset``): a dataset registered offline from local files built
from DL19 gives the same requests, runs and scores as the same data given as files."""

import json
import textwrap
import uuid
from collections import namedtuple
from pathlib import Path

import pytest

from conftest import run_cli

pytest.importorskip("ir_datasets")

from rerank.errors import ConfigError, MissingField, UnknownId, UnreadableFile  # noqa: E402
from rerank.formats import read_qrels, read_run_requests  # noqa: E402
from rerank.formats.irds import IrDataset, _passage, import_dataset_modules  # noqa: E402

# The datasets the registering module defines, by the part they lack or break.
REGISTER = textwrap.dedent('''\
    import ir_datasets
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import TrecQrels, TrecScoredDocs, TsvDocs, TsvQueries
    from ir_datasets.util import LocalDownload

    FOLDER = {folder!r}
    PREFIX = {prefix!r}


    def local(name):
        return LocalDownload(FOLDER + "/" + name)


    def register(name, *parts):
        ir_datasets.registry.register(PREFIX + name, Dataset(*parts))


    register("dl19", TsvDocs(local("docs.tsv")), TsvQueries(local("queries.tsv")),
             TrecQrels(local("qrels.txt"), {{}}), TrecScoredDocs(local("run.trec")))
    register("no-first-stage", TsvDocs(local("docs.tsv")), TsvQueries(local("queries.tsv")),
             TrecQrels(local("qrels.txt"), {{}}))
    register("no-qrels", TsvDocs(local("docs.tsv")), TsvQueries(local("queries.tsv")),
             TrecScoredDocs(local("run.trec")))
    register("missing-doc", TsvDocs(local("docs.tsv")), TsvQueries(local("queries.tsv")),
             TrecScoredDocs(local("run-unknown-doc.trec")))
    register("missing-file", TsvDocs(local("docs.tsv")), TsvQueries(local("no-such-file.tsv")),
             TrecScoredDocs(local("run.trec")))
    ''')


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def local_dl19(tmp_path_factory):
    """DL19's BM25 top 100 as local ir_datasets files (docs TSV, queries TSV, qrels, a TREC run
    as scoreddocs), the module registering them, and the environment that imports it."""
    source = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dl19"
    if not source.is_dir():
        pytest.skip(f"{source} not found (the evaluation data lives beside the project)")
    folder = tmp_path_factory.mktemp("local-dl19")
    docs, queries, run = {}, {}, []
    for entry in json.loads((source / "bm25_top100.json").read_text(encoding="utf-8")):
        for rank, hit in enumerate(entry["hits"], 1):
            qid, docid = str(hit["qid"]), str(hit["docid"])
            queries.setdefault(qid, _one_line(entry["query"]))
            docs.setdefault(docid, _one_line(hit["content"]))
            run.append(f"{qid} Q0 {docid} {rank} {hit['score']} bm25")
    (folder / "docs.tsv").write_text("".join(f"{d}\t{t}\n" for d, t in docs.items()), encoding="utf-8")
    (folder / "queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in queries.items()), encoding="utf-8")
    (folder / "qrels.txt").write_text((source / "qrels.dl19-passage.txt").read_text(encoding="utf-8"))
    (folder / "run.trec").write_text("\n".join(run) + "\n", encoding="utf-8")
    (folder / "run-unknown-doc.trec").write_text(run[0] + "\n" + run[1].replace(run[1].split()[2], "no-such-doc")
                                                 + "\n", encoding="utf-8")
    prefix = f"rerank-test-{uuid.uuid4().hex[:8]}/"
    module = folder / "register_local.py"
    module.write_text(REGISTER.format(folder=str(folder), prefix=prefix), encoding="utf-8")
    env = {"RERANK_DATASET_MODULES": str(module), "IR_DATASETS_HOME": str(folder / "ir_datasets_home")}
    return {"folder": folder, "prefix": prefix, "module": module, "env": env, "source": source,
            "queries": len(queries)}


@pytest.fixture
def registered(local_dl19, monkeypatch):
    """The local datasets registered in this process too (imported once, however often asked)."""
    for name, value in local_dl19["env"].items():
        monkeypatch.setenv(name, value)
    import_dataset_modules()
    return local_dl19


def test_the_dataset_gives_what_the_files_hold(registered):
    folder = registered["folder"]
    dataset = IrDataset(registered["prefix"] + "dl19")
    assert str(dataset) == f"ir_datasets:{registered['prefix']}dl19"
    assert dataset.qrels() == read_qrels(folder / "qrels.txt")
    assert len(dataset.queries()) == registered["queries"]
    from_files = list(read_run_requests(folder / "run.trec", folder / "docs.tsv", folder / "queries.tsv"))
    assert list(dataset.requests(depth=None)) == from_files
    assert list(dataset.requests(folder / "run.trec")) == from_files
    first = from_files[0]
    assert dataset.documents([first.candidates[0].docid, "no-such-doc"]) == {
        first.candidates[0].docid: (None, first.candidates[0].text)}


def test_the_first_stage_keeps_the_best_of_each_query_by_score(registered):
    dataset = IrDataset(registered["prefix"] + "dl19")
    whole = dataset.first_stage(depth=None)
    cut = dataset.first_stage(depth=5)
    assert list(cut) == list(whole)
    for qid, entries in cut.items():
        assert entries == whole[qid][:5]
        assert [score for _, score, _ in entries] == sorted((score for _, score, _ in entries), reverse=True)
    requests = list(dataset.requests(depth=5))
    assert all(len(request.candidates) == 5 for request in requests)
    with pytest.raises(ConfigError, match="at least 1"):
        dataset.first_stage(depth=0)


def test_an_unknown_id_or_a_missing_part_is_one_clear_error(registered):
    with pytest.raises(ConfigError, match="knows no dataset 'no/such/dataset'"):
        IrDataset("no/such/dataset")
    with pytest.raises(ConfigError, match="has no first stage"):
        IrDataset(registered["prefix"] + "no-first-stage").requests()
    with pytest.raises(ConfigError, match="has no qrels"):
        IrDataset(registered["prefix"] + "no-qrels").qrels()
    with pytest.raises(UnknownId, match="no-such-doc"):
        list(IrDataset(registered["prefix"] + "missing-doc").requests())
    with pytest.raises(UnreadableFile, match="cannot read its queries") as caught:
        IrDataset(registered["prefix"] + "missing-file").queries()
    assert "\n" not in str(caught.value)


def test_a_document_gives_its_text_field_and_title():
    Doc = namedtuple("Doc", "doc_id url title body")
    assert _passage(Doc("d1", "http://x", " A title ", "the body"), "here") == ("A title", "the body")
    Plain = namedtuple("Plain", "doc_id text")
    assert _passage(Plain("d2", "just text"), "here") == (None, "just text")
    Odd = namedtuple("Odd", "doc_id blob")
    with pytest.raises(MissingField, match="no text field"):
        _passage(Odd("d3", b"x"), "here")


def test_a_registering_module_is_imported_once_and_its_failure_is_one_line(registered, tmp_path):
    assert import_dataset_modules() == [str(registered["module"])]
    import_dataset_modules()  # registering again would raise: the module is not run twice
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no way')\n")
    with pytest.raises(ConfigError, match="cannot import .*broken.py: RuntimeError: no way"):
        import_dataset_modules(str(broken))
    with pytest.raises(ConfigError, match="cannot import no_such_module_here"):
        import_dataset_modules("no_such_module_here")


def test_a_run_file_retriever_reads_its_texts_from_the_dataset(registered):
    import asyncio

    from rerank.retrieval import RunFileRetriever
    from rerank.types import Query

    folder = registered["folder"]
    dataset = IrDataset(registered["prefix"] + "dl19")
    queries = [Query(qid=qid, text=text) for qid, text in list(dataset.queries().items())[:3]]
    from_dataset = asyncio.run(RunFileRetriever(folder / "run.trec", dataset).retrieve(queries, 10))
    from_files = asyncio.run(RunFileRetriever(folder / "run.trec", folder / "docs.tsv").retrieve(queries, 10))
    assert from_dataset == from_files


def test_bm25_indexes_the_dataset_like_its_file(registered, tmp_path):
    pytest.importorskip("bm25s")
    import asyncio

    from rerank.retrieval import BM25Retriever

    folder = registered["folder"]
    dataset = IrDataset(registered["prefix"] + "dl19")
    queries = dataset.query_list()[:5]
    over_dataset = BM25Retriever(dataset, index_dir=tmp_path)
    over_file = BM25Retriever(folder / "docs.tsv", index_dir=tmp_path)
    assert over_dataset.index_path != over_file.index_path
    assert asyncio.run(over_dataset.retrieve(queries, 20)) == asyncio.run(over_file.retrieve(queries, 20))
    assert json.loads((over_dataset.index_path / "meta.json").read_text())["corpus"] == str(dataset)


def _ndcg10(output: str) -> float:
    line = next(line for line in output.splitlines() if line.startswith("nDCG@10"))
    return float(line.split()[1])


@pytest.mark.integration
def test_run_with_a_dataset_scores_as_the_same_data_given_as_files(local_dl19, tmp_path):
    """The check of the issue: --dataset gives the same nDCG@10 (and the same run) as files."""
    folder, env, name = local_dl19["folder"], local_dl19["env"], local_dl19["prefix"] + "dl19"
    judge = ["--backend", "judge", "--model", f"judge:oracle:{local_dl19['source']}", "--no-cache", "--quiet"]
    files = run_cli("run", folder / "run.trec", "--corpus", folder / "docs.tsv", "--queries", folder / "queries.tsv",
                    "-o", tmp_path / "files.jsonl", "--trec", tmp_path / "files.trec", *judge, env=env)
    assert files.returncode == 0, files.stderr
    first_stage = run_cli("run", "--dataset", name, "-o", tmp_path / "dataset.jsonl", "--trec",
                          tmp_path / "dataset.trec", *judge, env=env)
    assert first_stage.returncode == 0, first_stage.stderr
    given_run = run_cli("run", folder / "run.trec", "--dataset", name, "-o", tmp_path / "run.jsonl", "--trec",
                        tmp_path / "run.trec", *judge, env=env)
    assert given_run.returncode == 0, given_run.stderr
    expected = (tmp_path / "files.trec").read_text()
    assert (tmp_path / "dataset.trec").read_text() == expected
    assert (tmp_path / "run.trec").read_text() == expected
    assert (tmp_path / "dataset.jsonl").read_text() == (tmp_path / "files.jsonl").read_text()

    by_file = run_cli("eval", tmp_path / "files.trec", "--qrels", folder / "qrels.txt", "--metrics", "nDCG@10",
                      env=env)
    by_dataset = run_cli("eval", tmp_path / "dataset.trec", "--dataset", name, "--metrics", "nDCG@10", env=env)
    assert by_file.returncode == 0 and by_dataset.returncode == 0, by_file.stderr + by_dataset.stderr
    assert _ndcg10(by_dataset.stdout) == _ndcg10(by_file.stdout) == pytest.approx(0.8922, abs=1e-4)

    compared = {}
    for how in (["--qrels", folder / "qrels.txt"], ["--dataset", name]):
        result = run_cli("compare", folder / "run.trec", tmp_path / "dataset.trec", *how, "--format", "csv", env=env)
        assert result.returncode == 0, result.stderr
        compared[how[0]] = result.stdout
    assert compared["--qrels"] == compared["--dataset"]


@pytest.mark.integration
def test_retrieve_pipeline_and_labels_read_the_dataset(local_dl19, tmp_path):
    folder, env, name = local_dl19["folder"], local_dl19["env"], local_dl19["prefix"] + "dl19"
    first = ["--retriever", f"run:{folder / 'run.trec'}", "-k", "20"]
    by_files = run_cli("retrieve", "--corpus", folder / "docs.tsv", "--queries", folder / "queries.tsv", *first,
                       "-o", tmp_path / "files.jsonl", env=env)
    by_dataset = run_cli("retrieve", "--dataset", name, *first, "-o", tmp_path / "dataset.jsonl", env=env)
    assert by_files.returncode == 0 and by_dataset.returncode == 0, by_files.stderr + by_dataset.stderr
    assert (tmp_path / "dataset.jsonl").read_text() == (tmp_path / "files.jsonl").read_text()

    judge = ["--backend", "judge", "--model", f"judge:oracle:{local_dl19['source']}", "--no-cache", "--quiet"]
    pipeline = run_cli("pipeline", "--dataset", name, *first, "-o", tmp_path / "pipeline.jsonl", "--trec",
                       tmp_path / "pipeline.trec", *judge, env=env)
    assert pipeline.returncode == 0, pipeline.stderr
    assert len((tmp_path / "pipeline.trec").read_text().splitlines()) == 20 * local_dl19["queries"]

    labels = run_cli("labels", "--dataset", name, "--depth", "20", "-o", tmp_path / "labels.jsonl",
                     "--backend", "judge", "--model", f"judge:oracle:{local_dl19['source']}", "--no-cache", env=env)
    assert labels.returncode == 0, labels.stderr
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == local_dl19["queries"]
    # The dataset's qrels judge the labels without --qrels.
    assert f"label quality on {local_dl19['queries']} judged queries" in labels.stderr


@pytest.mark.integration
def test_an_experiment_takes_candidates_and_qrels_from_its_dataset(local_dl19, tmp_path):
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(textwrap.dedent(f"""\
        name: local-dl19
        dataset: {local_dl19['prefix']}dl19
        depth: 100
        settings: {{backend: judge, model: "judge:oracle:{local_dl19['source']}", concurrency: 32}}
        grid:
          strategy: [sliding]
        metrics: [nDCG@10]
        results: {tmp_path / 'results'}
        """))
    result = run_cli("experiment", experiment, "--quiet", env=local_dl19["env"])
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "results" / "comparison.csv").read_text().splitlines()
    ndcg = {line.split(",")[0]: float(line.split(",")[1]) for line in table[1:] if "," in line}
    assert ndcg["first-stage"] == pytest.approx(0.5058, abs=1e-4)  # the dataset's BM25, scored by its qrels
    assert ndcg["default"] == pytest.approx(0.8922, abs=1e-4)


@pytest.mark.integration
def test_dataset_mistakes_are_one_line_and_create_no_output(local_dl19, tmp_path):
    folder, env, prefix = local_dl19["folder"], local_dl19["env"], local_dl19["prefix"]
    judge = ["--backend", "judge", "--model", f"judge:oracle:{local_dl19['source']}", "--no-cache"]
    cases = [
        (["run", "--dataset", "no/such/dataset"], 2, "knows no dataset 'no/such/dataset'"),
        (["run", "--dataset", prefix + "no-first-stage"], 2, "has no first stage (scoreddocs)"),
        (["run", "--dataset", prefix + "dl19", "--corpus", folder / "docs.tsv"], 2, "drop --corpus"),
        (["run"], 2, "give INPUT (a candidates file) or --dataset ID"),
        (["run", folder / "run.trec", "--dataset", prefix + "dl19", "--depth", "5"], 2, "drop --depth"),
        (["run", folder / "run.trec", "--depth", "5"], 2, "no --dataset is given"),
        (["run", "--dataset", prefix + "missing-doc"], 18, "'no-such-doc' is not in the documents of"),
    ]
    for args, code, message in cases:
        out = tmp_path / "out.jsonl"
        result = run_cli(*args, "-o", out, *judge, env=env)
        assert result.returncode == code, (args, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("rerank: error:")]
        assert len(errors) == 1 and message in errors[0], (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert not out.exists(), args
    no_qrels = run_cli("eval", folder / "run.trec", "--dataset", prefix + "no-qrels", env=env)
    assert no_qrels.returncode == 2 and "has no qrels" in no_qrels.stderr, no_qrels.stderr
    neither = run_cli("eval", folder / "run.trec", env=env)
    assert neither.returncode == 2 and "--qrels --dataset" in neither.stderr
