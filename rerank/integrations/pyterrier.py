"""rerank as a PyTerrier transformer: ``bm25 >> LLMReranker(...)``, in ``pt.Experiment`` too.

The transformer takes PyTerrier's result frame (``qid``, ``query``, ``docno``, ``text``,
``score``, ``rank``) and returns the same rows reranked: a new ``score`` and ``rank`` (from 0,
PyTerrier's first rank), sorted by query and rank, every other column kept::

    import pyterrier as pt
    from rerank.integrations.pyterrier import LLMReranker

    llm = LLMReranker(model="Qwen/Qwen2.5-7B-Instruct", base_url="http://127.0.0.1:8000/v1")
    pipeline = bm25 >> pt.text.get_text(dataset, "text") >> llm
    pt.Experiment([bm25, pipeline], topics, qrels, eval_metrics=[pt.measures.nDCG@10])

PyTerrier (1.0 or newer; its core needs no Java) is an optional extra:
``pip install 'rerank-llm[pyterrier]'``.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..reranker import Reranker
from .frames import rank_frame

INSTALL_HINT = "pip install 'rerank-llm[pyterrier]'"

try:
    import pyterrier as pt
except ImportError:
    raise ModuleNotFoundError(f"rerank.integrations.pyterrier needs PyTerrier: {INSTALL_HINT}",
                              name="pyterrier") from None


class LLMReranker(pt.Transformer):
    """A PyTerrier transformer that reranks each query's candidates with an LLM.

    Parameters
    ----------
    reranker : Reranker, optional
        The reranker to use; without it one is made from ``options``.
    **options
        ``Reranker(**options)``'s keywords: ``model=``, ``base_url=``, ``strategy=``,
        ``backend=``, ``window=``, ``top_k=``, ...

    Examples
    --------
    >>> llm = LLMReranker(model="gpt-4o-mini", strategy="sliding", window=20)  # doctest: +SKIP
    >>> reranked = (bm25 >> llm).search("how long do fleas live")  # doctest: +SKIP
    """

    def __init__(self, reranker: Reranker | None = None, **options):
        if reranker is not None and options:
            raise ConfigError(f"LLMReranker takes either a reranker or the options of a new one, not both "
                              f"(got {', '.join(sorted(options))})")
        self.reranker = reranker if reranker is not None else Reranker(**options)

    def transform(self, inp):
        """Rerank ``inp``'s candidates (see :func:`rerank.integrations.frames.rank_frame`).

        Parameters
        ----------
        inp : pandas.DataFrame
            PyTerrier's result frame: ``qid``, ``query``, ``docno``, ``text``, and ``score`` or
            ``rank`` for the first stage's order.

        Returns
        -------
        pandas.DataFrame
            The same rows, ``score`` and ``rank`` from the reranker, sorted by query and rank.
        """
        return rank_frame(inp, reranker=self.reranker, first_rank=pt.model.FIRST_RANK)

    def transform_outputs(self, input_columns: list[str]) -> list[str]:
        """The columns :meth:`transform` returns for ``input_columns`` (PyTerrier's inspection)."""
        return [*input_columns, *(name for name in ("score", "rank") if name not in input_columns)]

    def close(self) -> None:
        """Close the reranker's connections and cache (:meth:`Reranker.close`)."""
        self.reranker.close()

    def __repr__(self) -> str:
        config = self.reranker.config
        shown = [f"model={config.model!r}", f"strategy={config.strategy!r}"]
        if config.backend != "auto":
            shown.append(f"backend={config.backend!r}")
        return f"LLMReranker({', '.join(shown)})"

    __str__ = __repr__
