"""Batch APIs, round by round: ``rerank run ... --batch openai|vllm``.

Every round of every active query goes into one batch (split at the provider's limits); the
driver submits it, polls, reads the answers back by ``custom_id``, caches each one as an online
call would, feeds the strategies and submits the next round. A run takes as many batches as
its strategy has rounds (full 1, tdpart about 3, tourrank 5, sliding 9), whatever its number of
calls. Modules, one job each:

* :mod:`~rerank.batch.driver`: the rounds of every query, and the batches they wait for;
* :mod:`~rerank.batch.activity`: knowing when every query waits for a batch;
* :mod:`~rerank.batch.state`: the state file, saved after every step, for ``--resume``;
* :mod:`~rerank.batch.lines`: the input, output and error files' lines;
* :mod:`~rerank.batch.provider`: what the driver needs of a provider;
* :mod:`~rerank.batch.openai_batches`: OpenAI's Batch API (half price);
* :mod:`~rerank.batch.vllm_batches`: ``vllm run-batch`` (run, or printed for the user to run);
* :mod:`~rerank.batch.command`: the driver ``rerank run``'s options describe.

Names are imported on first use: ``import rerank.batch`` loads nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchDriver": "driver", "Activity": "activity", "BatchState": "state", "Submission": "state",
    "state_path": "state", "STATE_SUFFIX": "state", "BatchStatus": "provider", "BatchPending": "provider",
    "Submitter": "provider", "OpenAIBatches": "openai_batches", "VLLMRunBatch": "vllm_batches",
    "batch_driver": "command", "batch_folder": "command", "PROVIDERS": "command",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
