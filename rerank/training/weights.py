"""Importance weights for the tokens of a ranking target, as in full-ranking training.

The target of a listwise training example is a ranking such as ``[4] > [1] > [12] > [2]``: the
identifiers are 1-based positions of the passages in the prompt and the separator is ``" > "``.
Following "Sliding Windows Are Not the End" (Liu et al. 2024), the identifier at rank ``r`` (the
r-th in the target) weighs ``1 + 1 / log2(r + 1)``, so mistakes at the top of the ranking cost
more; every other target token (separators, whitespace, end of sequence) weighs ``alpha``.

Weights are assigned through character offsets, so they work with any tokenizer, including those
that split ``[12]`` into ``[``, ``1``, ``2``, ``]`` (every piece gets the identifier's weight) or
that merge ``] > [`` into one token (it gets the weight of the first identifier it touches). The
module is pure Python; the offsets helpers call whichever tokenizer object they are given.
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence

from ..answers.ranking import identifier_spans



def rank_weight(rank: int) -> float:
    """The weight of the identifier at a 1-based rank: ``1 + 1 / log2(rank + 1)``.

    Parameters
    ----------
    rank : int
        1-based position in the target ranking.

    Returns
    -------
    float
        2.0 for rank 1, decreasing towards 1.0.

    Raises
    ------
    ValueError
        When ``rank < 1``.
    """
    if rank < 1:
        raise ValueError(f"ranks are 1-based, got {rank}")
    return 1.0 + 1.0 / math.log2(rank + 1)


def rank_weights(n: int) -> list[float]:
    """The weights of ranks ``1..n``, in order.

    Parameters
    ----------
    n : int
        Number of ranked identifiers.

    Returns
    -------
    list of float
    """
    return [rank_weight(rank) for rank in range(1, n + 1)]


def target_spans(target: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the ``[k]`` identifiers of a target, in order.

    Parameters
    ----------
    target : str
        A ranking such as ``"[4] > [1] > [2]"``.

    Returns
    -------
    list of (int, int)
        Half-open spans, brackets included; the i-th span is the identifier at rank ``i + 1``.
    """
    return identifier_spans(target)


def token_weights(target: str, offsets: Sequence[tuple[int, int]], alpha: float = 1.0) -> list[float]:
    """Per-token weights of a tokenized target, from each token's character span.

    Parameters
    ----------
    target : str
        The ranking string that was tokenized.
    offsets : sequence of (int, int)
        Each token's half-open character span ``(start, end)`` in ``target``.
    alpha : float, default 1.0
        Weight of tokens that overlap no identifier (separators, whitespace), as in the paper's
        code.

    Returns
    -------
    list of float
        One weight per token:

        - a token overlapping the identifier at rank ``r`` gets ``rank_weight(r)``; one that
          overlaps several (e.g. ``"] > ["``) gets the weight of the first, which is the highest;
        - a token overlapping no identifier gets ``alpha``;
        - a zero-width token (``start >= end``, e.g. ``(0, 0)`` for special or padding tokens)
          gets 0.0: it has no text in the target. Give an end-of-sequence token its weight
          yourself (``build_training_tensors`` gives it ``alpha``).
    """
    spans = target_spans(target)
    ends = [end for _, end in spans]
    weights = rank_weights(len(spans))
    result = []
    for start, end in offsets:
        if start >= end:
            result.append(0.0)
            continue
        # The first identifier that ends after the token starts is the only candidate for the
        # first overlap: spans are sorted and disjoint.
        index = bisect.bisect_right(ends, start)
        if index < len(spans) and spans[index][0] < end:
            result.append(weights[index])
        else:
            result.append(float(alpha))
    return result


def offsets_from_pieces(pieces: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of consecutive text pieces (cumulative lengths).

    Parameters
    ----------
    pieces : sequence of str
        The decoded text of each token, in order, which joined give the tokenized text.

    Returns
    -------
    list of (int, int)
        ``(start, end)`` of each piece; an empty piece gets a zero-width span.
    """
    offsets, position = [], 0
    for piece in pieces:
        offsets.append((position, position + len(piece)))
        position += len(piece)
    return offsets


def offsets_from_bytes(pieces: Sequence[bytes]) -> list[tuple[int, int]]:
    """Character spans of consecutive byte pieces of a UTF-8 text.

    Byte-level tokenizers (tiktoken, GPT-2 style BPE in llama.cpp) may cut a multi-byte
    character between two tokens; each such token's span then covers the whole character, so
    both overlap it (neither gets a zero-width span).

    Parameters
    ----------
    pieces : sequence of bytes
        The bytes of each token, in order, which joined give the UTF-8 encoded text.

    Returns
    -------
    list of (int, int)
        ``(start, end)`` character spans of each piece in the decoded text; an empty piece
        gets a zero-width span.

    Raises
    ------
    UnicodeDecodeError
        When the joined bytes are not valid UTF-8.
    """
    data = b"".join(pieces)
    data.decode("utf-8")  # validate, so the character count below is meaningful
    # char_of[b]: the index of the character that byte b belongs to (continuation bytes are
    # 0b10xxxxxx); char_of[len(data)] is the number of characters.
    char_of, count = [], -1
    for byte in data:
        if not 0x80 <= byte < 0xC0:
            count += 1
        char_of.append(count)
    char_of.append(count + 1)
    offsets, position = [], 0
    for piece in pieces:
        if not piece:
            start = char_of[position]
            offsets.append((start, start))
            continue
        end_byte = position + len(piece)
        offsets.append((char_of[position], char_of[end_byte - 1] + 1))
        position = end_byte
    return offsets


def tiktoken_offsets(encoding, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character spans of ``text`` under a tiktoken encoding.

    Spans are computed from each token's bytes (``offsets_from_bytes``) rather than
    ``Encoding.decode_with_offsets``, which gives only start offsets and, when a multi-byte
    character is split between tokens, the same start to both (a zero-width span for the first).

    Parameters
    ----------
    encoding : tiktoken.Encoding
        E.g. ``rerank.tokens.get_encoding("cl100k_base")``.
    text : str
        The text to tokenize; special tokens are encoded as ordinary text.

    Returns
    -------
    (list of int, list of (int, int))
        The token ids and their character spans in ``text``.
    """
    ids = encoding.encode(text, disallowed_special=())
    if hasattr(encoding, "decode_tokens_bytes"):
        pieces = encoding.decode_tokens_bytes(ids)
    else:
        pieces = [encoding.decode_single_token_bytes(token) for token in ids]
    return ids, offsets_from_bytes(pieces)


def hf_offsets(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character spans of ``text`` under a Hugging Face fast tokenizer.

    Special tokens are not added. Accepts a ``tokenizers.Tokenizer`` (spans from
    ``Encoding.offsets``) or a ``transformers`` fast tokenizer (``return_offsets_mapping=True``).

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer or transformers.PreTrainedTokenizerFast
    text : str

    Returns
    -------
    (list of int, list of (int, int))
        The token ids and their character spans. Tokens added without text (padding configured
        on a ``tokenizers.Tokenizer``, say) keep their zero-width spans, so ``token_weights``
        gives them 0.0; call ``tokenizer.no_padding()`` to drop them. Truncation configured on
        a ``tokenizers.Tokenizer`` (``tokenizer.json`` files often set it) cuts the target
        silently: call ``tokenizer.no_truncation()`` first.

    Raises
    ------
    TypeError
        For a tokenizer that cannot report offsets (a slow ``transformers`` tokenizer).
    """
    if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer
        encoding = tokenizer.encode(text, add_special_tokens=False)
        return list(encoding.ids), [tuple(span) for span in encoding.offsets]
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} cannot report character offsets: "
                        "use a fast tokenizer (AutoTokenizer.from_pretrained(..., use_fast=True))")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoded["input_ids"]), [tuple(span) for span in encoded["offset_mapping"]]


def llama_offsets(llama, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character spans of ``text`` under a llama.cpp model's tokenizer.

    Parameters
    ----------
    llama : llama_cpp.Llama
        A loaded model (``LlamaCppBackend().token_counter().llama``).
    text : str

    Returns
    -------
    (list of int, list of (int, int))
        The ids of ``llama.tokenize(text, add_bos=False, special=False)`` and the spans of
        their ``detokenize([id])`` bytes.

    Raises
    ------
    ValueError
        When the tokens' bytes do not join back to ``text`` (a tokenizer that adds or drops
        text when decoding a single token, such as SentencePiece's leading space).
    """
    ids = llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    pieces = [llama.detokenize([token]) for token in ids]
    if b"".join(pieces) != text.encode("utf-8"):
        raise ValueError("the tokens' bytes do not reproduce the text; offsets would be wrong")
    return list(ids), offsets_from_bytes(pieces)
