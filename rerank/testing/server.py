"""The judges behind a local HTTP server that speaks the OpenAI chat completions API.

Routes: ``POST /v1/chat/completions`` (answered by :class:`~rerank.testing.completions.Responder`),
``GET /v1/models``, ``GET /stats`` (the counters) and ``POST /stats/reset``; with ``--imitate``,
as a hosted provider's endpoint (:mod:`rerank.testing.providers`); OpenAI's Files and
Batch APIs (``/v1/files``, ``/v1/batches``: :mod:`rerank.testing.batch_http`), whose batches are
answered by the same responder in the background (:mod:`rerank.testing.batches`). Faults are
injected in chat requests as :mod:`rerank.testing.faults` says; batch lines fail as the
``--batch-*`` options say. Run it as a script, which prints
``READY http://127.0.0.1:PORT/v1`` once it listens::

    python -m rerank.testing.server --judge oracle --data-dir ../shared/data/dl19 --port 8000

or from Python with :func:`rerank.testing.start_server`.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .batch_http import Answer, route
from .batches import BatchOptions, Batches
from .completions import Responder
from .counting import Tokens
from .dataset import DEFAULT_CANDIDATES, Dataset
from .faults import Faults, FaultyHandler
from .judges import JUDGES, NOISY_SWAP_PROBABILITY, Judge
from .protocol import MODEL_ID, BadRequest, error_body
from .providers import IMITATIONS, Imitation, Refusal
from .reasoning import REASONING_MODES
from .state import State

class _Handler(FaultyHandler, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llm-test-server/1.0"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.state.verbose:
            super().log_message(format, *args)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write; no Nagle delay on keep-alive answers.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _path(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:  # noqa: N802
        path, state, faults = self._path(), self.server.state, self.server.state.faults
        moved = f"{faults.redirect_base}/models" if faults.redirect_base is not None else None
        models = ("/v1/models", "/models", moved)
        self._answer, self._faulty = False, faults.fault_models and path in models
        if self._faulty and faults.hang:
            self._hang()
        elif self._faulty and faults.redirect is not None and path != moved:
            self._redirect("/models")
        elif path in models and self.server.imitation is not None:
            try:
                self.server.imitation.authorize(self.headers)
                self._send_json(200, self.server.imitation.listing(state.model_card()))
            except Refusal as refusal:
                self._send_json(refusal.status, refusal.body)
        elif path in models:
            self._send_json(200, {"object": "list", "data": [state.model_card()]})
        elif path in (f"/v1/models/{MODEL_ID}", f"/models/{MODEL_ID}"):
            self._send_json(200, state.model_card())
        elif path == "/stats":
            self._send_json(200, state.stats())
        elif not self._batch_api(b""):
            self._not_found()

    def do_POST(self) -> None:  # noqa: N802
        body, path, faults = self._read_body(), self._path(), self.server.state.faults
        self._answer = False
        self._faulty = path in ("/v1/chat/completions", "/chat/completions") or path == faults.redirect_path
        if self._faulty:
            self._chat(body, redirect=faults.redirect is not None and path != faults.redirect_path)
        elif path == "/stats/reset":
            self.server.state.reset()
            self._send_json(200, self.server.state.stats())
        elif not self._batch_api(body):
            self._not_found()

    def do_DELETE(self) -> None:  # noqa: N802
        body = self._read_body()
        self._answer = self._faulty = False
        if not self._batch_api(body):
            self._not_found()

    def _batch_api(self, body: bytes) -> bool:
        """Answer a request of the Files or Batch API; False when it is none."""
        answer: Answer | None = route(self.server.batches, self.command, self.path, self.headers, body)
        if answer is None:
            return False
        if isinstance(answer.body, dict):
            self._send_json(answer.status, answer.body)
        else:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(answer.body)))
            self._send([answer.body])
        return True

    def _not_found(self) -> None:
        self._send_json(404, error_body(f"Unknown request URL: {self.command} {self.path}.",
                                        "invalid_request_error", "unknown_url"))

    def _chat(self, body: bytes, redirect: bool = False) -> None:
        state = self.server.state
        state.count(requests=1, in_flight=1)
        # Answers go out `delay` seconds after the request arrived: the judge's own work happens
        # within that time, as a real server's compute does, instead of adding to it.
        deadline = time.monotonic() + state.delay
        try:
            failure = None if redirect or state.faults.hang else state.faults.draw_failure()
            if redirect:
                self._redirect()
            elif state.faults.hang:
                self._hang()
            elif failure is not None:
                state.count(failure=failure)
                self._fail(failure, state.delay)
            else:
                self._complete(body, deadline)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug here must not look like a hang
            state.count(internal_errors=1)
            self._send_json(500, error_body(f"test server bug: {exc!r}", "server_error"))
        finally:
            state.count(in_flight=-1)

    def _complete(self, body: bytes, deadline: float) -> None:
        state = self.server.state
        try:
            request = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            state.count(bad_requests=1)
            self._send_json(400, BadRequest(f"We could not parse the JSON body of your request. ({exc})").body())
            return
        imitation, hidden = self.server.imitation, 0
        sent = {name: value for name, value in request.items() if name != "messages"} \
            if isinstance(request, dict) else {}
        if imitation is not None:
            try:
                request, hidden = imitation.check(request, self.headers)
            except Refusal as refusal:
                state.count(bad_requests=1)
                self._send_json(refusal.status, refusal.body)
                return
        reply = state.responder.respond(request)
        if imitation is not None and reply.status == 200:
            reply.body = imitation.answer(request, reply.body, hidden)
        state.count(**reply.counts)
        if reply.record is not None:
            # What a test may check arrived (OpenRouter's HTTP-Referer and X-Title), keys left out.
            reply.record["headers"] = {name.lower(): value for name, value in self.headers.items()
                                       if name.lower() not in ("authorization", "x-api-key")}
            reply.record["hidden_reasoning_tokens"] = hidden
            reply.record["sent"] = sent  # every field as the client sent it, but the messages
            state.record(reply.record)
        time.sleep(max(deadline - time.monotonic(), 0.0))
        if reply.status != 200:
            self._send_json(reply.status, reply.body)
        else:
            self._send_answer(reply.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024      # the listen backlog: bursts of 64+ connections must not stall
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: State, batches: Batches,
                 imitation: Imitation | None = None) -> None:
        self.state = state
        self.batches = batches
        self.imitation = imitation
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open keep-alive connection, so that their threads finish."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def make_server(judge: str, *, data_dir: str | Path | None = None, candidates: str = DEFAULT_CANDIDATES,
                seed: int = 0, noise: float = NOISY_SWAP_PROBABILITY, port: int = 0, delay: float = 0.0,
                honor_max_tokens: bool = True, context_window: int | None = None, logprobs: bool = True,
                estimate_usage: bool = False, reasoning: str | None = None, think_tokens: int = 64,
                verbose: bool = False, owned_by: str = "tests", max_model_len: int | None = None,
                batch_delay: float = 0.0, batch_fail_rate: float = 0.0, batch_expire: int = 0,
                imitate: str | None = None, api_key: str | None = None, **faults: Any) -> _Server:
    """A bound (listening) server on 127.0.0.1 that does not serve yet.

    Parameters
    ----------
    judge : {"oracle", "identity", "reverse", "garbage", "noisy", "reasoning"}
    data_dir : str or Path, optional
        A :class:`~rerank.testing.dataset.Dataset` folder (or qrels file); required by
        ``oracle``, ``noisy`` and ``reasoning``.
    candidates : str
        Glob of the RankGPT-format candidate files in ``data_dir`` the judge knows.
    seed : int
        Seeds the failures, the garbage answers and the noisy judge.
    noise : float
        The noisy judge's probability of swapping an adjacent pair.
    port : int
        0 for a free port.
    delay : float
        Seconds each chat request takes to be answered (or to fail).
    honor_max_tokens, context_window, logprobs, reasoning, think_tokens
        As :class:`~rerank.testing.completions.Responder` takes them.
    estimate_usage : bool
        Count tokens as characters / 4 instead of cl100k_base (see :class:`Tokens`).
    verbose : bool
        Log every request to stderr.
    owned_by, max_model_len
        What ``GET /models`` says of the model (``"vllm"`` and a length pass for a vLLM server).
    batch_delay, batch_fail_rate, batch_expire
        How batches run: :class:`~rerank.testing.batches.BatchOptions`'s ``delay``,
        ``fail_rate`` and ``expire`` (seeded by ``seed``).
    imitate : str or None
        Behave as a hosted provider's endpoint (:mod:`rerank.testing.providers`):
        ``openai-reasoning``, ``anthropic``, ``gemini`` or ``openrouter``.
    api_key : str or None
        With ``imitate``, the key requests must carry (None: any key, but one).
    **faults
        :class:`~rerank.testing.faults.Faults`: ``fail_rate``, ``drip``, ``drip_headers``,
        ``hang``, ``redirect``, ``wrong_types``, ``huge``, ``fault_models``.

    Returns
    -------
    http.server.ThreadingHTTPServer
        With ``state`` (:class:`State`); call ``serve_forever``.
    """
    dataset = Dataset(data_dir, candidates) if data_dir is not None else None
    tokens = Tokens(estimate_usage)
    imitation = Imitation(imitate, api_key, think_tokens, tokens) if imitate is not None else None
    if imitation is not None and imitation.responder_reasoning is not None:
        reasoning = imitation.responder_reasoning
    responder = Responder(Judge(judge, dataset, seed, noise), tokens, honor_max_tokens,
                          context_window, logprobs, reasoning, think_tokens)
    state = State(responder, Faults(seed=seed, **faults), delay, verbose, owned_by, max_model_len)
    batches = Batches(state, BatchOptions(batch_delay, batch_fail_rate, batch_expire, seed), state.faults.stopping)
    return _Server(("127.0.0.1", port), state, batches, imitation)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C; print the counters to stderr at the end."""
    parser = argparse.ArgumentParser(prog="python -m rerank.testing.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", choices=JUDGES, required=True)
    parser.add_argument("--data-dir", default=None, help="a folder of candidates and qrels, or a qrels file")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=NOISY_SWAP_PROBABILITY)
    parser.add_argument("--context-window", type=int, default=None)
    parser.add_argument("--ignore-max-tokens", action="store_true")
    parser.add_argument("--no-logprobs", action="store_true", help="answer \"logprobs\": null even when asked")
    parser.add_argument("--candidates", default=DEFAULT_CANDIDATES, help="glob of candidate files in --data-dir")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--estimate-usage", action="store_true",
                        help="report usage as characters / 4 instead of counting cl100k tokens, so the "
                             "server's own CPU does not compete with a client timed on the same cores")
    parser.add_argument("--reasoning", choices=REASONING_MODES, default=None,
                        help="think before answering: visible <think> text, or hidden as OpenAI's o-series")
    parser.add_argument("--think-tokens", type=int, default=64, help="reasoning tokens at medium effort")
    parser.add_argument("--imitate", choices=IMITATIONS, default=None,
                        help="refuse, ignore and report what this provider's OpenAI-compatible endpoint does "
                             "(see rerank.testing.providers)")
    parser.add_argument("--api-key", default=None, help="with --imitate: the key requests must carry (default: any)")
    batch = parser.add_argument_group("Batch API (see rerank.testing.batches)")
    batch.add_argument("--batch-delay", type=float, default=0.0, metavar="SECONDS",
                       help="a batch's lines are answered evenly over SECONDS, and it completes no sooner")
    batch.add_argument("--batch-fail-rate", type=float, default=0.0, metavar="P",
                       help="each batch line fails with probability P (by seed, custom_id and attempt)")
    batch.add_argument("--batch-expire", type=int, default=0, metavar="N",
                       help="the first N batches expire with half their lines done")
    faults = parser.add_argument_group("hostile server (see rerank.testing.faults)")
    faults.add_argument("--drip", type=float, default=0.0, metavar="D",
                        help="send chat answer bodies one byte every D seconds")
    faults.add_argument("--drip-headers", type=float, default=0.0, metavar="D",
                        help="send the status line and headers one byte every D seconds")
    faults.add_argument("--hang", action="store_true", help="read chat requests, never answer them")
    faults.add_argument("--redirect", metavar="URL", help="answer chat requests with a 307 to URL/chat/completions")
    faults.add_argument("--wrong-types", action="store_true", help="content is a number, a list, an object, in turn")
    faults.add_argument("--huge", type=float, default=0.0, metavar="N",
                        help="answers of about N MiB, without usage or Content-Length")
    faults.add_argument("--fault-models", action="store_true",
                        help="--drip, --drip-headers, --hang and --redirect apply to GET /models too")
    args = parser.parse_args(argv)
    server = make_server(args.judge, data_dir=args.data_dir, candidates=args.candidates, seed=args.seed,
                         noise=args.noise, port=args.port, delay=args.delay,
                         honor_max_tokens=not args.ignore_max_tokens, context_window=args.context_window,
                         logprobs=not args.no_logprobs, estimate_usage=args.estimate_usage,
                         reasoning=args.reasoning, think_tokens=args.think_tokens, verbose=args.verbose,
                         fail_rate=args.fail_rate, drip=args.drip, drip_headers=args.drip_headers,
                         hang=args.hang, redirect=args.redirect, wrong_types=args.wrong_types,
                         huge=args.huge, fault_models=args.fault_models, batch_delay=args.batch_delay,
                         batch_fail_rate=args.batch_fail_rate, batch_expire=args.batch_expire,
                         imitate=args.imitate, api_key=args.api_key)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.state.faults.stopping.set()
        server.batches.stop()
        server.server_close()
        print(json.dumps(server.state.stats()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
