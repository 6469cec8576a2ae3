"""The reranker: a strategy's rounds of windows through the runner, many queries at once.

``Reranker`` is a plain object built from a :class:`~rerank.config.RerankerConfig`; it holds no global state and
opens its backend client and cache lazily, so it can be rebuilt from its config (or unpickled) in
another process.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import asdict
from typing import AsyncIterator, Callable, Iterable

from .answers import FirstToken, Permutation
from .backends import Backend, Capabilities, make_backend
from .cache import CallCache, NullCache
from .cached_calls import BUSY_TIMEOUT_S, CachedCalls
from .config import RerankerConfig
from .errors import BackendError, ConfigError
from .fitting import answer_tokens, check_fits
from .prompts import PromptTemplate, load_prompt
from .runner import CachedBackend, ContextBudget, Runner, Templates
from .strategies import Strategy, make_strategy
from .sync import LoopRunner
from .types import Query, Request, Result


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
    cached_calls : CachedCalls, optional
        Another reranker's call cache, to share it (``rerank serve``'s models share one);
        default: the config's ``cache``, opened by this reranker.

    Examples
    --------
    >>> reranker = Reranker(model="qwen", base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
    >>> result = await reranker.rerank(request)  # doctest: +SKIP
    >>> result = reranker.rerank_sync("how long do fleas live", ["Fleas live ...", "..."])  # doctest: +SKIP
    """

    def __init__(self, config: RerankerConfig | None = None, *, llm: Backend | None = None,
                 cached_calls: CachedCalls | None = None, **options):
        if config is None:
            config = RerankerConfig.from_dict(options)
        elif options:
            config = RerankerConfig.from_dict({**config.flat(), **options})
        self.config = config
        self.strategy: Strategy = make_strategy(config.strategy, config.options)
        kind = self.strategy.answer_kind
        reads_first_token = isinstance(kind, FirstToken)
        self.template: PromptTemplate = load_prompt(config.prompt or self.strategy.default_prompt)
        self.backend: Backend = llm or make_backend(config)
        if cached_calls is None:
            cached_calls = CachedCalls(CallCache(config.cache, BUSY_TIMEOUT_S) if config.cache else NullCache())
        self.cached_calls = cached_calls
        self.cache = cached_calls.cache
        reasoning = config.reasoning()
        if reasoning is not None and reads_first_token:
            if config.reasoning_budget is None and config.reasoning_effort is None:
                raise ConfigError(f"--strategy {config.strategy} reads first-token log-probabilities, which "
                                  f"{config.model} (a reasoning model) does not give: choose a strategy that reads "
                                  "the answer's text (or --no-reasoning-model if it is not one)")
            raise ConfigError(f"--strategy {config.strategy} reads the first answer token: it cannot "
                              "follow reasoning (drop --reasoning-budget and --reasoning-effort)")
        _check_identifiers(self.template, self.strategy.largest_window(config.top_k), kind, config.strategy)
        #: What the backend can do, once :meth:`prepare` asked it (None before).
        self.capabilities: Capabilities | None = None
        self._preparing: asyncio.Task | None = None
        self.budget = ContextBudget(config.context_size, self._known_context)
        self.runner = Runner(self.strategy, Templates(self.template), self.budget,
                             CachedBackend(self.backend, self.cached_calls), config.top_k,
                             config.max_passage_words, config.temperature, config.max_tokens,
                             self.constrained, reasoning)
        self._fits_checked = False
        self._sync = LoopRunner()  # the event loop of the synchronous methods, made on first use

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_preparing"] = None  # a task of this process's event loop
        return state

    def _known_context(self) -> int | None:
        return self.capabilities.context if self.capabilities is not None else None

    @property
    def constrained(self) -> bool:
        """Whether answers are constrained to a ranking: ``--constrained``, else the backend's
        default as :meth:`prepare` found it (an endpoint check turns it on for a vLLM server)."""
        if self.config.constrained is not None:
            return self.config.constrained
        return self.capabilities is not None and self.capabilities.constrain_by_default

    async def prepare(self, capabilities: Capabilities | None = None) -> None:
        """Make ready what the first calls need, so that start-up work and errors come first.

        Opens the call cache (a path that cannot be one is a :class:`~rerank.errors.ConfigError`
        here, before any call), then asks the backend what it can do (:meth:`Backend.prepare`:
        the endpoint check, or loading the model) while the token counter (tiktoken's tables, or
        a local model) loads in a thread, and refuses up front what cannot fit. Done on the first
        :meth:`rerank` otherwise. Raises the check's :class:`~rerank.errors.BackendError`.

        Parameters
        ----------
        capabilities : Capabilities or None
            What the backend can do, when known without asking it (a batch run whose calls no
            endpoint answers online, :mod:`rerank.batch`).
        """
        await self.cached_calls.prepare()
        asked = self.backend.prepare() if capabilities is None else _known(capabilities)
        capabilities, counter = await asyncio.gather(asked, asyncio.to_thread(self.backend.token_counter))
        if self.config.constrained and not capabilities.constrain:
            raise ConfigError(f"the {self.config.backend} backend cannot constrain its answers: drop --constrained")
        if isinstance(self.strategy.answer_kind, FirstToken) and not capabilities.logprobs:
            raise ConfigError(f"--strategy {self.config.strategy} reads first-token log-probabilities, which "
                              f"{self.config.model} does not give on this endpoint (Anthropic, Gemini and "
                              "OpenAI's reasoning models give none): choose a strategy that reads the answer's text")
        self.capabilities = capabilities
        self.runner.constrained = self.constrained
        await asyncio.to_thread(self.check_fits, counter)

    async def _ready(self) -> None:
        """:meth:`prepare`, once, however many queries start together."""
        if self.capabilities is not None and self._fits_checked:
            return
        task = self._preparing
        if task is None or task.get_loop() is not asyncio.get_running_loop() or \
                (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._preparing = asyncio.ensure_future(self.prepare())
        await asyncio.shield(task)

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
        """Prompt and answer budget: ``--context-size``, or the model's context if smaller, or
        what a server's context-overflow refusal taught."""
        return self.budget.size()

    @classmethod
    def from_config(cls, data: dict) -> "Reranker":
        """Rebuild a reranker from ``asdict(reranker.config)`` (or ``reranker.config.flat()``)."""
        return cls(RerankerConfig.from_dict(data))

    def settings(self) -> dict:
        """The configuration as run: every field, and every option of the strategy with the value
        it uses (its default where none was given)."""
        data = {k: v for k, v in asdict(self.config).items() if k != "options"}
        for option in self.strategy.options:
            data[option.name] = getattr(self.strategy, option.name, option.default)
        return data

    async def rerank(self, request: Request) -> Result:
        """Rerank one request: its windows run in the order the strategy needs."""
        await self._ready()
        return await self.runner.rerank(request)

    def full_prompt(self, request: Request) -> list[dict]:
        """The chat messages a ``full`` ranking of ``request``'s top candidates sends.

        Same template, passage preparation and fitting to the context as a call would use, so
        training prompts built from it match inference prompts exactly.
        """
        from .answers import PERMUTATION

        prompts = self.runner.prompts(request)
        n = len(prompts.passages)
        max_tokens = answer_tokens(self.config.max_tokens, n, self.context_size())
        return prompts.messages(range(n), None, PERMUTATION, self.context_size() - max_tokens)

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

    def rerank_sync(self, request: Request | Query | str, documents=None) -> Result:
        """Rerank one request from synchronous code: a script, or a notebook whose loop runs.

        Parameters
        ----------
        request : Request, Query or str
            The request; or its query, with ``documents``.
        documents : iterable of str, dict or Candidate, optional
            The candidates, best first, when ``request`` is a query (as :func:`rerank.rank`
            takes them; a document without an id gets its position, ``"0"``, ``"1"``, ...).

        Returns
        -------
        Result

        Examples
        --------
        >>> result = reranker.rerank_sync("how long do fleas live", ["Fleas live ...", "..."])  # doctest: +SKIP
        >>> [c.docid for c in result.candidates]  # doctest: +SKIP
        ['0', '1']
        """
        if isinstance(request, Request) != (documents is None):
            raise TypeError("rerank_sync takes a Request, or a query and its documents")
        if documents is not None:
            from .api import as_request

            request = as_request(request, documents)
        return self._sync.run(self._then_release(self.rerank(request)))

    def rerank_batch_sync(self, requests: Iterable[Request]) -> list[Result]:
        """:meth:`rerank_batch` from synchronous code: many requests concurrently, results in
        input order."""
        return self._sync.run(self._then_release(self.rerank_batch(requests)))

    async def _then_release(self, work):
        """``work``'s result, after which this loop's connections are closed and the cache's
        writes are done: the next call may come from another event loop (the caller's own)."""
        try:
            return await work
        finally:
            await self.release_loop()

    async def release_loop(self) -> None:
        """Close what is bound to the running event loop (the backend's connections), keeping
        the rest (a loaded model, the cache, what :meth:`prepare` found): the reranker can then
        be used from another event loop."""
        release = getattr(self.backend, "release_loop", None)  # backends without loop-bound state have none
        if release is not None:
            await release()
        await self.cached_calls.release_loop()

    async def aclose(self) -> None:
        """Close the backend's connections and the cache."""
        await self.backend.aclose()
        await self.cached_calls.aclose()

    def close(self) -> None:
        """:meth:`aclose` from synchronous code, and end the synchronous methods' event loop."""
        try:
            self._sync.run(self.aclose())
        finally:
            self._sync.close()

    def __enter__(self) -> "Reranker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def __aenter__(self) -> "Reranker":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


async def _known(capabilities: Capabilities) -> Capabilities:
    return capabilities


def _check_identifiers(template: PromptTemplate, window: int, kind, strategy: str) -> None:
    """Refuse a prompt whose identifiers the strategy's answers cannot read."""
    if template.identifiers == "letters" and isinstance(kind, Permutation):
        raise ConfigError(f"prompt '{template.name}' names passages by letters, which a decoded ranking "
                          "cannot use: choose a numbered prompt, or --strategy single-token")
    if isinstance(kind, FirstToken) and template.identifiers == "numbers" and window > 9:
        fix = (f"--window must be 9 or less (got {window})" if strategy == "single-token"
               else f"a call may show at most 9 passages (this one shows {window})")
        raise ConfigError(f"--strategy {strategy} reads one token per identifier: prompt '{template.name}' "
                          f"numbers its passages, so {fix}; or use a prompt that names them by letters "
                          "(first, setwise; up to 26)")
    if template.identifiers == "letters":
        template.labels(window)  # refuses a window over 26
