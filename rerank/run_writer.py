"""One way to write a run: results streamed to their files, usage summed, the summary written.

``rerank run``, ``pipeline``, ``labels`` and each variant of ``rerank experiment`` write through
:func:`write_run`. Every line is written whole and flushed as its query finishes, the TREC run
(and SFT records) before the JSONL line, which is the record that a query is finished (see
:mod:`rerank.resume`). Queries whose backend failed for good are listed in the summary and left
out; Ctrl-C or SIGTERM ends the run with what is finished on disk, and :func:`run_outcome` says
how a run ended and gives the exit code. Progress is shown through :class:`rerank.progress.Progress`.
The module imports nothing heavy: writers and asyncio are imported when a run starts.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .progress import Progress, ProgressOptions
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


def open_writers(files: RunFiles, stack: ExitStack) -> list[Callable]:
    """The writers of ``files``, each called as ``write(result, example)``: the TREC run first,
    the JSONL output last. A result may also be a request (``rerank retrieve``)."""
    from .formats import RankLLMWriter, TrecRunWriter
    from .formats.writers import JsonLinesWriter

    writers = []
    if files.trec:
        trec = stack.enter_context(TrecRunWriter(files.trec, tag=files.tag, append=files.append))
        writers.append(lambda result, example: trec.write(result))
    if files.sft:
        sft = stack.enter_context(JsonLinesWriter(files.sft, append=files.append))
        writers.append(lambda result, example: sft.write(example.as_chat()))
    if files.output and files.examples:
        examples = stack.enter_context(JsonLinesWriter(files.output, append=files.append))
        writers.append(lambda result, example: examples.write(example.as_dict()))
    elif files.output:
        output = stack.enter_context(RankLLMWriter(files.output, append=files.append))
        writers.append(lambda result, example: output.write(result))
    return writers


async def write_run(reranker, results, files: RunFiles, record, *, already: int = 0,
                    settings: dict | None = None, copy_to: str | None = None,
                    progress: ProgressOptions | bool = False, total: int | None = None, label: str = "",
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
        Where the results go, opened once the reranker is prepared.
    record
        Takes the summary's JSON: an :class:`~rerank.outputs.Outputs` (the run record; its
        ``create()`` is called once the reranker is prepared) or a :class:`SummaryFile`.
    already : int
        Queries the outputs held before this run (``--resume``).
    settings : dict or None
        The settings to record; None takes the reranker's, without credentials.
    copy_to : str or None
        ``--summary-json``: also write the summary there.
    progress : ProgressOptions or bool
        How progress is shown on stderr while running (see :mod:`rerank.progress`): True shows
        it as the CLI does (a bar on a terminal, a line every 30 s elsewhere), False nothing.
    total : int or None
        Queries the input holds, ``already`` included (the progress total); None if unknown.
    label : str
        Names the run in its progress (an experiment's variant).
    report : bool
        Print the closing summary on stderr.
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
    options = progress if isinstance(progress, ProgressOptions) else ProgressOptions(enabled=bool(progress))
    shown = Progress()  # nothing is shown until the run starts
    entered = started = time.perf_counter()
    interrupted = False
    try:
        with ExitStack() as stack:
            await reranker.prepare()
            # Outputs appear only once the run can start (an Outputs made with create_later
            # checked their folders and refused existing files up front).
            create = getattr(record, "create", None)
            if create is not None:
                create()
            writers = open_writers(files, stack)
            # The run's time starts when the endpoint is checked and the tokenizer loaded.
            started = time.perf_counter()
            shown = options.start(total, label=label, initial=already)
            async for item in results(lambda request, error: failures.append((request.query.qid, str(error)))):
                result, example = item if files.examples else (item, None)
                for write in writers:
                    write(result, example)
                usage.add_result(result)
                if on_result is not None:
                    on_result(result, example)
                shown.track(usage)
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


def public_settings(config) -> dict:
    """A reranker's settings as a run summary shows them: no credentials in its URL, no
    secret-looking header values (:func:`~rerank.secrets.public_headers`)."""
    from dataclasses import asdict

    from .secrets import public_headers, public_url

    settings = asdict(config)
    if settings.get("base_url"):
        settings["base_url"] = public_url(settings["base_url"])
    if settings.get("headers"):
        settings["headers"] = public_headers(settings["headers"])
    return settings


def backend_name(backend) -> str:
    """The registered name of a backend object (``openai``, ``llamacpp``, ``vllm``), else its class's."""
    from .backends import BACKENDS

    where = f"{type(backend).__module__}:{type(backend).__name__}"
    return next((name for name, path in BACKENDS.items() if path == where), type(backend).__name__)


def run_outcome(summary: RunSummary, output: str, *, already: int = 0, resumed: bool = False) -> int:
    """Say on stderr how a run that did not finish ended, and give the command's exit code.

    Parameters
    ----------
    summary : RunSummary
        What :func:`write_run` returned.
    output : str
        The JSONL output (``-o``), named in the messages.
    already : int
        Queries the output held before this run (``--resume``).
    resumed : bool
        Whether this run was itself a ``--resume``.

    Returns
    -------
    int
        0 finished; 130 interrupted (Ctrl-C, SIGTERM); 3 when queries failed for good (they are
        listed; everything else is saved and ``--resume`` finishes just those).
    """
    again = "run the same command with --resume to finish" + ("" if resumed else " it")
    if summary.state == "interrupted":
        print(f"rerank: interrupted: {already + summary.queries} queries are in {output} "
              f"({summary.queries} this run); {again}", file=sys.stderr)
        return 130
    if summary.failed:
        failed = summary.failed
        shown = ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else "")
        print(f"rerank: error: {len(failed)} queries failed and are not in the output ({shown}): "
              f"{summary.first_error}; everything else is saved; {again}", file=sys.stderr)
        return 3
    return 0
