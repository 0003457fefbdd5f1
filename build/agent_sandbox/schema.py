"""The kinds of value users write in their files (profiles in YAML; image.toml and catalog.toml in TOML).

A kind is a validator, as in attrs: a callable that checks one value written at a place in a document, returns it
as the program uses it, and refuses it with its own message, an InputError naming file, line and key. Kinds
compose: `ListOf(Str())`, `Nullable(Int())`, `Table({...})`, `MapOf(...)`, `Located(...)`.

A document (yamlsource.YamlDocument, tomlsource.TomlDocument) says on which line a key is written and what its
format calls things ("table" or "mapping"); the kinds themselves know no format.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, Protocol

import attrs

from .errors import InputError, Location

Key = tuple[str | int, ...]  # a path into a document: names of keys, indexes of list items (("agents", 1))


@attrs.frozen
class Syntax:
    """How a format writes a mapping and a key, for messages."""

    mapping: str  # what a mapping is called: "table" (TOML), "mapping" (YAML)
    section: str  # a mapping at a dotted key: "[{}]" (TOML)
    entry: str  # a key with its value: "{} = ..." (TOML)


class Document(Protocol):
    """A parsed user file that knows where its keys are written."""

    @property
    def path(self) -> Path: ...

    @property
    def syntax(self) -> Syntax: ...

    @property
    def data(self) -> Any: ...

    def line(self, key: Key) -> int:
        """1-based line where `key` is written; a key that is not written: the nearest enclosing one's line."""
        ...


def dotted(key: Key) -> str:
    """How a key is named in messages: container.mounts[0].source."""
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@attrs.frozen
class At:
    """A place in a document: the value a kind checks was written there."""

    doc: Document
    key: Key = ()

    def __truediv__(self, part: str | int) -> At:
        return At(self.doc, (*self.key, part))

    @property
    def where(self) -> Location:
        return Location(self.doc.path, self.doc.line(self.key), dotted(self.key))

    def refuse(self, message: str) -> NoReturn:
        raise InputError(message, self.where)


Kind = Callable[[Any, At], Any]
"""A validator: `kind(value, at)` returns the value as the program uses it, or raises InputError at `at`."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _got(value: Any) -> str:
    """`, got 'x'`: what was written instead, cut short to fit the one line of a message."""
    text = "nothing" if value is None else repr(value)
    return f", got {text if len(text) <= 60 else text[:56] + ' ...'}"


def check(doc: Document, kind: Kind) -> Any:
    """The whole document checked against `kind` (usually a Table), as `kind` returns it."""
    return kind(doc.data, At(doc))


# ---------------------------------------------------------------- scalars
@attrs.frozen
class Str:
    """A string. `numbers`: a number written unquoted is taken as its text (`version: 1.0`).
    `nonempty`: blank strings are refused."""

    numbers: bool = False
    nonempty: bool = False

    def __call__(self, value: Any, at: At) -> str:
        if self.numbers and _is_number(value):
            value = str(value)
        if not isinstance(value, str) or (self.nonempty and not value.strip()):
            what = "a non-empty string" if self.nonempty else "a string"
            at.refuse(f"must be {what}{_got(value)}" + (" (quote it)" if _is_number(value) else ""))
        return value


@attrs.frozen
class Bool:
    """true or false."""

    def __call__(self, value: Any, at: At) -> bool:
        if not isinstance(value, bool):
            at.refuse(f"must be true or false{_got(value)}")
        return value


@attrs.frozen
class Int:
    """A whole number (true and false are not numbers)."""

    def __call__(self, value: Any, at: At) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            at.refuse(f"must be a whole number{_got(value)}")
        return value


@attrs.frozen
class Number:
    """A whole or a decimal number."""

    def __call__(self, value: Any, at: At) -> int | float:
        if not _is_number(value):
            at.refuse(f"must be a number{_got(value)}")
        return value  # type: ignore[no-any-return]


@attrs.frozen
class Size:
    """A size as written (`512m`, `8g`, or a number of bytes); what it means is the reader's business
    (profiles.parse_size)."""

    def __call__(self, value: Any, at: At) -> str | int:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            at.refuse(f"must be a size such as 512m or 8g{_got(value)}")
        return value


@attrs.frozen
class Matches:
    """A string that matches `pattern` whole; `name` says what it is ("environment variable name")."""

    pattern: re.Pattern[str]
    name: str

    def __call__(self, value: Any, at: At) -> str:
        if not isinstance(value, str) or not self.pattern.fullmatch(value):
            at.refuse(f"{value!r}: not a valid {self.name}")
        return value


# ---------------------------------------------------------------- combinators
@attrs.frozen
class Nullable:
    """`null` or a value of `kind` (in a profile, `null` unsets what the parent set)."""

    kind: Kind

    def __call__(self, value: Any, at: At) -> Any:
        return None if value is None else self.kind(value, at)


@attrs.frozen
class Value:
    """A checked value with the place it was written."""

    value: Any
    where: Location


@attrs.frozen
class Located:
    """A value of `kind` with where it was written (for readers that merge files and report later)."""

    kind: Kind

    def __call__(self, value: Any, at: At) -> Value:
        return Value(self.kind(value, at), at.where)


STRINGS = 'a list of strings (["a", "b"])'


@attrs.frozen
class ListOf:
    """A list of `item`s (nothing written, YAML's `key:`, is the empty list); `what` names it in messages."""

    item: Kind
    what: str = STRINGS

    def __call__(self, value: Any, at: At) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            at.refuse(f"must be {self.what}{_got(value)}{self._hint(value, at)}")
        return [self.item(item, at / i) for i, item in enumerate(value)]

    def _hint(self, value: Any, at: At) -> str:
        """` (write ["x"])` when the value would do as the list's one item."""
        try:
            self.item(value, at)
        except InputError:
            return ""
        return f' (write ["{value}"])' if isinstance(value, str) else ""


@attrs.frozen
class MapOf:
    """A mapping of names (checked by `names`) to values of `values`. `what` names it in messages; `{key}` in it
    stands for the mapping's own key."""

    values: Kind
    names: Kind
    what: str

    def __call__(self, value: Any, at: At) -> dict[str, Any]:
        if not isinstance(value, dict):
            at.refuse(f"must be {self.what.format(key=dotted(at.key))}{_got(value)}")
        out = {}
        for raw, item in value.items():
            name = str(raw)
            self.names(name, at / name)
            out[name] = self.values(item, at / name)
        return out


def require(table: Mapping[str, Any], names: tuple[str, ...], at: At) -> None:
    """Refuse a table that lacks one of `names` (reported where the table is written)."""
    for name in names:
        if name not in table:
            owner = at.doc.syntax.section.format(dotted(at.key)) if at.key else "the file"
            (at / name).refuse(f"missing: {owner} needs {at.doc.syntax.entry.format(name)}")


@attrs.frozen
class Table:
    """A mapping with known keys, each of its own kind; unknown keys are refused, and so are missing `required`
    ones. `defaults` fill keys that are not written. `appends`: `key+` may stand for a list key (profiles'
    inheritance appends to the parent's list); the result keeps the `+`. Nothing written (YAML's `key:`) is empty."""

    fields: Mapping[str, Kind]
    required: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = attrs.field(factory=dict)
    appends: bool = False

    def __call__(self, value: Any, at: At) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            at.refuse(f"must be a {at.doc.syntax.mapping} with keys {', '.join(self.fields)}{_got(value)}")
        out = dict(self.defaults)
        for raw, item in value.items():
            name = str(raw)
            base = name[:-1] if self.appends and name.endswith("+") else name
            kind = self.fields.get(base)
            if kind is None:
                (at / name).refuse(f"unknown key; expected one of: {', '.join(self.fields)}")
            if base != name and not isinstance(kind, ListOf):
                (at / name).refuse(f"'{name}' appends to a list, but {base} is not a list")
            out[name] = kind(item, at / name)
        require(value, self.required, at)
        return out
