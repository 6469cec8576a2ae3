"""Holding llama.cpp's answer to a ranking without repeated identifiers.

A GBNF grammar admits only ``[a] > [b] > ...`` with the window's identifiers; it cannot say
"each identifier once", so :class:`PermutationProcessor`, a logits processor, bans any token
that would repeat one. Even a tiny model then answers with a full permutation.
"""

from __future__ import annotations

from ..answers.constraints import RANKING_CHARACTERS, RankingPrefix


def ranking_tokens(llama) -> dict[int, str]:
    """The tokens of a model's vocabulary whose text uses only ranking characters.

    Parameters
    ----------
    llama : llama_cpp.Llama
        A loaded model.

    Returns
    -------
    dict of int to str
        Each such token's id and text: those :class:`PermutationProcessor` checks.
    """
    tokens = {}
    for token in range(llama.n_vocab()):
        text = llama.detokenize([token]).decode("utf-8", "ignore")
        if text and set(text) <= RANKING_CHARACTERS:
            tokens[token] = text
    return tokens


class PermutationProcessor:
    """A llama.cpp logits processor that keeps the answer a prefix of a ranking without repeats.

    Tokens whose text uses only ranking characters are checked against the state of the answer
    so far; those that would repeat an identifier, leave the range or break the format get
    ``-inf``. The grammar rules out every other token.

    Parameters
    ----------
    start : RankingPrefix
        The state of an empty answer (:meth:`~rerank.answers.Constraint.prefix`).
    ranking_tokens : dict of int to str
        The ranking tokens of the vocabulary (:func:`ranking_tokens`).
    detokenize : callable
        The model's ``detokenize``: token ids to bytes.
    """

    def __init__(self, start: RankingPrefix, ranking_tokens: dict[int, str], detokenize):
        self.state: RankingPrefix | None = start
        self.ranking_tokens = ranking_tokens
        self.detokenize = detokenize
        self.prompt_length: int | None = None
        self.seen = 0

    def __call__(self, input_ids, scores):
        if self.prompt_length is None:
            self.prompt_length = self.seen = len(input_ids)
        if len(input_ids) > self.seen and self.state is not None:
            text = self.detokenize(list(input_ids[self.seen:])).decode("utf-8", "ignore")
            self.state = self.state.advance(text)
            self.seen = len(input_ids)
        if self.state is None or self.state.complete:
            return scores  # off the rails or done: the grammar decides (end of answer)
        state = self.state
        banned = [token for token, text in self.ranking_tokens.items() if state.advance(text) is None]
        scores[banned] = -float("inf")
        return scores
