"""Fault injection for the judges' HTTP server: failures, and hostile ways of answering.

``fail_rate=p``
    Each chat request fails with probability p, uniformly one of HTTP 429 (``Retry-After: 0``),
    HTTP 500, or a dropped connection (shut down before any byte of a response). The draws come
    from ``random.Random(seed)`` behind a lock: a server's outcomes are deterministic in the order
    requests arrive.

The hostile servers, for a client's deadlines, size limits and redirect policy, apply to chat
requests; ``drip``, ``drip_headers``, ``hang`` and ``redirect`` also to ``GET /models`` with
``fault_models`` (the endpoint check):

``drip=D``
    The status line and headers go out at once (with ``Content-Length``), then the body one byte
    every D seconds.
``drip_headers=D``
    The status line and headers go out one byte every D seconds (then the body, dripped too with
    ``drip``).
``hang``
    The request is read and never answered (the connection stays open until the server stops).
``redirect=URL``
    ``307 Temporary Redirect`` to ``URL + "/chat/completions"`` (``/models`` to ``URL + "/models"``):
    a base URL such as another server's, or a path such as ``/moved/v1`` for the same origin,
    which this server then answers as it would ``/v1``.
``wrong_types``
    ``message.content`` is a number, a list, an object, in turn.
``huge=N``
    An answer of about N MiB (the judge's answer, then filler words in ``content``, no ``usage``),
    without ``Content-Length`` (the body ends when the connection closes), in 64 KiB writes.
"""

from __future__ import annotations

import json
import random
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlsplit

from .protocol import error_body

FAILURE_KINDS = ("429", "500", "drop")
WRONG_CONTENTS = (42, ["[1] > [2]"], {"text": "[1] > [2]"})   # what wrong_types sends, in turn
HUGE_CHUNK = 64 << 10       # huge answers are written this many bytes at a time
_FILLER = b" lorem ipsum dolor sit amet" * 2500


class Stopping(Exception):
    """The server is stopping: a dripping answer ends."""


@dataclass
class Faults:
    """A server's faults (see the module docstring); thread-safe.

    Raises
    ------
    ValueError
        ``fail_rate`` outside [0, 1], or a negative ``drip``, ``drip_headers`` or ``huge``.
    """

    fail_rate: float = 0.0
    seed: int = 0
    drip: float = 0.0
    drip_headers: float = 0.0
    hang: bool = False
    redirect: str | None = None
    wrong_types: bool = False
    huge: float = 0.0
    fault_models: bool = False
    stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if min(self.drip, self.drip_headers, self.huge) < 0:
            raise ValueError("drip, drip_headers and huge must not be negative")
        same_origin = self.redirect is not None and not urlsplit(self.redirect).netloc
        #: The path a same-origin redirect goes to, served as /v1 is (None otherwise).
        self.redirect_base = urlsplit(self.redirect).path.rstrip("/") if same_origin else None
        self.redirect_path = f"{self.redirect_base}/chat/completions" if same_origin else None
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._wrong = 0

    def draw_failure(self) -> str | None:
        """One of :data:`FAILURE_KINDS` with probability ``fail_rate``, else None."""
        if self.fail_rate <= 0:
            return None
        with self._lock:
            return self._rng.choice(FAILURE_KINDS) if self._rng.random() < self.fail_rate else None

    def next_wrong_content(self) -> Any:
        """The next of :data:`WRONG_CONTENTS`, in turn."""
        with self._lock:
            self._wrong += 1
            return WRONG_CONTENTS[(self._wrong - 1) % len(WRONG_CONTENTS)]


class FaultyHandler:
    """What a request handler needs to answer with faults; mixed into the server's handler, whose
    ``server.state`` has ``faults`` and ``count(**amounts)``."""

    _faulty = False     # this request gets the server's faults (drip, drip_headers, hang)
    _answer = False     # this response is a chat answer (its body counts in body_bytes)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self._send([data])

    def _send(self, body: Iterable[bytes]) -> None:
        """End the headers and send them with the pieces of ``body``: headers and a one-piece
        body in one write, or a byte at a time for a faulty request. A client that stops reading
        is counted (``disconnects``) and the connection closed."""
        state, faults = self.server.state, self.server.state.faults
        head = b"".join(getattr(self, "_headers_buffer", [])) + b"\r\n"
        self._headers_buffer = []
        drip = faults.drip if self._faulty else 0.0
        try:
            if self._faulty and faults.drip_headers > 0:
                self._drip(head, faults.drip_headers)
                head = b""
            for piece in body:
                if drip > 0:
                    if head:
                        self.wfile.write(head)
                        head = b""
                    self._drip(piece, drip)
                else:
                    self.wfile.write(head + piece)
                    head = b""
                if self._answer:
                    state.count(body_bytes=len(piece))
            if head:
                self.wfile.write(head)
        except Stopping:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            state.count(disconnects=1)
            self.close_connection = True

    def _drip(self, data: bytes, interval: float) -> None:
        """Write ``data`` one byte every ``interval`` seconds; :class:`Stopping` when the server stops."""
        for index in range(len(data)):
            if self.server.state.faults.stopping.wait(interval):
                raise Stopping
            self.wfile.write(data[index:index + 1])

    def _hang(self) -> None:
        """Answer nothing until the server stops; then close the connection."""
        self.server.state.count(hung=1)
        self.server.state.faults.stopping.wait()
        self.close_connection = True

    def _redirect(self, route: str = "/chat/completions") -> None:
        """``307 Temporary Redirect`` to the ``redirect`` URL's ``route``."""
        self.server.state.count(redirects=1)
        self.send_response(307)
        self.send_header("Location", self.server.state.faults.redirect.rstrip("/") + route)
        self.send_header("Content-Length", "0")
        self._send([])

    def _fail(self, kind: str, delay: float) -> None:
        """Fail a chat request the ``kind`` way (:data:`FAILURE_KINDS`), after ``delay`` seconds."""
        self.server.state.faults.stopping.wait(delay)
        if kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif kind == "429":
            self._send_json(429, error_body(
                "Rate limit reached for test-judge (injected by the test server). Please try again "
                "in 0s.", "rate_limit_exceeded", "rate_limit_exceeded"),
                headers={"Retry-After": "0", "retry-after-ms": "0"})
        else:
            self._send_json(500, error_body("The server had an error while processing your request "
                                            "(injected by the test server).", "server_error",
                                            "internal_server_error"))

    def _send_answer(self, payload: dict) -> None:
        """A chat completion, as the faults have it: content of a wrong type, or huge."""
        faults = self.server.state.faults
        self._answer = True
        if faults.wrong_types:
            payload["choices"][0]["message"]["content"] = faults.next_wrong_content()
        if faults.huge <= 0:
            self._send_json(200, payload)
            return
        message = payload["choices"][0]["message"]
        answer, message["content"] = message["content"], "\u0000"
        payload.pop("usage", None)
        before, after = json.dumps(payload).split('"\\u0000"')
        before = (before + json.dumps(answer)[:-1]).encode("utf-8")
        after = ('"' + after).encode("utf-8")
        size = int(faults.huge * (1 << 20))

        def pieces():
            yield before
            left = size - len(before) - len(after)
            while left > 0:
                chunk = _FILLER[:min(left, HUGE_CHUNK)]
                left -= len(chunk)
                yield chunk
            yield after

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")   # the body ends when the connection closes
        self.close_connection = True
        self._send(pieces())
