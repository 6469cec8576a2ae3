"""Full-ranking training (Liu et al., 2024): importance weights, the weighted loss, and ``rerank train``.

``weights`` is pure Python; ``loss`` imports torch (and uses a transformers tokenizer) only when
called; ``trainer`` (:func:`train`, :class:`TrainConfig`) runs Hugging Face's Trainer with the
importance-aware loss and imports torch, transformers, accelerate and peft when training starts:
``pip install 'rerank-llm[train]'``. ``data`` reads ``rerank labels`` output; ``ranking_eval``
scores a trained model folder with ``--strategy full`` through vLLM.
"""

from .loss import (IGNORE_INDEX, WEIGHTINGS, build_training_tensors, collate, end_of_turn,
                   importance_weighted_loss, pack, weighted_token_nll)
from .trainer import TrainConfig, train
from .weights import (hf_offsets, llama_offsets, offsets_from_bytes, offsets_from_pieces,
                      rank_weight, rank_weights, target_spans, tiktoken_offsets, token_weights)

__all__ = [
    "IGNORE_INDEX", "WEIGHTINGS", "TrainConfig", "build_training_tensors", "collate", "end_of_turn",
    "hf_offsets", "importance_weighted_loss", "llama_offsets", "offsets_from_bytes",
    "offsets_from_pieces", "pack", "rank_weight", "rank_weights", "target_spans",
    "tiktoken_offsets", "token_weights", "train", "weighted_token_nll",
]
