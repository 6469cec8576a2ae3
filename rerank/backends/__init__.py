"""LLM backends, looked up by name and imported lazily (heavy ones need optional extras)."""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import Backend, Completion

# name -> "module:class"; modules are imported only when the backend is used.
BACKENDS = {
    "openai": "rerank.backends.openai_compat:OpenAICompatBackend",
}


def make_backend(name: str, **options) -> Backend:
    """Build a backend by name (``openai`` for any OpenAI-compatible endpoint).

    Raises
    ------
    ConfigError
        For an unknown backend name.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}': choose one of {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)(**options)


__all__ = ["BACKENDS", "Backend", "Completion", "make_backend"]
