"""Prompt templates: loading them from YAML data files and rendering chat messages.

Passages and the query are prepared for a prompt by :mod:`rerank.passages`.

A template is a YAML file (see ``prompts/rankgpt.yaml``) with a list of ``messages``. A message is
``{role, content}``; an entry ``each_passage: [messages...]`` repeats its messages once per
passage (RankGPT's one turn per passage). Contents are ``str.format`` strings with the fields

``{query}``         the query text
``{num}``           the number of passages in the window
``{passages}``      all passages, each rendered by ``passage`` and joined by ``passage_separator``
``{id}``            (inside ``each_passage``) the passage identifier: 1, 2, ... or, with
                    ``identifiers: letters``, A, B, ... (one token in every tokenizer)
``{passage}``       (inside ``each_passage``) the passage text
``{passage_line}``  (inside ``each_passage``) the passage rendered by ``passage``
``{instructions}``  the answer kind's instructions (:meth:`rerank.answers.AnswerKind.instructions`)
``{k}``             how many passages a choice asks for

Two optional fields serve single-token ranking: ``identifiers`` (``numbers``, the default, or
``letters``) and ``answer_prefix``, the text the answer starts with (``"["``), which a backend
writes as the start of the assistant's message so that the next token is an identifier.

Templates are chosen by name (a file in the bundled ``prompts/`` folder) or by a path to the
user's own file.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import ConfigError

_FIELDS = {"query", "num", "passages", "id", "passage", "passage_line", "instructions", "k"}
#: Letter identifiers, in order; each is a single token in the tokenizers of common models.
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def bundled_prompts_dir() -> Path:
    """The folder holding the bundled templates (installed package, or the repository's ``prompts/``)."""
    package_dir = Path(__file__).resolve().parent
    installed = package_dir / "prompts"
    return installed if installed.is_dir() else package_dir.parent / "prompts"


def available_prompts() -> list[str]:
    """Names of the bundled templates."""
    return sorted(p.stem for p in bundled_prompts_dir().glob("*.yaml"))


@dataclass(frozen=True)
class MessageTemplate:
    """One chat message of a template; ``per_passage`` marks the repeated block."""

    role: str
    content: str
    per_passage: bool = False


@dataclass(frozen=True)
class PromptTemplate:
    """A listwise ranking prompt.

    Attributes
    ----------
    name : str
    messages : tuple of MessageTemplate
        In order; the ``per_passage`` ones form one contiguous block repeated per passage.
    passage : str
        How one passage is shown, e.g. ``"[{id}] {passage}"``.
    passage_separator : str
        Joins rendered passages for ``{passages}``.
    identifiers : {"numbers", "letters"}
        How passages are named: ``1, 2, ...`` or ``A, B, ... Z`` (at most 26 passages).
    answer_prefix : str
        The start of the answer (``"["``) that single-token ranking writes for the model, so the
        next token is an identifier; empty when the template has none.
    """

    name: str
    messages: tuple[MessageTemplate, ...]
    passage: str = "[{id}] {passage}"
    passage_separator: str = "\n"
    identifiers: str = "numbers"
    answer_prefix: str = ""

    def labels(self, n: int) -> list[str]:
        """The identifiers of ``n`` passages as the prompt shows them.

        Raises
        ------
        ConfigError
            More than 26 passages with letter identifiers.
        """
        if self.identifiers == "letters":
            if n > len(LETTERS):
                raise ConfigError(f"prompt '{self.name}' names passages by letters: at most "
                                  f"{len(LETTERS)} a window (--window), got {n}")
            return list(LETTERS[:n])
        return [str(i) for i in range(1, n + 1)]

    def render(self, query: str, passages: Sequence[str], instructions: str = "", k: int = 1) -> list[dict]:
        """Chat messages ranking ``passages`` (already prepared) for ``query``.

        Parameters
        ----------
        query : str
            The query text (prepared with :func:`neutralise`).
        passages : sequence of str
            The window's passage texts, in presented order; identifiers are 1-based positions.
        instructions : str
            The answer kind's instructions, for templates that place them (``{instructions}``).
        k : int
            Passages a choice asks for (``{k}``).
        """
        num = len(passages)
        labels = self.labels(num)
        lines = [self.passage.format(id=i, passage=p) for i, p in zip(labels, passages)]
        shared = {"query": query, "num": num, "instructions": instructions, "k": k}
        if any("{passages}" in m.content for m in self.messages):
            shared["passages"] = self.passage_separator.join(lines)
        out: list[dict] = []
        block: list[MessageTemplate] = []
        for message in self.messages:
            if message.per_passage:
                block.append(message)
                continue
            if block:
                out.extend(self._expand(block, shared, labels, passages, lines))
                block = []
            out.append({"role": message.role, "content": message.content.format(**shared)})
        if block:
            out.extend(self._expand(block, shared, labels, passages, lines))
        return out

    @staticmethod
    def _expand(block, shared, labels, passages, lines) -> list[dict]:
        return [
            {"role": m.role,
             "content": m.content.format(id=i, passage=p, passage_line=line, **shared)}
            for i, p, line in zip(labels, passages, lines)
            for m in block
        ]


def load_prompt(name_or_path: str) -> PromptTemplate:
    """Load a template by bundled name (``rankgpt``, ``rankzephyr``) or by file path.

    Raises
    ------
    ConfigError
        Unknown name, unreadable file, or a malformed template (naming the file and field).
    """
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = bundled_prompts_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown prompt '{name_or_path}': choose one of "
                              f"{', '.join(available_prompts())} or give a path to a YAML file")
    try:
        import yaml
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read prompt template: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid YAML prompt template: {str(exc).splitlines()[0]}") from None
    return prompt_from_dict(data, source=str(path))


def prompt_from_dict(data: object, source: str = "<template>") -> PromptTemplate:
    """Build and validate a :class:`PromptTemplate` from parsed YAML data."""
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise ConfigError(f"{source}: field 'messages': a prompt template needs a list of messages")
    messages: list[MessageTemplate] = []
    for i, entry in enumerate(data["messages"]):
        if isinstance(entry, dict) and "each_passage" in entry:
            if any(m.per_passage for m in messages):
                raise ConfigError(f"{source}: field 'messages[{i}].each_passage': only one per-passage block is allowed")
            block = entry["each_passage"]
            if not isinstance(block, list) or not block:
                raise ConfigError(f"{source}: field 'messages[{i}].each_passage': expected a list of messages")
            messages.extend(_message(m, f"messages[{i}].each_passage[{j}]", source, True)
                            for j, m in enumerate(block))
        else:
            messages.append(_message(entry, f"messages[{i}]", source, False))
    passage = data.get("passage", "[{id}] {passage}")
    _check_fields(passage, "passage", source)
    identifiers = data.get("identifiers", "numbers")
    if identifiers not in ("numbers", "letters"):
        raise ConfigError(f"{source}: field 'identifiers': expected numbers or letters, got {identifiers!r}")
    answer_prefix = data.get("answer_prefix", "")
    if not isinstance(answer_prefix, str):
        raise ConfigError(f"{source}: field 'answer_prefix': expected a string")
    template = PromptTemplate(
        name=str(data.get("name") or Path(source).stem),
        messages=tuple(messages),
        passage=passage,
        passage_separator=str(data.get("passage_separator", "\n")),
        identifiers=identifiers,
        answer_prefix=answer_prefix,
    )
    has_passages = any(m.per_passage for m in messages) or any("{passages}" in m.content for m in messages)
    if not has_passages:
        raise ConfigError(f"{source}: field 'messages': no message shows the passages "
                          "(use {passages} or an each_passage block)")
    return template


def _message(entry: object, where: str, source: str, per_passage: bool) -> MessageTemplate:
    if not isinstance(entry, dict) or not isinstance(entry.get("content"), str) \
            or entry.get("role") not in ("system", "user", "assistant"):
        raise ConfigError(f"{source}: field '{where}': expected {{role: system|user|assistant, content: str}}")
    _check_fields(entry["content"], where + ".content", source)
    return MessageTemplate(entry["role"], entry["content"], per_passage)


def _check_fields(text: str, where: str, source: str) -> None:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"{source}: field '{where}': {exc} (write literal braces as {{{{ }}}})") from None
    unknown = names - _FIELDS
    if unknown:
        raise ConfigError(f"{source}: field '{where}': unknown placeholder {{{sorted(unknown)[0]}}}; "
                          f"known: {', '.join(sorted(_FIELDS))}")
