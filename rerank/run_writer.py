"""One way to write a run: results streamed to their files, usage summed, the summary written.

``rerank run``, ``pipeline``, ``labels`` and each variant of ``rerank experiment`` write through
:func:`write_run`. Every line is written whole and flushed as its query finishes, the TREC run
(and SFT records) before the JSONL line, which is the record that a query is finished (see
:mod:`rerank.resume`). Queries whose backend failed for good are listed in the summary and left
out; Ctrl-C or SIGTERM ends the run with what is finished on disk. The module imports nothing
heavy: writers and asyncio are imported when a run starts.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .run_summary import RunSummary


@dataclass(frozen=True)
class RunFiles:
    """Where a run's results go.

    Attributes
    ----------
    output : str or None
        The JSONL output: rank_llm results, or training examples with ``examples``.
    trec : str or None
        A TREC run, with run tag ``tag``.
    sft : str or None
        Chat-format SFT records (labels only).
    examples : bool
        Whether the stream yields ``(result, example)`` pairs and ``output`` holds the examples.
    append : bool
        Continue the files (``--resume``) instead of starting them.
    """

    output: str | None = None
    trec: str | None = None
    tag: str = "rerank"
    sft: str | None = None
    examples: bool = False
    append: bool = False


class SummaryFile:
    """A summary JSON written on its own, without a run record (an experiment variant's)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def finish(self, summary: dict, copy_to: str | None = None) -> None:
        """Write ``summary`` (and a copy to ``copy_to``)."""
        for path in (self.path, copy_to):
            if path:
                Path(path).write_text(json.dumps(summary, indent=2), encoding="utf-8")


class _JsonLines:
    """JSON objects one line each, flushed per line."""

    def __init__(self, path: str, append: bool):
        self._file = open(path, "a" if append else "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def __enter__(self) -> "_JsonLines":
        return self

    def __exit__(self, *exc_info) -> None:
        self._file.close()


def open_writers(files: RunFiles, stack: ExitStack) -> list[Callable]:
    """The writers of ``files``, each called as ``write(result, example)``: the TREC run first,
    the JSONL output last. A result may also be a request (``rerank retrieve``)."""
    from .formats import RankLLMWriter, TrecRunWriter

    writers = []
    if files.trec:
        trec = stack.enter_context(TrecRunWriter(files.trec, tag=files.tag, append=files.append))
        writers.append(lambda result, example: trec.write(result))
    if files.sft:
        sft = stack.enter_context(_JsonLines(files.sft, files.append))
        writers.append(lambda result, example: sft.write(example.as_chat()))
    if files.output and files.examples:
        examples = stack.enter_context(_JsonLines(files.output, files.append))
        writers.append(lambda result, example: examples.write(example.as_dict()))
    elif files.output:
        output = stack.enter_context(RankLLMWriter(files.output, append=files.append))
        writers.append(lambda result, example: output.write(result))
    return writers


async def write_run(reranker, results, files: RunFiles, record, *, already: int = 0,
                    settings: dict | None = None, copy_to: str | None = None, progress: bool = False,
                    report: bool = False, on_result: Callable | None = None,
                    extra: Callable[[], dict] | None = None) -> RunSummary:
    """Stream a run's results into ``files`` and finish its ``record``; returns its summary.

    Parameters
    ----------
    reranker : Reranker
        Prepared before the first result (endpoint checked, tokenizer loaded) and closed at the end.
    results : callable
        ``results(on_error)`` gives the async iterator of results (``(result, example)`` pairs
        with ``files.examples``); queries whose backend failed for good are reported to
        ``on_error(request, error)`` and left out. A stream that does not take ``on_error``
        raises on the first failure instead.
    files : RunFiles
        Where the results go; an unwritable file is reported before any call.
    record
        Takes the summary's JSON: an :class:`~rerank.outputs.Outputs` (the run record) or a
        :class:`SummaryFile`.
    already : int
        Queries the outputs held before this run (``--resume``).
    settings : dict or None
        The settings to record; None takes the reranker's, without credentials.
    copy_to : str or None
        ``--summary-json``: also write the summary there.
    progress, report : bool
        Show a progress line on stderr while running; print the closing summary on stderr.
    on_result : callable or None
        Called as ``on_result(result, example)`` after each query is written.
    extra : callable or None
        Called when the stream ends; its keys are added to the summary (label quality).

    Returns
    -------
    RunSummary
        State ``finished``, ``failed`` (``failed`` lists the queries) or ``interrupted``.
    """
    import asyncio

    from .types import Usage

    usage = Usage()
    failures: list[tuple[str, str]] = []
    shown = Progress(enabled=progress)
    entered = started = time.perf_counter()
    interrupted = False
    try:
        with ExitStack() as stack:
            writers = open_writers(files, stack)  # an unwritable output is reported first
            await reranker.prepare()
            # The run's time starts when the endpoint is checked and the tokenizer loaded.
            started = time.perf_counter()
            async for item in results(lambda request, error: failures.append((request.query.qid, str(error)))):
                result, example = item if files.examples else (item, None)
                for write in writers:
                    write(result, example)
                usage.add_result(result)
                if on_result is not None:
                    on_result(result, example)
                shown.update(usage, time.perf_counter() - started)
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM: what is finished is on disk
        interrupted = True
    finally:
        shown.close()
        await reranker.aclose()
    from . import __version__

    settings = public_settings(reranker.config) if settings is None else settings
    summary = RunSummary.from_usage(
        usage, wall_seconds=round(time.perf_counter() - started, 3), startup_seconds=round(started - entered, 3),
        already_done=already, failed=[qid for qid, _ in failures],
        state="interrupted" if interrupted else "failed" if failures else "finished",
        settings=settings, rerank_version=__version__, backend=backend_name(reranker.backend),
        # As the settings show it (secrets hidden); the backend's own name for a default model.
        model=settings.get("model") or getattr(reranker.backend, "model", None),
        extra=extra() if extra is not None else None, first_error=failures[0][1] if failures else None)
    record.finish(summary.to_json(), copy_to=copy_to)
    if report:
        print(summary.format(), file=sys.stderr)
    return summary


class Progress:
    """A one-line progress display on stderr (only when enabled: on a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._last = 0.0

    def update(self, usage, elapsed: float) -> None:
        """Redraw at most ten times a second."""
        if not self.enabled or elapsed - self._last < 0.1:
            return
        self._last = elapsed
        rate = usage.queries / elapsed if elapsed else 0.0
        sys.stderr.write(f"\r{usage.queries} queries, {usage.calls} calls "
                         f"({usage.cache_hits} cached), {elapsed:.1f} s, {rate:.1f} queries/s ")
        sys.stderr.flush()

    def close(self) -> None:
        """End the progress line."""
        if self.enabled and self._last:
            sys.stderr.write("\n")


def public_settings(config) -> dict:
    """A reranker's settings as a run summary shows them: no credentials in its URL."""
    from dataclasses import asdict

    from .secrets import public_url

    settings = asdict(config)
    if settings.get("base_url"):
        settings["base_url"] = public_url(settings["base_url"])
    return settings


def backend_name(backend) -> str:
    """The registered name of a backend object (``openai``, ``llamacpp``, ``vllm``), else its class's."""
    from .backends import BACKENDS

    where = f"{type(backend).__module__}:{type(backend).__name__}"
    return next((name for name, path in BACKENDS.items() if path == where), type(backend).__name__)
