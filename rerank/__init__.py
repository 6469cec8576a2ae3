"""rerank: listwise reranking of search results with large language models.

The public API::

    from rerank import Reranker, Request, Query, Candidate, read_requests

    reranker = Reranker(model="qwen2.5-7b-instruct", base_url="http://127.0.0.1:8000/v1")
    results = await reranker.rerank_batch(read_requests("candidates.jsonl"))
"""

from .errors import BackendError, ConfigError, InputError, RerankError
from .formats import RankLLMWriter, TrecRunWriter, read_qrels, read_requests
from .reranker import Reranker, RerankerConfig
from .types import CallRecord, Candidate, Query, Request, Result, Usage

__version__ = "0.1.0"

__all__ = [
    "BackendError", "CallRecord", "Candidate", "ConfigError", "InputError", "Query", "RankLLMWriter",
    "Request", "RerankError", "Reranker", "RerankerConfig", "Result", "TrecRunWriter", "Usage",
    "read_qrels", "read_requests",
]
