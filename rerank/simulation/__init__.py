"""Simulation: strategies run against judges built from qrels, with no LLM.

``rerank simulate`` answers "which method, at what cost?" before anyone pays: each strategy
runs through the reranker's own runner and prompt builder (:mod:`.runner`), and a judge from the
qrels (:mod:`.judges`) answers its windows; :mod:`.simulate` gathers quality and cost per query.
"""

from .judges import JUDGE_NAMES, SimulatedJudge, parse_judge
from .runner import SimulatedBackend, SimulatedRunner
from .simulate import SimulationRow, StrategySpec, simulate

__all__ = ["JUDGE_NAMES", "SimulatedBackend", "SimulatedJudge", "SimulatedRunner", "SimulationRow",
           "StrategySpec", "parse_judge", "simulate"]
