"""The batch driver: every active query's strategy advanced round by round, each round's calls
sent as one batch.

Each query runs its strategy's rounds as the online runner does, with the runner's own parts
(:meth:`~rerank.runner.Runner.call` builds a window's call, :meth:`~rerank.runner.Runner.read`
reads its answer): a call answered by the call cache goes on at once; any other becomes a line
of the next batch, under a ``custom_id`` that is its cache key. When no query can go on
(:class:`~rerank.batch.activity.Activity`), the lines are submitted, split at the provider's
limits, the batches polled every ``poll_interval`` seconds, their output and error files read,
and each answer put in the call cache exactly as an online call's (through
:meth:`~rerank.cached_calls.CachedCalls.complete`, which also claims each key, so another
process sharing the cache does not pay for it meanwhile) and given to its query. Lines that
failed or expired go into the next submission, until ``max_attempts`` submissions failed them:
their queries fail then, and are reported as online failures are.

The state file (:mod:`rerank.batch.state`) is saved after every step: an input file uploaded,
a batch created, a status changed. Rerun after a kill, the driver replays the strategies from
the cache, finds the lines it waits for in the batches it submitted, and polls those instead
of submitting them again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import AsyncIterator, Callable, Iterable

from ..backends.base import Completion
from ..backends.openai_answers import MalformedResponse, read_completion
from ..cached_calls import Answer as CachedAnswer
from ..errors import BackendError
from ..strategies import Window
from ..types import Request, Result
from .activity import Activity
from .lines import LineResult, read_results, request_line, split_lines
from .provider import Submitter
from .state import BatchState, Submission

_LOG = logging.getLogger("rerank")


@dataclass(slots=True)
class _Line:
    """A call waiting for its answer from a batch."""

    custom_id: str
    messages: list[dict]
    body: dict
    future: asyncio.Future


@dataclass(slots=True)
class _Shared:
    """A call that windows of other queries ask too: they wait for its outcome."""

    outcome: asyncio.Future
    followers: int = 0


class BatchDriver:
    """Runs a reranker's queries through a batch provider; what :func:`~rerank.run_writer.write_run`
    drives in place of the reranker.

    Parameters
    ----------
    reranker : Reranker
        Its runner builds and reads the calls, its cache keeps the answers; its backend (an
        OpenAI-compatible one) writes the request bodies and reads the answers.
    submitter : Submitter
        The provider.
    state_file : Path
        Where the state is saved after every step.
    state : BatchState
        The state to continue (a new one, or the one saved by an earlier run).
    poll_interval : float or None
        Seconds between looks at running batches (None: the provider's default).
    max_attempts : int or None
        Submissions of one line before its query fails (None: ``--max-attempts``).
    report : callable or None
        Called with a line of news (a batch submitted, a batch ended).
    """

    def __init__(self, reranker, submitter: Submitter, state_file: Path, state: BatchState,
                 poll_interval: float | None = None, max_attempts: int | None = None,
                 report: Callable[[str], None] | None = None):
        self.reranker = reranker
        self.submitter = submitter
        self.state_file = Path(state_file)
        self.state = state
        self.poll_interval = submitter.poll_interval if poll_interval is None else poll_interval
        self.max_attempts = reranker.config.max_attempts if max_attempts is None else max_attempts
        self.report = report or (lambda line: None)
        self._activity: Activity | None = None
        self._pending: dict[str, _Line] = {}
        self._shared: dict[str, _Shared] = {}
        self._downloaded: dict[str, dict[str, LineResult]] = {}
        # Per line: how many of its first submissions this run has read it in (all but its last
        # have ended: a line is never submitted while in a batch still running), and why it failed.
        self._checked: dict[str, int] = {}
        self._errors: dict[str, str] = {}

    @property
    def config(self):
        """The reranker's configuration (for the summary's settings)."""
        return self.reranker.config

    @property
    def backend(self):
        """The reranker's backend (for the summary's backend name)."""
        return self.reranker.backend

    async def prepare(self) -> None:
        """Prepare the reranker: the cache opened; the endpoint checked where there is one."""
        await self.reranker.prepare(self.submitter.capabilities)

    async def aclose(self) -> None:
        """Close the reranker (its cache writes finished) and the provider's client."""
        try:
            await self.reranker.aclose()
        finally:
            await self.submitter.aclose()

    def summary(self) -> dict:
        """The summary's batch keys: ``batches`` (submissions, all runs of these outputs
        together) and ``batch_provider``."""
        return {"batches": self.state.batches, "batch_provider": self.submitter.provider}

    def results(self, requests: Iterable[Request]) -> Callable[..., AsyncIterator[Result]]:
        """The stream :func:`~rerank.run_writer.write_run` takes: ``results(on_error)`` yields the
        results in input order; a query whose lines failed for good goes to ``on_error``."""
        return lambda on_error: self._results(list(requests), on_error)

    async def _results(self, requests: list[Request], on_error) -> AsyncIterator[Result]:
        self._activity = Activity()
        tasks = []
        for request in requests:
            self._activity.enter()
            tasks.append(asyncio.ensure_future(self._query(request)))
        driving = asyncio.ensure_future(self._drive())
        try:
            for request, task in zip(requests, tasks):
                await asyncio.wait([task, driving], return_when=asyncio.FIRST_COMPLETED)
                if not task.done():
                    driving.result()  # the driver's failure (a provider's error), raised here
                    raise RuntimeError("batch driver: ended with queries still waiting")
                try:
                    result = task.result()
                except BackendError as error:
                    on_error(request, error)
                    continue
                yield result
            await driving
        finally:
            for task in (*tasks, driving):
                task.cancel()
            await asyncio.gather(*tasks, driving, return_exceptions=True)

    # -- a query ------------------------------------------------------------------------------

    async def _query(self, request: Request) -> Result:
        """One query's rounds; counted in the activity from its creation to its end."""
        try:
            return await self.reranker.runner.rerank(request, self._round)
        finally:
            self._activity.leave()

    async def _round(self, prompts, windows: list[Window], round_number: int, records: list, qid: str) -> list:
        """A round's windows at once; the query waits (uncounted) while they run."""
        tasks = []
        for window in windows:
            self._activity.enter()
            tasks.append(asyncio.ensure_future(self._window(prompts, window, round_number, records, qid)))
        self._activity.leave()
        answers = await asyncio.gather(*tasks, return_exceptions=True)
        # Every window ended counted: the query goes on in their place.
        self._activity.enter()
        self._activity.leave(len(tasks))
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return answers

    async def _window(self, prompts, window: Window, round_number: int, records: list, qid: str):
        """Build one window's call, get its answer (cache, identical call, or batch), read it."""
        runner = self.reranker.runner
        call = await runner.call(prompts, window)
        got = await self._answer(runner.calls.key(call.messages, call.ask), call)
        return runner.read(call, got, round_number, records, qid, len(window))

    async def _answer(self, key: str, call) -> CachedAnswer:
        shared = self._shared.get(key)
        if shared is not None:  # asked by another window meanwhile: its answer, paid once
            shared.followers += 1
            self._activity.leave()
            completion = await shared.outcome
            return CachedAnswer(replace(completion, latency=0.0, attempts=0), True)
        shared = self._shared[key] = _Shared(asyncio.get_running_loop().create_future())
        try:
            got = await self.reranker.cached_calls.complete(key, lambda: self._line(key, call), call.kind.cacheable)
        except BaseException as exc:
            self._share(key, shared, exception=exc)
            raise
        self._share(key, shared, completion=got.completion)
        return got

    def _share(self, key: str, shared: _Shared, completion: Completion | None = None,
               exception: BaseException | None = None) -> None:
        del self._shared[key]
        if not shared.followers:
            return
        self._activity.enter(shared.followers)
        if isinstance(exception, asyncio.CancelledError):
            shared.outcome.cancel()
        elif exception is not None:
            shared.outcome.set_exception(exception)
        else:
            shared.outcome.set_result(completion)

    async def _line(self, key: str, call) -> Completion:
        """Wait for the call's answer from a batch (the cache had none)."""
        body = self.reranker.backend.request_body(call.messages, call.ask.params, call.ask.constraint)
        line = self._pending[key] = _Line(key, call.messages, body, asyncio.get_running_loop().create_future())
        self._activity.leave()
        return await line.future

    # -- the batches --------------------------------------------------------------------------

    async def _drive(self) -> None:
        """Submit, wait, read, whenever every query waits; until none is left."""
        await self._recover()
        while True:
            await self._activity.idle()
            if not self._pending:
                return
            await self._step()

    async def _recover(self) -> None:
        """Find the batches of input files uploaded by a killed run that did not record them."""
        for submission in list(self.state.submissions):
            if submission.batch_id is None:
                submission.batch_id = await self.submitter.find(submission.input_file)
                if submission.batch_id is None:
                    self.state.drop(submission)
                else:
                    submission.status = "validating"
                self._save()

    async def _step(self) -> None:
        """Answer every pending line: from batches already ended (a resumed run), else from a new
        submission or the batches holding them; failed lines stay for the next step."""
        # Lines in batches that ended before this run read them there (a resumed run).
        await self._settle([line for line in self._pending.values() if self._unread(line.custom_id)])
        fresh = [line for line in self._pending.values() if self._fresh(line.custom_id)]
        if fresh:
            await self._submit(fresh)
        waiting = list(self._pending.values())
        live = {id(s): s for line in waiting for s in self.state.of(line.custom_id)[-1:] if not s.ended}
        await self._wait(list(live.values()))
        await self._settle(waiting)
        self.state.steps += 1
        self._save()
        self._downloaded.clear()

    def _unread(self, custom_id: str) -> list[Submission]:
        """The line's ended submissions this run has not read it in, oldest first."""
        return [s for s in self.state.of(custom_id)[self._checked.get(custom_id, 0):] if s.ended]

    def _fresh(self, custom_id: str) -> bool:
        """Whether the line is to be submitted: never was, or failed in every submission."""
        submissions = self.state.of(custom_id)
        return not submissions or (submissions[-1].ended and self._checked.get(custom_id, 0) == len(submissions))

    async def _submit(self, lines: list[_Line]) -> None:
        encoded = [request_line(line.custom_id, line.body) for line in lines]
        for part in split_lines(encoded, self.submitter.max_requests, self.submitter.max_bytes):
            name = f"rerank-{self.state.token}-{len(self.state.submissions):04d}"
            input_file = await self.submitter.upload(name, b"".join(encoded[i] for i in part))
            submission = Submission(input_file, [lines[i].custom_id for i in part])
            self.state.add(submission)
            self._save()  # killed before the batch is recorded: _recover finds it
            submission.batch_id = await self.submitter.create(input_file)
            submission.status = "validating"
            self._save()
            self.report(f"batch {self.state.batches} submitted: {len(part)} calls ({submission.batch_id})")

    async def _wait(self, submissions: list[Submission]) -> None:
        """Poll until every one of ``submissions`` has ended, saving each change."""
        while True:
            for submission in submissions:
                if submission.ended:
                    continue
                status = await self.submitter.status(submission.batch_id)
                if status.status != submission.status:
                    submission.status = status.status
                    submission.output_file, submission.error_file = status.output_file, status.error_file
                    submission.error = status.error
                    self._save()
                    if submission.ended:
                        self.report(f"batch {submission.batch_id} {submission.status}"
                                    + (f": {submission.error}" if submission.error else ""))
            if all(submission.ended for submission in submissions):
                return
            await asyncio.sleep(self.poll_interval)

    async def _settle(self, lines: list[_Line]) -> None:
        """Give each line its answer from the ended batches holding it; fail it once it failed in
        ``max_attempts`` submissions; else leave it for the next submission."""
        for line in lines:
            if self._pending.get(line.custom_id) is not line:
                continue
            custom_id = line.custom_id
            unread = self._unread(custom_id)
            error = None
            for submission in reversed(unread):  # the newest answer first
                result = (await self._outcomes(submission)).get(custom_id)
                if result is not None and result.body is not None:
                    try:
                        completion = self.reranker.backend.completion(read_completion(result.body), line.messages)
                    except MalformedResponse as exc:
                        error = error or f"malformed answer: {exc}"
                        continue
                    self._resolve(line, completion)
                    break
                error = error or (result.error if result is not None else submission.error or
                                  f"batch {submission.batch_id} {submission.status} without it")
            else:
                self._errors[custom_id] = error or self._errors.get(custom_id, "")
                self._checked[custom_id] = self._checked.get(custom_id, 0) + len(unread)
                submissions = self.state.of(custom_id)
                if self._fresh(custom_id) and len(submissions) >= self.max_attempts:
                    self._resolve(line, error=BackendError(
                        f"batch line {custom_id[:16]} failed in {len(submissions)} submissions: "
                        f"{self._errors.get(custom_id)}"))

    async def _outcomes(self, submission: Submission) -> dict[str, LineResult]:
        """The lines of an ended batch's output and error files, downloaded once a step."""
        found = self._downloaded.get(submission.batch_id)
        if found is None:
            found = {}
            for file_id in (submission.error_file, submission.output_file):  # answers win
                if file_id:
                    found.update(read_results(await self.submitter.download(file_id)))
            self._downloaded[submission.batch_id] = found
        return found

    def _resolve(self, line: _Line, completion: Completion | None = None, error: BackendError | None = None) -> None:
        del self._pending[line.custom_id]
        self._checked.pop(line.custom_id, None)
        self._errors.pop(line.custom_id, None)
        if line.future.done():  # its query was cancelled
            return
        self._activity.enter()
        if error is not None:
            line.future.set_exception(error)
        else:
            line.future.set_result(completion)

    def _save(self) -> None:
        self.state.save(self.state_file)
