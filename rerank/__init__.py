"""rerank: listwise reranking of search results with large language models.

The public API::

    import rerank

    ranked = rerank.rank("how long do fleas live", ["Fleas live ...", "..."],
                         model="qwen2.5-7b-instruct", base_url="http://127.0.0.1:8000/v1")

    from rerank import Reranker, Request, Query, Candidate, read_requests

    reranker = Reranker(model="qwen2.5-7b-instruct", base_url="http://127.0.0.1:8000/v1")
    results = reranker.rerank_batch_sync(read_requests("candidates.jsonl"))   # or, in a coroutine:
    results = await reranker.rerank_batch(read_requests("candidates.jsonl"))

Names are imported on first use, so ``import rerank`` (and every ``rerank`` command) starts
without loading the parts it does not need.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "BackendError": "rerank.errors", "ConfigError": "rerank.errors", "InputError": "rerank.errors",
    "RerankError": "rerank.errors",
    "RankLLMWriter": "rerank.formats", "TrecRunWriter": "rerank.formats", "read_qrels": "rerank.formats",
    "read_requests": "rerank.formats",
    "Reranker": "rerank.reranker", "RerankerConfig": "rerank.reranker",
    "Pipeline": "rerank.pipeline",
    "Ranked": "rerank.api", "rank": "rerank.api",
    "qrels_frame": "rerank.integrations.frames", "rank_frame": "rerank.integrations.frames",
    "to_frame": "rerank.integrations.frames",
    "CallRecord": "rerank.types", "Candidate": "rerank.types", "Query": "rerank.types",
    "Request": "rerank.types", "Result": "rerank.types", "Usage": "rerank.types",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rerank' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
