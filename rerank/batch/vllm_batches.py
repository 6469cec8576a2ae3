"""``vllm run-batch`` as a batch provider: input files written beside the output, the command
run as a subprocess (or printed, for the user to run on a GPU machine), its output file read.

A batch's id is the path of its output file. The command writes ``OUT.part`` first, renamed to
``OUT`` once it exits with status 0, so an output file is always whole; an output the user's own
run wrote (``--print-batch-command``) is taken as it is. ``$RERANK_VLLM`` replaces the ``vllm``
executable (e.g. ``"python -m vllm.entrypoints.cli.main"``, or a fake in tests).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from pathlib import Path

from ..backends.base import Capabilities
from ..errors import ConfigError
from .provider import BatchPending, BatchStatus

#: The environment variable naming the ``vllm`` executable (a command line, split by the shell's rules).
COMMAND_ENV = "RERANK_VLLM"
INPUT_SUFFIX, OUTPUT_SUFFIX, PART_SUFFIX = ".input.jsonl", ".output.jsonl", ".part"


class VLLMRunBatch:
    """Batches run by ``vllm run-batch -i IN -o OUT --model MODEL``.

    Parameters
    ----------
    folder : Path
        Where the input and output files go (``OUT.jsonl.batch/``).
    model : str
        ``--model``: the model folder or name vLLM loads.
    print_only : bool
        Print each command for the user to run, and stop (:class:`BatchPending`), instead of
        running it.
    """

    provider = "vllm"
    max_requests: int | None = None
    max_bytes: int | None = None
    poll_interval = 1.0  # a local process: looking costs nothing
    # What `vllm serve` lists of itself: it constrains answers by default (structured outputs)
    # and returns log-probabilities and reasoning; its context is --context-size's.
    capabilities = Capabilities(constrain=True, constrain_by_default=True, logprobs=True, reasoning=True)

    def __init__(self, folder: Path, model: str, print_only: bool = False):
        self.folder = Path(folder)
        self.model = model
        self.print_only = print_only
        self.executable = shlex.split(os.environ.get(COMMAND_ENV) or "vllm")
        if not self.executable:
            raise ConfigError(f"${COMMAND_ENV} names no command")
        self._running: dict[str, asyncio.subprocess.Process] = {}

    def command(self, input_file: str, output_file: str) -> list[str]:
        """The command line that runs one batch."""
        return [*self.executable, "run-batch", "-i", input_file, "-o", output_file, "--model", self.model]

    async def upload(self, name: str, content: bytes) -> str:
        """Write the input file into :attr:`folder` (whole, or not at all); its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}{INPUT_SUFFIX}"
        partial = path.with_name(path.name + PART_SUFFIX)
        partial.write_bytes(content)
        os.replace(partial, path)
        return str(path)

    @staticmethod
    def _output(input_file: str) -> str:
        return input_file.removesuffix(INPUT_SUFFIX) + OUTPUT_SUFFIX

    async def create(self, input_file: str) -> str:
        """Run the command on ``input_file`` (or print it, and stop); the output's path."""
        output = self._output(input_file)
        if self.print_only:
            self._pending(input_file, output)
        await self._start(input_file, output)
        return output

    def _pending(self, input_file: str, output: str):
        print(shlex.join(self.command(input_file, output)), flush=True)
        raise BatchPending(f"the batch's input is in {input_file}: run the command above on a machine with "
                           f"the GPU (it writes {output}), then run this command again with --resume")

    async def _start(self, input_file: str, output: str) -> None:
        command = self.command(input_file, output + PART_SUFFIX)
        try:
            # vLLM's log goes to stderr with ours; stdout is left to rerank.
            self._running[output] = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=sys.stderr.fileno())
        except OSError as exc:
            raise ConfigError(f"cannot run {shlex.join(command[:2])}: {exc.strerror or exc}; install vLLM "
                              f"(pip install vllm), set ${COMMAND_ENV}, or pass --print-batch-command to run it "
                              "yourself") from None

    async def find(self, input_file: str) -> str | None:
        """The output of ``input_file`` when it exists (written before a kill, or by the user)."""
        output = self._output(input_file)
        return output if os.path.exists(output) else None

    async def status(self, batch_id: str) -> BatchStatus:
        """Running, or ended: ``completed`` with its output, ``failed`` with the exit status. A
        batch of an earlier run without its output is run again (or its command printed)."""
        process = self._running.get(batch_id)
        if process is None:
            if os.path.exists(batch_id):
                return BatchStatus("completed", batch_id)
            input_file = batch_id.removesuffix(OUTPUT_SUFFIX) + INPUT_SUFFIX
            if self.print_only:
                self._pending(input_file, batch_id)
            await self._start(input_file, batch_id)
            return BatchStatus("in_progress")
        if process.returncode is None:
            return BatchStatus("in_progress")
        del self._running[batch_id]
        partial = batch_id + PART_SUFFIX
        if process.returncode == 0 and os.path.exists(partial):
            os.replace(partial, batch_id)
            return BatchStatus("completed", batch_id)
        return BatchStatus("failed", error=f"{shlex.join(self.executable)} run-batch exited with status "
                                           f"{process.returncode} (its log is above)")

    async def download(self, file_id: str) -> bytes:
        """The output file's content."""
        return Path(file_id).read_bytes()

    async def aclose(self) -> None:
        """Stop the commands still running (an interrupted run: ``--resume`` runs them again)."""
        for process in self._running.values():
            if process.returncode is None:
                process.terminate()
                await process.wait()
        self._running.clear()
