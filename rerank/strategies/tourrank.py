"""TourRank (Chen et al., WWW 2025; chenyiqun/TourRank): ranking as tournaments of selections.

A tournament runs the candidates through stages, as a sports tournament does; in each stage the
candidates still in it are split into groups, every group is asked for its best ``m`` passages
(a :class:`~rerank.answers.Choice`), and those go on to the next stage. A candidate earns one point
per stage it comes through. For 100 candidates the stages are the reference's:

=====  ============  ========================  ======
stage  candidates    groups                    calls
=====  ============  ========================  ======
1      100 -> 50     5 groups of 20, best 10   5
2      50 -> 20      5 groups of 10, best 4    5
3      20 -> 10      1 group of 20, best 10    1
4      10 -> 5       1 group of 10, best 5     1
5      5 -> 2        1 group of 5, best 2      1
=====  ============  ========================  ======

13 calls a tournament. The candidates of a stage are the best ones so far by this tournament's
points, ties in first-stage order; they are dealt to the groups as seeds are in sports (the
reference's *skip* grouping: group ``j`` gets standings ``j, j + g, j + 2g, ...``), and each
group is shown in an order shuffled per tournament (``random.Random`` seeded by ``seed`` and
the tournament's number), so that a position bias of the model evens out across the ``r``
tournaments. The tournaments are independent: all of them play a stage in the same round, so a
query takes 5 rounds whatever ``r`` is. The points summed over the tournaments are the scores.

Ties in points are broken by how the candidate was ranked in the answers that last chose it (a
choice lists its passages best first): summed over the tournaments, its place in that answer
over the answer's length. With a perfect judge this orders the top 2 (5 points a tournament),
the next 3 (4 points) and the next 5 (3 points) exactly, as the answers of stages 5, 4 and 3 rank
them; the reference keeps first-stage order within a tie. Remaining ties keep first-stage order.

Other list lengths get the same tournament scaled by ``n / 100``: each stage keeps that share of
the candidates (``n/2``, ``n/5``, ``n/10``, ``n/20``, ``n/50``, rounded half up, at least one
and fewer than it was given); the first two stages have ``5 n / 100`` groups, the last three
one group, and any stage as many more as keep every group within 20 passages. Each group keeps
at least one and drops at least one, and the stages stop when one candidate is left. So 200
candidates keep 100 and 40 in 10 groups, then 20 in 2 groups, then 10 and 4 in one; 50 keep
25 and 10 in 3 groups, then 5, 3 and 1 in one; 20 keep 10, 4, 2 and 1 in one group (4 rounds);
two are one call, 1 of 2. Lists much longer than 100 end with several groups in the last stages, whose
winners tie: the tie-break then falls back on first-stage order.

The prompt is the reference's (``prompts/tourrank.yaml``): ``Document 3: ...`` turns, and
the answer ``Document 3, ..., Document 1``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import ClassVar, Sequence

from ..answers import AnswerKind, Choice
from ..errors import ConfigError
from ..options import Option
from .base import SEED, Ranking, Rounds, Window

#: The reference's tournament over 100 candidates: (groups, candidates kept) per stage.
REFERENCE_STAGES = ((5, 50), (5, 20), (1, 10), (1, 5), (1, 2))
REFERENCE_DEPTH = 100
#: The most passages a group shows.
GROUP_SIZE = 20


def stage_plan(n: int) -> list[tuple[int, int]]:
    """The stages of a tournament over ``n`` candidates: ``(groups, candidates kept)`` each.

    Examples
    --------
    >>> stage_plan(100)
    [(5, 50), (5, 20), (1, 10), (1, 5), (1, 2)]
    >>> stage_plan(20)
    [(1, 10), (1, 4), (1, 2), (1, 1)]
    >>> stage_plan(2), stage_plan(1)
    ([(1, 1)], [])
    """
    plan = []
    size = n
    for groups, kept in REFERENCE_STAGES:
        kept = min(_scaled(kept, n), size - 1)
        if kept < 1:
            break
        # The reference's stages of several groups have more of them; its one-group stages
        # stay one group while it holds at most GROUP_SIZE passages.
        groups = max(_scaled(groups, n) if groups > 1 else 1, math.ceil(size / GROUP_SIZE))
        plan.append((max(1, min(groups, kept, size - kept)), kept))
        size = kept
    return plan


def _scaled(count: int, n: int) -> int:
    """``count`` of the 100-candidate tournament for ``n`` candidates, rounded half up."""
    return math.floor(count * n / REFERENCE_DEPTH + 0.5)


def skip_groups(entrants: Sequence[int], groups: int, kept: int) -> list[tuple[list[int], int]]:
    """Deal ``entrants`` (best first) to ``groups`` groups as seeds, with how many each keeps.

    Group ``j`` gets entrants ``j, j + groups, ...``; the ``kept`` places are shared as evenly as
    the groups' sizes allow, larger groups first, so every group keeps at least one and drops
    at least one when ``groups <= kept <= len(entrants) - groups``.

    Examples
    --------
    >>> skip_groups(list(range(7)), 2, 3)
    [([0, 2, 4, 6], 2), ([1, 3, 5], 1)]
    """
    base, extra = divmod(kept, groups)
    return [(list(entrants[j::groups]), base + (j < extra)) for j in range(groups)]


@dataclass(frozen=True)
class TourRank:
    """``r`` TourRank tournaments played side by side, points summed.

    Parameters
    ----------
    r : int
        Tournaments (2): 13 calls each over 100 candidates.
    seed : int
        Seeds the order each group is shown in; the same seed asks the same windows.
    """

    r: int = 2
    seed: int = 0
    name: str = "tourrank"
    #: What the first stage's groups ask for (every stage asks for its own number), and the prompt
    #: used unless one is named.
    answer_kind: ClassVar[AnswerKind] = Choice(10)
    default_prompt: ClassVar[str] = "tourrank"
    options: ClassVar[tuple[Option, ...]] = (
        Option("r", int, 2, "tourrank: tournaments, played side by side"),
        SEED,
    )

    def __post_init__(self):
        if self.r < 1:
            raise ConfigError(f"--r must be at least 1, got {self.r}")

    def largest_window(self, n: int) -> int:
        """The most passages one call shows: the largest group."""
        plan, size, largest = stage_plan(n), n, 0
        for groups, kept in plan:
            largest = max(largest, math.ceil(size / groups))
            size = kept
        return largest

    def rounds(self, n: int) -> Rounds:
        """One round per stage, holding every tournament's groups of that stage."""
        points = [[0] * n for _ in range(self.r)]
        last_place = [[1.0] * n for _ in range(self.r)]  # place / length in the last answer choosing it
        shufflers = [random.Random(f"tourrank:{self.seed}:{t}") for t in range(self.r)]
        size = n
        for groups, kept in stage_plan(n):
            windows = []
            for t in range(self.r):
                standing = sorted(range(n), key=lambda i: (-points[t][i], i))[:size]
                for members, keep in skip_groups(standing, groups, kept):
                    shufflers[t].shuffle(members)
                    windows.append((t, Window(members, Choice(keep), None)))
            answers = yield [window for _, window in windows]
            for (t, window), answer in zip(windows, answers):
                chosen = list(dict.fromkeys(i for i in answer.order if 0 <= i < len(window)))
                chosen = [window.indices[i] for i in chosen[: window.kind.k]]
                for place, i in enumerate(chosen):
                    points[t][i] += 1
                    last_place[t][i] = place / len(chosen)
            size = kept
        total = [sum(p[i] for p in points) for i in range(n)]
        order = sorted(range(n), key=lambda i: (-total[i], sum(lp[i] for lp in last_place), i))
        return Ranking(order, [float(total[i]) for i in order])
