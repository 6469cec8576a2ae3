"""Fitting a call to the context: the answer's share, the query's share, and the up-front check.

Passages are shortened evenly when a prompt is over its budget (see
:meth:`rerank.runner.PromptBuilder.fit`); this module bounds the rest, so that a call always fits:

* the answer budget (``max_tokens``) is at most :data:`ANSWER_SHARE` of the context;
* the query is cut to :data:`QUERY_SHARE` of the context, and further when a window's framing
  alone would leave its passages no room;
* before any call, :func:`check_fits` refuses a configuration whose largest window cannot fit
  even with every passage cut to :data:`MIN_PASSAGE_TOKENS`, saying what to change.
"""

from __future__ import annotations

from .errors import ConfigError
from .tokens import TokenCounter

#: The answer may take at most this share of the context.
ANSWER_SHARE = 0.5
#: The query may take at most this share of the context.
QUERY_SHARE = 0.125
#: Below this many tokens a passage says nothing: the least room a window's passages need.
MIN_PASSAGE_TOKENS = 8
# A token is rarely longer than this many characters: a cheap cut before counting a huge text.
_MAX_CHARS_PER_TOKEN = 64
# Windows up to this size are rendered and counted exactly; larger ones extrapolated.
_EXACT_UP_TO = 2000


def completion_budget(num_passages: int) -> int:
    """Default ``max_tokens`` for ranking ``num_passages``: room for ``[12] > `` per id, and slack."""
    return 8 * num_passages + 32


def answer_tokens(max_tokens: int | None, num_passages: int, context: int) -> int:
    """The answer budget of a window: ``--max-tokens`` or the default, capped to the answer's share."""
    return max(1, min(max_tokens or completion_budget(num_passages), int(context * ANSWER_SHARE)))


def cut_text(text: str, max_tokens: int, counter: TokenCounter) -> str:
    """``text`` cut to at most ``max_tokens`` tokens; a text within that many bytes is not counted."""
    if len(text.encode("utf-8", "surrogatepass")) <= max_tokens:
        return text  # a token is at least one byte
    text = text[: max_tokens * _MAX_CHARS_PER_TOKEN]
    return text if counter.count(text) <= max_tokens else counter.truncate(text, max_tokens)


def cut_query(query: str, context: int, counter: TokenCounter) -> str:
    """The query cut to its share of the context (a 10 MB query is never sent whole)."""
    return cut_text(query, max(int(context * QUERY_SHARE), 16), counter)


def smallest_prompt(template, num_passages: int, counter: TokenCounter) -> int:
    """Tokens of a window's prompt with an empty query and every passage empty, plus the least
    room the passages need."""
    messages = template.render("", [""] * num_passages)
    return counter.count_messages(messages) + MIN_PASSAGE_TOKENS * num_passages


def check_fits(template, largest_window: int, context: int, max_tokens: int | None,
               counter: TokenCounter, what: str) -> None:
    """Refuse, before any call, a largest window that cannot fit the context however cut.

    Parameters
    ----------
    template : PromptTemplate
    largest_window : int
        The most passages one call of the strategy shows.
    context : int
        The context budget in tokens.
    max_tokens : int or None
        ``--max-tokens``.
    counter : TokenCounter
    what : str
        How the message names the call (``"a window"``, ``"full ranking"``).

    Raises
    ------
    ConfigError
        Naming the most passages that fit and what to change.
    """
    def needed(n: int) -> int:
        if n <= _EXACT_UP_TO:
            prompt = smallest_prompt(template, n, counter)
        else:  # prompts grow linearly with their passages: extrapolate, never render a million
            top, half = smallest_prompt(template, _EXACT_UP_TO, counter), smallest_prompt(template, _EXACT_UP_TO // 2, counter)
            prompt = top + (top - half) * (n - _EXACT_UP_TO) // (_EXACT_UP_TO - _EXACT_UP_TO // 2)
        return prompt + answer_tokens(max_tokens, n, context)

    if needed(largest_window) <= context:
        return
    low, high = 0, min(largest_window, _EXACT_UP_TO)  # the most passages that fit, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        if needed(middle) <= context:
            low = middle
        else:
            high = middle - 1
    advice = (f"at most {low} fit: lower --top-k (or --window) to {low} or less, use --strategy sliding, "
              if low >= 2 else "not even 2 fit: shorten the prompt template, ")
    raise ConfigError(
        f"{what} of {largest_window:,} passages cannot fit a {context:,}-token context: with every passage "
        f"cut to {MIN_PASSAGE_TOKENS} tokens the prompt and answer need {needed(largest_window):,} tokens; "
        f"{advice}or raise --context-size if the model's context allows (nothing was sent)")
