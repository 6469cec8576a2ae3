"""The columns of TREC runs and qrels: their count, integer columns and numeric columns.

Ids in columns are checked by :func:`~rerank.formats.fields.parse_id`, as in every reader.
"""

from __future__ import annotations

import math
import os
import re

from rerank.errors import BadLine
from rerank.formats.fields import quoted

#: The largest magnitude of a rank or grade: a C int, as trec_eval and pytrec_eval hold them.
MAX_INT_COLUMN = 2**31 - 1

_INT_COLUMN = re.compile(r"[+-]?[0-9]+")


def check_shape(columns: list[str], names: tuple[str, ...], path: str | os.PathLike,
                number: int) -> None:
    """Raise unless a line has one column per name.

    Parameters
    ----------
    columns : list of str
        The line's whitespace-separated columns.
    names : tuple of str
        The names of the columns the format has, e.g. :data:`~rerank.formats.trec.RUN_COLUMNS`.
    path, number
        The file and the 1-based line, named in the error.

    Raises
    ------
    BadLine
        When the count differs; the field is the first missing column, or the last one when
        there are too many.
    """
    if len(columns) == len(names):
        return
    field = names[len(columns)] if len(columns) < len(names) else names[-1]
    raise BadLine(f"expected {len(names)} whitespace-separated columns ({' '.join(names)}),"
                  f" found {len(columns)}", path, number, field)


def parse_int(text: str, path: str | os.PathLike, number: int, field: str) -> int:
    """Check an integer column (a rank, a grade).

    Parameters
    ----------
    text : str
        The column: ASCII digits with an optional sign, within :data:`MAX_INT_COLUMN`.
    path, number, field
        The file, the 1-based line and the column's name, named in the error.

    Returns
    -------
    int
        The integer.

    Raises
    ------
    BadLine
        When the column is not such an integer, or is out of range.
    """
    if not _INT_COLUMN.fullmatch(text):
        raise BadLine(f"expected an integer, got {quoted(text)}", path, number, field)
    # Bounding the length first keeps int() clear of its digit limit on a huge number.
    if len(text.lstrip("+-")) > len(str(MAX_INT_COLUMN)) or abs(int(text)) > MAX_INT_COLUMN:
        raise BadLine(f"{quoted(text)} is out of range: expected an integer of at most"
                      f" {MAX_INT_COLUMN} in magnitude", path, number, field)
    return int(text)


def parse_float(text: str, path: str | os.PathLike, number: int, field: str) -> float:
    """Check a numeric column (a score), which must be finite to be ranked.

    Parameters
    ----------
    text : str
        The column: an ASCII decimal or exponent number, no digit groups.
    path, number, field
        Where the column is (see :func:`parse_int`).

    Returns
    -------
    float
        The number.

    Raises
    ------
    BadLine
        When the column is not a number, is NaN, or is infinite or too large for a float.
    """
    try:
        # float() also takes digit groups ("1_0") and non-ASCII digits, which no TREC tool does.
        if not text.isascii() or "_" in text:
            raise ValueError
        value = float(text)
    except ValueError:
        raise BadLine(f"expected a number, got {quoted(text)}", path, number, field) from None
    if math.isnan(value):
        raise BadLine("NaN cannot be ranked", path, number, field)
    if math.isinf(value):
        raise BadLine(f"{quoted(text)} is infinite or too large for a float: a score must be a"
                      " finite number", path, number, field)
    return value
