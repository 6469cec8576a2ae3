"""``rerank serve``: listwise LLM reranking behind Cohere's rerank API (v1 and v2), and as an MCP tool.

``requests`` checks a request body into a :class:`RerankCall` (or an :class:`ApiError` with
Cohere's status and message); ``service`` holds the served models' rerankers over one backend
and one call cache, and ranks identical requests in flight once; ``app`` is the ASGI app
(Starlette; health and Prometheus metrics included); ``metrics`` counts; ``mcp_server`` exposes
the same rerankers as an MCP ``rerank`` tool on stdio. Starlette, uvicorn and mcp are the
``serve`` extra, imported when the server starts.
"""

from .metrics import Metrics
from .requests import ApiError, Limits, RerankCall, parse_body
from .service import Ranked, RerankService, relevance_scores

__all__ = ["ApiError", "Limits", "Metrics", "Ranked", "RerankCall", "RerankService", "parse_body",
           "relevance_scores"]
