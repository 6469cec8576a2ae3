"""One call through the OpenAI-compatible backend, for the backend and fault tests."""

from __future__ import annotations

import pytest

from rerank.backends.base import Completion
from rerank.backends.openai_compat import OpenAICompatBackend
from rerank.errors import BackendError

MESSAGES = [
    {"role": "system", "content": "You rank passages."},
    {"role": "user", "content": "Query: swallows\n[1] Swallows fly fast.\n[2] Coconuts are heavy.\n"
                                "[3] Bridges are guarded.\nRank the passages."},
]
PARAMS = {"temperature": 0.0, "max_tokens": 64}


def backend_for(base_url: str, **options) -> OpenAICompatBackend:
    """A backend on ``base_url`` with a test key and short backoff (``options`` override them)."""
    options.setdefault("api_key", "sk-test")
    options.setdefault("timeout", 10.0)
    options.setdefault("backoff_initial", 0.01)
    options.setdefault("backoff_max", 0.05)
    return OpenAICompatBackend(model="test-judge", base_url=base_url, **options)


async def one_call(backend: OpenAICompatBackend) -> Completion:
    """Send MESSAGES once through ``backend``, then close it."""
    try:
        return await backend.complete(MESSAGES, PARAMS)
    finally:
        await backend.aclose()


async def failing_call(backend: OpenAICompatBackend) -> BackendError:
    """The BackendError of one call (its message one line), after closing ``backend``."""
    with pytest.raises(BackendError) as info:
        await one_call(backend)
    assert "\n" not in str(info.value)
    return info.value
