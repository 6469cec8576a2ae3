"""Figures of a comparison, written as PNG, PDF or SVG files (needs the ``plots`` extra: matplotlib).

matplotlib is imported inside each function, and figures are drawn on an Agg canvas of their
own, so nothing here touches pyplot or the global backend. A figure's format is its path's
suffix (:data:`PLOT_FORMATS`).
"""

from __future__ import annotations

import os
from typing import Sequence

from ..errors import ConfigError

#: The formats a plot is written in, by the path's suffix; the first is the default of ``--plot-format``.
PLOT_FORMATS = ("png", "pdf", "svg")


def _figure(width: float, height: float):
    """A matplotlib Figure on its own Agg canvas, or a ConfigError when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'rerank-llm[plots]'") from None
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: str | os.PathLike) -> None:
    """Write ``figure`` in the format its path's suffix names.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        A figure from :func:`_figure`.
    path : str or path-like
        Ending in ``.png``, ``.pdf`` or ``.svg``.

    Raises
    ------
    ConfigError
        For another suffix.
    """
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    if fmt not in PLOT_FORMATS:
        raise ConfigError(f"{path}: a plot is written as {', '.join(PLOT_FORMATS)} (by its suffix)")
    import matplotlib

    # No creation date in PDF and SVG metadata, and SVG ids from a fixed salt: the same figure
    # gives the same bytes.
    metadata = {"CreationDate": None} if fmt == "pdf" else {"Date": None} if fmt == "svg" else None
    with matplotlib.rc_context({"svg.hashsalt": "rerank"}):
        figure.savefig(os.fspath(path), format=fmt, metadata=metadata)


def plot_per_query_differences(baseline_values: dict[str, float], system_values: dict[str, float],
                               path: str | os.PathLike, title: str = "nDCG@10 difference per query",
                               ) -> None:
    """Bars of the per-query differences (system - baseline), sorted (PNG, PDF or SVG).

    Parameters
    ----------
    baseline_values : dict
        qid -> score of the baseline (for instance nDCG@10).
    system_values : dict
        qid -> score of the system; only the qids of both are drawn.
    path : str or path-like
        The file to write: ``.png``, ``.pdf`` or ``.svg``.
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
    save_figure(figure, path)


def plot_quality_vs_cost(points: Sequence[tuple[str, float, float]], path: str | os.PathLike,
                         title: str = "nDCG@10 against prompt tokens per query") -> None:
    """A labelled scatter of quality against cost (PNG, PDF or SVG).

    Parameters
    ----------
    points : sequence of (str, float, float)
        ``(name, prompt tokens per query, nDCG@10)`` per system.
    path : str or path-like
        The file to write: ``.png``, ``.pdf`` or ``.svg``.
    title : str
        The figure's title.

    Raises
    ------
    ConfigError
        When matplotlib is missing or there are no points.
    """
    if not points:
        raise ConfigError("no systems to plot")
    groups = {"": list(points)}
    figure = _scatter(groups, (6.5, 4.5), title, "prompt tokens per query", "nDCG@10", by_marker=False, log=False)
    if not place_labels(figure, figure.axes[0], points, fontsize=9):
        figure = _scatter(groups, (6.5, 4.5), title, "prompt tokens per query", "nDCG@10", by_marker=True, log=False)
    save_figure(figure, path)


def plot_groups(groups: dict[str, Sequence[tuple[str, float, float]]], path: str | os.PathLike, *,
                title: str, xlabel: str, ylabel: str) -> None:
    """Labelled points of several groups (one colour and legend entry each): PNG, PDF or SVG.

    The x axis is logarithmic when the costs span more than a factor of 50 (one call against
    thousands).

    Parameters
    ----------
    groups : dict of str to sequence of (str, float, float)
        Group name (e.g. a judge) -> ``(label, x, y)`` per point (e.g. a strategy).
    path : str or path-like
        The file to write: ``.png``, ``.pdf`` or ``.svg``.
    title, xlabel, ylabel : str

    Raises
    ------
    ConfigError
        When matplotlib is missing or there are no points.
    """
    points = [point for members in groups.values() for point in members]
    if not points:
        raise ConfigError("nothing to plot")
    figure = _scatter(groups, (7.5, 5.0), title, xlabel, ylabel, by_marker=False, log=True)
    if not place_labels(figure, figure.axes[0], points, fontsize=8):
        figure = _scatter(groups, (7.5, 5.0), title, xlabel, ylabel, by_marker=True, log=True)
    save_figure(figure, path)


# Offsets (in points) tried for a point's label, nearest first.
_LABEL_OFFSETS = ((5, 5), (5, -13), (-5, 5), (-5, -13), (5, 15), (5, -23), (-5, 15), (-5, -23),
                  (10, -4), (-10, -4), (5, 25), (-5, 25), (5, -33), (-5, -33))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")


def _scatter(groups: dict, size: tuple[float, float], title: str, xlabel: str, ylabel: str, *,
             by_marker: bool, log: bool):
    """The scatter of :func:`plot_groups` (one colour a group), laid out, without point labels;
    ``by_marker``: each label its own marker, named in the legend (when labels cannot fit)."""
    from matplotlib.lines import Line2D

    names = list(dict.fromkeys(label for members in groups.values() for label, _, _ in members))
    columns = 1 + len(names) // 16
    figure = _figure(size[0] + (1.8 * columns if by_marker else 0.0), size[1])
    axes = figure.add_subplot()
    markers = {name: _MARKERS[i % len(_MARKERS)] for i, name in enumerate(names)}
    # One group: each label its own colour too, so that no two legend entries look alike.
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)} if by_marker and len(groups) == 1 else {}
    for index, (group, members) in enumerate(groups.items()):
        for label, x, y in members:
            axes.scatter([float(x)], [float(y)], color=colours.get(label, f"C{index % 10}"),
                         marker=markers[label] if by_marker else "o", zorder=3)
    costs = [float(x) for members in groups.values() for _, x, _ in members if float(x) > 0]
    if log and costs and max(costs) > 50 * min(costs):
        axes.set_xscale("log")
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.margins(0.15)
    handles = []
    if len(groups) > 1:
        handles += [Line2D([], [], color=f"C{i % 10}", marker="o", linestyle="", label=str(group))
                    for i, group in enumerate(groups)]
    if by_marker:
        handles += [Line2D([], [], color=colours.get(label, "gray"), marker=marker, linestyle="", label=label)
                    for label, marker in markers.items()]
        # Beside the axes, where it covers no point.
        axes.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=columns,
                    borderaxespad=0.0)
    elif handles:
        axes.legend(handles=handles, fontsize=8, loc="best")
    figure.tight_layout()
    figure.canvas.draw()  # the layout and limits final, so labels are placed where they will be
    return figure


def place_labels(figure, axes, points: Sequence[tuple[str, float, float]], fontsize: float = 9) -> bool:
    """Write each point's label beside it where it overlaps no other label and stays inside the
    axes, trying a few offsets nearest first.

    Parameters
    ----------
    figure, axes
        A laid-out figure (its limits final) and its axes.
    points : sequence of (str, float, float)
        ``(label, x, y)`` in data coordinates.
    fontsize : float

    Returns
    -------
    bool
        True when every label found a place; False when the points are too crowded, and then no
        label is left drawn (name the points in a legend instead).
    """
    renderer = figure.canvas.get_renderer()
    frame = axes.get_window_extent(renderer)
    legend = axes.get_legend()
    placed, notes = ([legend.get_window_extent(renderer)] if legend is not None else []), []
    for label, x, y in points:
        for dx, dy in _LABEL_OFFSETS:
            note = axes.annotate(label, (float(x), float(y)), textcoords="offset points", xytext=(dx, dy),
                                 fontsize=fontsize, ha="left" if dx >= 0 else "right")
            box = note.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                notes.append(note)
                break
            note.remove()
        else:
            for note in notes:
                note.remove()
            return False
    return True
