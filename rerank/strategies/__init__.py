"""Reranking strategies, looked up by name."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Rounds, Strategy, Window, run_with_judge
from .full import FullRanking
from .shrinking import ShrinkingWindow
from .single_token import SingleToken
from .sliding import SlidingWindow, window_schedule

STRATEGIES = {"sliding": SlidingWindow, "full": FullRanking, "shrinking": ShrinkingWindow,
              "single-token": SingleToken}


def make_strategy(name: str, *, window: int = 20, step: int = 10, passes: int = 1) -> Strategy:
    """Build a strategy by name with the options it uses.

    Raises
    ------
    ConfigError
        For an unknown name or invalid options.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{name}': choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name].from_options(window=window, step=step, passes=passes)


__all__ = ["STRATEGIES", "FullRanking", "Rounds", "ShrinkingWindow", "SingleToken", "SlidingWindow", "Strategy",
           "Window",
           "make_strategy", "run_with_judge", "window_schedule"]
