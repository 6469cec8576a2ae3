"""Figures of a comparison, written as PNG files (needs the ``plots`` extra: matplotlib).

matplotlib is imported inside each function, and figures are drawn on an Agg canvas of their
own, so nothing here touches pyplot or the global backend.
"""

from __future__ import annotations

import os
from typing import Sequence

from ..errors import ConfigError


def _figure(width: float, height: float):
    """A matplotlib Figure on its own Agg canvas, or a ConfigError when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'rerank[plots]'") from None
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_per_query_differences(baseline_values: dict[str, float], system_values: dict[str, float],
                               path: str | os.PathLike, title: str = "nDCG@10 difference per query",
                               ) -> None:
    """Bars of the per-query differences (system - baseline), sorted, as a PNG.

    Parameters
    ----------
    baseline_values : dict
        qid -> score of the baseline (for instance nDCG@10).
    system_values : dict
        qid -> score of the system; only the qids of both are drawn.
    path : str or path-like
        The PNG file to write.
    title : str
        The figure's title.

    Raises
    ------
    ConfigError
        When matplotlib is missing or the two share no qid.
    """
    qids = [qid for qid in baseline_values if qid in system_values]
    if not qids:
        raise ConfigError("no query is scored for both systems: nothing to plot")
    diffs = sorted(system_values[qid] - baseline_values[qid] for qid in qids)
    figure = _figure(max(6.0, min(16.0, 0.15 * len(diffs) + 2)), 4.0)
    axes = figure.add_subplot()
    colors = ["tab:green" if d > 0 else "tab:red" if d < 0 else "tab:gray" for d in diffs]
    axes.bar(range(len(diffs)), diffs, color=colors, width=0.8)
    axes.axhline(0.0, color="black", linewidth=0.8)
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    axes.set_title(title)
    axes.set_xlabel(f"queries, sorted ({wins} better, {len(diffs) - wins - losses} equal, {losses} worse)")
    axes.set_ylabel("system - baseline")
    axes.set_xticks([])
    figure.tight_layout()
    figure.savefig(os.fspath(path), format="png")


def plot_quality_vs_cost(points: Sequence[tuple[str, float, float]], path: str | os.PathLike,
                         title: str = "nDCG@10 against prompt tokens per query") -> None:
    """A labelled scatter of quality against cost, as a PNG.

    Parameters
    ----------
    points : sequence of (str, float, float)
        ``(name, prompt tokens per query, nDCG@10)`` per system.
    path : str or path-like
        The PNG file to write.
    title : str
        The figure's title.

    Raises
    ------
    ConfigError
        When matplotlib is missing or there are no points.
    """
    if not points:
        raise ConfigError("no systems to plot")
    figure = _figure(6.5, 4.5)
    axes = figure.add_subplot()
    xs = [float(cost) for _, cost, _ in points]
    ys = [float(quality) for _, _, quality in points]
    axes.scatter(xs, ys, color="tab:blue", zorder=3)
    for (name, _, _), x, y in zip(points, xs, ys):
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=9)
    axes.set_title(title)
    axes.set_xlabel("prompt tokens per query")
    axes.set_ylabel("nDCG@10")
    axes.grid(True, alpha=0.3)
    axes.margins(0.15)
    figure.tight_layout()
    figure.savefig(os.fspath(path), format="png")


def plot_groups(groups: dict[str, Sequence[tuple[str, float, float]]], path: str | os.PathLike, *,
                title: str, xlabel: str, ylabel: str) -> None:
    """Labelled points of several groups (one colour and legend entry each), as a PNG.

    The x axis is logarithmic when the costs span more than a factor of 50 (one call against
    thousands).

    Parameters
    ----------
    groups : dict of str to sequence of (str, float, float)
        Group name (e.g. a judge) -> ``(label, x, y)`` per point (e.g. a strategy).
    path : str or path-like
        The PNG file to write.
    title, xlabel, ylabel : str

    Raises
    ------
    ConfigError
        When matplotlib is missing or there are no points.
    """
    points = [point for members in groups.values() for point in members]
    if not points:
        raise ConfigError("nothing to plot")
    figure = _figure(7.5, 5.0)
    axes = figure.add_subplot()
    for group, members in groups.items():
        xs = [float(x) for _, x, _ in members]
        ys = [float(y) for _, _, y in members]
        axes.scatter(xs, ys, label=group, zorder=3)
        for (label, _, _), x, y in zip(members, xs, ys):
            axes.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    costs = [float(x) for _, x, _ in points if float(x) > 0]
    if costs and max(costs) > 50 * min(costs):
        axes.set_xscale("log")
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.margins(0.15)
    if len(groups) > 1:
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(os.fspath(path), format="png")
