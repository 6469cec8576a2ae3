"""Test judges: answer reranking prompts from relevance judgments instead of a model.

A judge reads a prompt as a model would (its passages and the question it asks: a ranking, the
best k, a choice of one, a pair, a yes/no relevance question; see :mod:`rerank.testing.reading`)
and answers it, perfectly from TREC qrels (``oracle``), with noise, in the order shown, reversed,
as garbage, or after reasoning (:mod:`rerank.testing.judges`). Use one

* in process, as a backend: ``rerank run ... --backend judge --model judge:oracle:DATA_DIR``
  (:class:`JudgeBackend`);
* as an OpenAI-compatible server, with fault injection (:mod:`rerank.testing.faults`)::

      python -m rerank.testing.server --judge oracle --data-dir ../shared/data/dl19 --port 8000

  or from Python::

      with start_server("oracle", data_dir="../shared/data/dl19") as server:
          client = openai.OpenAI(base_url=server.base_url, api_key="x")
          ...
          server.stats()   # {"requests": ..., "completions": ..., "failures": ..., ...}

The server also implements OpenAI's Files and Batch APIs (``/v1/files``, ``/v1/batches``; see
:mod:`rerank.testing.batches`): each batch line is answered as ``/v1/chat/completions`` answers
its body, in a background thread, with output lines shuffled, optional failed lines
(``batch_fail_rate``), delay (``batch_delay``) and expired batches (``batch_expire``), and counts
of every ``custom_id`` submitted, answered and failed, so that a batch driver's test can check
that no line was paid for twice (``server.stats()["batch_duplicates"]``).

Names are imported on first use, so ``python -m rerank.testing.server`` runs the server module
once.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Dataset": "dataset", "QueryIndex": "dataset", "normalise": "dataset",
    "Prompt": "reading", "Question": "reading", "read_prompt": "reading",
    "JUDGES": "judges", "Judge": "judges", "Verdict": "judges", "format_ranking": "judges", "label": "judges",
    "Tokens": "counting", "TOKENS_PER_MESSAGE": "counting", "TOKENS_PER_REPLY": "counting",
    "MODEL_ID": "protocol", "Responder": "completions", "Faults": "faults",
    "make_server": "server", "RunningServer": "running", "start_server": "running", "start_process": "running",
    "JudgeBackend": "backend", "Batches": "batches", "BatchOptions": "batches",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
