"""Reranking strategies, looked up by name.

A strategy is a class in a module of its own; :data:`STRATEGIES` maps each name to
``"module:Class"`` and imports it on first use. ``--strategy package.module:Class`` runs a
strategy of one's own that is in no registry.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from ..errors import ConfigError
from ..options import Option, build_with_options, merged
from .base import Ranking, Rounds, Strategy, Window, as_ranking, run_with_judge
from .full import FullRanking
from .shrinking import ShrinkingWindow
from .single_token import SingleToken
from .sliding import SlidingWindow, window_schedule

#: name -> "module:Class": one line per strategy.
STRATEGIES = {
    "sliding": "rerank.strategies.sliding:SlidingWindow",
    "full": "rerank.strategies.full:FullRanking",
    "shrinking": "rerank.strategies.shrinking:ShrinkingWindow",
    "single-token": "rerank.strategies.single_token:SingleToken",
    "pointwise": "rerank.strategies.pointwise:Pointwise",
    "pairwise": "rerank.strategies.pairwise:Pairwise",
    "setwise": "rerank.strategies.setwise:Setwise",
    "tdpart": "rerank.strategies.tdpart:TopDownPartition",
    "tourrank": "rerank.strategies.tourrank:TourRank",
    "jointrank": "rerank.strategies.jointrank:JointRank",
}


def strategy_class(name: str) -> type:
    """The class of a registered strategy, or of ``module:Class``.

    Raises
    ------
    ConfigError
        For an unknown name, or a ``module:Class`` that cannot be imported.
    """
    path = STRATEGIES.get(name, name if ":" in name else None)
    if path is None:
        raise ConfigError(f"unknown strategy '{name}': choose one of {', '.join(STRATEGIES)}, "
                          "or give module:Class")
    module_name, _, class_name = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--strategy {name}: cannot import it ({exc})") from None


def make_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    """Build a strategy by name from the option values it declares (others are ignored).

    Raises
    ------
    ConfigError
        For an unknown name or invalid option values.
    """
    return build_with_options(strategy_class(name), options or {}, f"--strategy {name}")


def option_defaults(name: str) -> dict[str, Any]:
    """The default of option ``name`` in each registered strategy that declares it, by strategy."""
    defaults = {}
    for strategy in STRATEGIES:
        for option in strategy_class(strategy).options:
            if option.name == name:
                defaults[strategy] = option.default
    return defaults


def strategy_options(extra: tuple[str, ...] = ()) -> dict[str, Option]:
    """Every option the registered strategies (and ``extra`` ones, ``module:Class``) declare."""
    return merged(strategy_class(name) for name in (*STRATEGIES, *extra))


__all__ = ["STRATEGIES", "FullRanking", "Ranking", "Rounds", "ShrinkingWindow", "SingleToken", "SlidingWindow",
           "Strategy", "Window", "as_ranking", "make_strategy", "option_defaults", "run_with_judge", "strategy_class",
           "strategy_options", "window_schedule"]
