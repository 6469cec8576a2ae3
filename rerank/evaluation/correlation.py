"""Rank correlation of an ordering with graded judgments."""

from __future__ import annotations

import math
from typing import Sequence


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b between two paired sequences, ties counted as scipy does.

    Returns nan when either sequence is constant (tau is undefined there).
    """
    if len(x) != len(y):
        raise ValueError("kendall_tau_b needs sequences of the same length")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue  # tied in both: in neither count of tau-b's denominator
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else math.nan


def label_tau(label: Sequence[str], grades: dict[str, int]) -> float:
    """Kendall tau-b of a ranked list against the qrels order (unjudged documents count as 0)."""
    return kendall_tau_b([-rank for rank in range(len(label))], [grades.get(docid, 0) for docid in label])
