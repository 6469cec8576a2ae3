"""Knowing when every query waits for a batch: a count of the work that can still go on."""

from __future__ import annotations

import asyncio


class Activity:
    """The number of units (queries between rounds, windows being built or looked up in the
    cache, answers being read) that can go on without a batch's answers.

    A unit enters when it starts or when what it waited for arrives, and leaves when it ends or
    starts to wait for a batch line. Each hand-over enters the new unit before the old one leaves,
    so the count is never 0 while anything can go on: at 0, every query waits for a batch, and
    the next batch holds every line they wait for.
    """

    __slots__ = ("_count", "_idle")

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def count(self) -> int:
        """Units that can go on now."""
        return self._count

    def enter(self, units: int = 1) -> None:
        """``units`` can go on."""
        self._count += units
        if self._count:
            self._idle.clear()

    def leave(self, units: int = 1) -> None:
        """``units`` ended, or wait for a batch."""
        # Never below 0: queries cancelled mid-round (an interrupted run) leave unevenly.
        self._count = max(self._count - units, 0)
        if not self._count:
            self._idle.set()

    async def idle(self) -> None:
        """Wait until nothing can go on."""
        await self._idle.wait()
