"""The batch driver's state file: the submissions made, saved whole after every step.

Beside the output (``OUT.jsonl.batch-state.json``) and named in the run record, so that
``--resume`` continues it and ``--force`` replaces it. It holds what the call cache cannot: which
lines were submitted in which batch, so that a driver killed at any moment resumes polling those
batches instead of paying for their lines again. Answers are not kept here: each is put in the
call cache as it is read, and a rerun replays the strategies from there. Saving writes a new file
and renames it over the old one, so a kill leaves either state whole.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError, InputError

#: What follows an output's name to name its state file.
STATE_SUFFIX = ".batch-state.json"
#: The statuses a batch ends with: its lines are answered, or failed for good in it.
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
#: Raised when the file's layout changes.
STATE_VERSION = 1


def state_path(output: str | os.PathLike) -> Path:
    """The state file beside an output: ``OUT.jsonl`` -> ``OUT.jsonl.batch-state.json``."""
    return Path(f"{output}{STATE_SUFFIX}")


@dataclass
class Submission:
    """One batch: its input file, its lines, and what the provider last said of it.

    Attributes
    ----------
    input_file : str
        The provider's id of the uploaded input file (for ``vllm``, its path).
    custom_ids : list of str
        Its lines, by ``custom_id``.
    batch_id : str or None
        None between the upload and the batch's creation (a kill there is recovered from by
        asking the provider for a batch of that input file).
    status : str
        The provider's status when last asked (``uploaded`` before the batch exists).
    output_file, error_file : str or None
        The files of the answered and of the failed lines, once it has ended.
    error : str or None
        Why the batch as a whole failed (a file refused by validation), when it did.
    """

    input_file: str
    custom_ids: list[str]
    batch_id: str | None = None
    status: str = "uploaded"
    output_file: str | None = None
    error_file: str | None = None
    error: str | None = None

    @property
    def ended(self) -> bool:
        """Whether the provider has ended it (completed, failed, expired or cancelled)."""
        return self.status in ENDED


@dataclass
class BatchState:
    """Every submission of a batch run, in order.

    Attributes
    ----------
    provider : str
        ``openai`` or ``vllm``.
    model : str
        The model the lines ask for: resuming with another is refused.
    token : str
        Names this run's files (a fresh run never meets an older run's files).
    submissions : list of Submission
    steps : int
        Driver steps done (submit, wait, read): the rounds the batches advanced.
    """

    provider: str
    model: str
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    submissions: list[Submission] = field(default_factory=list)
    steps: int = 0

    def __post_init__(self) -> None:
        self._by_id: dict[str, list[Submission]] = {}
        for submission in self.submissions:
            self._index(submission)

    def _index(self, submission: Submission) -> None:
        for custom_id in submission.custom_ids:
            self._by_id.setdefault(custom_id, []).append(submission)

    @property
    def batches(self) -> int:
        """Batches created (submissions whose batch exists)."""
        return sum(1 for submission in self.submissions if submission.batch_id is not None)

    def add(self, submission: Submission) -> None:
        """Record a new submission (its input file uploaded, its batch not yet created)."""
        self.submissions.append(submission)
        self._index(submission)

    def drop(self, submission: Submission) -> None:
        """Forget a submission whose batch was never created: its lines are submitted anew."""
        self.submissions.remove(submission)
        for custom_id in submission.custom_ids:
            self._by_id[custom_id].remove(submission)

    def of(self, custom_id: str) -> list[Submission]:
        """The submissions holding a line, oldest first."""
        return self._by_id.get(custom_id, [])

    def check(self, provider: str, model: str, path: Path) -> None:
        """Refuse to resume a run of another provider or model.

        Raises
        ------
        ConfigError
            When ``provider`` or ``model`` differ from the state's.
        """
        if (provider, model) != (self.provider, self.model):
            raise ConfigError(f"{path} holds the batches of --batch {self.provider} --model {self.model}, not "
                              f"--batch {provider} --model {model}: resume with those, or pass --force to start over")

    def save(self, path: str | os.PathLike) -> None:
        """Write the state to ``path`` atomically: a new file, flushed, renamed over the old one."""
        path = Path(path)
        document = {"version": STATE_VERSION, "provider": self.provider, "model": self.model, "token": self.token,
                    "steps": self.steps, "submissions": [asdict(s) for s in self.submissions]}
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(document, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BatchState | None":
        """The state saved at ``path``; None when the file is missing or empty (nothing submitted).

        Raises
        ------
        InputError
            When the file is not a state this driver wrote.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the batch state: {exc}", str(path)) from None
        if not text.strip():
            return None
        try:
            document = json.loads(text)
            if document.get("version") != STATE_VERSION:
                raise ValueError(f"version {document.get('version')!r}, not {STATE_VERSION}")
            return cls(str(document["provider"]), str(document["model"]), str(document["token"]),
                       [Submission(**entry) for entry in document["submissions"]], int(document["steps"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"not a batch state this tool wrote ({exc}); pass --force to start over",
                             str(path)) from None
