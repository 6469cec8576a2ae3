"""LLM backends, looked up by name and imported lazily (heavy ones need optional extras)."""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import Backend, Capabilities, Completion

# name -> "module:class"; modules are imported only when the backend is used.
BACKENDS = {
    "openai": "rerank.backends.openai_compat:OpenAICompatBackend",
    "llamacpp": "rerank.backends.llamacpp:LlamaCppBackend",
    "vllm": "rerank.backends.vllm:VLLMBackend",
    "judge": "rerank.testing.backend:JudgeBackend",
}


def backend_class(name: str):
    """The backend class registered under ``name``, imported on demand.

    Raises
    ------
    ConfigError
        For an unknown backend name.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}': choose one of auto, {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def backend_name_for(backend: str, model: str | None, base_url: str | None) -> str:
    """Resolve ``auto``: an endpoint URL means ``openai``; no model, ``smollm2`` or a ``.gguf``
    file means the embedded ``llamacpp``; any other model name means ``openai``."""
    if backend != "auto":
        return backend
    if base_url:
        return "openai"
    if not model or model == "smollm2" or model.lower().endswith(".gguf"):
        return "llamacpp"
    return "openai"


#: Backends that declare no options: the CLI makes its flags without importing them (the
#: OpenAI client takes half a second to import; ``tests/test_strategy_plugin.py`` checks the set).
WITHOUT_OPTIONS = frozenset({"openai"})


def backend_options() -> dict:
    """Every option the registered backends declare (:class:`~rerank.options.Option`), by name."""
    from ..options import merged

    return merged(backend_class(name) for name in BACKENDS if name not in WITHOUT_OPTIONS)


def make_backend(config) -> Backend:
    """Build the backend a :class:`~rerank.reranker.RerankerConfig` names."""
    name = backend_name_for(config.backend, config.model, config.base_url)
    return backend_class(name).from_config(config)


__all__ = ["BACKENDS", "Backend", "Capabilities", "Completion", "backend_class", "backend_options", "backend_name_for", "make_backend",
           "WITHOUT_OPTIONS"]
