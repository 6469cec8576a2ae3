"""``rerank serve``: Cohere's rerank API (or an MCP tool) over the reranker options (rerank.serve)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from ..errors import ConfigError
from .options import add_reranker_arguments, reranker_config

#: The install hint of the server's own packages.
INSTALL_HINT = "pip install 'rerank-llm[serve]'"


def add_serve_command(commands) -> None:
    """Add ``rerank serve``."""
    serve = commands.add_parser(
        "serve", help="serve listwise LLM reranking behind Cohere's rerank API (v1 and v2), or as an MCP tool",
        description="Answer POST /v1/rerank and /v2/rerank as Cohere's API does (query, documents, top_n, "
                    "return_documents, max_tokens_per_doc, model), with GET /health and GET /metrics, over one "
                    "reranker: every request shares its backend, call cache and LLM concurrency. With --mcp, "
                    "the same as an MCP server's rerank tool on stdio.")
    server = serve.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    server.add_argument("--port", type=int, default=8080, help="port to listen on; 0 picks a free one, printed "
                                                              "at start (default: 8080)")
    server.add_argument("--api-key-env", dest="server_api_key_env", metavar="NAME",
                        help="clients must send 'Authorization: Bearer KEY', KEY read from this environment "
                             "variable (it must be set; never printed or logged); default: no authentication")
    server.add_argument("--mcp", action="store_true",
                        help="serve the rerank tool over the Model Context Protocol on stdin/stdout instead")
    server.add_argument("--serve-model", action="append", default=[], metavar="NAME=STRATEGY[:OPTION=VALUE,...]",
                        help="a model name clients may ask for and the strategy (and options) answering it, e.g. "
                             "fast=full or deep=sliding:passes=2 (repeatable; default: one model named after "
                             "--strategy)")
    server.add_argument("--default-model", metavar="NAME",
                        help="the model of a v1 request (or MCP call) that names none (default: the first served)")
    limits = serve.add_argument_group("limits of one request (larger requests get a 4xx)")
    limits.add_argument("--max-documents", type=int, default=1000, help="documents (default: 1000)")
    limits.add_argument("--max-request-bytes", type=int, default=10 * 2**20,
                        help="bytes of the request body (default: 10 MiB)")
    limits.add_argument("--max-query-bytes", type=int, default=32 * 2**10, help="bytes of the query (default: 32 KiB)")
    limits.add_argument("--max-tokens-per-doc", type=int, default=4096,
                        help="the default and largest max_tokens_per_doc (default: 4096)")
    add_reranker_arguments(serve, api_key_flag="--llm-api-key-env", batch_job=False)
    serve.set_defaults(handler=serve_command)


def served_rerankers(args: argparse.Namespace) -> tuple[dict, str]:
    """The reranker of each served model name, all over the first one's backend and call cache,
    and the default model's name."""
    from ..reranker import Reranker, RerankerConfig
    from ..simulation.simulate import StrategySpec

    base = reranker_config(args)
    specs = {}
    for item in args.serve_model:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise ConfigError(f"--serve-model {item}: expected NAME=STRATEGY[:OPTION=VALUE,...]")
        if name.strip() in specs:
            raise ConfigError(f"--serve-model {item}: the name '{name.strip()}' is served twice")
        specs[name.strip()] = StrategySpec.parse(spec.strip())
    if not specs:
        return {base.strategy: Reranker(base)}, args.default_model or base.strategy
    rerankers, first = {}, None
    for name, spec in specs.items():
        config = RerankerConfig.from_dict({**base.flat(), **spec.options, "strategy": spec.name})
        reranker = Reranker(config) if first is None else Reranker(
            config, llm=first.backend, cached_calls=first.cached_calls)
        first = first or reranker
        rerankers[name] = reranker
    default = args.default_model or next(iter(rerankers))
    if default not in rerankers:
        raise ConfigError(f"--default-model {default}: not a served model ({', '.join(rerankers)})")
    return rerankers, default


def server_key(args: argparse.Namespace) -> str | None:
    """The bearer key clients must send, from ``--api-key-env``; None without it."""
    name = args.server_api_key_env
    if name is None:
        return None
    key = os.environ.get(name, "")
    if not key.strip():
        raise ConfigError(f"--api-key-env {name}: the environment variable is not set (or empty)")
    return key.strip()


def serve_command(args: argparse.Namespace) -> int:
    """``rerank serve``."""
    from ..serve import Limits, RerankService

    for flag, value in (("--max-documents", args.max_documents), ("--max-request-bytes", args.max_request_bytes),
                        ("--max-query-bytes", args.max_query_bytes), ("--max-tokens-per-doc", args.max_tokens_per_doc)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {args.port}")
    limits = Limits(args.max_documents, args.max_request_bytes, args.max_query_bytes, args.max_tokens_per_doc)
    key = server_key(args)
    rerankers, default = served_rerankers(args)
    service = RerankService(rerankers, default)
    try:
        if args.mcp:
            from ..serve.mcp_server import serve_mcp

            asyncio.run(serve_mcp(service, limits))
            return 0
        return asyncio.run(_serve_http(service, limits, key, args.host, args.port))
    except KeyboardInterrupt:
        # uvicorn stops gracefully on Ctrl-C or SIGTERM, then raises the signal again: a stop
        # asked for is not a failure.
        print("rerank serve: stopped", file=sys.stderr)
        return 0


async def _serve_http(service, limits, key: str | None, host: str, port: int) -> int:
    """Check the rerankers, bind the port, then serve until interrupted (Ctrl-C, SIGTERM)."""
    import socket

    try:
        import uvicorn

        from ..serve.app import create_app
    except ImportError as exc:
        raise ConfigError(f"rerank serve needs {exc.name}: {INSTALL_HINT}") from None
    # Start-up mistakes (an endpoint down, a window that cannot fit) are one line, before the port opens.
    try:
        await service.prepare()
    except BaseException:
        await service.aclose()
        raise
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        await service.aclose()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = listener.getsockname()[1]
    app = create_app(service, limits=limits, api_key=key, prepare=False)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        where = f"[{host}]" if family == socket.AF_INET6 else host
        print(f"rerank serve: http://{where}:{bound} (models: {', '.join(sorted(service.rerankers))}; default "
              f"{service.default_model}; POST /v1/rerank, /v2/rerank; GET /health, /metrics)",
              file=sys.stderr, flush=True)

    announcer = asyncio.ensure_future(announce())
    try:
        await server.serve(sockets=[listener])
    finally:
        announcer.cancel()
        listener.close()
    return 0
