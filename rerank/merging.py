"""Joining the outputs of a sharded run (``--shard I/N``) into the one run it would have been.

``rerank merge-runs`` reads each shard's JSONL output, checks that rerank wrote it (its run
record beside it names it as ``-o``) and that no qid sits in two shards, then writes the lines
in the input's order: the order of ``--input``'s requests when given, else shard file by shard
file. The JSONL lines are copied byte for byte; the TREC run is written from them by
:class:`~rerank.formats.TrecRunWriter`, as ``rerank run`` writes it, so a merge of the slices is
byte-identical to the unsharded run. Lines are indexed by offset, not held in memory.

What the shards do not hold (a slice not given, a shard killed or interrupted, failed queries,
``--input`` queries in no shard) stops the merge, listed, unless ``allow_missing``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .errors import ConfigError, DuplicateId, InputError
from .sharding import Shard

#: The commands whose outputs merge, and the qid of each one's output lines.
MERGEABLE = ("run", "pipeline", "labels")


@dataclass(frozen=True)
class ShardFile:
    """One shard's JSONL output and what its run record says of it.

    Attributes
    ----------
    path : str
        The JSONL output (``-o`` of the run).
    command : str
        The command that wrote it: ``run``, ``pipeline`` or ``labels``.
    shard : Shard or None
        The slice it holds (None: the run had no ``--shard``).
    record : dict
        The run record (its closing summary, or state ``running`` for a killed run).
    """

    path: str
    command: str
    shard: Shard | None
    record: dict

    @property
    def state(self) -> str:
        """The run's state: ``finished``, ``failed``, ``interrupted`` or ``running``."""
        return str(self.record.get("state"))


@dataclass(frozen=True)
class _Line:
    """Where one finished query's line lies in a shard file."""

    qid: str
    shard: int
    offset: int
    length: int
    number: int


@dataclass
class MergeResult:
    """What a merge wrote and what it lacks.

    Attributes
    ----------
    queries : int
        Lines written.
    missing : list of str
        What the shards do not hold (one sentence each); empty for a complete merge.
    missing_qids : list of str
        The ``--input`` qids (or the shards' failed qids) not in the merge.
    """

    queries: int = 0
    missing: list[str] = field(default_factory=list)
    missing_qids: list[str] = field(default_factory=list)


def read_shard_file(path: str) -> ShardFile:
    """A shard output with its run record, checked to be a rerank output.

    Parameters
    ----------
    path : str
        A JSONL output of ``rerank run``, ``pipeline`` or ``labels``.

    Returns
    -------
    ShardFile

    Raises
    ------
    InputError
        When the file is missing, or no run record beside it names it as the run's ``-o``.
    """
    from .output_record import read_record, record_names, record_path

    try:
        info = os.stat(path)
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror}", path) from None
    record = read_record(record_path(path))
    output = record.get("outputs", {}).get("-o") if record is not None else None
    if record is None or output is None or not record_names({"outputs": {"-o": output}}, path, info):
        raise InputError(f"not a rerank output: no run record ({record_path(path)}) names it as the -o of "
                         f"`rerank run`, `pipeline` or `labels`", path)
    command = record.get("command")
    if command not in MERGEABLE:
        raise InputError(f"written by `rerank {command}`: only the outputs of `rerank "
                         f"{'`, `rerank '.join(MERGEABLE)}` merge", path)
    spec = record.get("shard")
    try:
        shard = Shard.parse(spec) if spec is not None else None
    except ConfigError:
        raise InputError(f"its run record names a malformed shard {spec!r}", path) from None
    return ShardFile(str(path), command, shard, record)


def check_shards(shards: list[ShardFile]) -> list[str]:
    """Check that the shards belong together; returns the slices none of them holds.

    Raises
    ------
    ConfigError
        When they come from different commands, cut the input into different numbers of
        slices, or two hold the same slice (or one file is given twice).
    """
    from .outputs import file_identity

    if not shards:
        raise ConfigError("merge-runs: give the shard outputs to merge (SHARD.jsonl...)")
    commands = {shard.command for shard in shards}
    if len(commands) > 1:
        raise ConfigError(f"the shards come from different commands ({', '.join(sorted(commands))}): "
                          "merge the outputs of one command")
    seen: dict = {}
    for shard in shards:
        identity = file_identity(shard.path)
        if identity in seen:
            also = "" if seen[identity] == shard.path else f" (also as {seen[identity]})"
            raise ConfigError(f"{shard.path} is given twice{also}")
        seen[identity] = shard.path
    sliced = [shard for shard in shards if shard.shard is not None]
    counts = {shard.shard.count for shard in sliced}
    if len(counts) > 1:
        raise ConfigError("the shards cut the input into different numbers of slices ("
                          + ", ".join(f"{shard.path}: {shard.shard}" for shard in sliced) + ")")
    holders: dict[int, str] = {}
    for shard in sliced:
        if shard.shard.index in holders:
            raise ConfigError(f"slice {shard.shard} is in two shard files: {holders[shard.shard.index]} and "
                              f"{shard.path}")
        holders[shard.shard.index] = shard.path
    count = next(iter(counts), 0)
    return [f"slice {index}/{count}" for index in range(1, count + 1) if index not in holders]


def merge_shards(shards: list[ShardFile], output: str, trec: str | None = None, *, tag: str = "rerank",
                 order: Iterable[str] | None = None, allow_missing: bool = False) -> MergeResult:
    """Write the shards' lines into ``output`` (and a TREC run into ``trec``) in the input's order.

    Parameters
    ----------
    shards : list of ShardFile
        The shard outputs, from :func:`read_shard_file`.
    output : str
        The merged JSONL; the lines are copied byte for byte.
    trec : str or None
        Also write the TREC run of the merged results (``run`` and ``pipeline`` outputs only).
    tag : str
        The TREC run's tag (``--tag`` of the shards' runs).
    order : iterable of str or None
        The qids in the input's order (``--input``), each as often as the input holds it;
        None keeps the shards' order, file by file.
    allow_missing : bool
        Merge what the shards hold even when some of the input is missing (listed in the result).

    Returns
    -------
    MergeResult

    Raises
    ------
    InputError
        When a line is not one rerank wrote, a qid is in two shards or outside its shard's slice,
        a shard holds a qid ``order`` lacks, or (without ``allow_missing``) something is missing.
    ConfigError
        When the shards do not belong together, or ``trec`` is asked of ``labels`` outputs.
    """
    from .resume import label_qid, rankllm_qid

    result = MergeResult(missing=[f"{what}: no shard file holds it" for what in check_shards(shards)])
    command = shards[0].command
    if trec and command == "labels":
        raise ConfigError("--trec: the shards are `rerank labels` outputs (training examples, without scores); "
                          "merge their TREC runs from the labels' own --trec files")
    lines = _index(shards, label_qid if command == "labels" else rankllm_qid, result)
    if order is None:
        result.missing_qids = [qid for shard in shards for qid in shard.record.get("failed") or []]
        chosen = lines
    else:
        chosen = _in_order(lines, order, shards, result)
    if result.missing_qids:
        shown = ", ".join(result.missing_qids[:10]) + (" ..." if len(result.missing_qids) > 10 else "")
        result.missing.append(f"{len(result.missing_qids)} queries are in no shard ({shown})")
    if result.missing and not allow_missing:
        raise InputError("the shards do not hold the whole input: " + "; ".join(result.missing)
                         + ". Finish the shards (rerun a shard's command with --resume), or pass "
                           "--allow-missing to merge what they hold")
    _write(shards, chosen, output, trec, tag)
    result.queries = len(chosen)
    return result


def _index(shards: list[ShardFile], qid_of: Callable[[dict], str], result: MergeResult) -> list[_Line]:
    """Every finished line of the shards, file by file; a torn last line is left out (and missing)."""
    lines: list[_Line] = []
    owner: dict[str, int] = {}
    for number_of_shard, shard in enumerate(shards):
        if shard.state not in ("finished", "failed"):
            result.missing.append(f"{shard.path} is unfinished (state {shard.state})")
        offset = 0
        with open(shard.path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                start, offset = offset, offset + len(raw)
                if not raw.endswith(b"\n"):
                    result.missing.append(f"{shard.path} ends in a torn line (a killed run)")
                    break
                if not raw.strip():
                    continue
                try:
                    qid = qid_of(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    raise InputError(f"not a line `rerank {shard.command}` wrote", shard.path, number) from None
                if shard.shard is not None and not shard.shard.holds(qid):
                    raise InputError(f"qid {qid} is not in slice {shard.shard}, which the run record says "
                                     "this file holds", shard.path, number)
                first = owner.setdefault(qid, number_of_shard)
                if first != number_of_shard:
                    raise DuplicateId(f"qid {qid} is in two shards: {shards[first].path} and this one",
                                      shard.path, number)
                lines.append(_Line(qid, number_of_shard, start, len(raw), number))
    return lines


def _in_order(lines: list[_Line], order: Iterable[str], shards: list[ShardFile],
              result: MergeResult) -> list[_Line]:
    """The lines in the input's order; the input's qids no shard holds go to ``result``."""
    by_qid: dict[str, deque] = defaultdict(deque)
    for line in lines:
        by_qid[line.qid].append(line)
    chosen = []
    for qid in order:
        if by_qid.get(qid):
            chosen.append(by_qid[qid].popleft())
        else:
            result.missing_qids.append(qid)
    extra = [line for left in by_qid.values() for line in left]
    if extra:
        first = min(extra, key=lambda line: (line.shard, line.number))
        raise InputError(f"{len(extra)} results of the shards are not in --input (qid {first.qid} first): is "
                         "--input the file the shards were cut from?", shards[first.shard].path, first.number)
    return chosen


def _write(shards: list[ShardFile], lines: list[_Line], output: str, trec: str | None, tag: str) -> None:
    """Copy the lines into ``output``; write the TREC run of the results they hold into ``trec``."""
    from contextlib import ExitStack

    from .formats import TrecRunWriter
    from .formats.jsonvalues import load_json_line
    from .formats.rankllm import parse_request

    with ExitStack() as stack:
        sources = [stack.enter_context(open(shard.path, "rb")) for shard in shards]
        merged = stack.enter_context(open(output, "wb"))
        run = stack.enter_context(TrecRunWriter(trec, tag=tag)) if trec else None
        for line in lines:
            source = sources[line.shard]
            source.seek(line.offset)
            raw = source.read(line.length)
            if run is not None:
                path = shards[line.shard].path
                run.write(parse_request(load_json_line(raw.decode("utf-8"), path, line.number), path, line.number))
            merged.write(raw)


def merged_summary(shards: list[ShardFile], result: MergeResult) -> dict:
    """The merged run's summary: the shards' usage summed, their settings, what the merge lacks.

    Parameters
    ----------
    shards : list of ShardFile
        The merged shards.
    result : MergeResult
        What the merge wrote.

    Returns
    -------
    dict
        A run summary (see :class:`~rerank.run_summary.RunSummary`) with ``shards``, each
        shard's path, slice and state, and ``missing`` when something is.
    """
    from dataclasses import fields

    from .run_summary import RunSummary

    summed = {}
    for item in fields(RunSummary):
        if item.type in ("int | None", "float | None") and item.name not in ("queries", "already_done"):
            values = [shard.record.get(item.name) for shard in shards]
            total = sum(value for value in values if isinstance(value, (int, float)))
            summed[item.name] = round(total, 3) if item.type.startswith("float") else total
    first = shards[0].record
    extra = {"shards": [{"path": os.path.realpath(shard.path), "shard": str(shard.shard) if shard.shard else None,
                         "state": shard.state} for shard in shards]}
    if result.missing:
        extra["missing"] = result.missing
    summary = RunSummary(**summed, queries=result.queries, failed=list(result.missing_qids),
                         state="failed" if result.missing else "finished",
                         settings=dict(first.get("settings") or {}), backend=first.get("backend"),
                         model=first.get("model"), extra=extra)
    return summary.to_json()
