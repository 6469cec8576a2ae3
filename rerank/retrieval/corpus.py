"""Where a retriever's documents come from: a corpus file, or a source such as an ir_datasets
dataset (:class:`rerank.formats.irds.IrDataset`) that gives its documents by id.

Retrievers take either and read texts only through :func:`corpus_texts`, name the corpus with
:func:`corpus_name` and fingerprint it (for index folders) with
:func:`~rerank.retrieval.index.corpus_fingerprint`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Protocol, Union, runtime_checkable

from rerank.formats.beir import read_corpus

__all__ = ["CorpusLike", "CorpusSource", "corpus_name", "corpus_texts"]


@runtime_checkable
class CorpusSource(Protocol):
    """A corpus that is not a file: its documents by id, all of them, and a stable identity.

    ``str(source)`` names it in messages and in an index folder's ``meta.json``.
    """

    def read(self, wanted: Collection[str] | None = None) -> Mapping[str, tuple[str | None, str]]:
        """The documents, as :func:`~rerank.formats.beir.read_corpus` gives a file's.

        Parameters
        ----------
        wanted : collection of str or None
            Only these docids (those it lacks are absent); None for every document.

        Returns
        -------
        mapping
            ``docid -> (title, text)``.
        """
        ...

    def fingerprint(self) -> str:
        """A short hash that changes when the documents do (it names index folders)."""
        ...


#: What a retriever takes as its corpus: a corpus file, or a :class:`CorpusSource`.
CorpusLike = Union[str, os.PathLike, CorpusSource]


def corpus_texts(corpus: CorpusLike,
                 wanted: Collection[str] | None = None) -> Mapping[str, tuple[str | None, str]]:
    """The documents of a corpus file or source.

    Parameters
    ----------
    corpus : str, path-like or CorpusSource
        The corpus.
    wanted : collection of str or None
        Only these docids (those the corpus lacks are absent); None for every document.

    Returns
    -------
    mapping
        ``docid -> (title, text)``.

    Raises
    ------
    InputError
        When the corpus cannot be read or is malformed.
    """
    if isinstance(corpus, CorpusSource):
        return corpus.read(wanted)
    return read_corpus(corpus, wanted)


def corpus_name(corpus: CorpusLike) -> str:
    """A corpus's name for people: a file's absolute path, a source's ``str()``.

    Parameters
    ----------
    corpus : str, path-like or CorpusSource
        The corpus.

    Returns
    -------
    str
        Its name.
    """
    return str(corpus) if isinstance(corpus, CorpusSource) else os.path.abspath(corpus)
