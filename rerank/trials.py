"""``--limit N`` and ``--qids``: the few queries of a quick trial.

A :class:`QuerySelection` keeps the queries ``--qids`` names (all without it), then the first
``--limit`` of those, in the order of the input; ``run``, ``labels``, ``pipeline`` and ``eval``
apply it where they read their queries.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class QuerySelection:
    """Which queries a trial keeps.

    Attributes
    ----------
    limit : int or None
        At most this many (the first ones); None for no limit.
    qids : frozenset of str or None
        Only these qids; None for any.
    """

    limit: int | None = None
    qids: frozenset[str] | None = None

    @classmethod
    def parse(cls, limit: int | None, qids: str | None) -> "QuerySelection":
        """The selection of ``--limit N`` and ``--qids QID,...|FILE``.

        Parameters
        ----------
        limit : int or None
            ``--limit``; at least 1.
        qids : str or None
            Comma-separated qids, or a file holding one qid a line (its first column, so that
            a ``qid<TAB>text`` queries file or qrels serve too).

        Raises
        ------
        ConfigError
            For a limit below 1, an unreadable file, or no qid.
        """
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        wanted = None
        if qids is not None:
            if os.path.isfile(qids):
                try:
                    with open(qids, encoding="utf-8") as handle:
                        wanted = frozenset(line.split()[0] for line in handle if line.strip())
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"--qids {qids}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
            else:
                wanted = frozenset(qid.strip() for qid in qids.split(",") if qid.strip())
            if not wanted:
                raise ConfigError(f"--qids {qids}: no qid given (QID,QID,... or a file of one qid a line)")
        return cls(limit, wanted)

    @property
    def active(self) -> bool:
        """Whether it keeps anything less than everything."""
        return self.limit is not None or self.qids is not None

    def select(self, items: Iterable[T], qid_of: Callable[[T], str],
               warn: Callable[[str], None] | None = None) -> Iterator[T]:
        """The items kept, streamed in input order (reading stops at the limit).

        Parameters
        ----------
        items : iterable
            Requests, queries or ``(qid, ranking)`` pairs.
        qid_of : callable
            An item's qid.
        warn : callable or None
            Told, once the input is read, of the ``--qids`` it did not hold (default: a line
            on stderr).
        """
        if not self.active:
            yield from items
            return
        kept, seen = 0, set()
        for item in items:
            if self.limit is not None and kept >= self.limit:
                return
            qid = qid_of(item)
            if self.qids is not None and qid not in self.qids:
                continue
            seen.add(qid)
            kept += 1
            yield item
        missing = sorted(self.qids - seen) if self.qids is not None else []
        if missing and not seen:  # a typo, not a trial: nothing would be reranked
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise ConfigError(f"--qids: none of them is in the input ({shown})")
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            message = f"--qids: {len(missing)} not in the input: {shown}"
            (warn or (lambda line: print(f"rerank: warning: {line}", file=sys.stderr)))(message)
