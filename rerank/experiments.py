"""Experiments as data: a YAML file names a data set, shared settings and a grid of variants.

``rerank experiment FILE`` runs every variant over every query through one shared call cache
(overlapping calls are paid once; a rerun is free), writes each variant's TREC run, JSONL output
and cost summary into a results folder, then compares them against the baseline::

    name: dl19-judges
    candidates: ../../shared/data/dl19/bm25_top100.json   # paths are relative to this file
    qrels: ../../shared/data/dl19/qrels.dl19-passage.txt
    settings: {max_passage_words: 100, concurrency: 32}   # RerankerConfig fields for every variant
    grid:                                                # every combination of the axes
      judge:                                             # a mapping value sets several fields
        identity: {model: identity, base_url: "${IDENTITY_URL}"}
        oracle: {model: oracle, base_url: "${ORACLE_URL}"}
      strategy: [sliding, full]                          # a list value sets the field named by the axis
    metrics: [nDCG@10, nDCG@5]
    baseline: first-stage                                # or a variant's name

Strings may use ``${VAR}`` and ``${VAR:-default}`` for environment variables. The value of a
variable named like a secret (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``) is never
written: summaries show ``${NAME}`` in its place, and base URLs lose their credentials and query
strings. The grid may also vary ``candidates`` (the first stage), e.g.
``candidates: {bm25: a.json, splade: b.json}``.

``dataset: ID`` names an ir_datasets dataset (:mod:`rerank.formats.irds`) instead: without
``candidates`` its own first stage (``scoreddocs``, the best ``depth`` of each query, 100 by
default) gives the candidates, and without ``qrels`` its judgments score the runs; a
``candidates`` TREC run then takes its texts from the dataset.

The test judges of :mod:`rerank.testing` run in process, with no server, as the ``judge``
backend: ``{backend: judge, model: "judge:oracle:DATA"}``, where a relative ``DATA`` (a folder
of candidates and qrels, or a qrels file) is relative to the experiment file. Before any variant
runs, :func:`check_endpoints` asks every endpoint the variants name once, within seconds, and
stops with one line naming the variant and the URL when one does not answer.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .reranker import RerankerConfig
from .config import reranker_options

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
# The strategies' and backends' options are settings too, checked as they declare them.
_STRATEGY_OPTIONS = reranker_options()
_CONFIG_FIELDS = ({f.name for f in fields(RerankerConfig)} - {"cache", "options"}) | set(_STRATEGY_OPTIONS)
_FIELD_TYPES = {f.name: str(f.type) for f in fields(RerankerConfig)}
FIRST_STAGE = "first-stage"


@dataclass(frozen=True)
class Variant:
    """One cell of the grid: its name, candidates file (None: the dataset's first stage) and
    reranker settings."""

    name: str
    candidates: Path | None
    settings: dict


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file."""

    name: str
    path: Path
    qrels: Path | None
    candidates: Path | None
    results: Path
    cache: Path
    variants: tuple[Variant, ...]
    metrics: tuple[str, ...]
    baseline: str
    references: dict
    secrets: dict = field(default_factory=dict)
    #: An ir_datasets id giving what ``candidates`` and ``qrels`` leave out, and the depth of its first stage.
    dataset: str | None = None
    depth: int = 100

    def public(self, settings: dict) -> dict:
        """``settings`` as a summary may show them: secret values from the environment replaced
        by ``${NAME}``, base URLs without credentials or query strings."""
        from .secrets import public_headers, public_url

        shown = hide_secrets(settings, self.secrets)
        if shown.get("base_url"):
            shown["base_url"] = public_url(shown["base_url"])
        if shown.get("headers"):
            shown["headers"] = public_headers(shown["headers"])
        return shown


def hide_secrets(value: Any, secrets: dict) -> Any:
    """``value`` (strings, recursively) with each secret replaced by ``${NAME}`` (``secrets``:
    value -> variable name, as :func:`expand_env` gathers them)."""
    if isinstance(value, str):
        for secret, name in secrets.items():
            value = value.replace(secret, "${" + name + "}")
        return value
    if isinstance(value, dict):
        return {key: hide_secrets(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [hide_secrets(item, secrets) for item in value]
    return value


def expand_env(value: Any, secrets: dict | None = None) -> Any:
    """``${VAR}`` and ``${VAR:-default}`` in strings (recursively), from the environment.

    The non-empty values of variables named like secrets are added to ``secrets`` (value ->
    variable name), so that summaries can hide them.
    """
    if isinstance(value, str):
        def substitute(match):
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                found = os.environ[name]
            elif default is not None:
                found = default
            else:
                raise ConfigError(f"environment variable {name} is not set (used as ${{{name}}})")
            if secrets is not None and len(found) >= 4 and _SECRET_NAME.search(name):
                secrets[found] = name
            return found
        return _ENV.sub(substitute, value)
    if isinstance(value, list):
        return [expand_env(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, secrets) for k, v in value.items()}
    return value


def load_experiment(path: str | os.PathLike, results: str | None = None) -> Experiment:
    """Read and check an experiment file; paths in it are relative to the file.

    Raises
    ------
    ConfigError
        For an unreadable file or a wrong field, naming the file and the field.
    """
    import yaml

    from .evaluation.metrics import metric_names

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an experiment file is a mapping with name, candidates, qrels and grid")
    known = {"name", "candidates", "qrels", "settings", "grid", "metrics", "baseline", "results", "cache",
             "references", "description", "dataset", "depth"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{path}: field '{key}': unknown (known: {', '.join(sorted(known))})")
    secrets: dict[str, str] = {}
    data = expand_env({k: v for k, v in data.items() if k != "references"}, secrets) | {
        "references": data.get("references") or {}}
    here = path.parent

    dataset, depth = _dataset_fields(data, path)

    def required_path(key: str) -> Path | None:
        if dataset is not None and data.get(key) is None:
            return None  # the dataset gives it
        if not isinstance(data.get(key), str):
            raise ConfigError(f"{path}: field '{key}': a file path is required (or a 'dataset' giving it)")
        return (here / data[key]).resolve()

    name = str(data.get("name") or path.stem)
    candidates, qrels = required_path("candidates"), required_path("qrels")
    settings = data.get("settings") or {}
    _check_settings(settings, path, "settings")
    axes = data.get("grid") or {}
    if not isinstance(axes, dict):
        raise ConfigError(f"{path}: field 'grid': a mapping of axis name to values")
    variants = tuple(_variants(axes, settings, candidates, here, path, secrets))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: field 'grid': two variants share a name")
    metrics = data.get("metrics") or ("nDCG@10", "nDCG@5", "MAP@100")
    try:
        metrics = tuple(metric_names([metrics] if isinstance(metrics, str) else metrics))
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{path}: field 'metrics': {exc}") from None
    baseline = str(data.get("baseline") or FIRST_STAGE)
    if baseline != FIRST_STAGE and baseline not in names:
        raise ConfigError(f"{path}: field 'baseline': '{baseline}' is neither {FIRST_STAGE} nor a variant "
                          f"({', '.join(names)})")
    out = Path(results) if results else (here / (data.get("results") or f"results/{name}")).resolve()
    cache = (here / data["cache"]).resolve() if data.get("cache") else out / "calls.sqlite"
    return Experiment(name, path, qrels, candidates, out, cache, variants, metrics, baseline,
                      data["references"], secrets, dataset, depth)


def _dataset_fields(data: dict, path: Path) -> tuple[str | None, int]:
    """The ``dataset`` and ``depth`` fields, checked (the dataset is opened where it is read)."""
    dataset, depth = data.get("dataset"), data.get("depth", 100)
    if dataset is not None and (not isinstance(dataset, str) or not dataset.strip()):
        raise ConfigError(f"{path}: field 'dataset': an ir_datasets id, e.g. msmarco-passage/trec-dl-2019/judged")
    if isinstance(depth, str) and depth.isdigit():
        depth = int(depth)  # from ${VAR}
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"{path}: field 'depth': a positive number of candidates per query, got {depth!r}")
    if "depth" in data and dataset is None:
        raise ConfigError(f"{path}: field 'depth': the depth of a dataset's first stage, and no 'dataset' is given")
    return dataset, depth


def experiment_requests(experiment: Experiment, candidates: Path | None):
    """The requests of a candidates file of an experiment, or of its dataset's first stage.

    Parameters
    ----------
    experiment : Experiment
        The experiment.
    candidates : Path or None
        The experiment's or a variant's candidates; None takes the dataset's first stage (its
        best ``depth`` a query). A TREC run, with a dataset, takes its texts from it.

    Returns
    -------
    Iterator of Request
        The requests, streamed.
    """
    from .formats import detect_format, read_requests

    if experiment.dataset is None:
        return read_requests(candidates)
    from .formats.irds import IrDataset

    if candidates is None:
        return IrDataset(experiment.dataset).requests(depth=experiment.depth)
    if detect_format(candidates) == "trec":
        return IrDataset(experiment.dataset).requests(candidates)
    return read_requests(candidates)


def check_dataset(experiment: Experiment) -> None:
    """Open an experiment's dataset (if it names one) and check it has what the experiment takes
    from it, before anything runs.

    Raises
    ------
    ConfigError
        For an unknown id, or a dataset without the documents, queries, first stage or qrels
        the experiment needs from it, naming the experiment file.
    """
    if experiment.dataset is None:
        return
    from .formats.irds import IrDataset

    try:
        dataset = IrDataset(experiment.dataset)
        dataset.require("docs", "it cannot give the passages to rerank")
        dataset.require("queries")
        if experiment.candidates is None or any(variant.candidates is None for variant in experiment.variants):
            dataset.require("scoreddocs", "give 'candidates' (a TREC run over its documents)")
        if experiment.qrels is None:
            dataset.require("qrels", "give 'qrels' (a qrels file)")
    except ConfigError as error:
        raise ConfigError(f"{experiment.path}: field 'dataset': {error}") from None


def experiment_qrels(experiment: Experiment) -> tuple[dict, str]:
    """The judgments that score an experiment's runs, and their name for messages: its
    ``qrels`` file, else its dataset's (``ir_datasets:ID``)."""
    from .formats import read_qrels

    if experiment.qrels is not None:
        return read_qrels(experiment.qrels), str(experiment.qrels)
    from .formats.irds import IrDataset

    return IrDataset(experiment.dataset).qrels(), f"ir_datasets:{experiment.dataset}"


def _check_settings(settings: Any, path: Path, where: str) -> None:
    if not isinstance(settings, dict):
        raise ConfigError(f"{path}: field '{where}': a mapping of reranker settings")
    for key, value in list(settings.items()):
        if key not in _CONFIG_FIELDS | {"candidates"}:
            raise ConfigError(f"{path}: field '{where}.{key}': unknown setting "
                              f"(known: candidates, {', '.join(sorted(_CONFIG_FIELDS))})")
        if key in _STRATEGY_OPTIONS:
            settings[key] = _STRATEGY_OPTIONS[key].convert(value, f"{path}: field '{where}.{key}'")
        else:
            settings[key] = _typed(value, _FIELD_TYPES.get(key, "str"), path, f"{where}.{key}")


def _typed(value: Any, annotation: str, path: Path, where: str) -> Any:
    # A value from ${VAR} arrives as text; the config field says what it should be.
    if not isinstance(value, str) or annotation.startswith("str"):
        return value
    try:
        if annotation.startswith("int"):
            return int(value)
        if annotation.startswith("float"):
            return float(value)
        if annotation.startswith("bool"):
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[value.lower()]
    except (ValueError, KeyError):
        raise ConfigError(f"{path}: field '{where}': {value!r} is not a valid {annotation.split()[0]}") from None
    return value


def _variants(axes: dict, settings: dict, candidates: Path, here: Path, path: Path, secrets: dict):
    labelled_axes = []
    for axis, values in axes.items():
        if isinstance(values, dict):
            labelled = list(values.items())
        elif isinstance(values, list) and values:
            # Labels become file names: a secret shows as its variable's name.
            labelled = [(re.sub(r"\$\{(\w+)\}", r"\1", hide_secrets(str(v), secrets)), v) for v in values]
        else:
            raise ConfigError(f"{path}: field 'grid.{axis}': a non-empty list or mapping of values")
        for label, value in labelled:
            if isinstance(value, dict):
                _check_settings(value, path, f"grid.{axis}.{label}")
            elif axis not in _CONFIG_FIELDS | {"candidates"}:
                raise ConfigError(f"{path}: field 'grid.{axis}': unknown setting; give mappings of settings "
                                  "as values to name an axis freely")
        labelled_axes.append((axis, labelled))
    for combination in itertools.product(*(values for _, values in labelled_axes)):
        merged = dict(settings)
        parts = []
        for (axis, values), (label, value) in zip(labelled_axes, combination):
            merged.update(value if isinstance(value, dict) else {axis: value})
            if len(values) > 1:
                parts.append(str(label))
        source = (here / merged.pop("candidates")).resolve() if "candidates" in merged else candidates
        yield Variant(_file_safe("-".join(parts) or "default"), source, _judge_data_here(merged, here))


def _judge_data_here(settings: dict, here: Path) -> dict:
    """``settings`` with the data of an in-process judge (``model: judge:NAME:DATA``, ``backend:
    judge``) made relative to the experiment file's folder, as its other paths are."""
    model = settings.get("model")
    if settings.get("backend") != "judge" or not isinstance(model, str):
        return settings
    prefix = "judge:" if model.startswith("judge:") else ""
    name, sep, data = model[len(prefix):].partition(":")
    if not sep or not data or os.path.isabs(data):
        return settings
    return {**settings, "model": f"{prefix}{name}:{(here / data).resolve()}"}


async def check_endpoints(experiment: Experiment, timeout: float = 3.0) -> None:
    """Ask every endpoint the variants name, once each, before any variant runs.

    Only OpenAI-compatible endpoints are asked (``GET /models``, no retries, ``timeout``
    seconds all told); in-process backends (the judges, llama.cpp, vLLM) are prepared when
    their variant runs.

    Raises
    ------
    ConfigError
        For a variant whose endpoint cannot be reached or refuses the key (or that has no
        API key for OpenAI's API): one line naming the variant and the URL.
    """
    from .backends import backend_name_for, make_backend
    from .errors import BackendError

    asked: set[tuple] = set()
    for variant in experiment.variants:
        config = RerankerConfig.from_dict({**variant.settings, "cache": None, "timeout": timeout, "max_attempts": 1})
        if backend_name_for(config.backend, config.model, config.base_url) != "openai":
            continue
        key = (config.base_url, config.api_key_file, config.api_key_env, tuple(sorted(config.headers.items())))
        if key in asked:
            continue
        asked.add(key)
        try:
            backend = make_backend(config)
            try:
                await backend.preflight(timeout)
            finally:
                await backend.aclose()
        except (BackendError, ConfigError) as exc:
            raise ConfigError(f"{experiment.path}: variant {variant.name}: {exc}; no variant was run "
                              "(start that server, or set its URL)") from None


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9=._+-]+", "-", name)


def experiment_outputs(experiment: Experiment) -> dict[str, Path]:
    """Every file :func:`run_experiment` writes into the results folder, by name."""
    files = {"first stage": experiment.results / f"{FIRST_STAGE}.trec"}
    for variant in experiment.variants:
        stem = experiment.results / variant.name
        for suffix in (".jsonl", ".trec", ".summary.json"):
            files[f"{variant.name}{suffix}"] = Path(f"{stem}{suffix}")
    for suffix in ("md", "csv", "tex"):
        files[f"comparison.{suffix}"] = experiment.results / f"comparison.{suffix}"
    return files


def experiment_inputs(experiment: Experiment) -> dict[str, Path]:
    """Every file an experiment reads: the experiment file, candidates and qrels."""
    inputs = {"FILE": experiment.path, "candidates": experiment.candidates, "qrels": experiment.qrels}
    for variant in experiment.variants:
        inputs.setdefault(f"candidates of {variant.name}", variant.candidates)
    return inputs


async def run_experiment(experiment: Experiment, *, quiet: bool = False,
                         check: bool = True, progress=None) -> dict[str, Path]:
    """Run every variant (skipping none: the shared cache makes finished calls free) and write
    ``<variant>.trec``, ``<variant>.jsonl`` and ``<variant>.summary.json`` through
    :func:`~rerank.run_writer.write_run`; returns the runs by name, the first stage's included.
    With ``check`` (unless the caller did it), :func:`check_endpoints` first. Progress
    (a :class:`~rerank.progress.ProgressOptions`; None: shown unless ``quiet``) is shown for
    each variant and for the whole experiment."""
    from .formats import TrecRunWriter
    from .progress import ProgressOptions, count_queries
    from .types import Usage

    if check:
        await check_endpoints(experiment)
    experiment.results.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Path] = {}
    first_stage = experiment.results / f"{FIRST_STAGE}.trec"
    with TrecRunWriter(first_stage, tag=FIRST_STAGE) as writer:
        for request in experiment_requests(experiment, experiment.candidates):
            writer.write(request)
    runs[FIRST_STAGE] = first_stage
    options = progress if progress is not None else ProgressOptions(enabled=not quiet)
    counts = [None if variant.candidates is None else count_queries(variant.candidates)
              for variant in experiment.variants]
    overall = options.start(None if None in counts else sum(counts), label="experiment")
    done = Usage()

    def counted(result, example) -> None:
        done.add_result(result)
        overall.track(done)

    try:
        return await _run_variants(experiment, options, overall, counts, counted, runs, quiet)
    finally:
        overall.close()


async def _run_variants(experiment: Experiment, options, overall, counts, counted, runs: dict, quiet: bool
                        ) -> dict[str, Path]:
    """The variants of :func:`run_experiment`, one after the other."""
    from .reranker import Reranker
    from .run_writer import RunFiles, SummaryFile, write_run

    for number, (variant, total) in enumerate(zip(experiment.variants, counts), 1):
        config = RerankerConfig.from_dict({**variant.settings, "cache": str(experiment.cache)})
        reranker = Reranker(config)
        requests = experiment_requests(experiment, variant.candidates)
        stem = experiment.results / variant.name
        summary = await write_run(
            reranker, lambda on_error: reranker.rerank_iter(requests),  # a failed query ends the experiment
            RunFiles(f"{stem}.jsonl", f"{stem}.trec", variant.name), SummaryFile(f"{stem}.summary.json"),
            settings=experiment.public({**asdict(config), "cache": None}), extra=lambda: {"variant": variant.name},
            progress=options, total=total, label=f"{variant.name} ({number}/{len(experiment.variants)})",
            on_result=counted)
        if summary.state == "interrupted":
            raise KeyboardInterrupt  # what is finished is on disk; --resume runs it again through the cache
        runs[variant.name] = Path(f"{stem}.trec")
        if not quiet:
            overall.note(f"{variant.name}: {summary.queries} queries, {summary.calls} calls ({summary.cache_hits} "
                         f"from cache), {summary.prompt_tokens:,} prompt tokens, {summary.wall_seconds:.1f} s")
    return runs
