"""Finding the top k by comparisons asked of a model: a d-ary heap, and bubble passes.

Shared by the setwise and the pairwise (PRP) sorts, after llm-rankers (Zhuang et al., SIGIR 2024;
``llmrankers/setwise.py`` and ``pairwise.py``). The sorts only move candidates; which one of a few
is the best is a *comparison*, a sub-generator given to them: :data:`Compare` yields the rounds of
windows it needs, receives their answers and returns the position of the best of the candidates it
was shown, 0 (the first, the incumbent) when the answers decide nothing. Each comparison depends
on the moves of the previous one, so the sorts ask one comparison at a time, in the reference's
order. PRP's heapsort is the binary heap (``arity=2``) with a comparison of two sequential pairs
(node against first child, the winner against the second), not setwise's with one child, whose
heap would be a chain; its bubble passes are setwise's with windows of two.

Both sorts end as the reference does (:func:`top_then_rest`): the top ``k`` found, best first,
then every other candidate in first-stage order (not in the order the sort left them).
"""

from __future__ import annotations

from typing import Callable, Generator, Sequence

from ..answers import Answer
from .base import Window

#: A comparison: given candidate indices (the incumbent first), yields rounds of windows and
#: returns the position (in what it was given) of the best, 0 when undecided.
Compare = Callable[[tuple[int, ...]], Generator[list[Window], list[Answer], int]]
#: A sort: yields the comparisons' rounds, returns the top ``k`` best first.
Sort = Generator[list[Window], list[Answer], list[int]]


def chosen(window: Window, answer: Answer) -> int | None:
    """The candidate index a :class:`~rerank.answers.Choice` answer picks first; None when it
    picks none (unreadable) or names no position of the window."""
    if answer.order and 0 <= answer.order[0] < len(window):
        return window.indices[answer.order[0]]
    return None


def heap_top(n: int, k: int, arity: int, compare: Compare) -> Sort:
    """The top ``k`` of ``range(n)`` by heapsort over a heap of ``arity`` children a node.

    As llm-rankers' ``heapSort``: build a max-heap (sift down every node from ``n // arity`` to 0,
    each step one comparison of a node and its children), then ``k`` times move the root to the
    end, re-heapifying the rest between extractions (``k - 1`` times). A step compares
    ``(node, child 1, child 2, ...)`` in heap order and swaps the node with the winner, then
    goes on down from there; an undecided comparison keeps the node.

    Parameters
    ----------
    n, k : int
        Candidates, and how many to extract (all of them when ``k >= n - 1``).
    arity : int
        Children of a node (setwise's ``num_child``; 2 for PRP).
    compare : Compare

    Returns
    -------
    list of int
        The top ``min(k, n)`` candidates, best first (the generator's return value).
    """
    heap = list(range(n))

    def sift_down(size: int, node: int):
        while arity * node + 1 < size:
            positions = [node, *range(arity * node + 1, min(arity * node + arity + 1, size))]
            best = positions[(yield from compare(tuple(heap[p] for p in positions)))]
            if best == node:
                return
            heap[node], heap[best] = heap[best], heap[node]
            node = best

    for node in range(n // arity, -1, -1):
        yield from sift_down(n, node)
    extracted = 0
    for end in range(n - 1, 0, -1):
        heap[0], heap[end] = heap[end], heap[0]
        extracted += 1
        if extracted == k:
            break
        yield from sift_down(end, 0)
    return heap[::-1][:k]


def bubble_top(n: int, k: int, step: int, compare: Compare) -> Sort:
    """The top ``k`` of ``range(n)`` by ``k`` bubble passes of windows of ``step + 1``.

    As llm-rankers' (faster) setwise ``bubblesort``: pass ``i`` compares windows of ``step + 1``
    from the bottom of the list up to position ``i``, each overlapping the next by one, and moves
    each window's winner to the window's top, so the best of positions ``i..n-1`` ends at ``i``.
    A pass starts where the previous one first changed something: the windows below, unchanged,
    already have their best on top (one window lower when the winner there came from the
    window's bottom). The top window is cut at ``i``; windows of one passage are not asked.
    With ``step = 1`` it is PRP-Sliding-K: adjacent pairs, swapped when the lower one wins.

    Two corrections to the reference, which with a perfect judge misses some of the top ``k``
    (about one random list in four of 5 to 40 passages, ``num_child`` 3, ``k`` 10): a pass never
    starts above the highest window that still reaches below ``i`` (the reference's start may
    lie so high that the cut window is empty), and a winner from the bottom of a cut window
    moves the next start down by ``step`` (the reference moves it by the cut window's size less
    one, off the windows' grid). Elsewhere the windows and their order are the reference's.

    Parameters
    ----------
    n, k : int
        Candidates, and how many passes (positions placed).
    step : int
        How far each window moves up (setwise's ``num_child``; 1 for pairs).
    compare : Compare

    Returns
    -------
    list of int
        The top ``min(k, n)`` candidates, best first (the generator's return value).
    """
    order = list(range(n))
    bottom = n - (step + 1)
    last_start = bottom
    for top in range(min(k, n - 1)):
        # Not above the highest window that reaches below ``top``: the reference's start, cut
        # at ``top``, may miss the windows that hold the best of the rest.
        last_start = max(last_start, bottom - (bottom - top + step) // step * step)
        start, end = last_start, last_start + step + 1
        changed = False
        while True:
            start = max(start, top)
            shown = tuple(order[start:end])
            best = (yield from compare(shown)) if len(shown) > 1 else 0
            if best != 0:
                order[start], order[start + best] = order[start + best], order[start]
                if not changed:
                    changed = True
                    if last_start != bottom and best == len(shown) - 1:
                        last_start += step  # the reference's len(shown) - 1 skips a window when cut
            if start == top:
                break
            if not changed:
                last_start -= step
            start, end = start - step, end - step
    return order[:k]


def top_then_rest(top: Sequence[int], n: int) -> list[int]:
    """Every candidate: ``top`` as found, then the others in first-stage order (as llm-rankers)."""
    placed = set(top)
    return [*top, *(i for i in range(n) if i not in placed)]
