"""The HTTP face of ``rerank serve``: Cohere's rerank API (v1 and v2), health and metrics.

An ASGI app (Starlette, run by uvicorn). ``POST /v1/rerank``, ``POST /v2/rerank`` (and ``POST
/rerank``, as v1) answer with ``id``, ``results`` (``index``, ``relevance_score`` decreasing
with rank, ``document`` when asked) and ``meta`` (the LLM tokens spent as billed units); ``GET
/health`` and ``GET /metrics`` (Prometheus text). Every mistake is a 4xx with Cohere's
``{"message": ...}`` body. A client that disconnects cancels its ranking; with a key configured,
every route but ``/health`` asks for ``Authorization: Bearer KEY``, compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from contextlib import asynccontextmanager, suppress

from .requests import ApiError, Limits, RerankCall, parse_body
from .service import Ranked, RerankService, relevance_scores

_LOG = logging.getLogger("rerank.serve")
#: The status logged for a request whose client left before its answer (nginx's convention).
CLIENT_GONE = 499


def create_app(service: RerankService, *, limits: Limits = Limits(), api_key: str | None = None,
               prepare: bool = True):
    """The ASGI app serving ``service``.

    Parameters
    ----------
    service : RerankService
    limits : Limits
    api_key : str or None
        The bearer key clients must send; None: no authentication.
    prepare : bool
        Check the backend and rerankers at start-up (:meth:`RerankService.prepare`).

    Returns
    -------
    starlette.applications.Starlette
    """
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    metrics = service.metrics
    expected = api_key.encode("utf-8") if api_key else None

    def authorized(request) -> bool:
        if expected is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("utf-8"), expected)

    async def rerank(request):
        version = 2 if request.url.path.startswith("/v2/") else 1
        started = time.perf_counter()
        metrics.in_flight += 1
        status, seconds = 500, None
        try:
            if not authorized(request):
                raise ApiError(401, "invalid api token")
            call = parse_body(await read_body(request, limits), version, limits)
            service.reranker(call.model)  # an unknown model is refused before any work
            ranked = await until_disconnected(request, service.rank(call))
            if ranked is None:
                status = CLIENT_GONE
                return Response(status_code=CLIENT_GONE)
            status, seconds = 200, time.perf_counter() - started
            return JSONResponse(response_body(call, ranked))
        except ApiError as error:
            status, seconds = error.status, time.perf_counter() - started
            return JSONResponse(error.body(), status_code=error.status)
        except ClientDisconnect:  # the client left while sending its body
            status = CLIENT_GONE
            return Response(status_code=CLIENT_GONE)
        except Exception:  # noqa: BLE001 - a bug of ours: logged, and the client told so
            _LOG.exception("rerank serve: internal error")
            seconds = time.perf_counter() - started
            return JSONResponse({"message": "internal server error"}, status_code=500)
        finally:
            metrics.in_flight -= 1
            metrics.add_request(request.url.path, status, seconds)

    async def health(request):
        return JSONResponse({"status": "ok", "models": sorted(service.rerankers),
                             "default_model": service.default_model})

    async def metrics_text(request):
        if not authorized(request):
            return JSONResponse({"message": "invalid api token"}, status_code=401)
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @asynccontextmanager
    async def lifespan(app):
        if prepare:
            await service.prepare()
        try:
            yield
        finally:
            await service.aclose()

    async def http_error(request, exc):
        # Starlette's own refusals (an unknown path, a wrong method) in the API's error body.
        return JSONResponse({"message": str(exc.detail)}, status_code=exc.status_code)

    routes = [Route(path, rerank, methods=["POST"]) for path in ("/v1/rerank", "/v2/rerank", "/rerank")]
    routes += [Route("/health", health, methods=["GET"]), Route("/metrics", metrics_text, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


async def read_body(request, limits: Limits) -> bytes:
    """The request body, read no further than ``limits.max_request_bytes``.

    Raises
    ------
    ApiError
        413 as soon as the body (or its declared length) passes the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise ApiError(413, f"request body too large: {int(declared):,} bytes, the limit is "
                            f"{limits.max_request_bytes:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_request_bytes:
            raise ApiError(413, f"request body too large: over {limits.max_request_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def until_disconnected(request, work):
    """Await ``work``; if the client disconnects first, cancel it and return None."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        watcher.cancel()
    return None if task.cancelled() else task.result()


def response_body(call: RerankCall, ranked: Ranked) -> dict:
    """Cohere's response: results best first (``top_n`` of them), ``id`` and ``meta``."""
    scores = relevance_scores(len(ranked.order))
    results = []
    for index, score in zip(ranked.order[:call.top_n], scores):
        result = {"index": index, "relevance_score": score}
        if call.return_documents:
            original = call.originals[index]
            result["document"] = original if isinstance(original, dict) and call.version == 1 else {
                "text": call.documents[index]}
        results.append(result)
    # billed_units: the LLM tokens this ranking spent (calls the cache answered cost nothing);
    # tokens: what its calls took, cached ones included.
    billed = {"input_tokens": ranked.billed_prompt_tokens, "output_tokens": ranked.billed_completion_tokens}
    tokens = {"input_tokens": ranked.prompt_tokens, "output_tokens": ranked.completion_tokens}
    return {"id": str(uuid.uuid4()), "results": results,
            "meta": {"api_version": {"version": str(call.version)},
                     "billed_units": {"search_units": 1, **billed}, "tokens": tokens}}
