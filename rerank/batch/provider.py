"""What the batch driver needs of a batch provider (OpenAI's Batch API, ``vllm run-batch``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..backends.base import Capabilities
from ..errors import RerankError


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """A batch as its provider describes it now.

    Attributes
    ----------
    status : str
        OpenAI's statuses: ``validating``, ``in_progress``, ``finalizing``, ``cancelling``, and
        the ended ``completed``, ``failed``, ``expired``, ``cancelled``.
    output_file, error_file : str or None
        The files of its answered and failed lines, once there are any.
    error : str or None
        Why the whole batch failed, when it did.
    """

    status: str
    output_file: str | None = None
    error_file: str | None = None
    error: str | None = None


class BatchPending(RerankError):
    """The batch's input is written and its command printed for the user to run (``--batch vllm
    --print-batch-command``): the run stops here, to be continued with ``--resume``."""

    exit_code = 0


class Submitter(Protocol):
    """A batch provider, as the driver uses it.

    Attributes
    ----------
    provider : str
        ``openai`` or ``vllm``: the summary's ``batch_provider``.
    max_requests, max_bytes : int or None
        The most lines and bytes of one input file.
    poll_interval : float
        Seconds between two looks at a running batch, unless ``--poll-interval`` says otherwise.
    capabilities : Capabilities or None
        What the model behind can do, when no endpoint can be asked online (None: ask it).
    """

    provider: str
    max_requests: int | None
    max_bytes: int | None
    poll_interval: float
    capabilities: Capabilities | None

    async def upload(self, name: str, content: bytes) -> str:
        """Store an input file; its id."""

    async def create(self, input_file: str) -> str:
        """Start a batch of an uploaded input file; its id."""

    async def find(self, input_file: str) -> str | None:
        """The batch already created from ``input_file`` (by a run killed before it saved the
        batch's id), or None."""

    async def status(self, batch_id: str) -> BatchStatus:
        """What the batch is doing now."""

    async def download(self, file_id: str) -> bytes:
        """The content of an output or error file."""

    async def aclose(self) -> None:
        """Release connections and processes."""
