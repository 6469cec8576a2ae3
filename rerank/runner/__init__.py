"""The runner: a strategy's rounds through prompt building, the cached backend and answer kinds.

Parts, one job each: :class:`~rerank.runner.budget.ContextBudget` (the context budget and what
overflow refusals teach it), :class:`~rerank.runner.prompt_builder.PromptBuilder` (render and
fit a window's prompt), :class:`~rerank.runner.cached_backend.CachedBackend` (the call cache in
front of a backend) and :class:`~rerank.runner.rounds.Runner` (the loop over rounds; its parts,
building a window's :class:`~rerank.runner.rounds.Call` and reading its answer, serve the batch
driver too, :mod:`rerank.batch`).
"""

from .budget import ContextBudget
from .cached_backend import CachedBackend
from .prompt_builder import PromptBuilder, Templates, fits_unread
from .rounds import MAX_CONTEXT_RETRIES, Call, Reasoning, Runner

__all__ = ["MAX_CONTEXT_RETRIES", "Call", "CachedBackend", "ContextBudget", "PromptBuilder", "Reasoning", "Runner",
           "Templates", "fits_unread"]
