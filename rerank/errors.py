"""Errors a user can cause or meet, each printed by the CLI as one line with an exit code."""

from __future__ import annotations


class RerankError(Exception):
    """Base of the errors the CLI reports as one line instead of a traceback."""

    exit_code = 1


class InputError(RerankError):
    """A malformed input file: names the file, the line and the field at fault.

    Parameters
    ----------
    message : str
        What is wrong.
    path : str or None
        The file.
    line : int or None
        1-based line number.
    field : str or None
        The JSON field or column at fault.
    """

    exit_code = 2

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}{what}{self.message}"


class ConfigError(RerankError):
    """An invalid option or setting (unknown prompt or strategy, window <= step, ...)."""

    exit_code = 2


class BackendError(RerankError):
    """The LLM backend failed for good (after retries) or refused the request."""

    exit_code = 3
