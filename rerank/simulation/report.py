"""A simulation's table (terminal, Markdown, CSV) and its plots of quality against cost."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError
from ..evaluation.tables import format_csv, format_markdown, format_table
from .simulate import SimulationRow

FORMATS = ("terminal", "markdown", "csv")
COST_COLUMNS = ("calls", "rounds", "prompt_tokens", "answer_tokens")


def format_simulation(rows: Sequence[SimulationRow], fmt: str = "terminal") -> str:
    """One row per strategy and judge: ``strategy``, ``judge``, the measure (mean over seeds,
    ``± half-width`` of its 95% interval where several seeds ran), then ``calls``, ``rounds``,
    ``prompt_tokens`` and ``answer_tokens`` per query.

    CSV holds raw numbers, with the interval's half-width and the number of seeds in columns of
    their own (``nDCG@10_ci95``, ``seeds``).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: choose from {', '.join(FORMATS)}")
    if not rows:
        raise ConfigError("nothing to format: no simulated strategies")
    metric = rows[0].metric
    if fmt == "csv":
        header = ["strategy", "judge", metric, f"{metric}_ci95", "seeds", *COST_COLUMNS]
        return format_csv(header, [[r.strategy, r.judge, round(r.mean, 6), round(r.interval, 6), len(r.seeds),
                                    *(round(getattr(r, c), 3) for c in COST_COLUMNS)] for r in rows])
    header = ["strategy", "judge", metric, *COST_COLUMNS]
    table = [[r.strategy, r.judge, f"{r.mean:.4f}" + (f" ± {r.interval:.4f}" if len(r.seeds) > 1 else ""),
              f"{r.calls:,.1f}", f"{r.rounds:,.1f}", f"{r.prompt_tokens:,.0f}", f"{r.answer_tokens:,.0f}"]
             for r in rows]
    if fmt == "markdown":
        return format_markdown(header, table, [False, False] + [True] * 5) + "\n"
    return format_table(header, table) + "\n"


def plot_simulation(rows: Sequence[SimulationRow], folder: str | os.PathLike, fmt: str = "png") -> list[Path]:
    """``quality-vs-calls.png`` and ``quality-vs-rounds.png`` in ``folder`` (or ``.pdf``, ``.svg``
    for ``fmt``): a labelled point per strategy, a colour per judge. Returns the files written.

    Raises
    ------
    ConfigError
        When matplotlib is missing.
    """
    from ..evaluation.plots import plot_groups

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    metric = rows[0].metric
    written = []
    for cost, label in (("calls", "LLM calls per query"), ("rounds", "rounds per query (sequential depth)")):
        groups: dict[str, list] = {}
        for row in rows:
            groups.setdefault(row.judge, []).append((row.strategy, getattr(row, cost), row.mean))
        path = out / f"quality-vs-{cost}.{fmt}"
        plot_groups(groups, path, title=f"{metric} against {cost} per query (simulated)", xlabel=label, ylabel=metric)
        written.append(path)
    return written
