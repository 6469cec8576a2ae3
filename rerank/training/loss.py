"""The importance-aware language-modelling loss of full-ranking training, and its inputs.

Torch and transformers are imported inside the functions, so ``import rerank.training`` works
without them; calling these functions without torch raises ``ConfigError`` with the install hint.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import ConfigError
from .weights import hf_offsets, token_weights

INSTALL_HINT = "pip install 'rerank-llm[train]'"
IGNORE_INDEX = -100


def _torch():
    try:
        import torch
    except ImportError:
        raise ConfigError(f"training needs torch: {INSTALL_HINT}") from None
    return torch


def importance_weighted_loss(logits, labels, weights, ignore_index: int = IGNORE_INDEX,
                             shift: bool = False):
    """Weighted token cross-entropy: ``sum_i w_i * NLL_i / (number of label tokens)``.

    The sum and the count run over the non-ignored label tokens of the whole batch; dividing by
    the number of label tokens rather than by the sum of the weights is the paper's
    normalisation (with every weight 1 this is the ordinary mean cross-entropy).

    Parameters
    ----------
    logits : torch.Tensor, shape (B, T, V)
        Scores of a causal LM. With ``shift=False`` (default) they are already aligned, i.e.
        ``logits[:, t]`` predicts ``labels[:, t]``: the caller has shifted them.
    labels : torch.Tensor of int, shape (B, T)
        Target token ids, ``ignore_index`` over the prompt and the padding.
    weights : torch.Tensor of float, shape (B, T)
        The weight of each label token (aligned with ``labels``); ignored positions may hold
        anything.
    ignore_index : int, default -100
    shift : bool, default False
        Shift internally like Hugging Face causal LMs: ``logits[:, :-1]`` against
        ``labels[:, 1:]`` and ``weights[:, 1:]``, so ``labels`` and ``weights`` may be given
        aligned with the input ids.

    Returns
    -------
    torch.Tensor
        A scalar; 0 (still differentiable) when no token is labelled.
    """
    torch = _torch()
    if shift:
        logits, labels, weights = logits[:, :-1], labels[:, 1:], weights[:, 1:]
    mask = labels != ignore_index
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.masked_fill(~mask, 0).reshape(-1),
        reduction="none").view(labels.shape)
    weighted = nll * torch.where(mask, weights.to(nll.dtype), torch.zeros_like(nll))
    return weighted.sum() / mask.sum().clamp(min=1)


def build_training_tensors(tokenizer, messages: Sequence[dict], target: str, alpha: float = 1.0,
                           max_length: int | None = None) -> dict[str, list]:
    """Input ids, labels and weights of one example for a chat model.

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerFast
        A fast tokenizer (it must report offsets) with a chat template.
    messages : sequence of dict
        The prompt, as ``{"role", "content"}`` messages.
    target : str
        The answer, a ranking such as ``"[4] > [1] > [2]"``.
    alpha : float, default 1.0
        Weight of target tokens outside identifiers and of the end-of-sequence token.
    max_length : int or None
        Keep only the first ``max_length`` tokens (prompt first, so a long prompt cuts the end
        of the target); None keeps everything.

    Returns
    -------
    dict
        ``input_ids`` (prompt ids from ``apply_chat_template(messages,
        add_generation_prompt=True)`` followed by the target ids and the EOS id when the
        tokenizer has one), ``labels`` (-100 over the prompt, the ids over the target and EOS)
        and ``weights`` (0.0 over the prompt, ``token_weights`` over the target, ``alpha`` for
        EOS): plain lists of equal length, aligned with each other (not shifted; use
        ``importance_weighted_loss(..., shift=True)``).

    Raises
    ------
    ConfigError
        When the tokenizer cannot report character offsets.
    """
    prompt = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                           tokenize=True)
    if hasattr(prompt, "keys"):  # transformers >= 5 returns a BatchEncoding by default
        prompt = prompt["input_ids"]
    prompt = list(prompt)
    try:
        target_ids, offsets = hf_offsets(tokenizer, target)
    except TypeError as error:
        raise ConfigError(str(error)) from None
    target_weights = token_weights(target, offsets, alpha=alpha)
    if getattr(tokenizer, "eos_token_id", None) is not None:
        target_ids.append(tokenizer.eos_token_id)
        target_weights.append(float(alpha))
    example = {
        "input_ids": prompt + target_ids,
        "labels": [IGNORE_INDEX] * len(prompt) + target_ids,
        "weights": [0.0] * len(prompt) + target_weights,
    }
    if max_length is not None:
        example = {key: values[:max_length] for key, values in example.items()}
    return example


def collate(examples: Sequence[dict], pad_token_id: int) -> dict:
    """Right-pad examples of ``build_training_tensors`` into a batch of tensors.

    Parameters
    ----------
    examples : sequence of dict
        Each with ``input_ids``, ``labels`` and ``weights`` lists.
    pad_token_id : int
        Id used to pad ``input_ids`` (padding is masked out of attention and labels anyway).

    Returns
    -------
    dict of torch.Tensor
        ``input_ids``, ``attention_mask``, ``labels`` (-100 over padding) and ``weights``
        (0 over padding), each of shape (B, longest example).
    """
    torch = _torch()
    width = max(len(example["input_ids"]) for example in examples)

    def pad(key, value, dtype):
        return torch.tensor([list(example[key]) + [value] * (width - len(example[key]))
                             for example in examples], dtype=dtype)

    return {
        "input_ids": pad("input_ids", pad_token_id, torch.long),
        "attention_mask": torch.tensor([[1] * len(example["input_ids"])
                                        + [0] * (width - len(example["input_ids"]))
                                        for example in examples], dtype=torch.long),
        "labels": pad("labels", IGNORE_INDEX, torch.long),
        "weights": pad("weights", 0.0, torch.float32),
    }
