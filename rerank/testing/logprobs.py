"""Log-probabilities of a judge's reply, in OpenAI's shape.

With ``logprobs: true`` (and ``top_logprobs``), ``choices[0].logprobs`` is ``{"content": [{"token",
"logprob", "bytes", "top_logprobs"}]}``, one entry per token of the reply (after any cut). The
first token carries the judge's preference: its alternatives are the first tokens of the answers
the judge would have given instead (:meth:`Verdict.alternatives`): for a list, each identifier not
yet written at the place being written (``E``, ``D``, ... after a ``[`` start; ``12`` for passage
12), for a choice each label, for a relevance question yes and no. They get the log-softmax of
their log-probabilities, or of logits 0, -1, -2, ... in the judge's order; the token itself is the
best of them. Every later token has logprob 0.0 and itself as its only alternative.
"""

from __future__ import annotations

import math

from .counting import Tokens
from .judges import Verdict


def first_token_options(tokens: Tokens, verdict: Verdict, prefill: str) -> list[tuple[bytes, float | None]]:
    """The first tokens of the alternatives of ``verdict`` after ``prefill``, best first.

    Parameters
    ----------
    tokens : Tokens
    verdict : Verdict
    prefill : str
        The start of the answer being continued ("" for none).

    Returns
    -------
    list of (bytes, float or None)
        Each first token once, with the log-probability of the first answer that starts with it
        (None: ranked by position).
    """
    seen: dict[bytes, float | None] = {}
    for text, weight in verdict.alternatives(prefill):
        rest = verdict.continuation(text, prefill)
        first = tokens.pieces(rest)[:1] if rest else []
        if first and first[0] not in seen:
            seen[first[0]] = weight
    return list(seen.items())


def _item(token: bytes, value: float) -> dict:
    return {"token": token.decode("utf-8", errors="replace"), "logprob": value, "bytes": list(token)}


def logprobs_content(tokens: Tokens, reply: str, options: list[tuple[bytes, float | None]],
                     top: int) -> list[dict]:
    """``choices[0].logprobs.content`` for ``reply``.

    Parameters
    ----------
    tokens : Tokens
    reply : str
    options : list of (bytes, float or None)
        The first token's alternatives (:func:`first_token_options`).
    top : int
        How many alternatives each entry lists (``top_logprobs``).

    Returns
    -------
    list of dict
    """
    entries = []
    known = dict(options)
    for position, piece in enumerate(tokens.pieces(reply)):
        ranked = [(piece, known.get(piece) if position == 0 else None)]
        if position == 0:
            ranked += [(token, weight) for token, weight in options if token != piece]
        logits = [-k if weight is None else weight for k, (_, weight) in enumerate(ranked)]
        norm = math.log(sum(math.exp(logit) for logit in logits))
        scored = [(token, logit - norm) for (token, _), logit in zip(ranked, logits)]
        entries.append({**_item(piece, scored[0][1]), "top_logprobs": [_item(t, v) for t, v in scored[:top]]})
    return entries
