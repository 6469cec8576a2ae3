"""A tiny randomly initialised Llama with a tokenizer trained on the spot, saved as a model folder.

vLLM (and transformers) load it like any Hugging Face model, with no download: it exercises the
vllm backend for real (chat template, tokenization, batching, structured outputs, logprobs)
while its answers mean nothing. Used by the vLLM tests, and by ``eval/bench_vllm_gpu.py`` with a
larger shape. Needs ``transformers``, ``tokenizers`` and ``torch`` (the ``vllm`` or ``train`` extra).

Usage: ``python -m rerank.testing.tiny_model OUT_DIR [--hidden 128 --layers 2 --heads 2]`` (vLLM on
the CPU needs heads of 32, 64, 80, 96, 112, 128, 160, 192, 224 or 256 dimensions; 64 here).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

# Everything a ranking prompt and answer are written with, so the tokenizer covers them.
_TRAINING_TEXT = [
    "I will provide you with 20 passages, each indicated by a numerical identifier []. "
    "Rank the passages based on their relevance to the search query: what is a lobster roll.",
    "Search Query: how long is life cycle of flea. Rank the 20 passages above based on their "
    "relevance to the search query. The output format should be [] > [], e.g., [4] > [2].",
    "[1] > [2] > [3] > [4] > [5] > [6] > [7] > [8] > [9] > [10] > [11] > [12] > [13] > [14] > [15]",
    "[16] > [17] > [18] > [19] > [20] [A] > [B] > [C] > [D] > [E] > [F] > [G] > [H] > [I] > [J]",
    "[K] > [L] > [M] > [N] > [O] > [P] > [Q] > [R] > [S] > [T] alphabetical identifier passages",
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy.",
    "Only respond with the ranking results, do not say any word or explain. Received passage.",
    "The quick brown fox jumps over the lazy dog; water plants grow in the ground in summer.",
]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def make_tokenizer(vocab_size: int = 512, texts: Iterable[str] = ()):
    """A byte-level BPE tokenizer with a chat template, trained on the spot.

    Parameters
    ----------
    vocab_size : int
        The most tokens it may have.
    texts : iterable of str
        More text to learn from, besides a few ranking prompts (words seen often enough become
        one token each: ``eval/gpu_train_smoke.py`` sizes its prompts so).

    Returns
    -------
    transformers.PreTrainedTokenizerFast
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = ["<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([*_TRAINING_TEXT * 4, *texts], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(folder: str | Path, *, hidden: int = 128, layers: int = 2, heads: int = 2,
               kv_heads: int | None = None, intermediate: int | None = None, context: int = 4096,
               vocab_size: int = 512, dtype: str = "float32", seed: int = 0,
               texts: Iterable[str] = (), model_vocab_size: int | None = None) -> Path:
    """Save a random Llama and its tokenizer into ``folder``.

    Parameters
    ----------
    folder : str or Path
    hidden, layers, heads, kv_heads, intermediate, context, vocab_size : int
        The model's shape (``kv_heads`` defaults to ``heads``, ``intermediate`` to 4 x ``hidden``).
    dtype : str
        A torch dtype name.
    seed : int
        Seeds the random weights.
    texts : iterable of str
        More text for the tokenizer to learn from (:func:`make_tokenizer`).
    model_vocab_size : int or None
        Rows of the embedding and output layers when more than the tokenizer's tokens (a real
        model's vocabulary: 151936 for Qwen2.5); default: the tokenizer's.

    Returns
    -------
    Path
        ``folder``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = make_tokenizer(vocab_size, texts)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=max(len(tokenizer), model_vocab_size or 0), hidden_size=hidden,
                         intermediate_size=intermediate or hidden * 4, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads or heads,
                         max_position_embeddings=context, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True, torch_dtype=dtype)
    model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    """The command line: make a model folder and print its path."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--context", type=int, default=4096)
    args = parser.parse_args()
    print(make_model(args.folder, hidden=args.hidden, layers=args.layers, heads=args.heads, context=args.context))


if __name__ == "__main__":
    main()
