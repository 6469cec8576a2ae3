"""OpenAI's Batch API on the judges' server: batches of chat completions answered in the background.

A batch's input file (uploaded with ``purpose="batch"``) holds one request a line::

    {"custom_id": "q1-r0", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

Each batch runs in a thread of its own, through OpenAI's statuses: ``validating`` (a bad file, a
line that is not such a request, or a ``custom_id`` twice ends it ``failed``, with ``errors``),
``in_progress`` (``request_counts`` grows as lines are answered), ``finalizing``, ``completed``;
``cancelling`` then ``cancelled`` after a cancel; ``expired``. Each line is answered by the same
:class:`~rerank.testing.completions.Responder` as ``POST /v1/chat/completions`` would answer its
body, so a batch gives the answers an online run gets. The output file has a line per answered
request, ``{"id", "custom_id", "response": {"status_code": 200, "request_id", "body": <chat
completion>}, "error": null}``; the error file a line per failed one, and is absent (its id None)
when nothing failed, as the output file is when nothing succeeded. Both files' lines are always
shuffled (deterministically by seed and batch id), as providers return them out of order.

Options (:class:`BatchOptions`; ``--batch-*`` flags of ``python -m rerank.testing.server``):

``delay``
    Seconds from a batch's start to its end: its lines are answered evenly over that time (so
    a cancel finds some done), and it completes no sooner. 0: as soon as possible.
``fail_rate``
    Each line fails with this probability, deterministically by seed, ``custom_id`` and how many
    times that ``custom_id`` was submitted before (so a resubmitted line draws anew). Half the
    failures are HTTP errors, ``"response": {"status_code": 500, "request_id", "body": {"error":
    {...}}}, "error": null``, half are not, ``"response": null, "error": {"code": "server_error",
    "message"}``, as OpenAI's error files have both.
``expire``
    The first N batches created expire: they answer the first half (rounded down) of their
    lines, then end ``expired`` when ``delay`` is over; the output file holds the finished lines,
    the error file the others with ``{"code": "batch_expired"}``. A cancelled batch's unfinished
    lines are in its error file with ``{"code": "batch_cancelled"}``.

The server's counters (:meth:`~rerank.testing.state.State.stats`) follow the batches:
``files_uploaded``, ``batches_created``, ``batches_completed``, ``batches_failed``,
``batches_cancelled``, ``batches_expired``, ``batch_lines`` (lines of valid batches),
``batch_answers`` (answered 200), ``batch_errors`` (error-file lines, whatever the cause),
``batch_prompt_tokens``, ``batch_completion_tokens``, and ``batch_duplicates``: lines submitted
while their ``custom_id`` was already answered (since the counters were last reset) or still in
a batch that had not ended, the calls a batch driver must never pay twice for. Per ``custom_id``: ``custom_id_submissions``,
``custom_id_answers`` and ``custom_id_failures`` (error-file lines). Answered lines are in the
server's log, with their ``custom_id`` and ``batch_id``.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from .files import FileStore, NotFound
from .protocol import BadRequest, error_body
from .state import State

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
WINDOW_SECONDS = 24 * 3600
MAX_LINES = 50_000              # OpenAI's limits on a batch's input file
MAX_INPUT_BYTES = 200 << 20
MAX_REPORTED_ERRORS = 100
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."


class Conflict(Exception):
    """A request the batch's status forbids (HTTP 409); the message is OpenAI's."""


@dataclass(frozen=True)
class BatchOptions:
    """How the server runs batches (see the module docstring).

    Parameters
    ----------
    delay : float
        Seconds a batch takes, its lines answered evenly over them; 0 for as soon as possible.
    fail_rate : float
        The probability that a line fails.
    expire : int
        How many of the first batches expire with half their lines done.
    seed : int
        Seeds the failures and the order of the output lines.

    Raises
    ------
    ValueError
        ``fail_rate`` outside [0, 1], a negative ``delay`` or ``expire``.
    """

    delay: float = 0.0
    fail_rate: float = 0.0
    expire: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("batch_fail_rate must be between 0 and 1")
        if self.delay < 0 or self.expire < 0:
            raise ValueError("batch_delay and batch_expire must not be negative")


@dataclass
class _Batch:
    """A batch: the fields of OpenAI's ``Batch`` object, and what its thread needs."""

    id: str
    index: int
    input_file_id: str
    metadata: dict | None
    created_at: int
    status: str = "validating"
    times: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    tokens: dict[str, int] = field(default_factory=lambda: {"input": 0, "output": 0, "reasoning": 0})
    model: str | None = None
    errors: list[dict] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    cancel_requested: bool = False

    def card(self) -> dict:
        """The ``Batch`` object OpenAI answers (``openai.types.Batch``)."""
        tokens = self.tokens
        return {
            "id": self.id, "object": "batch", "endpoint": ENDPOINT, "model": self.model,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id, "completion_window": COMPLETION_WINDOW,
            "status": self.status, "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at, "expires_at": self.created_at + WINDOW_SECONDS,
            **{f"{name}_at": self.times.get(name) for name in (
                "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")},
            "request_counts": dict(self.counts), "metadata": self.metadata,
            "usage": {"input_tokens": tokens["input"], "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": tokens["output"],
                      "output_tokens_details": {"reasoning_tokens": tokens["reasoning"]},
                      "total_tokens": tokens["input"] + tokens["output"]},
        }


class Batches:
    """The server's files and batches; each batch is run by a thread of its own.

    Parameters
    ----------
    state : State
        The server's responder and counters.
    options : BatchOptions
    stopping : threading.Event
        Set when the server stops: the batches' threads end, their batches left as they are.
    """

    def __init__(self, state: State, options: BatchOptions | None = None,
                 stopping: threading.Event | None = None) -> None:
        self.files = FileStore()
        self.options = options or BatchOptions()
        self._state = state
        self._stopping = stopping or threading.Event()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)     # notified by cancels and by stop
        self._batches: dict[str, _Batch] = {}
        self._pending: Counter[str] = Counter()          # custom_ids in batches not ended
        self._threads: list[threading.Thread] = []

    # The API.

    def upload(self, filename: str, purpose: str, content: bytes) -> dict:
        """``POST /v1/files``: the new ``File`` object (see :meth:`FileStore.upload`)."""
        card = self.files.upload(filename, purpose, content).card()
        self._state.count(files_uploaded=1)
        return card

    def create(self, request: object) -> dict:
        """``POST /v1/batches``: start a batch of the lines of ``input_file_id``.

        Parameters
        ----------
        request : object
            The decoded body: ``input_file_id``, ``endpoint`` (``/v1/chat/completions``),
            ``completion_window`` (``24h``), and optional ``metadata`` (up to 16 strings).

        Returns
        -------
        dict
            The ``Batch`` object, ``validating``.

        Raises
        ------
        BadRequest
            A missing or wrong parameter, or an input file whose purpose is not ``batch``.
        NotFound
            No such input file.
        """
        if not isinstance(request, dict):
            raise BadRequest("The request body must be a JSON object.")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(request.get(name), str):
                raise BadRequest(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
        if request["endpoint"] != ENDPOINT:
            raise BadRequest(f"Invalid value for 'endpoint': this server batches only {ENDPOINT}.",
                             "endpoint", "invalid_value")
        if request["completion_window"] != COMPLETION_WINDOW:
            raise BadRequest(f"Invalid value for 'completion_window': expected '{COMPLETION_WINDOW}'.",
                             "completion_window", "invalid_value")
        metadata = request.get("metadata")
        if metadata is not None and not (isinstance(metadata, dict) and len(metadata) <= 16 and all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
            raise BadRequest("Invalid 'metadata': up to 16 string keys with string values.", "metadata",
                             "invalid_value")
        if self.files.get(request["input_file_id"]).purpose != "batch":
            raise BadRequest("The input file must be uploaded with purpose 'batch'.", "input_file_id",
                             "invalid_value")
        with self._lock:
            batch = _Batch(f"batch_{uuid.uuid4().hex[:24]}", len(self._batches), request["input_file_id"],
                           metadata, int(time.time()))
            self._batches[batch.id] = batch
            thread = threading.Thread(target=self._run, args=(batch,), name=f"batch-{batch.index}", daemon=True)
            self._threads.append(thread)
            card = batch.card()
        self._state.count(batches_created=1)
        thread.start()
        return card

    def get(self, batch_id: str) -> dict:
        """``GET /v1/batches/{id}``: the ``Batch`` object; :class:`NotFound` when there is none."""
        with self._lock:
            return self._batch(batch_id).card()

    def cancel(self, batch_id: str) -> dict:
        """``POST /v1/batches/{id}/cancel``: ``cancelling`` until its thread ends it ``cancelled``.

        Raises
        ------
        NotFound
            No such batch.
        Conflict
            The batch has ended otherwise (``completed``, ``failed``, ``expired``).
        """
        with self._lock:
            batch = self._batch(batch_id)
            if batch.status in ("completed", "failed", "expired"):
                raise Conflict(f"Cannot cancel a batch with status '{batch.status}'.")
            if batch.status != "cancelled" and not batch.cancel_requested:
                batch.cancel_requested = True
                self._set(batch, "cancelling")
                self._wake.notify_all()
            return batch.card()

    def list(self, after: str | None = None, limit: int = 20) -> dict:
        """``GET /v1/batches``: a page of batches, newest first, after the batch ``after``."""
        with self._lock:
            batches = list(reversed(self._batches.values()))
            start = next((i + 1 for i, batch in enumerate(batches) if batch.id == after), 0) if after else 0
            page = [batch.card() for batch in batches[start:start + limit]]
            return page_of(page, start + limit < len(batches))

    def stop(self) -> None:
        """Stop the batches' threads (the server is stopping); their batches stay as they are."""
        with self._lock:
            self._stopping.set()
            self._wake.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)

    # A batch's thread.

    def _batch(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise NotFound(f"No batch found with id '{batch_id}'.")
        return batch

    def _set(self, batch: _Batch, status: str) -> None:
        """Move ``batch`` to ``status`` now (under the lock)."""
        batch.status = status
        batch.times[status] = int(time.time())

    def _run(self, batch: _Batch) -> None:
        try:
            self._process(batch)
        except Exception as exc:  # noqa: BLE001 - a bug here must not look like a batch that never ends
            with self._lock:
                batch.errors = [{"code": "server_error", "message": f"test server bug: {exc!r}", "param": None,
                                 "line": None}]
                self._set(batch, "failed")
                self._state.count(internal_errors=1, batches_failed=1)

    def _process(self, batch: _Batch) -> None:
        try:
            lines, errors = read_input(self.files.get(batch.input_file_id).content)
        except NotFound:
            lines, errors = [], [{"code": "file_not_found", "message": "The input file was deleted.",
                                  "param": "input_file_id", "line": None}]
        with self._lock:
            if errors:
                batch.errors = errors
                self._set(batch, "failed")
                self._state.count(batches_failed=1)
                return
            attempts = self._submit(batch, lines)
            if not batch.cancel_requested:
                self._set(batch, "in_progress")
        expiring = batch.index < self.options.expire
        todo = len(lines) // 2 if expiring else len(lines)
        start, delay = time.monotonic(), self.options.delay
        answers, failures = [], []
        done = 0
        while done < todo and self._sleep_until(batch, start + delay * (done + 1) / len(lines)):
            answered, outcome = self._answer(batch, lines[done], attempts[done])
            (answers if answered else failures).append(outcome)
            done += 1
        if expiring and done == todo:
            self._sleep_until(batch, start + delay)
        if self._stopping.is_set():
            return
        unfinished = [line["custom_id"] for line in lines[done:]]
        with self._lock:
            cancelled = batch.cancel_requested
            if cancelled or expiring:
                code, message = (("batch_cancelled", CANCELLED_MESSAGE) if cancelled
                                 else ("batch_expired", EXPIRED_MESSAGE))
                failures += [{"id": _line_id(), "custom_id": custom_id, "response": None,
                              "error": {"code": code, "message": message}} for custom_id in unfinished]
                batch.counts["failed"] += len(unfinished)
            else:
                self._set(batch, "finalizing")
        if unfinished:
            self._state.count_ids("custom_id_failures", unfinished, batch_errors=len(unfinished))
        output_id = self._write(batch, answers, "output")
        error_id = self._write(batch, failures, "error")
        with self._lock:
            batch.output_file_id, batch.error_file_id = output_id, error_id
            for line in lines:
                self._pending[line["custom_id"]] -= 1
                if not self._pending[line["custom_id"]]:
                    del self._pending[line["custom_id"]]
            status = "cancelled" if cancelled else "expired" if expiring else "completed"
            self._set(batch, status)
            self._state.count(**{f"batches_{status}": 1})

    def _submit(self, batch: _Batch, lines: list[dict]) -> list[int]:
        """Count the lines as submitted (under the lock); each line's earlier submissions."""
        ids = [line["custom_id"] for line in lines]
        attempts = [self._state.tally("custom_id_submissions", custom_id) for custom_id in ids]
        duplicates = sum(1 for custom_id in ids
                         if self._pending[custom_id] or self._state.tally("custom_id_answers", custom_id))
        self._pending.update(ids)
        batch.counts["total"] = len(lines)
        batch.model = next((line["body"].get("model") for line in lines if line["body"].get("model")), None)
        self._state.count_ids("custom_id_submissions", ids, batch_lines=len(ids), batch_duplicates=duplicates)
        return attempts

    def _sleep_until(self, batch: _Batch, deadline: float) -> bool:
        """Wait until ``deadline`` (monotonic); False at once if the batch is cancelled or the
        server stops."""
        with self._wake:
            while not (batch.cancel_requested or self._stopping.is_set()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                self._wake.wait(left)
            return False

    def _answer(self, batch: _Batch, line: dict, attempt: int) -> tuple[bool, dict]:
        """``(True, output line)`` for an answered line, ``(False, error line)`` for a failed one."""
        custom_id, state = line["custom_id"], self._state
        draw = random.Random(f"{self.options.seed}:{custom_id}:{attempt}")
        if draw.random() < self.options.fail_rate:
            message = "The server had an error while processing your request (injected by the test server)."
            if draw.random() < 0.5:
                response, error = _response(500, error_body(message, "server_error")), None
            else:
                response, error = None, {"code": "server_error", "message": message}
            failure = {"id": _line_id(), "custom_id": custom_id, "response": response, "error": error}
            self._count_line(batch, failure=True)
            state.count_ids("custom_id_failures", [custom_id], batch_errors=1)
            return False, failure
        reply = state.responder.respond(line["body"])
        if reply.status != 200:
            failure = {"id": _line_id(), "custom_id": custom_id, "response": _response(reply.status, reply.body),
                       "error": None}
            self._count_line(batch, failure=True)
            state.count_ids("custom_id_failures", [custom_id], batch_errors=1, **reply.counts)
            return False, failure
        usage = reply.body["usage"]
        self._count_line(batch, usage=usage)
        counts = {_BATCH_COUNTERS.get(name, name): amount for name, amount in reply.counts.items()}
        state.count_ids("custom_id_answers", [custom_id], **counts)
        if reply.record is not None:
            state.record({**reply.record, "custom_id": custom_id, "batch_id": batch.id})
        return True, {"id": _line_id(), "custom_id": custom_id, "response": _response(200, reply.body), "error": None}

    def _count_line(self, batch: _Batch, failure: bool = False, usage: dict | None = None) -> None:
        with self._lock:
            batch.counts["failed" if failure else "completed"] += 1
            if usage is not None:
                batch.tokens["input"] += usage["prompt_tokens"]
                batch.tokens["output"] += usage["completion_tokens"]
                details = usage.get("completion_tokens_details") or {}
                batch.tokens["reasoning"] += details.get("reasoning_tokens", 0)

    def _write(self, batch: _Batch, lines: list[dict], kind: str) -> str | None:
        """Store ``lines`` shuffled as the batch's ``kind`` file; its id, None when there are none."""
        if not lines:
            return None
        lines = list(lines)
        random.Random(f"{self.options.seed}:{batch.id}:{kind}").shuffle(lines)
        content = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
        return self.files.add(f"{batch.id}_{kind}.jsonl", "batch_output", content).id


# What a batch's answers add to, instead of the online chat counters.
_BATCH_COUNTERS = {"completions": "batch_answers", "prompt_tokens": "batch_prompt_tokens",
                   "completion_tokens": "batch_completion_tokens"}


def _line_id() -> str:
    return f"batch_req_{uuid.uuid4().hex[:24]}"


def _response(status: int, body: dict) -> dict:
    return {"status_code": status, "request_id": f"req_{uuid.uuid4().hex[:24]}", "body": body}


def page_of(items: list[dict], has_more: bool) -> dict:
    """A page of a list, as OpenAI's cursor pagination answers it."""
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}


def read_input(content: bytes) -> tuple[list[dict], list[dict]]:
    """The requests of a batch input file, and OpenAI's validation errors (empty when valid).

    Parameters
    ----------
    content : bytes
        JSONL; blank lines are skipped.

    Returns
    -------
    lines : list of dict
        ``{"custom_id", "method", "url", "body"}``.
    errors : list of dict
        ``{"code", "message", "param", "line"}`` (1-based lines), at most 100.
    """
    def error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict:
        return {"code": code, "message": message, "param": param, "line": line}

    if len(content) > MAX_INPUT_BYTES:
        return [], [error("file_too_large", "The input file is larger than 200 MB.")]
    lines, errors, seen = [], [], set()
    for number, raw in enumerate(content.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            errors.append(error("invalid_json_line", "This line is not parseable as valid JSON.", number))
            continue
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            errors.append(error("missing_required_parameter", "Missing required parameter: 'custom_id'.",
                                number, "custom_id"))
        elif line.get("method") != "POST":
            errors.append(error("invalid_method", "The method of a batch request must be POST.", number, "method"))
        elif line.get("url") != ENDPOINT:
            errors.append(error("invalid_url", "The URL provided for this request does not match the "
                                "batch endpoint.", number, "url"))
        elif not isinstance(line.get("body"), dict):
            errors.append(error("missing_required_parameter", "Missing required parameter: 'body'.", number, "body"))
        elif line["custom_id"] in seen:
            errors.append(error("duplicate_custom_id", "The custom_id for this request is a duplicate of "
                                "another request's in the batch.", number, "custom_id"))
        else:
            seen.add(line["custom_id"])
            lines.append(line)
    if not errors and not lines:
        errors.append(error("empty_file", "The batch input file is empty."))
    if not errors and len(lines) > MAX_LINES:
        errors.append(error("too_many_requests", f"The batch input file has more than {MAX_LINES} requests."))
    return lines, errors[:MAX_REPORTED_ERRORS]
