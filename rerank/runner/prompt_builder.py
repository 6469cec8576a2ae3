"""Building a window's prompt for one query: render the template, fit it to the budget.

Passages are shortened evenly when a prompt is over its budget ("water filling",
:func:`rerank.tokens.fit_lengths`); the query is cut to its share of the context
(:mod:`rerank.fitting`). Counting tokens (tiktoken, llama.cpp) runs outside the GIL, so
:meth:`PromptBuilder.build` counts in a worker thread, and only when a prompt could be over its
budget at all.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Sequence

from ..answers import Ask, AnswerKind
from ..fitting import MIN_PASSAGE_TOKENS, QUERY_SHARE, cut_query, cut_text
from ..passages import neutralise_ids
from ..prompts import PromptTemplate, load_prompt
from ..tokens import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, TokenCounter, fit_lengths


class Templates:
    """Prompt templates by name, each loaded once; None names the reranker's own.

    Parameters
    ----------
    default : PromptTemplate
        The reranker's template.
    """

    __slots__ = ("default", "_loaded")

    def __init__(self, default: PromptTemplate):
        self.default = default
        self._loaded: dict[str, PromptTemplate] = {}

    def get(self, name: str | None) -> PromptTemplate:
        """The template called ``name`` (bundled name or path), or the default for None."""
        if name is None:
            return self.default
        template = self._loaded.get(name)
        if template is None:
            template = self._loaded[name] = load_prompt(name)
        return template


def fits_unread(messages: list[dict], budget: int) -> bool:
    """Whether a prompt surely fits ``budget`` tokens without counting them.

    A token is at least one byte, so a prompt within budget in bytes fits. Framing is counted
    generously: chat templates spend a few more tokens per message than OpenAI does.
    """
    framing = 2 * TOKENS_PER_MESSAGE * len(messages) + 2 * TOKENS_PER_REPLY
    return sum(len(m["content"].encode()) for m in messages) + framing <= budget


class PromptBuilder:
    """The prompts of one query's windows.

    Parameters
    ----------
    templates : Templates
        Where each window's template comes from.
    counter : callable
        Returns the backend's token counter (loaded on first use).
    query : str
        The query text as given.
    passages : list of str
        Every candidate's prepared passage, by candidate index.
    context : int
        The context budget, for the query's share.
    """

    __slots__ = ("templates", "counter", "query", "passages", "_token_counts")

    def __init__(self, templates: Templates, counter: Callable[[], TokenCounter], query: str,
                 passages: list[str], context: int):
        self.templates = templates
        self.counter = counter
        query = neutralise_ids(" ".join(query.split()))
        if len(query.encode("utf-8", "surrogatepass")) > context * QUERY_SHARE:  # else surely within its share
            query = cut_query(query, context, counter())
        self.query = query
        self.passages = passages
        self._token_counts: dict[int, int] = {}

    def labels(self, indices: Sequence[int], prompt: str | None) -> list[str]:
        """The identifiers the window's template shows its passages with."""
        return self.templates.get(prompt).labels(len(indices))

    async def build(self, indices: Sequence[int], prompt: str | None, kind: AnswerKind, ask: Ask,
                    budget: int) -> tuple[list[dict], bool]:
        """The window's chat messages within ``budget`` tokens, the answer's start appended, and
        whether passages (or the query) had to be shortened to fit.

        Parameters
        ----------
        indices : sequence of int
            Candidate indices, in the order shown.
        prompt : str or None
            The window's template (None: the reranker's).
        kind : AnswerKind
            For the template's ``{instructions}`` and ``{k}``.
        ask : Ask
            The request: its answer start takes room in the prompt.
        budget : int
            Tokens for the prompt (the context less the answer's tokens).
        """
        if ask.answer_start:  # the answer's start is part of the prompt
            budget -= TOKENS_PER_MESSAGE + len(ask.answer_start.encode())
        rendered = messages = self.render(indices, prompt, kind)
        if not fits_unread(messages, budget):
            # In a thread: the event loop goes on sending the calls of other queries meanwhile.
            messages = await asyncio.to_thread(self.fit, indices, prompt, kind, messages, budget)
        shortened = messages is not rendered
        if ask.answer_start:  # for the model to continue with an identifier
            messages = [*messages, {"role": "assistant", "content": ask.answer_start}]
        return messages, shortened

    def messages(self, indices: Sequence[int], prompt: str | None, kind: AnswerKind, budget: int) -> list[dict]:
        """The window's chat messages within ``budget`` tokens, counted in this thread."""
        messages = self.render(indices, prompt, kind)
        return messages if fits_unread(messages, budget) else self.fit(indices, prompt, kind, messages, budget)

    def render(self, indices: Sequence[int], prompt: str | None, kind: AnswerKind,
               query: str | None = None, passages: Sequence[str] | None = None) -> list[dict]:
        """The window's chat messages with its passages as prepared, uncut (or as given)."""
        template = self.templates.get(prompt)
        labels = template.labels(len(indices))
        if passages is None:
            passages = [self.passages[i] for i in indices]
        return template.render(self.query if query is None else query, passages,
                               kind.instructions(labels), getattr(kind, "k", 1))

    def fit(self, indices: Sequence[int], prompt: str | None, kind: AnswerKind, messages: list[dict],
            budget: int) -> list[dict]:
        """``messages`` (the window rendered uncut) shortened evenly to ``budget`` tokens if over it.

        The whole prompt is counted first: most prompts fit and need nothing more. Otherwise the
        framing's share is what the prompt counts beyond its passages, and each passage is cut to
        the largest common cap that fits.
        """
        counter = self.counter()
        total = counter.count_messages(messages)
        if total <= budget:
            return messages
        lengths = [self._tokens(i, counter) for i in indices]
        framing = total - sum(lengths)
        query = self.query
        room = MIN_PASSAGE_TOKENS * len(indices)
        while framing > budget - room and query:
            # The query leaves the passages no room (a huge query, rendered twice by some
            # templates): halve it until it does; the up-front check made sure that can work.
            query = cut_text(query, counter.count(query) // 2, counter) if counter.count(query) > 1 else ""
            framing = counter.count_messages(self.render(indices, prompt, kind, query, [""] * len(indices)))
        cap = fit_lengths(lengths, budget - framing)  # not None: the passages are over their share
        passages = [self.passages[i] for i in indices]
        shortened = [counter.truncate(p, cap) if n > cap else p for p, n in zip(passages, lengths)]
        return self.render(indices, prompt, kind, query, shortened)

    def _tokens(self, index: int, counter: TokenCounter) -> int:
        count = self._token_counts.get(index)
        if count is None:
            count = self._token_counts[index] = counter.count(self.passages[index])
        return count
