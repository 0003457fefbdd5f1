"""Load YAML keeping line numbers, so every complaint can name file, line and key (tomlsource.py for TOML)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .errors import InputError, Location
from .fsutil import read_user_file
from .schema import Key, Syntax

SYNTAX = Syntax(mapping="mapping", section="{}", entry="{}: ...")


@attrs.frozen
class YamlDocument:
    """A parsed YAML file (ruamel's mappings and sequences, which remember their lines)."""

    path: Path
    data: CommentedMap
    syntax: Syntax = SYNTAX

    def line(self, key: Key) -> int:
        """Where `key` is written; a key that is not written is reported at the nearest enclosing one's line."""
        node: Any = self.data
        found = 1
        for part in key:
            raw = _written_key(node, part)
            if raw is _NOT_WRITTEN:
                break
            found = key_line(node, raw) or found
            node = node[raw]
        return found


def load_yaml(path: Path) -> YamlDocument:
    """Parse one YAML mapping document; malformed YAML becomes an InputError at its line."""
    text = read_user_file(path)
    try:
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "malformed YAML"
        raise InputError(f"malformed YAML: {problem}; fix the syntax", Location(path, line)) from None
    except YAMLError as exc:
        raise InputError(f"malformed YAML: {exc}", Location(path)) from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise InputError("the document must be a mapping of keys (name:, network:, ...)", Location(path, 1))
    return YamlDocument(path, data)


_NOT_WRITTEN = object()


def _written_key(node: Any, part: str | int) -> Any:
    """The key of `node` that `part` names (keys are named by their text: `1:` is "1"), or _NOT_WRITTEN."""
    if isinstance(node, CommentedSeq) and isinstance(part, int):
        return part if 0 <= part < len(node) else _NOT_WRITTEN
    if isinstance(node, CommentedMap) and isinstance(part, str):
        return next((raw for raw in node if str(raw) == part), _NOT_WRITTEN)
    return _NOT_WRITTEN


def key_line(node: Any, key: str | int) -> int:
    """1-based line of a key in a mapping or an item in a sequence (0 when unknown)."""
    try:
        if isinstance(node, CommentedMap):
            return int(node.lc.key(key)[0]) + 1
        if isinstance(node, CommentedSeq):
            return int(node.lc.item(key)[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    try:
        return int(node.lc.line) + 1
    except AttributeError:
        return 0
