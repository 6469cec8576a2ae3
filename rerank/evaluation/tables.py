"""Tables: the aligned text of ``rerank eval`` and the comparison of ``rerank compare``.

:func:`format_table` aligns plain-text columns; :func:`format_evaluation` is ``rerank eval``'s
table; :func:`format_comparison` writes a comparison's rows for a terminal, Markdown, CSV or
LaTeX.
"""

from __future__ import annotations

import csv
import io
import textwrap
from typing import TYPE_CHECKING, Sequence

from ..errors import ConfigError

if TYPE_CHECKING:
    from .compare import SystemRow
    from .metrics import Evaluation

FORMATS = ("terminal", "markdown", "csv", "latex")

# Cost columns: key of SystemRow.costs, header, number format.
_COST_COLUMNS = (
    ("calls", "calls", "{:,.0f}"),
    ("batches", "batches", "{:,.0f}"),
    ("rounds_per_query", "rounds/q", "{:,.1f}"),
    ("prompt_tokens_per_query", "prompt tok/q", "{:,.0f}"),
    ("completion_tokens_per_query", "compl tok/q", "{:,.0f}"),
    ("reasoning_tokens_per_query", "reason tok/q", "{:,.0f}"),
    ("cache_hits", "cache hits", "{:,.0f}"),
    ("wall_seconds", "wall s", "{:,.1f}"),
    ("latency_per_query", "latency/q s", "{:,.2f}"),
    ("parse_repaired", "repaired", "{:,.0f}"),
    ("parse_unparseable", "unparseable", "{:,.0f}"),
    ("price", "$", "{:,.4f}"),
    ("price_per_query", "$/q", "{:,.5f}"),
)


#: The widest a terminal table may be; CSV, Markdown and LaTeX keep every column.
TERMINAL_WIDTH = 120
# Terminal columns left out, in this order, until the table fits (the least read first);
# a column of counts is dropped only while it holds nothing but zeros.
_DROP_TO_FIT = (("latency/q s", False), ("cache hits", False), ("wall s", False), ("$", False),
                ("repaired", True), ("unparseable", True), ("compl/q", False), ("batches", False),
                ("reason/q", False), ("rounds/q", False), ("p(t)", False))
# Shorter headings in a terminal table (the legend names the measure of the tests).
_TERMINAL_TITLES = {"prompt tok/q": "prompt/q", "compl tok/q": "compl/q", "reason tok/q": "reason/q"}

# Shown even when zero everywhere.
_ALWAYS = {"calls", "prompt_tokens_per_query", "completion_tokens_per_query", "cache_hits", "wall_seconds",
           "latency_per_query", "parse_repaired", "parse_unparseable", "price", "price_per_query"}


def _marker(p: float | None) -> str:
    """``**`` below 0.01, ``*`` below 0.05, else nothing."""
    if p is None:
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def _format_p(p: float | None) -> str:
    """A p-value with four decimals, ``<0.0001`` below that."""
    if p is None:
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _table(rows: Sequence[SystemRow], metrics: Sequence[str], raw: bool,
           markers: bool = True) -> tuple[list[str], list[list], list[bool]]:
    """Header, cells and which columns are numeric: raw numbers for CSV, display strings else."""
    first = metrics[0]
    with_costs = any(row.costs for row in rows)
    with_price = any(row.costs and row.costs.get("price") is not None for row in rows)
    # Columns that no system fills are left out: prices without --price, reasoning without
    # reasoning models, rounds of summaries written before rounds were recorded.
    cost_columns = [c for c in _COST_COLUMNS
                    if any(row.costs and row.costs.get(c[0]) for row in rows) or
                    (c[0] in _ALWAYS and not c[0].startswith("price")) or (with_price and c[0].startswith("price"))]
    header = ["system", *metrics, f"p(t) {first}", f"p(rand) {first}", "W/T/L"]
    if raw:
        header = ["system", *metrics, f"p_t {first}", f"p_rand {first}", "wins", "ties", "losses"]
    if with_costs:
        header += [key if raw else title for key, title, _ in cost_columns]
    table = []
    for row in rows:
        cells: list = [row.name]
        for metric in metrics:
            value = row.values.get(metric)
            if raw:
                cells.append(value)
            else:
                mark = _marker(row.p_rand[metric]) if row.p_rand and markers else ""
                cells.append(("" if value is None else f"{value:.4f}") + mark)
        p_t = None if row.p_t is None else row.p_t[first]
        p_rand = None if row.p_rand is None else row.p_rand[first]
        if raw:
            cells += [p_t, p_rand, row.wins, row.ties, row.losses]
        else:
            cells += [_format_p(p_t), _format_p(p_rand), f"{row.wins}/{row.ties}/{row.losses}"]
        if with_costs:
            for key, _, number in cost_columns:
                value = row.costs.get(key) if row.costs else None
                cells.append(value if raw else "" if value is None else number.format(value))
        table.append(cells)
    numeric = [False] + [True] * (len(header) - 1)
    return header, table, numeric


def _legend(rows: Sequence[SystemRow], metrics: Sequence[str]) -> str:
    """The line under a terminal or Markdown table explaining markers and corrections."""
    base = rows[0].name if rows else "?"
    others = max(len(rows) - 1, 1)
    return (f"* p < 0.05, ** p < 0.01 against the baseline {base} (paired randomization test); "
            f"p(t) paired t-test and p(rand) randomization test on {metrics[0]}; p-values Holm-corrected "
            f"across {others} system{'s' if others > 1 else ''}; W/T/L: queries won/tied/lost on {metrics[0]}."
            + (" Runs with batches went through a batch API: priced at its rate (OpenAI's: half)."
               if any(row.costs and row.costs.get("batches") for row in rows) else ""))


def _latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in a cell."""
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
                    "<": r"$<$", ">": r"$>$"}
    return "".join(replacements.get(char, char) for char in text)


def format_comparison(rows: Sequence[SystemRow], fmt: str = "terminal",
                      metrics: Sequence[str] | None = None) -> str:
    """The comparison as a table.

    Parameters
    ----------
    rows : sequence of SystemRow
        From :func:`compare_runs`, the baseline first.
    fmt : str
        ``"terminal"`` (aligned text), ``"markdown"`` (a GitHub table), ``"csv"`` (raw numbers,
        no markers) or ``"latex"`` (a booktabs ``tabular``).
    metrics : sequence of str or None
        The measures to show, in order; None shows those of the first row.

    Returns
    -------
    str
        The table: one row per system, the measures (marked ``*`` for p < 0.05 and ``**`` for
        p < 0.01 by the Holm-adjusted randomization test), the p-values of both tests and
        wins/ties/losses on the first measure, and the cost columns when any run has a
        summary. Terminal and Markdown tables end with a legend line.

    Raises
    ------
    ConfigError
        For an unknown format, no rows, or a measure the rows do not hold.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown comparison format '{fmt}' (choose from {', '.join(FORMATS)})")
    if not rows:
        raise ConfigError("nothing to format: no systems")
    metrics = tuple(rows[0].values) if metrics is None else tuple(metrics)
    unknown = [m for m in metrics if any(m not in row.values for row in rows)]
    if not metrics or unknown:
        raise ConfigError(f"the comparison does not hold the metric(s) {', '.join(unknown) or '(none)'}")
    if fmt == "csv":
        header, table, _ = _table(rows, metrics, raw=True)
        return format_csv(header, table)
    header, table, numeric = _table(rows, metrics, raw=False, markers=fmt != "latex")
    if fmt == "terminal":
        short = {f"p(t) {metrics[0]}": "p(t)", f"p(rand) {metrics[0]}": "p(rand)", **_TERMINAL_TITLES}
        header, table, dropped = fit_columns([short.get(h, h) for h in header], table, TERMINAL_WIDTH)
        note = (f" Left out to fit {TERMINAL_WIDTH} columns: {', '.join(dropped)} (--format csv has every column)."
                if dropped else "")
        return format_table(header, table) + "\n\n" + textwrap.fill(_legend(rows, metrics) + note, TERMINAL_WIDTH) + "\n"
    if fmt == "markdown":
        legend = _legend(rows, metrics).replace("*", r"\*")
        return format_markdown(header, table, numeric) + "\n\n" + legend + "\n"
    return _latex(rows, metrics, header, table, numeric)


def _latex(rows: Sequence[SystemRow], metrics: Sequence[str], header: list[str],
           table: list[list[str]], numeric: list[bool]) -> str:
    """A booktabs tabular with ``$^{*}$`` markers."""
    spec = "".join("r" if is_number else "l" for is_number in numeric)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_latex_escape(cell) for cell in header) + r" \\", r"\midrule"]
    for row, cells in zip(rows, table):
        escaped = [_latex_escape(cell) for cell in cells]
        for offset, metric in enumerate(metrics, start=1):
            mark = _marker(row.p_rand[metric]) if row.p_rand else ""
            if mark:
                escaped[offset] += f"$^{{{mark}}}$"
        lines.append(" & ".join(escaped) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def format_markdown(header: list[str], rows: list[list[str]], numeric: Sequence[bool]) -> str:
    """A GitHub table: numeric columns right-aligned; ``|`` and ``*`` in cells escaped."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if is_number else "---" for is_number in numeric) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", r"\|").replace("*", r"\*") for cell in row) + " |"
              for row in rows]
    return "\n".join(lines)


def format_csv(header: list[str], rows: list[list]) -> str:
    """CSV with a header line; None cells empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if cell is None else cell for cell in row] for row in rows])
    return buffer.getvalue()


def fit_columns(header: list[str], rows: list[list[str]], width: int) -> tuple[list[str], list[list[str]], list[str]]:
    """Leave out the least read columns of a terminal comparison until it is at most ``width``
    characters wide.

    Returns
    -------
    header, rows, dropped
        The table without the columns left out, and their headings in the order dropped.
    """
    dropped = []
    for title, only_zeros in _DROP_TO_FIT:
        if max(map(len, format_table(header, rows).splitlines())) <= width:
            break
        if title not in header:
            continue
        index = header.index(title)
        if only_zeros and any(str(row[index]).strip() not in ("", "0") for row in rows):
            continue
        header = header[:index] + header[index + 1:]
        rows = [row[:index] + row[index + 1:] for row in rows]
        dropped.append(title)
    return header, rows, dropped


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """An aligned plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_evaluation(result: "Evaluation", per_query: bool = False) -> str:
    """``rerank eval``'s table: each metric's mean, or one row per query (natural order) then the mean."""
    metrics = list(result.metrics)
    if per_query:
        rows = [[qid] + [f"{result.per_query[qid].get(m, 0.0):.4f}" for m in metrics]
                for qid in sorted(result.per_query, key=_natural_key)]
        rows.append(["all"] + [f"{result.aggregate[m]:.4f}" for m in metrics])
        return format_table(["qid"] + metrics, rows)
    return format_table(["metric", "value"], [[m, f"{result.aggregate[m]:.4f}"] for m in metrics])


def _natural_key(qid: str):
    return (0, int(qid), "") if qid.isdigit() else (1, 0, qid)
