"""Training throughput of ``rerank train`` on one GPU: tokens per second and peak memory.

Nothing is downloaded. A random model of Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads,
2 KV heads, MLP 4864, vocabulary 151936, context 32768) is made on the spot with a tokenizer
trained on synthetic words (``rerank.testing.tiny_model``), so that a word is about one token.
Synthetic queries of ``--passages`` passages of ``--words`` words are rendered into labels
exactly as ``rerank labels`` renders them (:func:`rerank.labels.training_example` with the
full-ranking student of an OpenAI-compatible teacher), each target a random permutation; 100
passages of 100 words make prompts of about 12k tokens with the default prompt (the paper's are
about 10k; ours has a chat turn per passage). Then
:func:`rerank.training.trainer.train` runs for ``--steps`` steps, batch 1, bf16 where the GPU
has it, gradient checkpointing (as ``rerank train`` would with those flags). Sized for about
3-5 minutes on one H100 with the defaults, model creation included.

It prints progress on stderr, then one JSON line of figures on stdout (also written to
``--json``): device, shape and parameters, prompt tokens, steps, training tokens per second
(over the whole run and over the steps after the first few), peak memory (GPU: allocated and
reserved; CPU: the process's peak resident set), loss first and last, and wall times.

Usage::

    python eval/gpu_train_smoke.py --json gpu-train.json                 # on a GPU
    python eval/gpu_train_smoke.py --shape tiny --steps 3 --passages 10 --words 20   # CPU smoke
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub

from rerank.errors import RerankError  # noqa: E402

SHAPES = {
    # Qwen2.5-0.5B's shape (as a Llama: Qwen2's q/k/v biases aside, the same sizes and tied embeddings).
    "qwen0.5b": {"hidden": 896, "layers": 24, "heads": 14, "kv_heads": 2, "intermediate": 4864,
                 "context": 32768, "model_vocab_size": 151936, "dtype": "bfloat16"},
    "tiny": {"hidden": 64, "layers": 2, "heads": 1, "context": 4096, "dtype": "float32"},
}
#: Steps whose time is left out of the steady rate (CUDA start-up, allocator warm-up).
WARMUP_STEPS = 5
_CONSONANTS, _VOWELS = "bdfgklmnprstvz", "aeiou"


def pseudo_words(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct made-up words of two or three syllables."""
    rng, words = random.Random(seed), set()
    while len(words) < count:
        words.add("".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.choice((2, 3)))))
    return sorted(words)


def make_requests(queries: int, passages: int, words: int, vocabulary: list[str], seed: int = 0) -> list:
    """Synthetic requests: ``queries`` queries of ``passages`` passages of ``words`` words."""
    from rerank import Candidate, Query, Request

    rng = random.Random(seed)
    return [Request(Query(qid=f"q{q}", text=" ".join(rng.choices(vocabulary, k=6))),
                    [Candidate(f"q{q}-d{i}", " ".join(rng.choices(vocabulary, k=words))) for i in range(passages)])
            for q in range(queries)]


def write_labels(path: Path, requests: list, words: int, seed: int = 0) -> None:
    """A labels file as ``rerank labels`` writes it, each target a random permutation.

    The prompt is the full-ranking student's of a teacher on an OpenAI-compatible endpoint (never
    called): the default template, passages cut at ``words`` words (so not cut), and a context
    large enough that the teacher's token counter (tiktoken's, which splits made-up words into
    several tokens) shortens no passage.
    """
    from rerank import Reranker
    from rerank.labels import student_reranker, teacher_config, training_example
    from rerank.types import Result

    base = Reranker(model="teacher", base_url="http://127.0.0.1:9/v1", cache=None, max_passage_words=words,
                    context_size=1 << 20)
    student = student_reranker(Reranker(teacher_config(base.config, "shrinking")))
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for request in requests:
            label = rng.sample(request.candidates, len(request.candidates))
            example = training_example(student, request, Result(request.query, label))
            out.write(json.dumps(example.as_dict()) + "\n")


def step_timer():
    """A ``TrainerCallback`` that notes the time and the tokens seen at the end of each step."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """(seconds since training began, input tokens seen) after every optimiser step."""

        def __init__(self):
            self.started = None
            self.marks: list[tuple[float, int]] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # kernels are asynchronous: time what they did
            self.marks.append((time.perf_counter() - self.started, int(state.num_input_tokens_seen)))

    return StepTimer()


def rates(marks: list[tuple[float, int]], runtime: float) -> dict:
    """Tokens per second over the whole training loop and after :data:`WARMUP_STEPS` steps."""
    seconds, tokens = marks[-1] if marks else (0.0, 0)
    found = {"train_tokens": tokens, "tokens_per_second": tokens / runtime if runtime else None}
    skip = min(WARMUP_STEPS, len(marks) - 2)
    if skip >= 1:
        (start, seen), (end, total) = marks[skip - 1], marks[-1]
        found.update(steady_steps=len(marks) - skip, steady_tokens_per_second=(total - seen) / (end - start),
                     steady_seconds_per_step=(end - start) / (len(marks) - skip))
    return found


def peak_memory() -> dict:
    """Peak memory of this process: the GPU's allocated and reserved bytes, or the peak RSS."""
    import torch

    gib = 1024 ** 3
    if torch.cuda.is_available():
        return {"peak_gpu_allocated_gib": torch.cuda.max_memory_allocated() / gib,
                "peak_gpu_reserved_gib": torch.cuda.max_memory_reserved() / gib}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux gives kilobytes, macOS bytes.
    return {"peak_rss_gib": peak / (gib if sys.platform == "darwin" else 1024 ** 2)}


def device_name() -> str:
    """The GPU's name, or the CPU's."""
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def say(message: str) -> None:
    """A progress line on stderr."""
    print(f"gpu_train_smoke: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, folder: Path) -> dict:
    """Make the model and the labels in ``folder``, train, and return the figures."""
    import torch

    from rerank.testing.tiny_model import make_model
    from rerank.training.trainer import TrainConfig, load_tokenizer, train

    began = time.perf_counter()
    shape = dict(SHAPES[args.shape])
    vocabulary = pseudo_words(args.vocabulary, args.seed)
    # Each word seen often enough to become one token (a real tokenizer's common words).
    texts = [" ".join(vocabulary[i:i + 64]) for i in range(0, len(vocabulary), 64)] * 4
    model = make_model(folder / "model", texts=texts, vocab_size=len(vocabulary) + 2048, seed=args.seed, **shape)
    parameters = parameter_count(model)
    say(f"{args.shape} model made in {folder / 'model'} ({parameters / 1e6:.1f}M parameters)")

    labels = folder / "labels.jsonl"
    write_labels(labels, make_requests(args.queries, args.passages, args.words, vocabulary, args.seed), args.words,
                 args.seed)
    tokenizer = load_tokenizer(str(model))
    lengths = [len(tokenizer.apply_chat_template(json.loads(line)["messages"], add_generation_prompt=True,
                                                 tokenize=True, return_dict=False))
               for line in labels.read_text(encoding="utf-8").splitlines()]
    say(f"{args.queries} queries of {args.passages} passages x {args.words} words: prompts of "
        f"{min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f})")
    prepared = time.perf_counter() - began

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    timer = step_timer()
    config = TrainConfig(
        labels=[str(labels)], model=str(model), output=str(folder / "trained"), validation_fraction=0.0,
        max_steps=args.steps, learning_rate=args.learning_rate, batch_size=1, logging_steps=max(args.steps // 20, 1),
        gradient_checkpointing=not args.no_gradient_checkpointing, lora_rank=args.lora_rank,
        attn_implementation=args.attn_implementation, seed=args.seed,
        trainer_args={"save_strategy": "no", "logging_first_step": True, "include_num_input_tokens_seen": True})
    started = time.perf_counter()
    report = train(config, callbacks=[timer])
    trained = time.perf_counter() - started
    losses = [entry["loss"] for entry in report["loss_history"] if "loss" in entry]
    runtime = float(report["metrics"].get("train_runtime") or trained)
    return {
        "device": device_name(), "shape": args.shape, "parameters": parameters, "lora_rank": args.lora_rank,
        "gradient_checkpointing": not args.no_gradient_checkpointing, "dtype": report["dtype"],
        "bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),  # train()'s default
        "passages": args.passages, "words": args.words, "queries": args.queries,
        "prompt_tokens_mean": sum(lengths) / len(lengths), "prompt_tokens_max": max(lengths),
        "steps": len(timer.marks), **rates(timer.marks, runtime), **peak_memory(),
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        "train_runtime_s": runtime, "train_call_s": trained, "prepare_s": prepared,
        "wall_s": time.perf_counter() - began,
    }


def parameter_count(folder: Path) -> int:
    """The parameters of a saved model folder, from its safetensors headers (tied weights once)."""
    import math

    from safetensors import safe_open

    count = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as weights:
            count += sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return count


def main(argv: list[str] | None = None) -> int:
    """The command line; the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen0.5b",
                        help="model shape (default: qwen0.5b, Qwen2.5-0.5B's; tiny: for the CPU)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps, batch 1 (default: 300)")
    parser.add_argument("--passages", type=int, default=100, help="passages per prompt (default: 100)")
    parser.add_argument("--words", type=int, default=100, help="words per passage (default: 100)")
    parser.add_argument("--queries", type=int, default=32,
                        help="distinct training examples, cycled through (default: 32)")
    parser.add_argument("--vocabulary", type=int, default=4000, help="made-up words the passages use (default: 4000)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="peak learning rate (default: 1e-4)")
    parser.add_argument("--lora-rank", type=int, default=0, help="LoRA rank; 0: full fine-tuning (default)")
    parser.add_argument("--no-gradient-checkpointing", action="store_true",
                        help="keep every activation (faster, more memory)")
    parser.add_argument("--attn-implementation", default=None, help="sdpa, flash_attention_2 or eager "
                                                                      "(default: transformers' choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", metavar="DIR", help="keep the model, labels and trained model here "
                                                        "(default: a temporary folder, removed)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    if min(args.steps, args.passages, args.words, args.queries) < 1 or args.vocabulary < 2:
        parser.error("--steps, --passages, --words and --queries must be at least 1, --vocabulary at least 2")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        print(f"error: this script needs torch and transformers ({exc.name} is missing): "
              "pip install 'rerank-llm[train]'", file=sys.stderr)
        return 2
    try:
        # The Trainer prints its logs on stdout: there they would hide the figures' line.
        with contextlib.redirect_stdout(sys.stderr):
            figures = run_in(args)
    except RerankError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if figures is None:
        return 2
    line = json.dumps(figures)
    print(line, flush=True)
    if args.json:
        Path(args.json).write_text(line + "\n", encoding="utf-8")
    return 0


def run_in(args: argparse.Namespace) -> dict | None:
    """:func:`run` in ``--output`` or a temporary folder; None (said on stderr) when ``--output``
    is not empty."""
    if args.output:
        folder = Path(args.output)
        if folder.exists() and any(folder.iterdir()):
            print(f"error: --output {folder}: the folder is not empty", file=sys.stderr)
            return None
        folder.mkdir(parents=True, exist_ok=True)
        return run(args, folder)
    with tempfile.TemporaryDirectory(prefix="gpu-train-smoke-") as temporary:
        return run(args, Path(temporary))


if __name__ == "__main__":
    sys.exit(main())
