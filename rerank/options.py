"""Options that a strategy or a backend declares once, and that every way of configuring reaches.

A strategy (or backend) class lists its options as ``options = (Option(...), ...)``. From that one
declaration the CLI makes its flags (``--num-child``), an experiment file's ``settings`` and
:class:`~rerank.reranker.RerankerConfig` accept the names, values are converted and checked with
one-line errors, and the class is built with :func:`build_with_options`. Adding a strategy edits
neither the CLI nor the config class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class Option:
    """One option of a strategy or a backend.

    Attributes
    ----------
    name : str
        The keyword (``num_child``); the CLI flag is ``--num-child``.
    type : type
        ``int``, ``float``, ``str`` or ``bool``.
    default : Any
        The value when none is given.
    help : str
        One line for ``--help``.
    choices : tuple or None
        The allowed values, when only some are.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        """The CLI flag: ``--`` and the name with dashes."""
        return "--" + self.name.replace("_", "-")

    def convert(self, value: Any, where: str = "") -> Any:
        """``value`` as this option's type (from a string of the command line or a YAML value).

        Raises
        ------
        ConfigError
            Naming ``where`` (e.g. ``field 'settings.window'``) or the flag, the value and the type.
        """
        place = where or self.flag
        if value is None:
            return None
        try:
            if self.type is bool:
                converted = _as_bool(value)
            elif self.type is int and (isinstance(value, bool) or isinstance(value, float)):
                raise ValueError
            else:
                converted = self.type(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{place}: {value!r} is not a valid {self.type.__name__}") from None
        if self.choices is not None and converted not in self.choices:
            raise ConfigError(f"{place}: {converted!r} is not one of {', '.join(map(str, self.choices))}")
        return converted


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def declared(cls: type) -> tuple[Option, ...]:
    """The options a class declares (none when it declares none)."""
    return tuple(getattr(cls, "options", ()))


def build_with_options(cls: type, values: Mapping[str, Any], what: str):
    """``cls`` built from the values of the options it declares; other names are ignored.

    Parameters
    ----------
    cls : type
        A strategy or backend class with ``options``; built as ``cls(**kwargs)``.
    values : mapping
        Option values by name (None: the option's default).
    what : str
        For error messages (``--strategy sliding``).
    """
    try:
        return cls(**option_values(cls, values))
    except TypeError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def option_values(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the options ``cls`` declares: given ones converted, defaults for the rest."""
    return {option.name: option.default if values.get(option.name) is None else option.convert(values[option.name])
            for option in declared(cls)}


def merged(classes: Iterable[type]) -> dict[str, Option]:
    """The options of several classes by name, the first declaration of a name winning."""
    options: dict[str, Option] = {}
    for cls in classes:
        for option in declared(cls):
            options.setdefault(option.name, option)
    return options
