"""ir_datasets datasets by id: queries, qrels, documents by id, and the dataset's own first stage.

IR people name collections by their `ir_datasets <https://ir-datasets.com>`_ id
(``msmarco-passage/trec-dl-2019/judged``, ``beir/scifact/test``). :class:`IrDataset` opens one
(lazily: ir_datasets is imported, and a part read, only when asked for) and gives what rerank
otherwise reads from files: the queries, the qrels, documents by id through the dataset's
``docs_store()`` (the corpus is never exported), and requests from the dataset's first stage
(``scoreddocs``) or from a TREC run over its documents. It is also a corpus for the retrievers
(:class:`~rerank.retrieval.corpus.CorpusSource`).

ir_datasets knows the ids of its catalogue and those registered in this process. For a dataset
of one's own (local files: ``ir_datasets.registry.register(name, Dataset(TsvDocs(...), ...))``),
name the module that registers it (or its ``.py`` file) in ``$RERANK_DATASET_MODULES``
(several separated by commas): it is imported before an id is looked up.

ir_datasets downloads a dataset's files on first use (into ``$IR_DATASETS_HOME``, by default
``~/.ir_datasets``); a part that cannot be read (offline, a licence to accept) is one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Collection, Iterator
from typing import Any

from rerank.errors import ConfigError, MissingField, RerankError, UnreadableFile
from rerank.formats.fields import parse_id
from rerank.formats.reading import OnBadLine
from rerank.formats.trec import RunLines, join_run, read_run_lines
from rerank.types import Request

__all__ = ["INSTALL_HINT", "IrDataset", "MODULES_VARIABLE", "import_dataset_modules"]

#: How to install ir_datasets, named wherever it is missing.
INSTALL_HINT = "ir_datasets is not installed: pip install 'rerank-llm[datasets]'"
#: The environment variable naming modules (or .py files) that register datasets of one's own.
MODULES_VARIABLE = "RERANK_DATASET_MODULES"
#: The document fields that hold the text, in order of preference (``body``: MS MARCO documents,
#: ``abstract``: CORD-19); a ``title`` field, where there is one, is the passage's title.
TEXT_FIELDS = ("text", "body", "contents", "passage", "abstract")

# The parts of a dataset, by ir_datasets' name, as a message says them.
_PARTS = {"docs": "documents", "queries": "queries", "qrels": "qrels (relevance judgments)",
          "scoreddocs": "first stage (scoreddocs)"}


def _ir_datasets() -> Any:
    """The ir_datasets module, or a :class:`ConfigError` saying how to install it."""
    try:
        import ir_datasets
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ir_datasets


def import_dataset_modules(spec: str | None = None) -> list[str]:
    """Import the modules that register datasets of one's own (``$RERANK_DATASET_MODULES``).

    Each entry is a module name (``mydatasets``, importable from ``sys.path``) or a ``.py``
    file, imported once per process however often this is called.

    Parameters
    ----------
    spec : str or None
        Entries separated by commas (or the path separator); None reads
        ``$RERANK_DATASET_MODULES``.

    Returns
    -------
    list of str
        The entries, in order.

    Raises
    ------
    ConfigError
        When an entry cannot be imported, or fails while registering.
    """
    if spec is None:
        spec = os.environ.get(MODULES_VARIABLE, "")
    entries = [entry.strip() for entry in re.split(f"[,{re.escape(os.pathsep)}]", spec) if entry.strip()]
    for entry in entries:
        try:
            if entry.endswith(".py"):
                _import_file(entry)
            else:
                importlib.import_module(entry)
        except RerankError:
            raise
        except Exception as error:  # the user's module: any failure is theirs to read, in one line
            raise ConfigError(f"${MODULES_VARIABLE}: cannot import {entry}: {_one_line(error)}") from None
    return entries


def _import_file(path: str) -> None:
    """Import a ``.py`` file as a module, once per process."""
    absolute = os.path.abspath(path)
    name = "rerank_datasets_" + hashlib.sha256(absolute.encode("utf-8")).hexdigest()[:12]
    if name in sys.modules:
        return
    if not os.path.isfile(absolute):
        raise FileNotFoundError(f"no such file {path}")
    spec = importlib.util.spec_from_file_location(name, absolute)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _one_line(error: BaseException) -> str:
    """An exception as one short line: its type and its first message line."""
    message = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    first = (message.strip().splitlines() or [""])[0]
    if len(first) > 200:
        first = first[:200] + "..."
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


class IrDataset:
    """An ir_datasets dataset, opened by id.

    Parameters
    ----------
    dataset_id : str
        An id ir_datasets knows: one of its catalogue (``beir/scifact/test``) or one registered
        in this process or by a module of ``$RERANK_DATASET_MODULES``.

    Attributes
    ----------
    id : str
        The dataset's id.

    Raises
    ------
    ConfigError
        When ir_datasets is not installed, a module of ``$RERANK_DATASET_MODULES`` cannot be
        imported, or ir_datasets knows no such id.

    Notes
    -----
    ``str(dataset)`` is ``ir_datasets:ID``, the "file" errors name. Nothing is read here: each
    part is read when asked for, and one the dataset lacks is a :class:`ConfigError`.
    """

    def __init__(self, dataset_id: str):
        ir_datasets = _ir_datasets()
        import_dataset_modules()
        self.id = dataset_id
        try:
            self._dataset = ir_datasets.load(dataset_id)
        except KeyError:
            raise ConfigError(
                f"ir_datasets knows no dataset {dataset_id!r} (ids as listed on ir-datasets.com, e.g. "
                f"msmarco-passage/trec-dl-2019/judged or beir/scifact/test; a dataset of your own: "
                f"register it in a module named by ${MODULES_VARIABLE})") from None
        except Exception as error:  # a dataset's own initialiser failing
            raise ConfigError(f"ir_datasets cannot open {dataset_id!r}: {_one_line(error)}") from None

    def __str__(self) -> str:
        return f"ir_datasets:{self.id}"

    def __repr__(self) -> str:
        return f"IrDataset({self.id!r})"

    def has(self, part: str) -> bool:
        """Whether the dataset has a part: ``docs``, ``queries``, ``qrels`` or ``scoreddocs``."""
        return bool(getattr(self._dataset, f"has_{part}")())

    def require(self, part: str, hint: str = "") -> None:
        """Raise a :class:`ConfigError` unless the dataset has ``part``.

        Parameters
        ----------
        part : str
            ``docs``, ``queries``, ``qrels`` or ``scoreddocs``.
        hint : str
            What to do instead, appended to the message (e.g. ``"pass --qrels"``).

        Raises
        ------
        ConfigError
            When the dataset lacks the part.
        """
        if not self.has(part):
            raise ConfigError(f"ir_datasets {self.id!r} has no {_PARTS[part]}" + (f": {hint}" if hint else ""))

    @contextlib.contextmanager
    def _reading(self, part: str) -> Iterator[None]:
        """Turn ir_datasets' failures while reading a part (a download refused, a damaged
        file) into one line naming the dataset and the part."""
        try:
            yield
        except RerankError:
            raise
        except Exception as error:  # any failure of the third-party reader or its download
            raise UnreadableFile(
                f"cannot read its {_PARTS[part]}: {_one_line(error)} (ir_datasets downloads a dataset "
                f"on first use, into $IR_DATASETS_HOME or ~/.ir_datasets)", str(self)) from None

    def queries(self) -> dict[str, str]:
        """The queries: qid -> text (the query's ``text`` field, else its default text, e.g.
        a TREC topic's title).

        Returns
        -------
        dict
            ``qid -> text``, in the dataset's order; a repeated qid keeps its first text.

        Raises
        ------
        ConfigError
            When the dataset has no queries.
        InputError
            When they cannot be read, or a qid is not a valid id.
        """
        self.require("queries")
        queries: dict[str, str] = {}
        with self._reading("queries"):
            for query in self._dataset.queries_iter():
                qid = parse_id(query.query_id, str(self), None, "query_id")
                queries.setdefault(qid, _query_text(query, str(self)))
        return queries

    def qrels(self) -> dict[str, dict[str, int]]:
        """The relevance judgments: qid -> docid -> grade, as
        :func:`~rerank.formats.trec.read_qrels` gives a file's.

        Raises
        ------
        ConfigError
            When the dataset has no qrels.
        InputError
            When they cannot be read.
        """
        self.require("qrels", "pass a qrels file instead, or choose a subset with judgments (e.g. beir/scifact/test)")
        qrels: dict[str, dict[str, int]] = {}
        with self._reading("qrels"):
            for qrel in self._dataset.qrels_iter():
                qrels.setdefault(str(qrel.query_id), {})[str(qrel.doc_id)] = int(qrel.relevance)
        return qrels

    def documents(self, docids: Collection[str]) -> dict[str, tuple[str | None, str]]:
        """Documents by id, looked up in the dataset's ``docs_store()``.

        Parameters
        ----------
        docids : collection of str
            The ids wanted.

        Returns
        -------
        dict
            ``docid -> (title, text)`` of those the dataset has (the others are absent); the
            title is None where the dataset has none.

        Raises
        ------
        ConfigError
            When the dataset has no documents.
        InputError
            When they cannot be read, or a document has no text field.
        """
        self.require("docs")
        with self._reading("docs"):
            found = self._dataset.docs_store().get_many(list(docids))
        return {str(docid): _passage(doc, str(self)) for docid, doc in found.items()}

    def read(self, wanted: Collection[str] | None = None) -> dict[str, tuple[str | None, str]]:
        """The documents, as a corpus file's (the :class:`~rerank.retrieval.corpus.CorpusSource`
        the retrievers read).

        Parameters
        ----------
        wanted : collection of str or None
            Only these ids, by :meth:`documents`; None iterates over every document (to index
            the corpus).

        Returns
        -------
        dict
            ``docid -> (title, text)``.
        """
        if wanted is not None:
            return self.documents(wanted)
        self.require("docs")
        corpus: dict[str, tuple[str | None, str]] = {}
        with self._reading("docs"):
            for doc in self._dataset.docs_iter():
                docid = parse_id(doc.doc_id, str(self), None, "doc_id")
                corpus.setdefault(docid, _passage(doc, str(self)))
        return corpus

    def fingerprint(self) -> str:
        """A short hash of the documents' identity, naming index folders: the id of the dataset
        that owns them (subsets of one collection share its index), the ir_datasets version,
        and the size and time of a local documents file.

        Returns
        -------
        str
            16 hexadecimal digits.
        """
        ir_datasets = _ir_datasets()
        try:
            owner = ir_datasets.docs_parent_id(self.id)
        except Exception:  # a registered dataset outside ir_datasets' id hierarchy
            owner = self.id
        identity = f"ir_datasets\0{owner}\0{ir_datasets.__version__}"
        try:
            stat = os.stat(self._dataset.docs_path(force=False))
            identity += f"\0{stat.st_size}\0{stat.st_mtime_ns}"
        except Exception:  # no local file to stat (not yet downloaded, or no docs_path)
            pass
        return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]

    def first_stage(self, depth: int | None = 100) -> RunLines:
        """The dataset's own first stage (``scoreddocs``): the best ``depth`` of each query.

        Parameters
        ----------
        depth : int or None
            Candidates kept per query, by decreasing score (ties in the dataset's order);
            None keeps them all.

        Returns
        -------
        RunLines
            ``qid -> [(docid, score, None), ...]``, qids in order of first appearance.

        Raises
        ------
        ConfigError
            When the dataset has no scoreddocs, or ``depth`` is not positive.
        InputError
            When they cannot be read.
        """
        if depth is not None and depth < 1:
            raise ConfigError(f"the depth of a dataset's first stage must be at least 1, got {depth}")
        self.require("scoreddocs", "give a TREC run of your own first stage as INPUT (or use `rerank pipeline`)")
        # A bounded heap per query: a first stage of a thousand candidates a query is never held whole.
        best: dict[str, list[tuple[float, int, str]]] = {}
        with self._reading("scoreddocs"):
            for order, scored in enumerate(self._dataset.scoreddocs_iter()):
                heap = best.setdefault(str(scored.query_id), [])
                entry = (float(scored.score), -order, str(scored.doc_id))
                if depth is None or len(heap) < depth:
                    heapq.heappush(heap, entry)
                elif entry > heap[0]:
                    heapq.heapreplace(heap, entry)
        run: RunLines = {}
        for qid, heap in best.items():
            parse_id(qid, str(self), None, "query_id")
            seen: set[str] = set()
            run[qid] = []
            for score, _, docid in sorted(heap, reverse=True):
                if docid not in seen:  # a docid scored twice for a query counts once
                    seen.add(parse_id(docid, str(self), None, "doc_id"))
                    run[qid].append((docid, score, None))
        return run

    def requests(self, run: str | os.PathLike | None = None, *, depth: int | None = 100,
                 on_bad_line: OnBadLine | None = None) -> Iterator[Request]:
        """Requests over the dataset: its first stage, or a TREC run, with its queries and documents.

        Everything is read and checked before this returns, as for a TREC run with a corpus
        (:func:`~rerank.formats.trec.read_run_requests`).

        Parameters
        ----------
        run : str or path-like or None
            A TREC run over the dataset's documents; None takes the dataset's own first stage
            (:meth:`first_stage`).
        depth : int or None
            With ``run`` None: candidates per query from the first stage (None: all).
        on_bad_line : callable or None
            When given, a bad run line, or a query whose text or a document of which is
            missing or empty, is passed to it and skipped; None stops at the first.

        Returns
        -------
        Iterator of Request
            One per query of the run, in its order; candidates best first.

        Raises
        ------
        ConfigError
            When the dataset lacks documents, queries or (without ``run``) a first stage.
        InputError
            When a part cannot be read, the run is malformed, or a qid or docid of the run is
            not in the dataset (:class:`~rerank.errors.UnknownId`).
        """
        self.require("docs", "a dataset without documents cannot give passages to rerank")
        self.require("queries")
        if run is None:
            lines, where = self.first_stage(depth), str(self)
        else:
            lines, where = read_run_lines(run, on_bad_line), run
        documents = self.documents({docid for entries in lines.values() for docid, _, _ in entries})
        return join_run(lines, documents, self.queries(), run_path=where, corpus_name=f"the documents of {self}",
                        queries_name=f"the queries of {self}", on_bad_line=on_bad_line, validate=True)

    def query_list(self) -> list:
        """The queries as :class:`~rerank.types.Query` objects, in the dataset's order (a
        first stage's input)."""
        from rerank.types import Query

        return [Query(qid=qid, text=text) for qid, text in self.queries().items()]


def _query_text(query: Any, where: str) -> str:
    """A query's text: its ``text`` field, else its ``default_text()``."""
    text = getattr(query, "text", None)
    if isinstance(text, str):
        return text
    if hasattr(query, "default_text"):
        return str(query.default_text())
    raise MissingField(f"query {query.query_id!r} has no text field (fields: {', '.join(query._fields)})",
                       where, None, "text")


def _passage(doc: Any, where: str) -> tuple[str | None, str]:
    """A document as (title, text): the first of :data:`TEXT_FIELDS` it has, and its title."""
    title = getattr(doc, "title", None)
    title = title.strip() or None if isinstance(title, str) else None
    for name in TEXT_FIELDS:
        text = getattr(doc, name, None)
        if isinstance(text, str):
            return title, text
    if hasattr(doc, "default_text"):
        return None, str(doc.default_text())  # its default text already holds any title
    raise MissingField(f"document {doc.doc_id!r} has no text field (fields: {', '.join(doc._fields)})",
                       where, None, "text")
