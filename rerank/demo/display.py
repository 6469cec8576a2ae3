"""What ``rerank demo`` prints: each query's top 5 side by side with what moved, the nDCG@10
table, and the legend of every mark. Pure text functions, no model."""

from __future__ import annotations

from dataclasses import dataclass

#: Width of one column of a query's block; three columns and their gaps fit 120 characters.
COLUMN = 38
#: The legend explaining every mark the blocks use (two lines, each within 120 characters).
LEGEND = ("Marks: [2] answers the query, [1] related, [0] judged not relevant, [-] not judged.\n"
          "\u2191n / \u2193n: moved up / down n places from its BM25 rank; = kept its place.")


@dataclass(frozen=True)
class Ranking:
    """One column of a query's block.

    Attributes
    ----------
    title : str
        The column's heading.
    docids : list of str
        The whole ranking, best first.
    """

    title: str
    docids: list[str]


def moves(before: list[str], after: list[str]) -> dict[str, str]:
    """How each document of ``after`` moved from its rank in ``before``.

    Returns
    -------
    dict
        docid -> ``"↑n"`` (up n places), ``"↓n"`` (down n places) or ``"="`` (same place);
        ``"new"`` for a document ``before`` lacks.
    """
    where = {docid: rank for rank, docid in enumerate(before)}
    shown = {}
    for rank, docid in enumerate(after):
        if docid not in where:
            shown[docid] = "new"
        elif where[docid] > rank:
            shown[docid] = f"\u2191{where[docid] - rank}"
        elif where[docid] < rank:
            shown[docid] = f"\u2193{rank - where[docid]}"
        else:
            shown[docid] = "="
    return shown


def cell(docid: str, title: str | None, grade: int | None, move: str = "", width: int = COLUMN) -> str:
    """One document as a column shows it: ``[grade] docid title``, cut to fit, the move at the end.

    Parameters
    ----------
    docid, title : str
        The document (``title`` may be None).
    grade : int or None
        Its judgment; None shows ``[-]`` (not judged).
    move : str
        From :func:`moves`; empty in the first stage's column.
    width : int
        The column's width.

    Returns
    -------
    str
        Exactly ``width`` characters.
    """
    mark = "-" if grade is None else str(grade)
    room = width - len(move) - 1 if move else width
    text = f"[{mark}] {docid} {title or ''}".rstrip()
    if len(text) > room:
        text = text[: room - 3] + "..."
    return f"{text.ljust(room)} {move}" if move else text.ljust(width)


def query_block(qid: str, text: str, columns: list[Ranking], grades: dict[str, int],
                titles: dict[str, str | None], shown: int = 5) -> list[str]:
    """The lines of one query: its text, the columns' headings and their top ``shown``, the
    first column the first stage and the others marked with how each document moved from it.

    Parameters
    ----------
    qid, text : str
        The query.
    columns : list of Ranking
        The first stage first, then the rerankings.
    grades : dict
        docid -> grade (the query's qrels).
    titles : dict
        docid -> title or None.
    shown : int
        Rows to show.

    Returns
    -------
    list of str
        Lines of at most three :data:`COLUMN` widths and their gaps (120 characters).
    """
    first = columns[0].docids
    lines = [f"{qid}: {text}", "  " + "  ".join(c.title[:COLUMN].ljust(COLUMN) for c in columns).rstrip()]
    arrows = [moves(first, c.docids) for c in columns]
    for rank in range(min(shown, len(first))):
        cells = []
        for index, column in enumerate(columns):
            if rank >= len(column.docids):
                cells.append(" " * COLUMN)
                continue
            docid = column.docids[rank]
            cells.append(cell(docid, titles.get(docid), grades.get(docid), arrows[index][docid] if index else ""))
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def moved_note(before: list[str], after: list[str]) -> str:
    """How much a reranking changed the first stage.

    Parameters
    ----------
    before, after : list of str
        The docids in first-stage and reranked order.

    Returns
    -------
    str
        ``order unchanged`` or ``N documents moved`` (documents no longer at their rank).
    """
    moved = sum(1 for a, b in zip(before, after) if a != b)
    return "order unchanged" if moved == 0 else f"{moved} document{'s' if moved > 1 else ''} moved"


def score_table(qids: list[str], rows: list[tuple[str, dict[str, float], float]], metric: str = "nDCG@10") -> list[str]:
    """The per-query scores of each row and its mean, then the change of the mean against the
    first row.

    Parameters
    ----------
    qids : list of str
        The queries, in order.
    rows : list of (str, dict, float)
        ``(name, qid -> score, mean)``, the first row the baseline.
    """
    name_width = max(len(name) for name, _, _ in rows) + 2
    lines = [f"{metric} per query".ljust(name_width) + "".join(q.rjust(7) for q in qids) + "    mean  vs BM25"]
    base = rows[0][2]
    for index, (name, scores, mean) in enumerate(rows):
        change = "" if index == 0 else f"  {mean - base:+.4f}"
        lines.append(f"  {name}".ljust(name_width) + "".join(f"{scores.get(q, 0.0):7.2f}" for q in qids)
                     + f"  {mean:.4f}" + change)
    return lines
