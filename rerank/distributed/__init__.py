"""Reranking on a Ray cluster: ``--engine ray`` and :func:`rerank_dataset`.

The requests become a Ray Dataset, reranked with ``map_batches`` over a pool of actors, each
holding one async :class:`~rerank.reranker.Reranker` rebuilt from the run's config (an endpoint,
round robin over several base URLs, or vLLM with one GPU per actor) and a call cache of its own on
local disk; the results come back in input order to the same writer as a one-process run
(byte-identical outputs), and the actors' new cache entries are merged into the run's cache.
Ray is an optional extra (``pip install 'rerank-llm[ray]'``), imported only when a run uses it.

Examples
--------
>>> from rerank.distributed import rerank_dataset                      # doctest: +SKIP
>>> config = RerankerConfig(model="qwen", base_url="http://gpu1:8000/v1", concurrency=64)
>>> for result in rerank_dataset(config, read_requests("bm25.jsonl"), actors=4, address="auto"):
...     print(result.query.qid, [c.docid for c in result.candidates[:3]])
"""

from __future__ import annotations

from .driver import INSTALL_HINT, RayOptions, RayStats, rerank_dataset, require_ray, start_ray
from .engine import DriverReranker, ray_engine

__all__ = ["INSTALL_HINT", "DriverReranker", "RayOptions", "RayStats", "ray_engine", "rerank_dataset",
           "require_ray", "start_ray"]
