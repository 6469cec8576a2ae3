"""Errors a user can cause or meet, each printed by the CLI as one line with an exit code.

Exit codes
----------
======  =====================  =========================================================
code    class (``kind``)       meaning
======  =====================  =========================================================
0                              success
1       RerankError            any other reported failure
2       ConfigError            an invalid option or setting: unknown prompt, strategy,
                               format, metric or retriever; ``--window`` <= ``--step``;
                               a TREC run without ``--corpus``/``--queries`` (options, not
                               input lines, so they share argparse's usage code 2)
2       InputError ("input")   an input problem not classified below (e.g. a damaged run
                               summary or corpus index)
3       BackendError           the LLM backend failed for good or refused the request
10      InvalidJSON            not JSON (syntax error, truncated line, garbage), or JSON
                               of the wrong shape or type (not an object / list, an id
                               that is not a string or integer, a score that is not a
                               finite number or null (NaN, Infinity, ``1e999``), a
                               number too long to convert, an unrecognised file format)
11      MissingField           a required field is absent, e.g. ``query.text``,
                               ``query.qid``, ``candidates[3].doc``; an empty or blank
                               query text counts as missing
12      NoCandidates           a request with an empty candidate list
13      DuplicateId            one docid twice in one request (rejected, not
                               de-duplicated), or twice for a qid in a run, or twice in a
                               corpus; one qid twice in a queries file, or in two requests
                               of a rank_llm or RankGPT file (unless kept with
                               ``--keep-duplicate-qids``)
14      EmptyPassage           a candidate whose passage has no text and no title (only
                               whitespace)
15      NotUTF8                bytes that are not valid UTF-8
16      BadLine                a qrels, run or TSV line of the wrong shape: the wrong
                               number of columns, a rank or grade that is not an integer
                               (ASCII digits, within 32 bits), a score that is not a
                               finite number
17      UnreadableFile         the file is missing, a directory, or not readable
18      UnknownId              a qid of a run missing from the queries file, or a docid
                               missing from the corpus
19      InvalidText            a query text, passage or title holding a lone surrogate (a
                               ``\\ud800``-style JSON escape without its pair), which has
                               no UTF-8 form
20      InvalidId              a qid or docid that cannot be one column of a TREC run: it
                               holds whitespace (any, e.g. NBSP, ``\\x1c``, ``\\u2028``), a
                               control or format character (``\\x00``, ``\\u200b``,
                               ``\\ufeff``) or a lone surrogate, or is an integer of more
                               than 100 digits
======  =====================  =========================================================

Every :class:`InputError` subclass keeps the base class, so ``except InputError`` catches
them all; ``kind`` names the mistake in a stable, machine-readable way.
"""

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
    #: A stable name of the mistake; each subclass has its own.
    kind = "input"

    def __init_subclass__(cls, *, exit_code: int | None = None, kind: str | None = None,
                          **kwargs: object) -> None:
        """Give a subclass its own exit code and kind, as ``class X(InputError, exit_code=10)``.

        Parameters
        ----------
        exit_code : int or None
            The subclass's exit code; None keeps the parent's.
        kind : str or None
            The subclass's stable name of the mistake; None keeps the parent's.
        **kwargs
            Passed on to the parent's hook.
        """
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code
        if kind is not None:
            cls.kind = kind

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
            path = self.path
            if not path.isprintable():  # a newline or an undecodable byte in a file name
                path = path.encode("unicode_escape").decode("ascii")
            where = path + (f":{self.line}" if self.line is not None else "") + ": "
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}{what}{self.message}"


class InvalidJSON(InputError, exit_code=10, kind="invalid_json"):
    """Not JSON, or JSON of the wrong shape or type."""


class MissingField(InputError, exit_code=11, kind="missing_field"):
    """A required field is absent (or, for the query text, empty)."""


class NoCandidates(InputError, exit_code=12, kind="no_candidates"):
    """A request with no candidates."""


class DuplicateId(InputError, exit_code=13, kind="duplicate_id"):
    """A docid twice in one request, run query or corpus, or a qid twice in a queries or
    request file."""


class EmptyPassage(InputError, exit_code=14, kind="empty_passage"):
    """A candidate whose passage has neither text nor title."""


class NotUTF8(InputError, exit_code=15, kind="not_utf8"):
    """Bytes that are not valid UTF-8."""


class BadLine(InputError, exit_code=16, kind="bad_line"):
    """A qrels, run or TSV line of the wrong shape, or a column that is not a number."""


class UnreadableFile(InputError, exit_code=17, kind="unreadable_file"):
    """A file that cannot be opened: missing, a directory, no permission."""


class UnknownId(InputError, exit_code=18, kind="unknown_id"):
    """A run names a qid missing from the queries or a docid missing from the corpus."""


class InvalidText(InputError, exit_code=19, kind="invalid_text"):
    """A text (query, passage, title) with a lone surrogate, which has no UTF-8 form."""


class InvalidId(InputError, exit_code=20, kind="invalid_id"):
    """A qid or docid with whitespace, a control or format character or a lone surrogate, or
    an integer id too long to be sane."""


#: The input error classes by exit code.
INPUT_ERRORS = {cls.exit_code: cls for cls in (
    InvalidJSON, MissingField, NoCandidates, DuplicateId, EmptyPassage, NotUTF8, BadLine,
    UnreadableFile, UnknownId, InvalidText, InvalidId)}


class ConfigError(RerankError):
    """An invalid option or setting (unknown prompt or strategy, window <= step, ...)."""

    exit_code = 2


class BackendError(RerankError):
    """The LLM backend failed for good (after retries) or refused the request."""

    exit_code = 3


class ContextOverflow(BackendError):
    """The server refused a prompt as longer than the model's context (OpenAI's
    ``context_length_exceeded``); the reranker retries with shorter passages.

    Attributes
    ----------
    limit, actual : int or None
        The context length and the prompt's length in the server's tokens, when it said them.
    """

    def __init__(self, message: str, limit: int | None = None, actual: int | None = None):
        super().__init__(message)
        self.limit = limit
        self.actual = actual
