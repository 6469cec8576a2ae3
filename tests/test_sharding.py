"""`--shard I/N` on run, labels and pipeline, and `rerank merge-runs`."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import REPO, data_dir, run_cli
from rerank.demo import SAMPLE_DIR
from rerank.errors import ConfigError
from rerank.formats import RankLLMWriter, read_requests
from rerank.sharding import Shard, slice_of

qids = st.text(min_size=0, max_size=12)


# -- the slices ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,index,count", [("1/1", 1, 1), ("2/3", 2, 3), (" 10/10 ", 10, 10)])
def test_parse_reads_i_of_n(spec, index, count):
    assert Shard.parse(spec) == Shard(index, count) and str(Shard.parse(spec)) == f"{index}/{count}"


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1/0", "3", "1/3/5", "a/b", "-1/3", "1 / 3", "", "1of3"])
def test_parse_refuses_anything_else_in_one_line_naming_the_flag(spec):
    with pytest.raises(ConfigError) as error:
        Shard.parse(spec)
    assert "--shard" in str(error.value) and "\n" not in str(error.value)


@given(st.integers(1, 40), st.lists(qids, max_size=60))
def test_the_n_slices_are_disjoint_and_cover_any_qids(count, names):
    for qid in names:
        assert sum(Shard(index, count).holds(qid) for index in range(1, count + 1)) == 1
    slices = [list(Shard(index, count).select(names, lambda qid: qid)) for index in range(1, count + 1)]
    assert sorted(qid for part in slices for qid in part) == sorted(names)
    for part in slices:  # each slice keeps the input's order
        assert part == [qid for qid in names if qid in set(part)]


@given(st.integers(1, 40), qids)
def test_membership_is_deterministic(count, qid):
    assert slice_of(qid, count) == slice_of(qid, count) and 1 <= slice_of(qid, count) <= count


def test_slices_are_the_same_in_every_process():
    names = ["1037798", "104861", "q1", "", "é", "𝄞x"]
    script = "import json, sys; from rerank.sharding import slice_of; " \
             "print(json.dumps([slice_of(q, 7) for q in json.loads(sys.argv[1])]))"
    for seed in ("1", "2"):  # Python's hash() would differ between these
        other = subprocess.run([sys.executable, "-c", script, json.dumps(names)], capture_output=True, text=True,
                               env={**os.environ, "PYTHONHASHSEED": seed}, cwd=REPO, check=True)
        assert json.loads(other.stdout) == [slice_of(q, 7) for q in names]


def test_slices_never_change_between_versions():
    # Shards of one array may run different rerank versions: the hash is part of the format.
    assert [slice_of(q, 3) for q in ["1037798", "104861", "q1", ""]] == [3, 1, 3, 1]
    assert slice_of("1037798", 7) == 2


def test_a_bad_shard_is_one_line_and_writes_nothing(tmp_path):
    proc = run_cli("run", SAMPLE_DIR / "queries.tsv", "-o", tmp_path / "out.jsonl", "--shard", "0/3",
                   "--backend", "judge", "--model", "judge:reverse", "--no-cache")
    assert proc.returncode == 2 and "--shard 0/3: expected I/N" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


# -- run, shards, merge: DL19 -------------------------------------------------------------------


def _run(dl19, out, *extra):
    proc = run_cli("run", dl19 / "bm25_top100.json", "-o", out, "--trec", out.with_suffix(".trec"),
                   "--backend", "judge", "--model", f"judge:oracle:{dl19}", "--no-cache", "--quiet", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def dl19_runs(tmp_path_factory):
    """DL19 reranked whole, and in three shards."""
    dl19 = data_dir("dl19")
    folder = tmp_path_factory.mktemp("dl19-shards")
    _run(dl19, folder / "all.jsonl")
    for index in (1, 2, 3):
        _run(dl19, folder / f"s{index}.jsonl", "--shard", f"{index}/3")
    return dl19, folder


def _copy_runs(dl19_runs, tmp_path):
    dl19, folder = dl19_runs
    for path in folder.iterdir():
        shutil.copy(path, tmp_path / path.name)
    for index in (1, 2, 3):  # the records name their outputs by path: point them at the copies
        record = tmp_path / f"s{index}.summary.json"
        document = json.loads(record.read_text())
        for entry in document["outputs"].values():
            entry["path"] = str(tmp_path / os.path.basename(entry["path"]))
            entry.pop("inode", None)
        record.write_text(json.dumps(document))
    return dl19, tmp_path


def _merge(tmp_path, *args, shards=(1, 2, 3)):
    return run_cli("merge-runs", *args, *[tmp_path / f"s{index}.jsonl" for index in shards])


def test_merged_shards_are_byte_identical_to_the_unsharded_run(dl19_runs, tmp_path):
    dl19, folder = dl19_runs
    sizes = [len((folder / f"s{index}.jsonl").read_text().splitlines()) for index in (1, 2, 3)]
    assert sum(sizes) == 43 and all(sizes)
    for index in (1, 2, 3):
        assert json.loads((folder / f"s{index}.summary.json").read_text())["shard"] == f"{index}/3"
    proc = run_cli("merge-runs", "-o", tmp_path / "m.jsonl", "--trec", tmp_path / "m.trec",
                   "--input", dl19 / "bm25_top100.json", *[folder / f"s{index}.jsonl" for index in (1, 2, 3)])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.jsonl").read_bytes() == (folder / "all.jsonl").read_bytes()
    assert (tmp_path / "m.trec").read_bytes() == (folder / "all.trec").read_bytes()
    record = json.loads((tmp_path / "m.summary.json").read_text())
    whole = json.loads((folder / "all.summary.json").read_text())
    assert record["state"] == "finished" and record["queries"] == 43 and record["calls"] == whole["calls"]
    assert [shard["shard"] for shard in record["shards"]] == ["1/3", "2/3", "3/3"]


def test_without_input_the_shards_order_is_kept(dl19_runs, tmp_path):
    dl19, folder = dl19_runs
    proc = run_cli("merge-runs", "-o", tmp_path / "m.jsonl", *[folder / f"s{index}.jsonl" for index in (3, 1, 2)])
    assert proc.returncode == 0, proc.stderr
    shards = b"".join((folder / f"s{index}.jsonl").read_bytes() for index in (3, 1, 2))
    assert (tmp_path / "m.jsonl").read_bytes() == shards


def test_a_missing_slice_stops_the_merge_unless_allowed(dl19_runs, tmp_path):
    dl19, folder = _copy_runs(dl19_runs, tmp_path)
    proc = _merge(folder, "-o", folder / "m.jsonl", shards=(1, 2))
    assert proc.returncode == 2 and "slice 3/3" in proc.stderr and "Traceback" not in proc.stderr
    assert not (folder / "m.jsonl").exists() and not (folder / "m.summary.json").exists()
    proc = _merge(folder, "-o", folder / "m.jsonl", "--input", dl19 / "bm25_top100.json", "--allow-missing",
                  shards=(1, 2))
    assert proc.returncode == 0, proc.stderr
    third = [json.loads(line)["query"]["qid"] for line in (folder / "s3.jsonl").read_text().splitlines()]
    assert f"{len(third)} queries are in no shard" in proc.stderr
    record = json.loads((folder / "m.summary.json").read_text())
    assert record["state"] == "failed" and sorted(record["failed"]) == sorted(third)
    assert len((folder / "m.jsonl").read_text().splitlines()) == 43 - len(third)


def test_a_qid_in_two_shards_is_an_error(dl19_runs, tmp_path):
    dl19, folder = dl19_runs
    proc = run_cli("merge-runs", "-o", tmp_path / "m.jsonl", folder / "all.jsonl", folder / "s2.jsonl")
    assert proc.returncode == 13 and "is in two shards" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.jsonl").exists()


def test_a_file_rerank_did_not_write_is_refused(dl19_runs, tmp_path):
    dl19, folder = dl19_runs
    shutil.copy(folder / "s1.jsonl", tmp_path / "copy.jsonl")
    for shard in (tmp_path / "copy.jsonl", folder / "s1.trec"):
        proc = run_cli("merge-runs", "-o", tmp_path / "m.jsonl", shard)
        assert proc.returncode == 2 and "not a rerank output" in proc.stderr


def test_an_unfinished_or_torn_shard_is_missing(dl19_runs, tmp_path):
    dl19, folder = _copy_runs(dl19_runs, tmp_path)
    record = folder / "s2.summary.json"
    document = json.loads(record.read_text())
    record.write_text(json.dumps({**document, "state": "running"}))
    proc = _merge(folder, "-o", folder / "m.jsonl")
    assert proc.returncode == 2 and "s2.jsonl is unfinished (state running)" in proc.stderr
    record.write_text(json.dumps(document))
    data = (folder / "s1.jsonl").read_bytes()
    (folder / "s1.jsonl").write_bytes(data[:-10])
    proc = _merge(folder, "-o", folder / "m.jsonl")
    assert proc.returncode == 2 and "torn line" in proc.stderr


def test_shards_of_another_input_are_refused(dl19_runs, tmp_path):
    dl19, folder = dl19_runs
    with RankLLMWriter(tmp_path / "ten.jsonl") as writer:
        for number, request in enumerate(read_requests(dl19 / "bm25_top100.json")):
            if number < 10:
                writer.write(request)
    proc = run_cli("merge-runs", "-o", tmp_path / "m.jsonl", "--input", tmp_path / "ten.jsonl",
                   *[folder / f"s{index}.jsonl" for index in (1, 2, 3)])
    assert proc.returncode == 2 and "33 results of the shards are not in --input" in proc.stderr


def test_an_existing_output_needs_force(dl19_runs, tmp_path):
    dl19, folder = dl19_runs
    shards = [folder / f"s{index}.jsonl" for index in (1, 2, 3)]
    (tmp_path / "m.jsonl").write_text("mine\n")
    proc = run_cli("merge-runs", "-o", tmp_path / "m.jsonl", *shards)
    assert proc.returncode == 2 and "exists" in proc.stderr and (tmp_path / "m.jsonl").read_text() == "mine\n"
    proc = run_cli("merge-runs", "-o", tmp_path / "m.jsonl", "--force", "--input", dl19 / "bm25_top100.json", *shards)
    assert proc.returncode == 0 and (tmp_path / "m.jsonl").read_bytes() == (folder / "all.jsonl").read_bytes()


def test_resume_finishes_a_shard_and_refuses_another_slice(dl19_runs, tmp_path):
    dl19, folder = _copy_runs(dl19_runs, tmp_path)
    shard = folder / "s1.jsonl"
    lines = shard.read_bytes().splitlines(keepends=True)
    with open(shard, "r+b") as handle:  # a shard killed after 5 queries (the file keeps its inode)
        handle.truncate(sum(map(len, lines[:5])))
    proc = run_cli("run", dl19 / "bm25_top100.json", "-o", shard, "--trec", shard.with_suffix(".trec"),
                   "--backend", "judge", "--model", f"judge:oracle:{dl19}", "--no-cache", "--quiet",
                   "--shard", "2/3", "--resume")
    assert proc.returncode == 2 and "slice 1/3" in proc.stderr and "--shard" in proc.stderr
    _run(dl19, shard, "--shard", "1/3", "--resume")
    assert shard.read_bytes() == b"".join(lines)
    proc = _merge(folder, "-o", folder / "m.jsonl", "--trec", folder / "m.trec", "--input", dl19 / "bm25_top100.json")
    assert proc.returncode == 0, proc.stderr
    assert (folder / "m.trec").read_bytes() == (folder / "all.trec").read_bytes()


# -- labels and pipeline ---------------------------------------------------------------------------


def test_labels_in_shards_merge_to_the_unsharded_labels(dl19, tmp_path):
    with RankLLMWriter(tmp_path / "few.jsonl") as writer:
        for number, request in enumerate(read_requests(dl19 / "bm25_top100.json")):
            if number < 6:
                writer.write(type(request)(request.query, request.candidates[:20]))

    def labels(out, *extra):
        proc = run_cli("labels", tmp_path / "few.jsonl", "-o", out, "--backend", "judge",
                       "--model", f"judge:oracle:{dl19}", "--no-cache", "--quiet", *extra)
        assert proc.returncode == 0, proc.stderr

    labels(tmp_path / "all.jsonl")
    labels(tmp_path / "s1.jsonl", "--shard", "1/2")
    labels(tmp_path / "s2.jsonl", "--shard", "2/2")
    assert json.loads((tmp_path / "s2.summary.json").read_text())["shard"] == "2/2"
    proc = _merge(tmp_path, "-o", tmp_path / "m.jsonl", "--input", tmp_path / "few.jsonl", shards=(1, 2))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.jsonl").read_bytes() == (tmp_path / "all.jsonl").read_bytes()
    proc = _merge(tmp_path, "-o", tmp_path / "t.jsonl", "--trec", tmp_path / "t.trec", shards=(1, 2))
    assert proc.returncode == 2 and "labels" in proc.stderr


def test_pipeline_in_shards_merges_to_the_unsharded_pipeline(tmp_path):
    pytest.importorskip("bm25s")
    pytest.importorskip("Stemmer")
    queries = SAMPLE_DIR / "queries.tsv"

    def pipeline(out, *extra):
        proc = run_cli("pipeline", "--corpus", SAMPLE_DIR / "corpus.jsonl", "--queries", queries, "-k", 5,
                       "--index-dir", tmp_path / "indexes", "--backend", "judge", "--model", "judge:reverse",
                       "--no-cache", "--quiet", "-o", out, "--trec", out.with_suffix(".trec"), *extra)
        assert proc.returncode == 0, proc.stderr

    pipeline(tmp_path / "all.jsonl")
    pipeline(tmp_path / "s1.jsonl", "--shard", "1/2")
    pipeline(tmp_path / "s2.jsonl", "--shard", "2/2")
    proc = _merge(tmp_path, "-o", tmp_path / "m.jsonl", "--trec", tmp_path / "m.trec", "--input", queries,
                  shards=(2, 1))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.jsonl").read_bytes() == (tmp_path / "all.jsonl").read_bytes()
    assert (tmp_path / "m.trec").read_bytes() == (tmp_path / "all.trec").read_bytes()
