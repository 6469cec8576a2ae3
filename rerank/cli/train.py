"""``rerank train``: fine-tune a full-ranking model on ``rerank labels`` output (rerank.training)."""

from __future__ import annotations

import argparse

from ..errors import ConfigError


def add_train_command(commands) -> None:
    """Add ``rerank train``."""
    train = commands.add_parser(
        "train", help="fine-tune a full-ranking model on rerank labels output (importance-aware loss)",
        description="Fine-tune a causal LM to rank every candidate in one call, on the examples of `rerank labels`, "
                    "with Hugging Face's Trainer and the importance-aware loss of Liu et al. (2024): each answer "
                    "token weighted 1 + 1/log2(rank + 1) by the identifier it belongs to. Runs as it is on one "
                    "device, or under `accelerate launch -m rerank train ...` / `torchrun -m rerank train ...` "
                    "on several (DDP, DeepSpeed ZeRO-3 or FSDP).")
    train.add_argument("labels", metavar="LABELS.jsonl", nargs="+",
                       help="labels files of `rerank labels` (its -o or --sft output, either variant)")
    train.add_argument("--model", required=True, help="the model to fine-tune: a Hugging Face model folder")
    train.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                       help="checkpoints, then the final model and tokenizer (loads in --backend vllm and vllm serve)")
    data = train.add_argument_group("data")
    data.add_argument("--validation", nargs="+", default=[], metavar="FILE",
                      help="labels files held out for validation (default: --validation-fraction of the queries)")
    data.add_argument("--validation-fraction", type=float, default=0.05,
                      help="share of the queries held out for validation loss, chosen by a hash of the qid "
                           "(default: 0.05; 0: none)")
    data.add_argument("--max-length", type=int, default=None,
                      help="the most tokens of an example; longer ones are dropped and counted, never cut "
                           "(default: the model's context)")
    data.add_argument("--packing", action="store_true",
                      help="several examples per row, without padding (default: one query per sequence, as the paper)")
    loss = train.add_argument_group("loss")
    loss.add_argument("--weighting", choices=("importance", "uniform"), default="importance",
                      help="importance: each identifier's tokens weigh 1 + 1/log2(rank + 1) (the paper); uniform: "
                           "every answer token weighs 1 (its ablation) (default: importance)")
    loss.add_argument("--alpha", type=float, default=1.0,
                      help="weight of separator and end-of-turn tokens under importance weighting (default: 1.0)")
    optimisation = train.add_argument_group("optimisation (as Hugging Face's TrainingArguments)")
    optimisation.add_argument("--epochs", type=float, default=1.0, help="passes over the data (default: 1)")
    optimisation.add_argument("--max-steps", type=int, default=-1,
                              help="stop after this many optimiser steps (default: -1, the epochs decide)")
    optimisation.add_argument("--learning-rate", type=float, default=1e-5, help="peak learning rate (default: 1e-5)")
    optimisation.add_argument("--batch-size", type=int, default=1, help="examples per device per step (default: 1)")
    optimisation.add_argument("--gradient-accumulation-steps", type=int, default=1,
                              help="micro-batches per optimiser step (default: 1)")
    optimisation.add_argument("--warmup-ratio", type=float, default=0.03, help="share of steps warming up (default: 0.03)")
    optimisation.add_argument("--lr-scheduler", default="cosine", help="learning-rate schedule (default: cosine)")
    optimisation.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default: 0)")
    optimisation.add_argument("--seed", type=int, default=0, help="seeds the weights' init, the data order and "
                                                                    "the validation split (default: 0)")
    optimisation.add_argument("--logging-steps", type=int, default=10, help="log the loss every N steps (default: 10)")
    optimisation.add_argument("--save-steps", type=int, default=None,
                              help="save (and score on the dev set) every N steps (default: every epoch)")
    optimisation.add_argument("--save-total-limit", type=int, default=None,
                              help="keep only the last N checkpoints (default: all)")
    optimisation.add_argument("--trainer-arg", action="append", default=[], metavar="NAME=VALUE",
                              help="any other TrainingArguments field, e.g. optim=adamw_torch_fused (repeatable; "
                                   "VALUE read as JSON where it parses)")
    scale = train.add_argument_group("precision, memory and devices")
    scale.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                       help="bfloat16 mixed precision (default: on where the GPU supports it)")
    scale.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                       help="dtype the weights are loaded in (default auto: float32 for full fine-tuning, bfloat16 "
                            "with --bf16 under LoRA, DeepSpeed or FSDP)")
    scale.add_argument("--gradient-checkpointing", action="store_true",
                       help="recompute activations in the backward pass (long prompts on less memory)")
    scale.add_argument("--attn-implementation", default=None,
                       help="sdpa, flash_attention_2 or eager (default: transformers' choice)")
    scale.add_argument("--deepspeed", metavar="CONFIG.json",
                       help="a DeepSpeed config, e.g. eval/train/zero3.json (launch with accelerate or deepspeed)")
    scale.add_argument("--fsdp", metavar="SPEC", help="FSDP as TrainingArguments' fsdp, e.g. 'full_shard auto_wrap' "
                                                       "(or launch with eval/train/fsdp.yaml)")
    lora = train.add_argument_group("LoRA (peft)")
    lora.add_argument("--lora-rank", type=int, default=0, help="LoRA rank; 0 fine-tunes every weight (default: 0)")
    lora.add_argument("--lora-alpha", type=int, default=None, help="LoRA scaling (default: 2 x rank)")
    lora.add_argument("--lora-dropout", type=float, default=0.05, help="LoRA dropout (default: 0.05)")
    lora.add_argument("--lora-target", default="all-linear",
                      help="modules that get adapters: all-linear or comma-separated names (default: all-linear)")
    lora.add_argument("--merge-lora", action="store_true",
                      help="write the merged model into OUT_DIR, so it loads in vLLM as it is (the adapter goes "
                           "to OUT_DIR/adapter)")
    dev = train.add_argument_group("evaluation: nDCG@10 of --strategy full with each checkpoint (through vLLM)")
    dev.add_argument("--eval-input", metavar="FILE", help="dev candidates (any format rerank run reads)")
    dev.add_argument("--eval-qrels", metavar="QRELS", help="qrels of the dev queries")
    dev.add_argument("--eval-limit", type=int, default=None, help="only the first N dev queries")
    dev.add_argument("--eval-top-k", type=int, default=100,
                     help="candidates of each dev query ranked in the one call (default: 100, as the paper)")
    dev.add_argument("--eval-prompt", default=None,
                     help="prompt template of the dev runs (default: the labels' own, from their run record)")
    dev.add_argument("--eval-max-passage-words", type=int, default=None,
                     help="passage cut of the dev runs (default: the labels' own)")
    dev.add_argument("--eval-gpu-memory-utilization", type=float, default=None,
                     help="vLLM's share of GPU memory beside the trainer's (default: vLLM's)")
    dev.add_argument("--eval-max-model-len", type=int, default=None, help="vLLM's context (default: the model's)")
    state = train.add_mutually_exclusive_group()
    state.add_argument("--resume", action="store_true", help="go on from the last checkpoint in OUT_DIR")
    state.add_argument("--force", action="store_true", help="train into a non-empty OUT_DIR")
    train.set_defaults(handler=train_command)


def trainer_args(values: list[str]) -> dict:
    """``--trainer-arg NAME=VALUE`` pairs as a dict, each value read as JSON where it parses."""
    import json

    found = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--trainer-arg {item}: expected NAME=VALUE")
        try:
            found[name.strip()] = json.loads(value)
        except ValueError:
            found[name.strip()] = value
    return found


def train_config(args: argparse.Namespace):
    """The :class:`~rerank.training.trainer.TrainConfig` of the command line."""
    from ..training.ranking_eval import DevSet
    from ..training.trainer import TrainConfig

    if bool(args.eval_input) != bool(args.eval_qrels):
        raise ConfigError("--eval-input and --eval-qrels go together")
    dev = None
    if args.eval_input:
        dev = DevSet(args.eval_input, args.eval_qrels, limit=args.eval_limit, top_k=args.eval_top_k, prompt=args.eval_prompt,
                     max_passage_words=args.eval_max_passage_words,
                     gpu_memory_utilization=args.eval_gpu_memory_utilization, max_model_len=args.eval_max_model_len)
    return TrainConfig(
        labels=list(args.labels), model=args.model, output=args.output, validation=list(args.validation),
        validation_fraction=args.validation_fraction, weighting=args.weighting, alpha=args.alpha,
        max_length=args.max_length, epochs=args.epochs, max_steps=args.max_steps, learning_rate=args.learning_rate,
        batch_size=args.batch_size, gradient_accumulation_steps=args.gradient_accumulation_steps,
        warmup_ratio=args.warmup_ratio, lr_scheduler=args.lr_scheduler, weight_decay=args.weight_decay,
        seed=args.seed, logging_steps=args.logging_steps, save_steps=args.save_steps,
        save_total_limit=args.save_total_limit, bf16=args.bf16, dtype=args.dtype,
        gradient_checkpointing=args.gradient_checkpointing, packing=args.packing,
        attn_implementation=args.attn_implementation, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout, lora_target=args.lora_target, merge_lora=args.merge_lora,
        deepspeed=args.deepspeed, fsdp=args.fsdp, dev=dev, resume=args.resume, force=args.force,
        trainer_args=trainer_args(args.trainer_arg))


def train_command(args: argparse.Namespace) -> int:
    """``rerank train``."""
    import os

    from ..training.trainer import REPORT_NAME, say, train

    # Models and tokenizers come from local folders; never wait on the hub for a missing file.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = train(train_config(args))
    if report:
        say(f"model saved in {report['output']}; report in {os.path.join(report['output'], REPORT_NAME)}")
        if report.get("rerank_command"):
            say("rerank with it: " + " ".join(report["rerank_command"]))
    return 0
