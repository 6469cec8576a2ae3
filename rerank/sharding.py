"""Slices of an input for SLURM arrays: ``--shard I/N`` keeps the queries of the I-th of N slices.

A query belongs to a slice by a stable hash of its qid (BLAKE2b of its UTF-8 bytes), never by
Python's ``hash()``, which changes from process to process: every task of an array, on any
machine, cuts the same input into the same N disjoint slices that together hold every query.
A qid repeated in the input (``--keep-duplicate-qids``) lands each time in the same slice.
``rerank merge-runs`` (:mod:`rerank.merging`) joins the slices' outputs again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .errors import ConfigError

T = TypeVar("T")

_SPEC = re.compile(r"([0-9]+)/([0-9]+)")


def slice_of(qid: str, count: int) -> int:
    """The slice (1 to ``count``) a qid belongs to when the input is cut into ``count`` slices.

    Parameters
    ----------
    qid : str
        The query id.
    count : int
        The number of slices, at least 1.

    Returns
    -------
    int
        The same number in every process and on every machine.
    """
    # surrogatepass: a qid is a str; the few that hold a lone surrogate still get a slice.
    digest = hashlib.blake2b(qid.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count + 1


@dataclass(frozen=True)
class Shard:
    """The ``index``-th of ``count`` disjoint slices of an input, by qid.

    Parameters
    ----------
    index : int
        Which slice, 1 to ``count``.
    count : int
        How many slices the input is cut into.

    Raises
    ------
    ConfigError
        When ``1 <= index <= count`` does not hold.
    """

    index: int
    count: int

    def __post_init__(self):
        if not (isinstance(self.index, int) and isinstance(self.count, int) and 1 <= self.index <= self.count):
            raise ConfigError(f"--shard {self}: expected I/N with 1 <= I <= N (the I-th of N slices), "
                              "e.g. --shard 1/4")

    @classmethod
    def parse(cls, spec: str) -> "Shard":
        """The shard ``I/N`` names.

        Parameters
        ----------
        spec : str
            ``I/N``, as ``--shard`` takes it (``$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``).

        Returns
        -------
        Shard

        Raises
        ------
        ConfigError
            For anything but two integers with ``1 <= I <= N``, naming ``--shard``.
        """
        found = _SPEC.fullmatch(spec.strip()) if isinstance(spec, str) else None
        if found is None:
            raise ConfigError(f"--shard {spec!r}: expected I/N with 1 <= I <= N (the I-th of N slices), "
                              "e.g. --shard 1/4")
        return cls(int(found.group(1)), int(found.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, qid: str) -> bool:
        """Whether the query ``qid`` belongs to this slice."""
        return slice_of(qid, self.count) == self.index

    def select(self, items: Iterable[T], qid_of: Callable[[T], str] = lambda request: request.query.qid) -> Iterator[T]:
        """The items of this slice, streamed in their order.

        Parameters
        ----------
        items : iterable
            Requests, or anything ``qid_of`` gives a qid for (queries: ``lambda query: query.qid``).
        qid_of : callable
            The qid of an item; by default a request's.

        Yields
        ------
        The items whose qid belongs to this slice.
        """
        for item in items:
            if self.holds(qid_of(item)):
                yield item


def check_resumed_shard(output: str, shard: Shard | None) -> None:
    """Refuse to resume into outputs that hold another slice of the input.

    Parameters
    ----------
    output : str
        The run's first output (its run record lies beside it).
    shard : Shard or None
        The slice this run asks for; None for the whole input.

    Raises
    ------
    ConfigError
        When the run record of a run that ended says it wrote another slice (or the whole
        input). A record of a run killed before its summary does not say; it is let through.
    """
    from .output_record import read_record, record_path

    record = read_record(record_path(output))
    if record is None or record.get("state") in (None, "running"):
        return
    recorded = record.get("shard")
    if recorded != (None if shard is None else str(shard)):
        def what(spec):
            return f"slice {spec} of the input" if spec else "the whole input"

        raise ConfigError(f"--resume: {output} holds {what(recorded)}, and this run asks for "
                          f"{what(shard)}: resume with the same --shard as the run that wrote it")
