"""Load TOML keeping line numbers, so every complaint can name file, line and key (yamlsource.py for YAML).

tomlkit keeps no line numbers: a scan of the text finds where each table and key is written. It is not a parser,
but good enough for our files (images/<image>/image.toml, images/catalog.toml): it skips multi-line strings and
arrays; keys inside inline tables are not listed (their table's line stands in).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import tomlkit
from tomlkit.exceptions import TOMLKitError

from .errors import InputError, Location
from .fsutil import read_user_file
from .schema import At, Key, Syntax, dotted

SYNTAX = Syntax(mapping="table", section="[{}]", entry="{} = ...")

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_PART = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_TABLE_LINE = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(rf"\s*({_DOTTED})\s*=(.*)$")
_TRIPLE = ('"' * 3, "'" * 3)


@attrs.frozen
class TomlDocument:
    """A parsed TOML file (plain dicts and lists) and where its tables and keys are written."""

    path: Path
    data: dict[str, Any]
    lines: dict[tuple[str, ...], int]
    syntax: Syntax = SYNTAX

    def line(self, key: Key) -> int:
        """Where `key` is written; list indexes are reported at the list's line. A key that is not written (a
        missing one) is reported at its table's line, a top-level one at line 1."""
        names = tuple(k for k in key if isinstance(k, str))
        return next((self.lines[names[:i]] for i in range(len(names), 0, -1) if names[:i] in self.lines), 1)

    def at(self, *key: str | int) -> At:
        return At(self, key)

    def where(self, *key: str | int) -> Location:
        return At(self, key).where


def load_toml(path: Path) -> TomlDocument:
    """Parse a TOML file; malformed TOML, or a key written twice, becomes an InputError at its line."""
    text = read_user_file(path)
    try:
        data = tomlkit.parse(text).unwrap()
    except TOMLKitError as exc:
        twice = _written_twice(text) if "already exists" in str(exc) else None
        if twice is not None:
            key, first, second = twice
            where = Location(path, second, dotted(key))
            raise InputError(f"written twice (first on line {first}); keep one", where) from None
        problem = str(exc).split(" at line ")[0]
        where = Location(path, getattr(exc, "line", 0) or 1)
        raise InputError(f"malformed TOML: {problem}; fix the syntax", where) from None
    return TomlDocument(path, data, key_lines(text))


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The 1-based line where each table (`[a.b]`: ("a", "b")) and each key (under its table) is first written."""
    lines: dict[tuple[str, ...], int] = {}
    for key, number, _ in _written_keys(text):
        for i in range(1, len(key) + 1):
            lines.setdefault(key[:i], number)
    return lines


def _key_parts(dotted: str) -> tuple[str, ...]:
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in re.findall(_PART, dotted))


def _scan_value(text: str, state: tuple[str, int]) -> tuple[str, int]:
    """Carry (the delimiter of an open multi-line string or "", bracket depth) across one line of a value."""
    closing, depth = state
    i = 0
    while i < len(text):
        if closing:
            if closing[0] == '"' and text[i] == "\\":
                i += 2
            elif text.startswith(closing, i):
                i += len(closing)
                closing = ""
            else:
                i += 1
            continue
        char = text[i]
        if char == "#":
            break
        if text[i : i + 3] in _TRIPLE:
            closing = text[i : i + 3]
            i += 3
            continue
        if char in "\"'":
            closing = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        i += 1
    if closing in ('"', "'"):  # a single-line string does not run on
        closing = ""
    return closing, depth


def _written_keys(text: str) -> list[tuple[tuple[str, ...], int, bool]]:
    """(key, line, whether it is an array-of-tables header) for each table header and each `key =` line."""
    found: list[tuple[tuple[str, ...], int, bool]] = []
    table: tuple[str, ...] = ()
    state: tuple[str, int] = ("", 0)
    for number, line in enumerate(text.splitlines(), 1):
        if state != ("", 0):
            state = _scan_value(line, state)
            continue
        header = _TABLE_LINE.match(line)
        if header:
            table = _key_parts(header.group(1))
            found.append((table, number, line.lstrip().startswith("[[")))
            continue
        pair = _KEY_LINE.match(line)
        if pair:
            found.append((table + _key_parts(pair.group(1)), number, False))
            state = _scan_value(pair.group(2), ("", 0))
    return found


def _written_twice(text: str) -> tuple[tuple[str, ...], int, int] | None:
    """The first key or table written a second time: (key, its first line, the second line)."""
    seen: dict[tuple[str, ...], int] = {}
    for key, number, array in _written_keys(text):
        if key in seen and not array:
            return key, seen[key], number
        seen.setdefault(key, number)
    return None
