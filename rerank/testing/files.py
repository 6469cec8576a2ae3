"""The files of the judges' server, as OpenAI's Files API keeps them: in memory, by id.

Uploads (``purpose`` ``"batch"``, a ``.jsonl`` file) are the input files of batches; the server
writes each batch's output and error files here too (``purpose`` ``"batch_output"``).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from .protocol import BadRequest

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_FILE_BYTES = 512 << 20      # OpenAI's limit on one uploaded file


class NotFound(Exception):
    """An id that names no file or batch (HTTP 404); the message is OpenAI's."""


@dataclass(frozen=True)
class StoredFile:
    """A file: its OpenAI ``File`` object's fields and its content.

    Attributes
    ----------
    id, filename, purpose : str
    created_at : int
        Unix seconds.
    content : bytes
    """

    id: str
    filename: str
    purpose: str
    created_at: int
    content: bytes

    def card(self) -> dict:
        """The ``File`` object OpenAI answers (``openai.types.FileObject``)."""
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": None, "status_details": None}


class FileStore:
    """Files by id; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}

    def upload(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        """Store an uploaded file, checked as OpenAI checks it.

        Raises
        ------
        BadRequest
            An unknown ``purpose``, a batch file not named ``*.jsonl``, or a file over 512 MB.
        """
        if purpose not in PURPOSES:
            raise BadRequest(f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'", "purpose", "invalid_value")
        if purpose == "batch" and not filename.endswith(".jsonl"):
            raise BadRequest("Invalid file format for Batch API. Must be .jsonl", "file", "invalid_file_format")
        if len(content) > MAX_FILE_BYTES:
            raise BadRequest("File is too large: the maximum size is 512 MB.", "file", "file_too_large")
        return self.add(filename, purpose, content)

    def add(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        """Store a file without checks (the server's own output files)."""
        stored = StoredFile(f"file-{uuid.uuid4().hex[:24]}", filename, purpose, int(time.time()), content)
        with self._lock:
            self._files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        """The file ``file_id``; :class:`NotFound` when there is none."""
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise NotFound(f"No such File object: {file_id}")
        return stored

    def delete(self, file_id: str) -> None:
        """Forget the file ``file_id``; :class:`NotFound` when there is none."""
        with self._lock:
            if self._files.pop(file_id, None) is None:
                raise NotFound(f"No such File object: {file_id}")

    def all(self) -> list[StoredFile]:
        """Every file, oldest first."""
        with self._lock:
            return list(self._files.values())
