"""Dry runs: what a run, a labels job or an experiment will send and cost, with no LLM call.

``--dry-run`` on ``rerank run``, ``labels`` and ``experiment``: every window's prompt is built and
counted by the run's own runner, prompt builder and token counter (:mod:`.plan`, through the
simulation's runner, :mod:`rerank.simulation`), its cache key looked up read-only in the call
cache (:mod:`.stored`, :mod:`.runner`), and the windows the cache does not answer are answered by
a judge; :mod:`.report` prints the table, the price and what the cache holds.
"""

from .plan import DRY_JUDGES, Cost, Plan, Price, plan_run
from .report import format_plan, format_plans, plans_json
from .runner import DryBackend, DryRunner
from .stored import StoredCalls

__all__ = ["DRY_JUDGES", "Cost", "DryBackend", "DryRunner", "Plan", "Price", "StoredCalls", "format_plan",
           "format_plans", "plan_run", "plans_json"]
