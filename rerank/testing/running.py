"""Starting the judges' server: in a background thread, or as a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from .server import make_server


class RunningServer:
    """A server serving in a background thread; a context manager that stops it.

    Parameters
    ----------
    server : http.server.ThreadingHTTPServer
        From :func:`~rerank.testing.server.make_server`.
    """

    def __init__(self, server) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="llm-test-server", daemon=True)
        self._thread.start()
        self._stopped = False

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``, where ``/stats`` lives."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the ``base_url`` of an OpenAI client."""
        return f"{self.root_url}/v1"

    def stats(self) -> dict:
        """Counters: ``requests``, ``completions``, ``failures`` (and ``failures_by_kind``),
        ``prompt_tokens``, ``completion_tokens``, ``bad_requests``, ``internal_errors``,
        ``unidentified_queries``, ``unmatched_passages``, ``redirects``, ``hung``, ``disconnects``,
        ``body_bytes``, ``in_flight`` and ``max_in_flight``; the Batch API's ``files_uploaded``,
        ``batches_created`` (``_completed``, ``_failed``, ``_cancelled``, ``_expired``),
        ``batch_lines``, ``batch_answers``, ``batch_errors``, ``batch_duplicates`` (lines
        submitted while already answered or in a batch not ended), ``batch_prompt_tokens``,
        ``batch_completion_tokens``, and per ``custom_id`` ``custom_id_submissions``,
        ``custom_id_answers`` and ``custom_id_failures`` (see :mod:`rerank.testing.batches`)."""
        return self._server.state.stats()

    def reset_stats(self) -> None:
        """Zero the counters and empty the log."""
        self._server.state.reset()

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        """Wait until ``predicate(stats)`` holds (a counter reached, a request in flight).

        Parameters
        ----------
        predicate : callable
            Of :meth:`stats`'s dict.
        timeout : float
            Seconds at most.

        Returns
        -------
        dict
            The stats.

        Raises
        ------
        TimeoutError
            When it still does not hold.
        """
        if not self._server.state.wait_for(predicate, timeout):
            raise TimeoutError(f"server stats never met the condition within {timeout} s: {self.stats()}")
        return self.stats()

    def log(self) -> list[dict]:
        """Every successful completion: model, messages, answer (the reply), prompt_tokens,
        finish_reason, prefill (the continued assistant start, or None), and the request's
        max_tokens, max_completion_tokens, logprobs, top_logprobs and reasoning_effort (None when
        not sent); a batch line's also has its custom_id and batch_id. A chat request's also has
        its ``headers`` (without the key's), ``sent`` (every field as sent, but the messages) and
        ``hidden_reasoning_tokens`` (an imitated provider's, :mod:`rerank.testing.providers`)."""
        return self._server.state.log()

    def stop(self) -> None:
        """Stop serving and close every connection; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._server.state.faults.stopping.set()   # hung and dripping answers end
        self._server.batches.stop()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server(judge: str, **options: Any) -> RunningServer:
    """Start a judges' server on 127.0.0.1 in a background thread.

    Parameters
    ----------
    judge : {"oracle", "identity", "reverse", "garbage", "noisy", "reasoning"}
    **options
        Those of :func:`~rerank.testing.server.make_server` (``data_dir``, ``fail_rate``,
        ``delay``, ``reasoning``, ...).

    Returns
    -------
    RunningServer
        Use it as a context manager, or call ``stop``.
    """
    return RunningServer(make_server(judge, **options))


def start_process(*options: str) -> tuple[subprocess.Popen, str]:
    """The server as a process of its own, so that its CPU is apart from the caller's.

    Parameters
    ----------
    *options : str
        Command-line options of ``python -m rerank.testing.server`` (``"--judge", "identity",
        "--delay", "1"``).

    Returns
    -------
    process : subprocess.Popen
        Terminate it to stop the server.
    base_url : str
        Once it listens.
    """
    root = str(Path(__file__).resolve().parents[2])   # this rerank package, whatever the cwd
    path = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    process = subprocess.Popen([sys.executable, "-m", "rerank.testing.server", *options],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONPATH": path})
    return process, process.stdout.readline().split()[1]
