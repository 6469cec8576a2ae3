"""TREC measures over a run and qrels, with ir_measures (its trec_eval backend gives
trec_eval-identical numbers). Measures are ir_measures strings such as ``nDCG@10`` or ``RR@10``;
:func:`metric_name` also takes them in any case, and trec_eval's names (``ndcg_cut_10``, ``map``,
``recip_rank``, ``P_5``, ``recall_100``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import ConfigError
from ..formats import read_qrels, read_run

DEFAULT_METRICS = ("nDCG@10", "nDCG@5", "MAP@100", "R@100", "RR@10")
_EXAMPLES = "examples: nDCG@10, MAP@100, R@100, RR@10, P@5, or trec_eval's ndcg_cut_10, map, recip_rank, P_5"
# What ir_measures' parser may raise for a string it cannot read.
_PARSE_ERRORS = (ValueError, NameError, SyntaxError, TypeError, AttributeError, KeyError, IndexError,
                 RecursionError)
# A measure's name and the rest (``@10``, ``(rel=2)@10``), for matching the name in any case.
_NAME_AND_REST = re.compile(r"([^\W\d]\w*)(.*)", re.DOTALL)


def metric_name(name: str) -> str:
    """The ir_measures measure string for a metric name as a user may write it.

    A string ir_measures reads is kept as written (``MAP@100`` stays ``MAP@100``). Otherwise
    trec_eval's names are read as trec_eval means them, and a measure's name in another case
    as ir_measures spells it; both give ir_measures' own string.

    Parameters
    ----------
    name : str
        ``nDCG@10``, ``ndcg@10``, ``ndcg_cut_10``, ``map``, ``recip_rank``, ``P_5``,
        ``recall_100``, ``ndcg``, ...

    Returns
    -------
    str
        A measure string ir_measures parses: ``nDCG@10``, ``AP``, ``RR``, ``P@5``, ``R@100``.

    Raises
    ------
    ConfigError
        For a name that is no measure, or a trec_eval name of several that is no ir_measures
        name in another case (``ndcg_cut``: every cutoff).

    Examples
    --------
    >>> [metric_name(n) for n in ("nDCG@10", "ndcg_cut_10", "NDCG_CUT_10", "map", "recip_rank", "P_5", "r@100")]
    ['nDCG@10', 'nDCG@10', 'nDCG@10', 'AP', 'RR', 'P@5', 'R@100']
    """
    import ir_measures

    text = str(name).strip()
    if not text:
        raise ConfigError(f"unknown metric '{name}' ({_EXAMPLES})")
    try:
        ir_measures.parse_measure(text)
        return text
    except _PARSE_ERRORS:
        pass
    several = []
    for candidate in _trec_spellings(text):
        try:
            measures = ir_measures.parse_trec_measure(candidate)
        except _PARSE_ERRORS:
            continue
        if len(measures) == 1:
            return str(measures[0])
        several = measures
        break
    match = _NAME_AND_REST.fullmatch(text)
    if match:
        head, rest = match.groups()
        for spelled in _registered_names():
            if spelled.lower() == head.lower():
                try:
                    return str(ir_measures.parse_measure(spelled + rest))
                except _PARSE_ERRORS:
                    break
    if several:
        shown = ", ".join(map(str, several[:4])) + (", ..." if len(several) > 4 else "")
        raise ConfigError(f"metric '{name}' is trec_eval's name of {len(several)} measures ({shown}): "
                          f"give one, e.g. {several[min(1, len(several) - 1)]}")
    raise ConfigError(f"unknown metric '{name}' ({_EXAMPLES})")


def _trec_spellings(text: str) -> list[str]:
    """``text`` as trec_eval spells its measures: as written, then with the measure's base name
    (``ndcg_cut`` in ``NDCG_CUT_10``) in trec_eval's case."""
    import pytrec_eval

    spellings = [text]
    lowered = text.lower()
    # Longest first: ``ndcg_cut`` before ``ndcg``.
    for base in sorted(pytrec_eval.supported_measures, key=len, reverse=True):
        low = base.lower()
        if lowered == low or lowered.startswith(low + "_") or lowered.startswith(low + "."):
            spellings.append(base + text[len(base):])
            break
    return spellings


def _registered_names() -> list[str]:
    """ir_measures' measure names and aliases, its own spellings first (``nDCG`` before ``NDCG``)."""
    import ir_measures

    registry = ir_measures.measures.registry
    return sorted(registry, key=lambda spelled: str(registry[spelled]) != spelled)


def metric_names(names: Sequence[str]) -> list[str]:
    """:func:`metric_name` of each name, in order.

    Raises
    ------
    ConfigError
        Naming the first name that is no measure.
    """
    return [metric_name(name) for name in names]


def parse_metrics(names: Sequence[str]) -> list:
    """ir_measures measure objects for metric names (see :func:`metric_name`).

    Raises
    ------
    ConfigError
        For a name that is no measure, with examples.
    """
    import ir_measures

    return [ir_measures.parse_measure(name) for name in metric_names(names)]


@dataclass(frozen=True)
class Evaluation:
    """Scores of one run.

    Attributes
    ----------
    metrics : tuple of str
        The measure strings, in the order asked for.
    aggregate : dict
        Measure string -> mean over the judged queries of the run.
    per_query : dict
        qid -> measure string -> value.
    """

    metrics: tuple[str, ...]
    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]


def evaluate(run_path: str, qrels_path: str | Mapping[str, Mapping[str, int]],
             metrics: Sequence[str] = DEFAULT_METRICS, *, qrels_name: str | None = None) -> Evaluation:
    """Score the TREC run at ``run_path`` (or the first stage of a candidates file, see
    :func:`read_ranking`) against the qrels at ``qrels_path``: a qrels file, or judgments in
    memory (qid -> docid -> grade, e.g. an ir_datasets dataset's), named in messages by
    ``qrels_name``.

    Queries of the run without judgments, and judged queries the run does not hold, are left
    out of the mean, as trec_eval does (without ``-c``).

    Raises
    ------
    InputError
        When the run is empty or malformed.
    ConfigError
        When the qrels judge no query of the run (see :func:`check_scorable`).
    """
    run = read_ranking(run_path)
    if isinstance(qrels_path, Mapping):
        qrels, qrels_name = qrels_path, qrels_name or "the qrels"
    else:
        qrels, qrels_name = read_qrels(qrels_path), qrels_name or str(qrels_path)
    check_scorable(run, qrels, run_path, qrels_name)
    return evaluate_run(run, qrels, metrics)


def read_ranking(path: str) -> dict[str, dict[str, float]]:
    """The ranking a file holds, as qid -> docid -> score.

    Parameters
    ----------
    path : str
        A TREC run, or a candidates file (rank_llm JSONL or JSON, RankGPT JSON; told from the
        content by :func:`~rerank.formats.detect.detect_format`), whose first-stage order is
        scored (each query's candidates in the file's order).

    Raises
    ------
    InputError
        When the file is empty (nothing to score), unreadable or malformed.
    """
    from ..errors import NoCandidates
    from ..formats import detect_format, read_requests
    from ..formats.detect import is_blank

    if is_blank(path):
        raise NoCandidates("the run is empty: there is nothing to score", path)
    if detect_format(path) == "trec":
        return {qid: dict(ranking) for qid, ranking in read_run(path)}
    return {request.query.qid: {c.docid: float(len(request.candidates) - rank)
                                for rank, c in enumerate(request.candidates)}
            for request in read_requests(path)}


def check_scorable(run: dict, qrels: dict, run_path: str, qrels_path: str) -> None:
    """Refuse a run that nothing could score: no query at all, or none the qrels judge.

    Raises
    ------
    InputError
        When the run holds no query.
    ConfigError
        When no query of the run is in the qrels (they are of another collection or split).
    """
    from ..errors import NoCandidates

    if not run:
        raise NoCandidates("the run holds no ranking: there is nothing to score", run_path)
    if not any(qid in qrels for qid in run):
        def some(qids) -> str:
            shown = sorted(qids)[:3]
            return ", ".join(shown) + (" ..." if len(qids) > 3 else "")
        raise ConfigError(f"{qrels_path} judges none of the {len(run)} queries of {run_path} (the run's qids: "
                          f"{some(run)}; the qrels': {some(qrels) or 'none'}): are they of the same collection?")


def evaluate_run(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                 metrics: Sequence[str] = DEFAULT_METRICS) -> Evaluation:
    """Score an in-memory run (qid -> docid -> score) against in-memory qrels (qid -> docid -> grade).

    The metrics are named as :func:`metric_name` gives them (``ndcg_cut_10`` becomes ``nDCG@10``;
    a string ir_measures reads stays as written), and so are the keys of the result.
    """
    import ir_measures

    metrics = metric_names(metrics)
    # Two names of one measure (MAP and AP) both get its value.
    names: dict = {}
    for name in metrics:
        names.setdefault(ir_measures.parse_measure(name), []).append(name)
    measures = list(names)
    # ir_measures would score a judged query missing from the run as 0; trec_eval skips it.
    qrels = {qid: grades for qid, grades in qrels.items() if qid in run}
    aggregate = {name: float(value) for measure, value in ir_measures.calc_aggregate(measures, qrels, run).items()
                 for name in names[measure]}
    per_query: dict[str, dict[str, float]] = {}
    for metric in ir_measures.iter_calc(measures, qrels, run):
        scores = per_query.setdefault(metric.query_id, {})
        for name in names[metric.measure]:
            scores[name] = float(metric.value)
    return Evaluation(tuple(metrics), {m: aggregate.get(m, 0.0) for m in metrics}, per_query)
