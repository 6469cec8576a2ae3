"""The reranker: runs a strategy's rounds of windows through the cache and a backend.

``Reranker`` is a plain object built from a :class:`RerankerConfig`; it holds no global state and
opens its backend client and cache lazily, so it can be rebuilt from its config (or unpickled) in
another process.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import AsyncIterator, Callable, Iterable

from .backends import Backend, make_backend
from .cache import CallCache, NullCache, call_key
from .cached_calls import BUSY_TIMEOUT_S, CachedCalls
from .errors import BackendError, ConfigError, ContextOverflow
from .fitting import MIN_PASSAGE_TOKENS, answer_tokens, check_fits, cut_query, cut_text
from .parsing import parse_ranking, rank_by_first_token
from .paths import default_cache_path
from .prompts import PromptTemplate, load_prompt, neutralise_ids, prepare_passage
from .strategies import Strategy, Window, make_strategy
from .tokens import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, fit_lengths
from .types import CallRecord, Candidate, Request, Result


# Tries to fit a prompt the server found too long, each with a smaller budget.
MAX_CONTEXT_RETRIES = 4
# Alternatives asked for the first token in single-token ranking: OpenAI's maximum.
MAX_TOP_LOGPROBS = 20


_LOG = logging.getLogger("rerank")


@dataclass
class RerankerConfig:
    """Everything that defines a reranker; JSON-ready, so a reranker can be rebuilt elsewhere.

    API keys are deliberately not part of it: they come from the environment.
    """

    model: str | None = None
    backend: str = "auto"
    base_url: str | None = None
    strategy: str = "sliding"
    window: int = 20
    step: int = 10
    passes: int = 1
    top_k: int = 100
    prompt: str | None = None
    max_passage_words: int | None = 100
    context_size: int = 32768
    concurrency: int = 16
    cache: str | None = field(default_factory=default_cache_path)
    temperature: float = 0.0
    max_tokens: int | None = None
    constrained: bool | None = None
    api_key_file: str | None = None
    timeout: float = 120.0
    max_attempts: int = 6
    backoff_initial: float = 0.5
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    dtype: str = "auto"

    def __post_init__(self):
        if self.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {self.top_k}")
        if self.max_passage_words is not None and self.max_passage_words < 0:
            raise ConfigError(f"--max-passage-words must be positive, got {self.max_passage_words}")
        if self.context_size < 256:
            raise ConfigError(f"--context-size must be at least 256 tokens, got {self.context_size}")

    @classmethod
    def from_dict(cls, data: dict) -> "RerankerConfig":
        """Build from a dict, rejecting unknown keys with a clear error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown reranker option '{unknown[0]}'")
        return cls(**data)


class Reranker:
    """Listwise LLM reranker.

    Parameters
    ----------
    config : RerankerConfig, optional
        The full configuration; keyword arguments override or replace it
        (``Reranker(model="gpt-4o-mini", strategy="full")``).
    llm : Backend, optional
        A ready backend object to use instead of building one from the config's ``backend`` name
        (for a backend of your own, or one shared by several rerankers).

    Examples
    --------
    >>> reranker = Reranker(model="qwen", base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
    >>> result = await reranker.rerank(request)  # doctest: +SKIP
    """

    def __init__(self, config: RerankerConfig | None = None, *, llm: Backend | None = None,
                 **options):
        if config is None:
            config = RerankerConfig(**options)
        elif options:
            config = RerankerConfig(**{**asdict(config), **options})
        self.config = config
        self.strategy: Strategy = make_strategy(config.strategy, window=config.window,
                                                step=config.step, passes=config.passes)
        self.first_token = getattr(self.strategy, "reads", "ranking") == "first-token"
        # No prompt named: RankGPT's, or for single-token ranking FIRST's (letter identifiers).
        self.template: PromptTemplate = load_prompt(config.prompt or ("first" if self.first_token else "rankgpt"))
        self.backend: Backend = llm or make_backend(config)
        self.cache = CallCache(config.cache, BUSY_TIMEOUT_S) if config.cache else NullCache()
        self.cached_calls = CachedCalls(self.cache)
        supported = getattr(self.backend, "constrained_default", None)
        if config.constrained and supported is None:
            raise ConfigError(f"the {config.backend} backend cannot constrain its answers: "
                              "drop --constrained")
        _check_identifiers(self.template, config.window, self.first_token)
        self._context_size: int | None = None
        self._fits_checked = False

    @property
    def constrained(self) -> bool:
        """Whether answers are constrained to a ranking: ``--constrained``, else the backend's
        default (which an endpoint check may turn on, e.g. for a vLLM server)."""
        if self.config.constrained is not None:
            return self.config.constrained
        return bool(getattr(self.backend, "constrained_default", None))

    async def prepare(self) -> None:
        """Make ready what the first calls need, so that start-up work and errors come first.

        Opens the call cache (a path that cannot be one is a :class:`~rerank.errors.ConfigError`
        here, before any call), then checks the endpoint (backends with a ``preflight``) while the
        token counter (tiktoken's tables, or a local model) loads in a thread. Optional:
        everything is otherwise done on first use. Raises the check's
        :class:`~rerank.errors.BackendError`.
        """
        await self.cached_calls.prepare()
        loading = asyncio.to_thread(self.backend.token_counter)
        preflight = getattr(self.backend, "preflight", None)
        if preflight is None:
            counter = await loading
        else:
            _, counter = await asyncio.gather(preflight(), loading)
        await asyncio.to_thread(self.check_fits, counter)

    def check_fits(self, counter=None) -> None:
        """Refuse, before any call, a strategy whose largest window cannot fit the context however
        its passages are cut (:func:`rerank.fitting.check_fits`); done once."""
        if self._fits_checked:
            return
        largest = self.strategy.largest_window(self.config.top_k)
        if largest >= 2:
            what = "full ranking" if largest == self.config.top_k and self.config.strategy == "full" else "a window"
            check_fits(self.template, largest, self.context_size(), self.config.max_tokens,
                       counter or self.backend.token_counter(), what)
        self._fits_checked = True

    def context_size(self) -> int:
        """Prompt and answer budget: ``--context-size``, or the model's context if smaller."""
        if self._context_size is None:
            limit = self.backend.context_limit()
            self._context_size = min(self.config.context_size, limit or self.config.context_size)
        return self._context_size

    @classmethod
    def from_config(cls, data: dict) -> "Reranker":
        """Rebuild a reranker from ``asdict(reranker.config)``."""
        return cls(RerankerConfig.from_dict(data))

    async def rerank(self, request: Request) -> Result:
        """Rerank one request: its windows run in the order the strategy needs."""
        if not self._fits_checked:
            await asyncio.to_thread(self.check_fits)
        top = request.candidates[: self.config.top_k]
        job = _Job(self, request, [prepare_passage(c, self.config.max_passage_words) for c in top])
        rounds = self.strategy.rounds(len(top))
        round_number = 0
        try:
            windows = next(rounds)
            while True:
                if len(windows) == 1:
                    ranked = [await job.rank_window(windows[0], round_number)]
                else:
                    ranked = list(await asyncio.gather(
                        *(job.rank_window(w, round_number) for w in windows)))
                round_number += 1
                windows = rounds.send(ranked)
        except StopIteration as stop:
            order = stop.value
        reordered = [top[i] for i in order] + request.candidates[self.config.top_k:]
        total = len(reordered)
        candidates = [Candidate(c.docid, c.text, c.title, float(total - rank))
                      for rank, c in enumerate(reordered)]
        return Result(request.query, candidates, job.calls, round_number)

    def shrink_context(self, overflow: ContextOverflow, prompt_tokens: int, max_tokens: int) -> None:
        """Learn a smaller context from a server's refusal, for this call's retry and all later calls.

        ``prompt_tokens`` is the refused prompt in our count. When the server gave its limit and
        the prompt's size in its own tokens, the new budget scales ours by their ratio (with 5%
        slack, as tokenizers differ); otherwise it takes a quarter off.
        """
        if overflow.limit and overflow.actual:
            budget = int(prompt_tokens * (overflow.limit - max_tokens) / overflow.actual * 0.95)
        else:
            budget = int(prompt_tokens * 0.75)
        self._context_size = min(self.context_size(), max(budget, 64) + max_tokens)

    def full_prompt(self, request: Request) -> list[dict]:
        """The chat messages a ``full`` ranking of ``request``'s top candidates sends.

        Same template, passage preparation and fitting to the context as a call would use, so
        training prompts built from it match inference prompts exactly.
        """
        top = request.candidates[: self.config.top_k]
        job = _Job(self, request, [prepare_passage(c, self.config.max_passage_words) for c in top])
        max_tokens = answer_tokens(self.config.max_tokens, len(top), self.context_size())
        return job.messages(list(range(len(top))), self.context_size() - max_tokens)

    async def rerank_iter(self, requests: Iterable[Request], in_flight: int | None = None,
                          on_error: Callable[[Request, BackendError], None] | None = None
                          ) -> AsyncIterator[Result]:
        """Rerank a stream of requests, yielding results in input order.

        Up to ``in_flight`` queries (default: the concurrency) run at once; finished results
        wait for earlier ones in a buffer of bounded size, so memory does not grow with the
        number of requests. With ``on_error``, a query whose backend failed for good is reported
        to it and skipped, and the others go on; without, the error ends the iteration.
        """
        limit = max(in_flight or self.config.concurrency, 1)
        max_buffered = 4 * limit
        source = iter(requests)
        pending: deque[asyncio.Task] = deque()
        exhausted = False
        try:
            while True:
                running = sum(not t.done() for t in pending)
                while not exhausted and running < limit and len(pending) < max_buffered:
                    request = next(source, None)
                    if request is None:
                        exhausted = True
                        break
                    pending.append(asyncio.ensure_future(self._rerank_or_report(request, on_error)))
                    running += 1
                    # One new query per turn of the event loop: its prompt is built (CPU) in a
                    # turn of its own, and the sockets of the calls already made are served in
                    # between, instead of after every query's prompt.
                    await asyncio.sleep(0)
                if not pending:
                    return
                if pending[0].done():
                    result = pending.popleft().result()
                    if result is not None:
                        yield result
                    continue
                await asyncio.wait([t for t in pending if not t.done()],
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pending:
                task.cancel()

    async def _rerank_or_report(self, request: Request, on_error) -> Result | None:
        if on_error is None:
            return await self.rerank(request)
        try:
            return await self.rerank(request)
        except BackendError as error:
            on_error(request, error)
            return None

    async def rerank_batch(self, requests: Iterable[Request]) -> list[Result]:
        """Rerank many requests concurrently; results in input order."""
        return [result async for result in self.rerank_iter(requests)]

    async def aclose(self) -> None:
        """Close the backend's connections and the cache."""
        await self.backend.aclose()
        await self.cached_calls.aclose()

    async def __aenter__(self) -> "Reranker":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


def _check_identifiers(template: PromptTemplate, window: int, first_token: bool) -> None:
    """Refuse a prompt whose identifiers the strategy cannot read."""
    if template.identifiers == "letters" and not first_token:
        raise ConfigError(f"prompt '{template.name}' names passages by letters, which only "
                          "--strategy single-token reads")
    if first_token and template.identifiers == "numbers" and window > 9:
        raise ConfigError(f"--strategy single-token reads one token per identifier: prompt "
                          f"'{template.name}' numbers its passages, so --window must be 9 or less "
                          f"(got {window}); or use --prompt first (letters, up to 26)")
    if first_token:
        template.labels(window)  # letters: refuses a window over 26


def fits_unread(messages: list[dict], budget: int) -> bool:
    """Whether a prompt surely fits ``budget`` tokens without counting them.

    A token is at least one byte, so a prompt within budget in bytes fits. Framing is counted
    generously: chat templates spend a few more tokens per message than OpenAI does.
    """
    framing = 2 * TOKENS_PER_MESSAGE * len(messages) + 2 * TOKENS_PER_REPLY
    return sum(len(m["content"].encode()) for m in messages) + framing <= budget


class _Job:
    """One request in progress: its prepared passages and the record of its calls."""

    __slots__ = ("reranker", "qid", "query", "passages", "calls", "_token_counts")

    def __init__(self, reranker: Reranker, request: Request, passages: list[str]):
        self.reranker = reranker
        self.qid = request.query.qid
        query = neutralise_ids(" ".join(request.query.text.split()))
        context = reranker.context_size()
        if len(query.encode("utf-8", "surrogatepass")) > context // 8:  # else surely within its share
            query = cut_query(query, context, reranker.backend.token_counter())
        self.query = query
        self.passages = passages
        self.calls: list[CallRecord] = []
        self._token_counts: dict[int, int] = {}

    async def rank_window(self, window: Window, round_number: int) -> Window:
        """Rank one window (candidate indices, shown in this order); returns them best first."""
        reranker = self.reranker
        config = reranker.config
        first_token = reranker.first_token
        if first_token:  # one decoding step: the identifiers' log-probabilities as first token
            labels = reranker.template.labels(len(window))
            max_tokens, prefix = 1, reranker.template.answer_prefix
            params = {"temperature": config.temperature, "max_tokens": 1, "logprobs": True,
                      "top_logprobs": min(len(window), MAX_TOP_LOGPROBS)}
            options = {"first_token_labels": labels}
        else:
            max_tokens, prefix = answer_tokens(config.max_tokens, len(window), reranker.context_size()), ""
            params = {"temperature": config.temperature, "max_tokens": max_tokens}
            options = {"ranking_size": len(window) if reranker.constrained else None}
        overflows = 0
        while True:
            budget = reranker.context_size() - max_tokens
            if prefix:  # the answer's start is part of the prompt
                budget -= TOKENS_PER_MESSAGE + len(prefix.encode())
            messages = self.render(window)
            if not fits_unread(messages, budget):
                # Counting tokens (tiktoken, llama.cpp) runs outside the GIL: in a thread, the
                # event loop goes on sending the calls of other queries meanwhile.
                messages = await asyncio.to_thread(self.fit, window, messages, budget)
            if prefix:  # the answer's start, for the model to continue with an identifier
                messages = [*messages, {"role": "assistant", "content": prefix}]
            # An answer cut off by max_tokens is not the model's full answer: never kept, nor
            # trusted when read back (single-token ranking asks for one token on purpose, and
            # needs the alternatives).
            cacheable = ((lambda c: c.top_logprobs is not None) if first_token
                         else (lambda c: c.finish_reason != "length"))
            key = None
            if reranker.cached_calls.enabled:  # no key to compute for --no-cache
                # A constrained answer may differ from a free one: they are cached apart.
                key = call_key(reranker.backend.model, messages,
                               {**params, "constrained": True} if options.get("ranking_size") else params)
            try:
                answer = await reranker.cached_calls.complete(
                    key, lambda: reranker.backend.complete(messages, params, **options), cacheable)
            except ContextOverflow as overflow:
                overflows += 1
                if overflows > MAX_CONTEXT_RETRIES:
                    raise
                reranker.shrink_context(overflow, self.reranker.backend.token_counter().count_messages(messages),
                                        max_tokens)
                continue
            completion = answer.completion
            if first_token and completion.top_logprobs is None:
                raise BackendError(f"{reranker.backend.model}: the answer has no top_logprobs; --strategy "
                                   "single-token needs an endpoint that returns them (OpenAI, vLLM, "
                                   "SGLang, llama.cpp's server)")
            break
        parsed = (rank_by_first_token(completion.top_logprobs, labels) if first_token
                  else parse_ranking(completion.text, len(window)))
        if _LOG.isEnabledFor(logging.DEBUG):
            _LOG.debug("%s: window of %d, round %d: %s, %d prompt + %d completion tokens, %.3f s, %s",
                       self.qid, len(window), round_number, "cached" if answer.cached else "called",
                       completion.prompt_tokens, completion.completion_tokens, completion.latency, parsed.status)
        self.calls.append(CallRecord(len(window), round_number, completion.prompt_tokens,
                                     completion.completion_tokens, completion.latency,
                                     answer.cached, parsed.status, completion.attempts,
                                     completion.finish_reason, overflows, answer.bad_entries))
        return [window[i] for i in parsed.order]

    def messages(self, window: Window, budget: int) -> list[dict]:
        """The window's chat messages, passages shortened evenly if the prompt exceeds ``budget``."""
        messages = self.render(window)
        return messages if fits_unread(messages, budget) else self.fit(window, messages, budget)

    def render(self, window: Window) -> list[dict]:
        """The window's chat messages with its passages as prepared, uncut."""
        return self.reranker.template.render(self.query, [self.passages[i] for i in window])

    def fit(self, window: Window, messages: list[dict], budget: int) -> list[dict]:
        """``messages`` (the window rendered uncut) shortened evenly to ``budget`` tokens if over it.

        The whole prompt is counted first: most prompts fit and need nothing more. Otherwise the
        framing's share is what the prompt counts beyond its passages, and each passage is cut to
        the largest common cap that fits ("water filling", :func:`rerank.tokens.fit_lengths`).
        """
        counter = self.reranker.backend.token_counter()
        total = counter.count_messages(messages)
        if total <= budget:
            return messages
        lengths = [self._tokens(i, counter) for i in window]
        framing = total - sum(lengths)
        query = self.query
        room = MIN_PASSAGE_TOKENS * len(window)
        while framing > budget - room and query:
            # The query leaves the passages no room (a huge query, rendered twice by some
            # templates): halve it until it does; the up-front check made sure that can work.
            query = cut_text(query, counter.count(query) // 2, counter) if counter.count(query) > 1 else ""
            framing = counter.count_messages(self.reranker.template.render(query, [""] * len(window)))
        cap = fit_lengths(lengths, budget - framing)  # not None: the passages are over their share
        passages = [self.passages[i] for i in window]
        shortened = [counter.truncate(p, cap) if n > cap else p for p, n in zip(passages, lengths)]
        return self.reranker.template.render(query, shortened)

    def _tokens(self, index: int, counter) -> int:
        count = self._token_counts.get(index)
        if count is None:
            count = self._token_counts[index] = counter.count(self.passages[index])
        return count
