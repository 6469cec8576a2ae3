"""Scoring runs: trec_eval conventions."""

from rerank.evaluation import evaluate, evaluate_run

QRELS = {"q1": {"a": 2, "b": 0}, "q2": {"c": 1}, "q3": {"d": 1}}


def test_judged_queries_missing_from_the_run_are_left_out():
    partial = evaluate_run({"q1": {"a": 2.0, "b": 1.0}}, QRELS, ["nDCG@10", "P@1"])
    assert partial.aggregate == {"nDCG@10": 1.0, "P@1": 1.0}
    assert set(partial.per_query) == {"q1"}


def test_unjudged_queries_of_the_run_are_left_out():
    result = evaluate_run({"q1": {"b": 2.0, "a": 1.0}, "zz": {"x": 1.0}}, QRELS, ["P@1"])
    assert result.aggregate == {"P@1": 0.0} and set(result.per_query) == {"q1"}


def test_files_and_memory_agree(tmp_path):
    (tmp_path / "run").write_text("q1 Q0 b 1 2.0 t\nq1 Q0 a 2 1.0 t\nq2 Q0 c 1 5 t\n")
    (tmp_path / "qrels").write_text("q1 0 a 2\nq1 0 b 0\nq2 0 c 1\nq3 0 d 1\n")
    from_files = evaluate(str(tmp_path / "run"), str(tmp_path / "qrels"), ["nDCG@10", "RR@10"])
    in_memory = evaluate_run({"q1": {"b": 2.0, "a": 1.0}, "q2": {"c": 5.0}}, QRELS, ["nDCG@10", "RR@10"])
    assert from_files.aggregate == in_memory.aggregate
    assert from_files.aggregate["RR@10"] == 0.75  # (1/2 + 1) / 2: q3 is not in the run
