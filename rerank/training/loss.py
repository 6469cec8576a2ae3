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


def weighted_token_nll(logits, labels, weights, ignore_index: int = IGNORE_INDEX):
    """The weighted sum of the label tokens' negative log-likelihoods, and their number.

    Parameters
    ----------
    logits : torch.Tensor, shape (B, T, V)
        Scores aligned with ``labels``: ``logits[:, t]`` predicts ``labels[:, t]``.
    labels : torch.Tensor of int, shape (B, T)
        Target token ids, ``ignore_index`` where nothing is predicted.
    weights : torch.Tensor of float, shape (B, T)
        The weight of each label token; ignored positions may hold anything.
    ignore_index : int, default -100

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``sum_i w_i * NLL_i`` over the non-ignored tokens (float32, differentiable) and their count.
    """
    torch = _torch()
    mask = labels != ignore_index
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.masked_fill(~mask, 0).reshape(-1),
        reduction="none").view(labels.shape)
    weighted = nll * torch.where(mask, weights.to(nll.dtype), torch.zeros_like(nll))
    return weighted.sum(), mask.sum()


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
    if shift:
        logits, labels, weights = logits[:, :-1], labels[:, 1:], weights[:, 1:]
    total, count = weighted_token_nll(logits, labels, weights, ignore_index)
    return total / count.clamp(min=1)


#: How answer tokens are weighted: by the rank of the identifier they belong to (the paper's
#: importance-aware loss), or all alike (its ablation).
WEIGHTINGS = ("importance", "uniform")


def build_training_tensors(tokenizer, messages: Sequence[dict], target: str, alpha: float = 1.0,
                           max_length: int | None = None, weighting: str = "importance") -> dict[str, list] | None:
    """Input ids, labels and weights of one example for a chat model.

    The prompt is built exactly as the vllm backend builds an inference prompt
    (:meth:`rerank.backends.chat_template.ChatTemplateCounter.prompt_tokens`: the chat template
    rendered with the generation prompt, then tokenized without added special tokens), so a
    trained model receives at inference the tokens it was trained on.

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerFast
        A fast tokenizer (it must report offsets) with a chat template.
    messages : sequence of dict
        The prompt, as ``{"role", "content"}`` messages.
    target : str
        The answer, a ranking such as ``"[4] > [1] > [2]"``.
    alpha : float, default 1.0
        Weight of target tokens outside identifiers and of the end-of-turn token.
    max_length : int or None
        The most tokens an example may have; a longer one would lose the end of its target, and
        None is returned for it. None: no limit.
    weighting : {"importance", "uniform"}
        ``importance``: each identifier's tokens weigh ``1 + 1/log2(rank + 1)``, the rest
        ``alpha``; ``uniform``: every answer token weighs 1.

    Returns
    -------
    dict or None
        ``input_ids`` (the prompt's ids, then the target's and the end-of-turn token: the
        template's closing special token when it has one, else the tokenizer's EOS), ``labels``
        (-100 over the prompt, the ids over the answer) and ``weights`` (0.0 over the prompt):
        plain lists of equal length, aligned with each other (not shifted; use
        ``importance_weighted_loss(..., shift=True)``). None when longer than ``max_length``.

    Raises
    ------
    ConfigError
        When the tokenizer cannot report character offsets, or for an unknown weighting.
    """
    from ..backends.chat_template import ChatTemplateCounter

    if weighting not in WEIGHTINGS:
        raise ConfigError(f"unknown weighting '{weighting}': choose one of {', '.join(WEIGHTINGS)}")
    prompt = ChatTemplateCounter(tokenizer).prompt_tokens(messages)
    try:
        target_ids, offsets = hf_offsets(tokenizer, target)
    except TypeError as error:
        raise ConfigError(str(error)) from None
    if weighting == "uniform":
        target_weights = [1.0] * len(target_ids)
    else:
        target_weights = token_weights(target, offsets, alpha=alpha)
    end = end_of_turn(tokenizer, messages, target)
    if end is not None:
        target_ids.append(end)
        target_weights.append(1.0 if weighting == "uniform" else float(alpha))
    if max_length is not None and len(prompt) + len(target_ids) > max_length:
        return None
    return {
        "input_ids": prompt + target_ids,
        "labels": [IGNORE_INDEX] * len(prompt) + target_ids,
        "weights": [0.0] * len(prompt) + target_weights,
    }


def end_of_turn(tokenizer, messages: Sequence[dict], target: str) -> int | None:
    """The token that ends the assistant's answer, which the model must learn to produce.

    The chat template rendered with the answer as the assistant's message shows what closes it
    (``<|im_end|>`` for Qwen, ``<|eot_id|>`` for Llama 3): its first token when that is a special
    token; otherwise the tokenizer's EOS (None when it has none).
    """
    from ..backends.base import answer_start
    from ..backends.chat_template import ChatTemplateCounter

    prompt_text = ChatTemplateCounter(tokenizer).prompt_text(messages)
    prefill = answer_start(messages)
    answered = ([*messages[:-1], {"role": "assistant", "content": prefill + target}] if prefill is not None
                else [*messages, {"role": "assistant", "content": target}])
    try:
        whole = tokenizer.apply_chat_template(answered, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that refuses an assistant turn
        whole = ""
    if whole.startswith(prompt_text + target):
        rest = tokenizer(whole[len(prompt_text) + len(target):], add_special_tokens=False)["input_ids"]
        if rest and rest[0] in set(tokenizer.all_special_ids):
            return rest[0]
    return getattr(tokenizer, "eos_token_id", None)


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


def pack(examples: Sequence[dict]) -> dict:
    """Examples of ``build_training_tensors`` packed into one row, without padding.

    Each example keeps its own positions (``position_ids`` restart at 0), from which
    transformers' attention keeps examples from seeing each other; the first token of each is a
    prompt token, so no label crosses from one example into the next.

    Parameters
    ----------
    examples : sequence of dict

    Returns
    -------
    dict of torch.Tensor
        ``input_ids``, ``position_ids``, ``labels`` and ``weights``, each of shape (1, total length).
    """
    torch = _torch()
    row = {key: [value for example in examples for value in example[key]]
           for key in ("input_ids", "labels", "weights")}
    positions = [position for example in examples for position in range(len(example["input_ids"]))]
    return {"input_ids": torch.tensor([row["input_ids"]], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
            "labels": torch.tensor([row["labels"]], dtype=torch.long),
            "weights": torch.tensor([row["weights"]], dtype=torch.float32)}

