"""Training data for full ranking: the examples ``rerank labels`` writes, split and tokenized.

Both of ``rerank labels``' outputs are read: the labels file (``-o``: ``qid``, ``messages``,
``target``, ...) and the chat-format SFT file (``--sft``: ``messages`` ending with the
assistant's answer), whichever teacher variant made them. Every mistake in a file is one
:class:`~rerank.errors.InputError` naming the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import InputError
from .loss import build_training_tensors


@dataclass(frozen=True)
class LabelRecord:
    """One training example as a file gives it.

    Attributes
    ----------
    qid : str
        The query's id (an SFT line carries none: ``sft-`` and a hash of its prompt then).
    messages : list of dict
        The full-ranking prompt, ``{"role", "content"}`` messages.
    target : str
        The answer, ``[4] > [1] > ...``.
    source : str
        ``FILE:LINE``, for messages about the example.
    """

    qid: str
    messages: list[dict]
    target: str
    source: str


def read_label_records(paths: Iterable[str]) -> list[LabelRecord]:
    """The examples of one or more labels (or SFT) files, in order; blank lines are skipped.

    Parameters
    ----------
    paths : iterable of str

    Returns
    -------
    list of LabelRecord

    Raises
    ------
    InputError
        For a file that cannot be read, a line that is not JSON, a missing or mistyped field, or
        a qid given twice (which would put one query in both the training and validation sets).
    """
    records, seen = [], {}
    for path in paths:
        try:
            handle = open(path, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{path}: cannot read the labels: {exc.strerror or exc}") from None
        with handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                record = parse_label_line(line, f"{path}:{number}")
                if record.qid in seen:
                    raise InputError(f"{record.source}: field 'qid': {record.qid!r} is also on {seen[record.qid]}")
                seen[record.qid] = record.source
                records.append(record)
    return records


def parse_label_line(line: str, source: str) -> LabelRecord:
    """One line of a labels or SFT file.

    Parameters
    ----------
    line : str
    source : str
        ``FILE:LINE``, named by errors.

    Returns
    -------
    LabelRecord

    Raises
    ------
    InputError
    """
    try:
        document = json.loads(line)
    except ValueError as exc:
        raise InputError(f"{source}: not a JSON object ({exc})") from None
    if not isinstance(document, dict):
        raise InputError(f"{source}: not a JSON object")
    messages = document.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{source}: field 'messages': a non-empty list of chat messages is required")
    for index, message in enumerate(messages):
        if (not isinstance(message, dict) or not isinstance(message.get("role"), str)
                or not isinstance(message.get("content"), str)):
            raise InputError(f"{source}: field 'messages[{index}]': each message needs string 'role' and 'content'")
    if "target" in document:  # the labels file of `rerank labels -o`
        target = document["target"]
        if not isinstance(target, str) or not target.strip():
            raise InputError(f"{source}: field 'target': a non-empty ranking string is required")
        qid = document.get("qid")
        if not isinstance(qid, (str, int)) or isinstance(qid, bool):
            raise InputError(f"{source}: field 'qid': a query id is required")
        return LabelRecord(str(qid), messages, target, source)
    if messages[-1]["role"] != "assistant" or len(messages) < 2:  # the SFT file of `--sft`
        raise InputError(f"{source}: field 'target': missing (a labels line has 'target'; an SFT line ends "
                         "'messages' with the assistant's answer)")
    # An SFT line names no query: the prompt itself identifies it, the same however the file is
    # named or ordered, so the validation split and duplicate check hold for it too.
    qid = document.get("qid") or "sft-" + hashlib.blake2b(
        json.dumps(messages[:-1], sort_keys=True).encode(), digest_size=8).hexdigest()
    return LabelRecord(str(qid), messages[:-1], messages[-1]["content"], source)


def split_validation(records: Sequence[LabelRecord], fraction: float, seed: int = 0
                     ) -> tuple[list[LabelRecord], list[LabelRecord]]:
    """Hold out about ``fraction`` of the queries for validation, chosen by a hash of the qid.

    The choice of a query does not depend on the order of the file, on the other queries or on
    the process, so a rerun, a resumed run and every process of a distributed run agree.

    Parameters
    ----------
    records : sequence of LabelRecord
    fraction : float
        In [0, 1).
    seed : int
        Another seed holds out other queries.

    Returns
    -------
    (list of LabelRecord, list of LabelRecord)
        The training and the validation records, each in file order.
    """
    if not 0 <= fraction < 1:
        raise InputError(f"--validation-fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(records), []

    def draw(record: LabelRecord) -> float:
        digest = hashlib.blake2b(f"{seed}:{record.qid}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    held = [draw(record) < fraction for record in records]
    return ([r for r, h in zip(records, held) if not h], [r for r, h in zip(records, held) if h])


@dataclass
class TokenizedExamples:
    """Examples ready for the trainer, and the ones that did not fit.

    Attributes
    ----------
    examples : list of dict
        ``input_ids``, ``labels`` and ``weights`` of each kept example.
    dropped : list of str
        The sources (``FILE:LINE``) of the examples longer than the length limit, whose target
        would have been cut.
    longest : int
        Tokens of the longest kept example.
    """

    examples: list[dict]
    dropped: list[str]
    longest: int


def tokenize_records(tokenizer, records: Sequence[LabelRecord], *, alpha: float = 1.0,
                     weighting: str = "importance", max_length: int | None = None) -> TokenizedExamples:
    """Tokenize records with :func:`~rerank.training.loss.build_training_tensors`; those longer
    than ``max_length`` are dropped (and listed), never cut.

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerFast
    records : sequence of LabelRecord
    alpha : float
    weighting : {"importance", "uniform"}
    max_length : int or None

    Returns
    -------
    TokenizedExamples
    """
    from jinja2.exceptions import TemplateError

    examples, dropped = [], []
    for record in records:
        try:
            example = build_training_tensors(tokenizer, record.messages, record.target, alpha=alpha,
                                             max_length=max_length, weighting=weighting)
        except TemplateError as exc:
            # The vllm backend would refuse the same prompt at inference: train on what can be served.
            raise InputError(f"{record.source}: field 'messages': the model's chat template refuses them: {exc}") from None
        if example is None:
            dropped.append(record.source)
        else:
            examples.append(example)
    return TokenizedExamples(examples, dropped, max((len(e["input_ids"]) for e in examples), default=0))
