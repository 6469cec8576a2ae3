"""Full-ranking training: importance weights for ranking targets and the weighted LM loss.

``weights`` is pure Python; ``loss`` imports torch (and uses a transformers tokenizer) only when
called: ``pip install 'rerank-llm[train]'``.
"""

from .loss import IGNORE_INDEX, build_training_tensors, collate, importance_weighted_loss
from .weights import (hf_offsets, llama_offsets, offsets_from_bytes, offsets_from_pieces,
                      rank_weight, rank_weights, target_spans, tiktoken_offsets, token_weights)

__all__ = [
    "IGNORE_INDEX", "build_training_tensors", "collate", "importance_weighted_loss",
    "hf_offsets", "llama_offsets", "offsets_from_bytes", "offsets_from_pieces", "rank_weight",
    "rank_weights", "target_spans", "tiktoken_offsets", "token_weights",
]
