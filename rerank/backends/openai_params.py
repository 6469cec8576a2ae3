"""What an OpenAI-compatible provider accepts: reasoning models' parameters, and what a refusal teaches.

OpenAI's reasoning models (o1, o3, o4-mini, gpt-5...) refuse ``max_tokens`` (they take
``max_completion_tokens``), any ``temperature`` but 1, and ``logprobs``; Gemini's thinking models
(2.5 and later) spend their thinking out of the same token limit. They are known by name
(:func:`is_reasoning_model`), and asked as reasoning models (:class:`~rerank.answers.Reasoned`).
A server that refuses a parameter all the same, in OpenAI's words ("Unsupported parameter:
'max_tokens' ... use 'max_completion_tokens' instead", "Unsupported value: 'temperature' does not
support 0"), teaches the backend a :class:`Finding`, which :class:`Accepted` remembers for the
rest of the run and applies to every request body (:meth:`Accepted.adapt`).
"""

from __future__ import annotations

import enum
import re
import threading

from ..answers.reasoned import DEFAULT_REASONING_BUDGET

# o1, o1-mini, o3-pro, o4-mini-2025-04-16, gpt-5, gpt-5-mini, gpt-5.1, and the same behind a
# router's "openai/" prefix; gpt-5's chat models (gpt-5-chat-latest) are not reasoning models.
_OPENAI_REASONING = re.compile(r"^(?:o[1-9](?:$|-)|gpt-5(?!.*-chat))", re.IGNORECASE)
# Gemini 2.5 and later think by default, out of max_tokens.
_GEMINI_THINKING = re.compile(r"^gemini-(?:2\.5|[3-9])", re.IGNORECASE)


def is_reasoning_model(model: str | None) -> bool:
    """Whether ``model`` names a model that reasons before it answers, out of its token limit,
    and takes its limit as ``max_completion_tokens``.

    Parameters
    ----------
    model : str or None
        The model name as sent (a router's ``vendor/`` prefix is looked through).

    Returns
    -------
    bool
        True for OpenAI's o-series and gpt-5 models (not gpt-5's chat models) and Gemini 2.5 and
        later.

    Examples
    --------
    >>> is_reasoning_model("o4-mini"), is_reasoning_model("openai/gpt-5-mini"), is_reasoning_model("gpt-4o")
    (True, True, False)
    """
    if not model:
        return False
    name = model.rsplit("/", 1)[-1]
    return bool(_OPENAI_REASONING.match(name) or _GEMINI_THINKING.match(name))


class Finding(enum.Enum):
    """What a server's refusal of a request taught."""

    #: ``max_tokens`` refused: send the limit as ``max_completion_tokens``, with room to reason.
    MAX_COMPLETION_TOKENS = "max_completion_tokens"
    #: A ``temperature`` refused: send none (the server's default).
    NO_TEMPERATURE = "temperature"
    #: ``logprobs`` refused: the server gives no log-probabilities.
    NO_LOGPROBS = "logprobs"


#: What each finding is a refusal of, and what is sent from then on (for the one line that says so).
EXPLAINED = {Finding.MAX_COMPLETION_TOKENS: ("max_tokens", "sending the token limit as max_completion_tokens, "
                                                           f"with {DEFAULT_REASONING_BUDGET} more tokens to reason in"),
             Finding.NO_TEMPERATURE: ("the temperature", "sending none (the server's default)"),
             Finding.NO_LOGPROBS: ("logprobs", "asking for no log-probabilities")}

_REFUSED = re.compile(r"unsupported (?:parameter|value)|not supported|unknown (?:name|field|parameter)|"
                      r"unrecognized request argument|invalid json payload|is not enabled for|may only be set to",
                      re.IGNORECASE)


# The field named quoted, as the providers' messages name it ('max_tokens', `temperature`).
_MAX_TOKENS = re.compile(r"""[`'"\\]max_tokens[`'"\\]""")
_TEMPERATURE = re.compile(r"""[`'"\\]temperature[`'"\\]""")


def finding(status: int, text: str) -> Finding | None:
    """What a refusal says the server does not accept.

    Parameters
    ----------
    status : int
        The answer's HTTP status (only a 400 teaches anything).
    text : str
        Its body as text: OpenAI's ``{"error": {...}}``, Gemini's list of errors, or plain text.

    Returns
    -------
    Finding or None
        None for any other refusal (which fails the call as it did).

    Examples
    --------
    >>> finding(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
    ...              "Use 'max_completion_tokens' instead.")
    <Finding.MAX_COMPLETION_TOKENS: 'max_completion_tokens'>
    """
    if status != 400 or not _REFUSED.search(text):
        return None
    if _MAX_TOKENS.search(text):
        return Finding.MAX_COMPLETION_TOKENS
    if _TEMPERATURE.search(text):
        return Finding.NO_TEMPERATURE
    if "logprobs" in text.lower():
        return Finding.NO_LOGPROBS
    return None


class Accepted:
    """What the server accepts, as learnt from its refusals during a run (thread-safe).

    Parameters
    ----------
    reasoning_model : bool
        Known to be a reasoning model from the start (:func:`is_reasoning_model`, or
        ``--reasoning-model``): no log-probabilities.
    reasoning_budget : int
        Tokens added to a ``max_tokens`` sent as ``max_completion_tokens``: a server that wants
        the latter reasons out of it, and would leave an answer's own limit no room.
    """

    def __init__(self, reasoning_model: bool = False, reasoning_budget: int = DEFAULT_REASONING_BUDGET):
        self.reasoning_budget = reasoning_budget
        self._lock = threading.Lock()
        self._found: set[Finding] = {Finding.NO_LOGPROBS} if reasoning_model else set()

    def __contains__(self, item: Finding) -> bool:
        return item in self._found

    def __getstate__(self) -> dict:
        return {"found": set(self._found), "reasoning_budget": self.reasoning_budget}

    def __setstate__(self, state: dict) -> None:
        self._lock = threading.Lock()
        self._found = set(state["found"])
        self.reasoning_budget = state["reasoning_budget"]

    def findings(self) -> frozenset:
        """What has been learnt so far."""
        with self._lock:
            return frozenset(self._found)

    def learn(self, item: Finding) -> bool:
        """Remember ``item``; whether it is new (the request it came from may be sent again)."""
        with self._lock:
            new = item not in self._found
            self._found.add(item)
            return new

    def adapt(self, params: dict, logprobs_needed: bool = False) -> dict:
        """``params`` as this server takes them.

        Parameters
        ----------
        params : dict
            A call's parameters.
        logprobs_needed : bool
            Whether the call is useless without log-probabilities (its ``logprobs`` are then
            kept, for the server to refuse or ignore).

        Returns
        -------
        dict
            ``max_tokens`` sent as ``max_completion_tokens`` (plus ``reasoning_budget``),
            ``temperature`` left out, and ``logprobs`` and ``top_logprobs`` left out, as learnt;
            ``params`` itself when nothing applies.
        """
        found = self._found
        if not found:
            return params
        adapted = dict(params)
        if Finding.MAX_COMPLETION_TOKENS in found and "max_tokens" in adapted:
            limit = adapted.pop("max_tokens")
            if isinstance(limit, int) and not isinstance(limit, bool):
                limit += self.reasoning_budget
            adapted.setdefault("max_completion_tokens", limit)
        if Finding.NO_TEMPERATURE in found:
            adapted.pop("temperature", None)
        if Finding.NO_LOGPROBS in found and not logprobs_needed:
            adapted.pop("logprobs", None)
            adapted.pop("top_logprobs", None)
        return adapted
