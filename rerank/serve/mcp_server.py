"""``rerank serve --mcp``: the same rerankers as a Model Context Protocol server on stdio, for agents.

One tool, ``rerank``, with the inputs of the HTTP API (``query``, ``documents``, ``top_n``,
``model``, ``max_tokens_per_doc``); it answers the v2 response body with each result's document.
Its inputs are checked by the same code as an HTTP request's, and a mistake comes back as the tool's
error. stdout carries the protocol alone: everything else goes to stderr. Needs the ``mcp``
package (version 2; ``pip install 'rerank-llm[serve]'``).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ConfigError
from .app import response_body
from .requests import ApiError, Limits, parse_body
from .service import RerankService

INSTALL_HINT = "pip install 'rerank-llm[serve]'"
TOOL_DESCRIPTION = (
    "Rerank documents by their relevance to a query with a listwise LLM reranker. Returns the documents' "
    "indices best first, each with a relevance score in (0, 1] that decreases with rank, and the document. "
    "top_n: how many results to return (default: all); model: one of the server's models (default: its "
    "default model); max_tokens_per_doc: each document is cut to this many tokens before ranking.")


def build_mcp_server(service: RerankService, limits: Limits = Limits()):
    """An MCP server whose ``rerank`` tool ranks with ``service``.

    Parameters
    ----------
    service : RerankService
    limits : Limits

    Returns
    -------
    mcp.server.mcpserver.MCPServer
    """
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError:
        raise ConfigError(f"rerank serve --mcp needs the mcp package (version 2): {INSTALL_HINT}") from None
    server = MCPServer(name="rerank", instructions="Listwise LLM reranking of search results: call the rerank "
                                                   "tool with a query and the candidate documents.")

    @server.tool(description=TOOL_DESCRIPTION)
    async def rerank(query: str, documents: list[str], top_n: int | None = None, model: str | None = None,
                     max_tokens_per_doc: int | None = None) -> dict[str, Any]:
        """Rank ``documents`` for ``query`` (``model``: a served model name; default the server's)."""
        body = {"query": query, "documents": documents, "model": model or service.default_model,
                "return_documents": True}
        if top_n is not None:
            body["top_n"] = top_n
        if max_tokens_per_doc is not None:
            body["max_tokens_per_doc"] = max_tokens_per_doc
        try:
            call = parse_body(json.dumps(body).encode("utf-8"), 2, limits)
            return response_body(call, await service.rank(call))
        except ApiError as error:
            # ToolError: the message reaches the agent (any other exception would be replaced by
            # a generic one, its traceback logged).
            raise ToolError(error.message) from None

    return server


async def serve_mcp(service: RerankService, limits: Limits = Limits()) -> None:
    """Check the rerankers, then answer MCP requests on stdin/stdout until stdin closes."""
    server = build_mcp_server(service, limits)
    try:
        await service.prepare()
        await server.run_stdio_async()
    finally:
        await service.aclose()
