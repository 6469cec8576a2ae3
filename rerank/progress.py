"""Progress of a long job on stderr: a bar on a terminal, a plain line every N seconds in a log.

On a terminal (stderr is a tty) :class:`Progress` draws a tqdm bar with the count, rate, elapsed
time and ETA; elsewhere (a file, a pipe: a SLURM log) it writes one plain line when it starts,
one every ``interval`` seconds (``--progress-interval``) and one when it ends::

    rerank: 17/43 queries (40%), 765 calls (120 cached), 0.52 queries/s, elapsed 0:32, ETA 0:50

An unknown total shows the count alone. ``--quiet`` silences both. ``rerank run``, ``labels``,
``pipeline``, ``experiment`` and ``retrieve`` (index building, dense encoding) all show their
progress through this class. tqdm is imported only when a bar is drawn.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, TextIO

#: Seconds between two plain progress lines unless ``--progress-interval`` says otherwise.
DEFAULT_INTERVAL = 30.0
# How often a terminal bar is redrawn while nothing finishes, so its elapsed time moves.
_BAR_REFRESH_S = 1.0
# RankGPT JSON inputs larger than this are not read twice just to count their queries.
_COUNT_JSON_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ProgressOptions:
    """How a command shows progress: the options ``--quiet`` and ``--progress-interval`` give.

    Attributes
    ----------
    enabled : bool
        False with ``--quiet``: nothing is shown.
    interval : float
        Seconds between plain progress lines when stderr is not a terminal.
    stream : file or None
        Where progress goes; None means ``sys.stderr`` at the time it starts.
    bar : bool or None
        Draw a bar (True) or plain lines (False); None draws a bar when the stream is a terminal.
    """

    enabled: bool = True
    interval: float = DEFAULT_INTERVAL
    stream: TextIO | None = None
    bar: bool | None = None

    def start(self, total: int | None = None, *, unit: str = "queries", label: str = "",
              initial: int = 0) -> "Progress":
        """A :class:`Progress` shown from now on (see there for the parameters)."""
        return Progress(total, unit=unit, label=label, initial=initial, options=self)


#: Nothing shown: what code run from Python (not the CLI) gets unless it asks.
SILENT = ProgressOptions(enabled=False)


class Progress:
    """One job's progress: ``done`` of ``total`` items, with calls and cache hits.

    Parameters
    ----------
    total : int or None
        Items the job has (queries, documents); None when unknown (the count alone is shown).
    unit : str
        What is counted (``queries``, ``documents``); an empty unit shows only the elapsed
        time (a step without a count, such as writing an index).
    label : str
        Names the job in each line (an experiment's variant, ``bm25 index``).
    initial : int
        Items done before this run (``--resume``): counted in ``done``, not in the rate.
    options : ProgressOptions or None
        Enabled or not, the line interval, the stream; None shows nothing.

    Notes
    -----
    A background thread writes the plain lines (and redraws the bar once a second), so a
    line comes every interval even while no item finishes (a slow teacher's first query).
    """

    def __init__(self, total: int | None = None, *, unit: str = "queries", label: str = "",
                 initial: int = 0, options: ProgressOptions | None = None):
        options = options or SILENT
        self.enabled = options.enabled
        self.total = total
        self.unit = unit
        self.label = label
        self.initial = self.done = initial
        self.calls: int | None = None
        self.cache_hits: int | None = None
        self._stream = options.stream or sys.stderr
        self._interval = options.interval
        self._started = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bar = None
        self._thread = None
        if not self.enabled:
            return
        use_bar = options.bar if options.bar is not None else _is_terminal(self._stream)
        if use_bar:
            self._bar = self._make_bar()
            period = _BAR_REFRESH_S
        else:
            self._write_line()
            period = self._interval
        self._thread = threading.Thread(target=self._tick, args=(period,), name="rerank-progress", daemon=True)
        self._thread.start()

    def update(self, done: int | None = None, *, calls: int | None = None, cache_hits: int | None = None,
               advance: int = 0) -> None:
        """Set the items done (``initial`` included), or add ``advance``; and the calls so far.

        Cheap: a bar is redrawn at most ten times a second; plain lines wait for their interval.
        """
        if done is not None:
            self.done = done
        self.done += advance
        if calls is not None:
            self.calls = calls
        if cache_hits is not None:
            self.cache_hits = cache_hits
        if self._bar is not None:
            with self._lock:
                self._bar.set_postfix_str(self._calls_text(), refresh=False)
                self._bar.update(self.done - self._bar.n)

    def track(self, usage) -> None:
        """Take the queries, calls and cache hits of a :class:`~rerank.types.Usage` of this run."""
        self.update(self.initial + usage.queries, calls=usage.calls, cache_hits=usage.cache_hits)

    def note(self, text: str) -> None:
        """Print a line of text on the stream without breaking a bar."""
        with self._lock:
            if self._bar is not None:
                self._bar.write(text, file=self._stream)
            else:
                print(text, file=self._stream, flush=True)

    def close(self) -> None:
        """Stop: a last plain line (ending ``(finished)``, or ``(ended)`` short of the total or
        without one), or the bar left at its final count. Idempotent."""
        if not self.enabled or self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            with self._lock:
                self._bar.close()
        else:
            self._write_line(final=True)

    def line(self, final: bool = False) -> str:
        """The plain progress line as it reads now (see the module's docstring)."""
        elapsed = time.perf_counter() - self._started
        parts = []
        if self.unit:
            count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
            percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            parts.append(f"{count} {self.unit}{percent}")
            if self.calls is not None:
                parts.append(self._calls_text())
            rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
            parts.append(f"{rate:.2f} {self.unit}/s")
        parts.append(f"elapsed {_clock(elapsed)}")
        if self.unit and not final and self.total is not None and self.done < self.total:
            rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}" if rate > 0 else "ETA ?")
        prefix = f"rerank: {self.label}: " if self.label else "rerank: "
        if final:  # "finished" only when every counted item is done: a failed or stopped job "ended"
            parts[-1] += " (finished)" if self.total is not None and self.done >= self.total else " (ended)"
        return prefix + ", ".join(parts)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _calls_text(self) -> str:
        if self.calls is None:
            return ""
        return f"{self.calls} calls ({self.cache_hits or 0} cached)"

    def _write_line(self, final: bool = False) -> None:
        text = self.line(final)
        with self._lock:
            try:  # one write: a line never interleaves with another thread's
                self._stream.write(text + "\n")
                self._stream.flush()
            except (OSError, ValueError):  # stderr closed: progress is never worth a failed run
                pass

    def _tick(self, period: float) -> None:
        while not self._stop.wait(period):
            if self._bar is not None:
                with self._lock:
                    self._bar.refresh()
            else:
                self._write_line()

    def _make_bar(self):
        from tqdm import tqdm

        unit = f" {self.unit}" if self.unit else ""
        if not self.unit:
            layout = "{desc}[{elapsed}]"
        elif self.total is None:
            layout = "{desc}{n_fmt}" + unit + " [{elapsed}, {rate_noinv_fmt}{postfix}]"
        else:
            layout = ("{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}" + unit
                      + " [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]")
        return tqdm(total=self.total, initial=self.initial, desc=f"{self.label}: " if self.label else None,
                    unit=unit, file=self._stream, dynamic_ncols=True, mininterval=0.1, bar_format=layout,
                    leave=None)  # a bar below another (an experiment's variant) goes when it ends


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    """``M:SS`` or ``H:MM:SS``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def count_queries(path, fmt: str | None = None, keep: Callable[[str], bool] | None = None,
                  limit: int | None = None) -> int | None:
    """How many queries an input file holds, counted cheaply, for the progress total.

    The file is not checked: a malformed line still counts (the reader reports it later), so a
    run with ``--skip-bad-lines`` may end below the total. A rank_llm JSONL file counts its
    non-blank lines, a TREC run its distinct qids, a RankGPT JSON file its list elements (when
    under 64 MiB: larger ones are not read twice).

    Parameters
    ----------
    path : str or path-like
        The input.
    fmt : str or None
        ``rankllm``, ``rankgpt`` or ``trec``; None detects it.
    keep : callable or None
        Count only the qids it keeps (``--shard``, ``--qids``); None counts every query.
    limit : int or None
        At most this many (``--limit``).

    Returns
    -------
    int or None
        None when the count cannot be told cheaply or the file cannot be read (its reader then
        says why).
    """
    import json
    import os

    from .errors import InputError

    try:
        if fmt is None:
            from .formats.detect import detect_format

            fmt = detect_format(path)
        if fmt == "rankllm":
            from .formats.rankllm import parse_request

            with open(path, "rb") as handle:
                lines = (line for line in handle if line.strip())
                if keep is None:
                    count = sum(1 for _ in lines)
                else:
                    count = sum(1 for line in lines if keep(parse_request(json.loads(line), path, 0).query.qid))
        elif fmt == "trec":
            qids: dict[str, None] = {}
            with open(path, "rb") as handle:
                for line in handle:
                    columns = line.split()
                    if columns:
                        qids.setdefault(columns[0].decode("utf-8", "replace"))
            count = sum(1 for qid in qids if keep is None or keep(qid))
        elif fmt == "rankgpt" and os.path.getsize(path) <= _COUNT_JSON_BYTES:
            from .formats import read_rankgpt

            requests = read_rankgpt(path, on_bad_line=lambda error: None)
            count = sum(1 for request in requests if keep is None or keep(request.query.qid))
        else:
            return None
    except (OSError, ValueError, KeyError, TypeError, InputError):
        return None
    return count if limit is None else min(count, limit)
