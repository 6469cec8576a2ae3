"""Complete listwise labels for training full-ranking models (Liu et al., 2024).

A teacher reranks every candidate of a request with sliding windows, either ``shrinking`` (each
pass fixes its top and the next pass ranks only the rest: the paper's description) or
``repeated`` (full sliding passes over the whole list: the released code). The complete order
becomes a training example: the full-ranking prompt over all candidates in first-stage order,
rendered exactly as the ``full`` strategy renders it, the answer naming them in label order, and
the importance weight of each label position.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import AsyncIterator, Callable, Iterable

from .answers import PERMUTATION
from .errors import ConfigError
from .reranker import Reranker, RerankerConfig
from .training.weights import rank_weights
from .types import Request, Result

VARIANTS = {"shrinking": "shrinking", "repeated": "sliding"}
#: Passes of the teacher unless ``--passes`` says otherwise: 9 for windows of 20 moving by 10.
LABEL_PASSES = 9
#: The candidates the repeated variant's default passes complete (its passes cannot stop early).
LABEL_DEPTH = 100
#: The shrinking variant's default cap: none (its passes end when the order is complete).
UNTIL_COMPLETE = 10**6


def label_passes(options: dict, variant: str) -> int:
    """The teacher's passes unless ``--passes`` says: for ``shrinking``, until the order is complete
    (its passes stop there by themselves); for ``repeated``, enough to complete
    :data:`LABEL_DEPTH` candidates with the window and step given (9 for 20 and 10)."""
    window = int(options.get("window") or 20)
    step = int(options.get("step") or max(window // 2, 1))
    fixed = max(min(step, window - step), 1)
    needed = -(-max(LABEL_DEPTH - window, 0) // fixed) + 1
    return needed if variant == "repeated" else UNTIL_COMPLETE


def teacher_config(config: RerankerConfig, variant: str) -> RerankerConfig:
    """The teacher's config for a label variant: its strategy, every candidate ranked, and the
    passes of :func:`label_passes` unless told otherwise."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown label variant '{variant}': choose one of {', '.join(VARIANTS)}")
    options = dict(config.options)
    if options.get("passes") is None:
        options["passes"] = label_passes(options, variant)
    return RerankerConfig(**{**asdict(config), "strategy": VARIANTS[variant], "top_k": 10**9,
                             "options": options})


@dataclass(frozen=True)
class TrainingExample:
    """One query's complete label, ready for fine-tuning.

    Attributes
    ----------
    qid : str
    candidates : list of str
        Docids in first-stage order: the order of the prompt's identifiers ``[1]..[n]``.
    label : list of str
        Docids in label order, best first.
    messages : list of dict
        The full-ranking prompt over all candidates.
    target : str
        The answer as the answer kind writes it (:meth:`rerank.answers.Permutation.target`),
        ``[4] > [1] > ...``: identifiers of ``candidates`` in label order.
    weights : list of float
        Importance weight of each label position, ``1 + 1/log2(rank + 1)``.
    """

    qid: str
    candidates: list[str]
    label: list[str]
    messages: list[dict]
    target: str
    weights: list[float]

    def as_dict(self) -> dict:
        """The JSON object of one output line."""
        return asdict(self)

    def as_chat(self) -> dict:
        """The chat-format SFT record: the prompt's messages ending with the assistant's answer."""
        return {"messages": [*self.messages, {"role": "assistant", "content": self.target}]}


def training_example(reranker: Reranker, request: Request, result: Result) -> TrainingExample:
    """The training example of a request and its teacher's complete ranking."""
    candidates = [c.docid for c in request.candidates]
    position = {docid: i for i, docid in enumerate(candidates)}
    label = [c.docid for c in result.candidates]
    return TrainingExample(
        qid=request.query.qid, candidates=candidates, label=label,
        messages=reranker.full_prompt(request),
        target=PERMUTATION.target([position[docid] for docid in label],
                                  reranker.template.labels(len(candidates))),
        weights=rank_weights(len(label)))


async def make_labels(teacher: Reranker, student: Reranker, requests: Iterable[Request],
                      on_error: Callable[[Request, Exception], None] | None = None
                      ) -> AsyncIterator[tuple[Result, TrainingExample]]:
    """Label each request with ``teacher``; prompts rendered as ``student`` (a full ranker) sees them.

    Requests are read as they are labelled (streamed); results come in input order. With
    ``on_error``, a request whose teacher calls failed for good is reported to it and left out,
    and the others go on (as :meth:`Reranker.rerank_iter` does); without, the failure ends it.
    """
    pending: deque[Request] = deque()

    def remembered(source: Iterable[Request]):
        for request in source:
            pending.append(request)
            yield request

    def failed(request: Request, error: Exception) -> None:
        # Reported before any later result is yielded: drop it so results meet their requests.
        for index, waiting in enumerate(pending):
            if waiting is request:
                del pending[index]
                break
        on_error(request, error)

    async for result in teacher.rerank_iter(remembered(requests), on_error=failed if on_error else None):
        yield result, training_example(student, pending.popleft(), result)


def student_reranker(teacher: Reranker) -> Reranker:
    """The full ranker whose prompts the examples carry: the teacher's template, passage
    preparation and context, over every candidate; it shares the teacher's backend."""
    config = RerankerConfig(**{**asdict(teacher.config), "strategy": "full", "cache": None})
    student = Reranker(config, llm=teacher.backend)
    student.capabilities = teacher.capabilities  # the same backend: the same context to fit
    return student
