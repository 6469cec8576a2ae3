"""Fine-tune a full-ranking model from Python: ``rerank.training.trainer.train`` in a few lines.

The same as ``rerank train`` (Hugging Face's Trainer, the importance-aware loss of Liu et al.,
2024), called through its Python API. Give ``--labels`` (files of ``rerank labels``) and
``--model`` (a Hugging Face model folder); without them it needs nothing at all: a tiny random
Llama is made on the spot (``rerank.testing.tiny_model``) and a few synthetic queries are labelled
by word overlap, rendered exactly as ``rerank labels`` renders its prompts. Nothing is downloaded.

Usage::

    python eval/train_fullrank.py --check                      # the whole pipeline in seconds, CPU
    python eval/train_fullrank.py --labels labels.jsonl --model path/to/hf-model -o out --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub

from rerank.errors import RerankError  # noqa: E402

WORDS = "cat dog bird fish tree river stone cloud apple bread music light".split()


def synthetic_labels(path: Path, queries: int = 8, passages: int = 6, seed: int = 0) -> None:
    """A labels file as ``rerank labels`` writes it: passages ranked by the words they share with
    the query, each prompt the full ranker's (what inference sends)."""
    from rerank import Candidate, Query, Request, Reranker
    from rerank.labels import student_reranker, teacher_config, training_example
    from rerank.types import Result

    teacher = Reranker(teacher_config(Reranker(model="teacher", base_url="http://127.0.0.1:9/v1", cache=None).config,
                                      "shrinking"))
    student, rng = student_reranker(teacher), random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for q in range(queries):
            words = rng.sample(WORDS, 3)
            request = Request(Query(qid=f"s{q}", text=" ".join(words)),
                              [Candidate(f"s{q}-{i}", " ".join(rng.sample(WORDS, 4))) for i in range(passages)])
            label = sorted(request.candidates, key=lambda c: -len(set(words) & set(c.text.split())))
            out.write(json.dumps(training_example(student, request, Result(request.query, label)).as_dict()) + "\n")


def main(argv: list[str] | None = None) -> int:
    """The command line; the exit code (1 under ``--check`` when the loss did not fall)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", nargs="+", metavar="FILE", help="labels files of `rerank labels` "
                                                                   "(default: synthetic ones)")
    parser.add_argument("--model", help="Hugging Face model folder (default: a tiny random Llama)")
    parser.add_argument("-o", "--output", help="where the trained model goes (default: a temporary folder)")
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps (default: 30)")
    parser.add_argument("--learning-rate", type=float,
                        help="peak learning rate (default: 3e-3 for the tiny model, 1e-5 with --model)")
    parser.add_argument("--batch-size", type=int, default=4, help="examples per step (default: 4)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the training loss fell")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="train-fullrank-") as scratch:
        try:
            return train_example(args, Path(scratch))
        except RerankError as error:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code


def train_example(args: argparse.Namespace, scratch: Path) -> int:
    """Make what is missing in ``scratch``, train, and print the loss."""
    from rerank.training.trainer import TrainConfig, train

    labels = args.labels
    if not labels:
        synthetic_labels(scratch / "labels.jsonl")
        labels = [str(scratch / "labels.jsonl")]
    model = args.model
    if not model:
        from rerank.testing.tiny_model import make_model

        model = str(make_model(scratch / "tiny", hidden=64, layers=2, heads=1, context=2048,
                               texts=[" ".join(WORDS)] * 8))
    report = train(TrainConfig(
        labels=labels, model=model, output=args.output or str(scratch / "trained"), max_steps=args.steps,
        learning_rate=args.learning_rate or (1e-5 if args.model else 3e-3), batch_size=args.batch_size,
        validation_fraction=0.0, logging_steps=max(args.steps // 10, 1),
        trainer_args={"save_strategy": "no", "logging_first_step": True}))
    losses = [entry["loss"] for entry in report["loss_history"] if "loss" in entry]
    fell = len(losses) >= 2 and losses[-1] < losses[0]
    print(f"loss fell from {losses[0]:.4f} to {losses[-1]:.4f}" if fell
          else f"loss did not fall: {' -> '.join(f'{loss:.4f}' for loss in losses)}")
    if args.output:
        print(f"model saved in {args.output}; rerank with it: {' '.join(report['rerank_command'] or [])}")
    return 1 if args.check and not fell else 0


if __name__ == "__main__":
    sys.exit(main())
