"""``rerank simulate``: strategies against judges from the qrels, through the real runner."""

import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import read_summary, run_cli
from llm_server import start_server
from rerank.answers import PERMUTATION, Choice, FirstToken, Reasoned, Relevance
from rerank.errors import ConfigError
from rerank.evaluation import evaluate
from rerank.evaluation.significance import mean_interval
from rerank.formats import read_qrels, read_requests
from rerank.simulation import SimulatedJudge, StrategySpec, parse_judge, simulate
from rerank.simulation.report import format_simulation
from rerank.strategies import STRATEGIES, make_strategy, run_with_judge
from rerank.types import Candidate, Query, Request

# --- judges -----------------------------------------------------------------------------------


def test_judge_specs():
    assert parse_judge("perfect") == SimulatedJudge("perfect")
    assert parse_judge("noise:0.5") == SimulatedJudge("noise", 0.5)
    assert parse_judge("bias:0.3").spec == "bias:0.3"
    assert parse_judge("identity").random is False and parse_judge("noise:0").random is False
    for bad in ("oracle", "noise", "noise:x", "bias:1.5", "bias:-0.1", "perfect:1", "noise:nan"):
        with pytest.raises(ConfigError, match="--judge"):
            parse_judge(bad)


def test_perfect_judge_answers_every_kind_by_grade_ties_in_the_order_shown():
    judge = SimulatedJudge("perfect")
    grades = [1, 3, 0, 3]
    assert judge.answer(PERMUTATION, grades, "s").order == (1, 3, 0, 2)
    assert judge.answer(Choice(2), grades, "s").order == (1, 3)
    assert judge.answer(Reasoned(Choice(1)), grades, "s").order == (1,)
    first = judge.answer(FirstToken(), grades, "s")
    assert first.order == (1, 3, 0, 2) and first.scores[1] > first.scores[3] > first.scores[0] > first.scores[2]
    assert judge.answer(Relevance(), [2], "s").scores == (2.0,)
    assert SimulatedJudge("identity").answer(PERMUTATION, grades, "s").order == (0, 1, 2, 3)


def test_bias_puts_the_first_shown_first_with_its_probability():
    always, never = SimulatedJudge("bias", 1.0), SimulatedJudge("bias", 0.0)
    assert always.answer(PERMUTATION, [0, 2, 1], "s").order == (0, 1, 2)
    assert never.answer(PERMUTATION, [0, 2, 1], "s").order == (1, 2, 0)
    half = SimulatedJudge("bias", 0.5)
    first = sum(half.answer(Choice(1), [0, 1], f"seed{i}").order == (0,) for i in range(400))
    assert 150 < first < 250


@given(st.lists(st.integers(0, 3), min_size=1, max_size=30), st.floats(0, 3), st.text(max_size=8))
def test_noisy_answers_are_permutations_and_repeat_for_one_seed(grades, sigma, seed):
    judge = SimulatedJudge("noise", sigma)
    answer = judge.answer(PERMUTATION, grades, seed)
    assert sorted(answer.order) == list(range(len(grades)))
    assert judge.answer(PERMUTATION, grades, seed) == answer


def test_mean_interval():
    assert mean_interval([0.5]) == (0.5, 0.0)
    assert mean_interval([0.5, 0.5, 0.5]) == (0.5, 0.0)
    mean, half = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.3027 / 3 ** 0.5, rel=1e-3)


# --- strategies and the runner --------------------------------------------------------------


def test_strategy_specs():
    spec = StrategySpec.parse("pairwise:both_orders=false")
    assert (spec.label, spec.name, spec.options) == ("pairwise:both_orders=false", "pairwise",
                                                     {"both_orders": "false"})
    assert StrategySpec.parse("sliding:window=10,step=5").options == {"window": "10", "step": "5"}
    assert StrategySpec.parse("strategy_fixture:BestOfPairs").name == "strategy_fixture:BestOfPairs"
    with pytest.raises(ConfigError, match="has no option 'nope'"):
        StrategySpec.parse("sliding:nope=1")
    with pytest.raises(ConfigError, match="unknown strategy"):
        StrategySpec.parse("nonesuch")
    with pytest.raises(ConfigError, match="NAME:OPTION=VALUE"):
        StrategySpec.parse("sliding:window=10,5")


def _requests(grades_per_query):
    """Requests whose candidates' text says nothing: the simulated judge reads only grades."""
    requests, qrels = [], {}
    for q, grades in enumerate(grades_per_query):
        qid = f"q{q}"
        requests.append(Request(Query(qid=qid, text=f"query {q}"),
                                [Candidate(f"d{i}", f"passage {i} of query {q}") for i in range(len(grades))]))
        qrels[qid] = {f"d{i}": g for i, g in enumerate(grades) if g}
    return requests, qrels


def test_simulation_reaches_the_ideal_and_counts_what_the_strategy_asks():
    grades = [[0, 1, 0, 2, 0, 3, 0, 0, 1, 0, 2, 0, 0, 0, 3, 1, 0, 0, 0, 2, 0, 0, 1, 0, 0]] * 2
    requests, qrels = _requests(grades)
    rows = simulate(requests, qrels, [StrategySpec.parse("sliding:window=12,step=2")],
                    [parse_judge("perfect"), parse_judge("identity")], seeds=3)
    perfect, identity = rows
    expected = run_with_judge(make_strategy("sliding", {"window": 12, "step": 2}), 25,
                              lambda w: sorted(w.indices, key=lambda i: -grades[0][i]))
    assert perfect.mean == pytest.approx(1.0) and len(perfect.seeds) == 1  # deterministic: one seed
    assert (perfect.calls, perfect.rounds) == (expected[1], expected[2])
    assert perfect.prompt_tokens > 0 and perfect.answer_tokens > 0
    first_stage = {r.query.qid: {c.docid: float(-i) for i, c in enumerate(r.candidates)} for r in requests}
    from rerank.evaluation import evaluate_run
    assert identity.mean == pytest.approx(evaluate_run(first_stage, qrels, ["nDCG@10"]).aggregate["nDCG@10"])


def test_random_judges_run_every_seed_and_results_are_kept():
    requests, qrels = _requests([[0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]] * 3)
    results = {}
    (row,) = simulate(requests, qrels, [StrategySpec.parse("full")], [parse_judge("noise:1.5")], seeds=4,
                      results=results)
    assert len(row.seeds) == 4 and sorted(results) == [("full", "noise:1.5", s) for s in range(4)]
    assert row.interval >= 0 and min(row.seeds) <= row.mean <= max(row.seeds)
    again = simulate(requests, qrels, [StrategySpec.parse("full")], [parse_judge("noise:1.5")], seeds=4)
    assert again[0].seeds == row.seeds


def test_prompt_tokens_are_those_of_the_prompt_the_strategy_sends(dl19):
    """The judge backend counts the prompts it receives with cl100k, as the simulation does."""
    import asyncio

    from rerank import Reranker

    requests = list(read_requests(dl19 / "bm25_top100.json"))[:2]
    qrels = read_qrels(dl19 / "qrels.dl19-passage.txt")
    for strategy, extra in (("sliding", {}), ("pointwise", {}), ("pairwise", {"top_k": 8})):
        (row,) = simulate(requests, qrels, [StrategySpec.parse(strategy)], [parse_judge("perfect")],
                          settings={"model": "judge", **extra})

        async def real():
            async with Reranker(backend="judge", model=f"judge:oracle:{dl19}", strategy=strategy, cache=None,
                                **extra) as reranker:
                return await reranker.rerank_batch(requests)

        results = asyncio.run(real())
        assert row.prompt_tokens == sum(c.prompt_tokens for r in results for c in r.calls) / 2, strategy
        assert row.calls == sum(len(r.calls) for r in results) / 2
        assert row.rounds == sum(r.rounds for r in results) / 2


def test_table_formats():
    requests, qrels = _requests([[0, 2, 1, 3]])
    rows = simulate(requests, qrels, [StrategySpec.parse("full"), StrategySpec.parse("pointwise")],
                    [parse_judge("perfect"), parse_judge("bias:0.5")], seeds=2)
    table = list(csv.DictReader(io.StringIO(format_simulation(rows, "csv"))))
    assert list(table[0]) == ["strategy", "judge", "nDCG@10", "nDCG@10_ci95", "seeds", "calls", "rounds",
                              "prompt_tokens", "answer_tokens"]
    assert [(r["strategy"], r["judge"], r["seeds"]) for r in table] == [
        ("full", "perfect", "1"), ("full", "bias:0.5", "2"), ("pointwise", "perfect", "1"), ("pointwise", "bias:0.5", "2")]
    assert format_simulation(rows, "markdown").startswith("| strategy | judge | nDCG@10 | calls |")
    assert "±" in format_simulation(rows, "terminal")
    with pytest.raises(ConfigError):
        format_simulation(rows, "latex")


# --- the command --------------------------------------------------------------------------


def test_cli_table_plots_and_errors(tmp_path):
    requests, qrels = _requests([[0, 2, 1, 3, 0, 0, 1], [1, 0, 0, 0, 2, 3, 0]])
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"query": {"qid": r.query.qid, "text": r.query.text},
                                          "candidates": [{"docid": c.docid, "doc": {"contents": c.text}}
                                                         for c in r.candidates]}) + "\n" for r in requests))
    qrels_file = tmp_path / "qrels.txt"
    qrels_file.write_text("".join(f"{q} 0 {d} {g}\n" for q, docs in qrels.items() for d, g in docs.items()))
    plots = tmp_path / "plots"
    args = ("simulate", source, "--qrels", qrels_file, "--strategy", "sliding", "full", "pairwise:both_orders=false",
            "--judge", "perfect", "noise:0.5", "--seeds", 2, "--window", 4, "--step", 2, "--format", "csv")
    proc = run_cli(*args, "--plots", plots)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 6 and {r["strategy"] for r in rows} == {"sliding", "full", "pairwise:both_orders=false"}
    assert float(next(r for r in rows if r["strategy"] == "full" and r["judge"] == "perfect")["nDCG@10"]) == 1.0
    assert next(r for r in rows if r["strategy"] == "pairwise:both_orders=false")["calls"] == "21.0"
    for name in ("quality-vs-calls.png", "quality-vs-rounds.png"):
        assert (plots / name).read_bytes().startswith(b"\x89PNG")
    again = run_cli(*args, "--plots", plots)
    assert again.returncode != 0 and "--force" in again.stderr and "Traceback" not in again.stderr
    assert run_cli(*args, "--plots", plots, "--force").returncode == 0
    for bad, message in ((("--judge", "oracle"), "unknown judge"), (("--seeds", 0), "--seeds"),
                         (("--metric", "nDCG@ten"), "unknown metric"), (("--window", "x"), "--window")):
        proc = run_cli(*args, *bad)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# --- agreement with real runs against the judges' server ---------------------------------------

AGREEMENT_QUERIES = 3


def _agreement_cases():
    cases = [("sliding", ()), ("full", ()), ("pointwise", ()), ("pairwise", ("--top-k", 20)),
             ("single-token", ("--window", 9, "--step", 4)), ("shrinking", ())]
    cases += [(name, ()) for name in ("tdpart", "setwise", "tourrank", "jointrank") if name in STRATEGIES]
    return cases


@pytest.mark.integration
@pytest.mark.parametrize("strategy,flags", _agreement_cases())
def test_simulation_agrees_with_a_real_run_against_the_server(strategy, flags, dl19, tmp_path):
    hits = json.loads((dl19 / "bm25_top100.json").read_text())[:AGREEMENT_QUERIES]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(hits))
    qrels = dl19 / "qrels.dl19-passage.txt"
    out, trec, summary = tmp_path / "out.jsonl", tmp_path / "out.trec", tmp_path / "summary.json"
    with start_server("oracle", data_dir=dl19) as server:
        proc = run_cli("run", source, "-o", out, "--trec", trec, "--model", "judge", "--base-url", server.base_url,
                       "--strategy", strategy, *flags, "--no-cache", "--summary-json", summary, "--concurrency", 32)
        assert proc.returncode == 0, proc.stderr
    real = read_summary(summary)
    simulated = run_cli("simulate", source, "--qrels", qrels, "--strategy", strategy, *flags, "--format", "csv",
                        "--model", "judge")
    assert simulated.returncode == 0, simulated.stderr
    (row,) = csv.DictReader(io.StringIO(simulated.stdout))
    assert float(row["nDCG@10"]) == pytest.approx(evaluate(str(trec), str(qrels), ["nDCG@10"]).aggregate["nDCG@10"])
    for column in ("calls", "rounds", "prompt_tokens"):  # per query in the table, to 3 decimals
        assert float(row[column]) * AGREEMENT_QUERIES == pytest.approx(real[column], abs=0.01), column
