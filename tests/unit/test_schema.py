"""The kinds of value in users' files (schema.py): what each accepts, what it refuses, and the exact message,
which names file, line and key; and the lines the YAML and TOML documents report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agent_sandbox.errors import InputError, Location
from agent_sandbox.schema import (
    At,
    Bool,
    Int,
    Kind,
    ListOf,
    Located,
    MapOf,
    Matches,
    Nullable,
    Number,
    Size,
    Str,
    Table,
    Value,
    dotted,
)
from agent_sandbox.tomlsource import key_lines, load_toml
from agent_sandbox.yamlsource import load_yaml

WORD = Matches(re.compile(r"[a-z]+"), "word")


def yaml_field(tmp_path: Path, value: str) -> tuple[Any, At]:
    """`field: <value>` written on line 2 of a YAML file: the value and where it was written."""
    path = tmp_path / "profile.yaml"
    path.write_text(f"# line 1\nfield: {value}\n", encoding="utf-8")
    doc = load_yaml(path)
    return doc.data["field"], At(doc, ("field",))


def refusal(kind: Kind, value: Any, at: At) -> str:
    """The message `kind` refuses `value` with, its file written as FILE."""
    with pytest.raises(InputError) as caught:
        kind(value, at)
    message = str(caught.value)
    assert "\n" not in message
    return message.replace(str(at.doc.path), "FILE")


# ------------------------------------------------------------------ what each kind accepts, and returns
ACCEPTED = [
    # (kind, YAML value written on line 2, what the kind returns)
    pytest.param(Str(), "'text'", "text", id="str"),
    pytest.param(Str(), "''", "", id="str-empty"),
    pytest.param(Str(numbers=True), "1.0", "1.0", id="str-takes-a-number-as-its-text"),
    pytest.param(Str(numbers=True), "8", "8", id="str-takes-a-whole-number-as-its-text"),
    pytest.param(Str(nonempty=True), "x", "x", id="nonempty-str"),
    pytest.param(Bool(), "true", True, id="bool-true"),
    pytest.param(Bool(), "false", False, id="bool-false"),
    pytest.param(Int(), "3", 3, id="int"),
    pytest.param(Int(), "-1", -1, id="int-negative"),
    pytest.param(Number(), "1.5", 1.5, id="number-decimal"),
    pytest.param(Number(), "2", 2, id="number-whole"),
    pytest.param(Size(), "8g", "8g", id="size-text"),
    pytest.param(Size(), "4096", 4096, id="size-bytes"),
    pytest.param(WORD, "abc", "abc", id="matches"),
    pytest.param(Nullable(Int()), "null", None, id="nullable-null"),
    pytest.param(Nullable(Int()), "", None, id="nullable-nothing-written"),
    pytest.param(Nullable(Int()), "5", 5, id="nullable-value"),
    pytest.param(ListOf(Str()), "[a, b]", ["a", "b"], id="list"),
    pytest.param(ListOf(Str()), "[]", [], id="list-empty"),
    pytest.param(ListOf(Str()), "", [], id="list-nothing-written-is-empty"),
    pytest.param(
        MapOf(Int(), names=WORD, what="a mapping of word: number"), "{a: 1, b: 2}", {"a": 1, "b": 2}, id="map"
    ),
    pytest.param(Table({"a": Int(), "b": Bool()}), "{a: 1}", {"a": 1}, id="table"),
    pytest.param(Table({"a": Int()}), "", {}, id="table-nothing-written-is-empty"),
    pytest.param(
        Table({"a": Int(), "b": Bool()}, defaults={"b": True}),
        "{a: 1}",
        {"b": True, "a": 1},
        id="table-defaults-fill-what-is-not-written",
    ),
    pytest.param(
        Table({"a": Int(), "b": Bool()}, defaults={"b": True}),
        "{b: false}",
        {"b": False},
        id="table-written-beats-default",
    ),
    pytest.param(Table({"a": Int()}, required=("a",)), "{a: 1}", {"a": 1}, id="table-required"),
    pytest.param(
        Table({"l": ListOf(Str())}, appends=True), "{l+: [x]}", {"l+": ["x"]}, id="table-appends-keeps-the-plus"
    ),
]


@pytest.mark.parametrize("kind, written, expected", ACCEPTED)
def test_a_kind_accepts_and_returns(tmp_path: Path, kind: Kind, written: str, expected: Any) -> None:
    value, at = yaml_field(tmp_path, written)
    result = kind(value, at)
    assert result == expected and isinstance(result, type(expected))


def test_located_returns_the_value_with_where_it_was_written(tmp_path: Path) -> None:
    value, at = yaml_field(tmp_path, "\n  - a\n  - b")
    assert ListOf(Located(Str()))(value, at) == [
        Value("a", Location(at.doc.path, 3, "field[0]")),
        Value("b", Location(at.doc.path, 4, "field[1]")),
    ]


# ------------------------------------------------------------------ what each kind refuses, and the exact message
REFUSED = [
    # (kind, YAML value written on line 2, the whole message)
    pytest.param(Str(), "1", "FILE:2: field: must be a string, got 1 (quote it)", id="str-number"),
    pytest.param(Str(), "true", "FILE:2: field: must be a string, got True", id="str-bool"),
    pytest.param(Str(), "[a]", "FILE:2: field: must be a string, got ['a']", id="str-list"),
    pytest.param(Str(), "", "FILE:2: field: must be a string, got nothing", id="str-nothing-written"),
    pytest.param(Str(numbers=True), "true", "FILE:2: field: must be a string, got True", id="str-numbers-bool"),
    pytest.param(
        Str(nonempty=True), "' '", "FILE:2: field: must be a non-empty string, got ' '", id="nonempty-str-blank"
    ),
    pytest.param(Bool(), "yes please", "FILE:2: field: must be true or false, got 'yes please'", id="bool-text"),
    pytest.param(Bool(), "1", "FILE:2: field: must be true or false, got 1", id="bool-number"),
    pytest.param(Bool(), "", "FILE:2: field: must be true or false, got nothing", id="bool-nothing-written"),
    pytest.param(Int(), "1.5", "FILE:2: field: must be a whole number, got 1.5", id="int-decimal"),
    pytest.param(Int(), "true", "FILE:2: field: must be a whole number, got True", id="int-bool"),
    pytest.param(Int(), "'3'", "FILE:2: field: must be a whole number, got '3'", id="int-text"),
    pytest.param(Number(), "'1'", "FILE:2: field: must be a number, got '1'", id="number-text"),
    pytest.param(Number(), "false", "FILE:2: field: must be a number, got False", id="number-bool"),
    pytest.param(Size(), "true", "FILE:2: field: must be a size such as 512m or 8g, got True", id="size-bool"),
    pytest.param(Size(), "1.5", "FILE:2: field: must be a size such as 512m or 8g, got 1.5", id="size-decimal"),
    pytest.param(WORD, "ABC", "FILE:2: field: 'ABC': not a valid word", id="matches-no-match"),
    pytest.param(WORD, "abc d", "FILE:2: field: 'abc d': not a valid word", id="matches-part-only"),
    pytest.param(WORD, "1", "FILE:2: field: 1: not a valid word", id="matches-not-a-string"),
    pytest.param(Nullable(Int()), "x", "FILE:2: field: must be a whole number, got 'x'", id="nullable-wrong-kind"),
    pytest.param(
        ListOf(Str()),
        "a",
        'FILE:2: field: must be a list of strings (["a", "b"]), got \'a\' (write ["a"])',
        id="list-one-string-gets-a-hint",
    ),
    pytest.param(
        ListOf(Int(), what="a list of numbers"),
        "a",
        "FILE:2: field: must be a list of numbers, got 'a'",
        id="list-no-hint-when-the-item-would-not-do",
    ),
    pytest.param(
        ListOf(Str()),
        "\n  - a\n  - 3",
        "FILE:4: field[1]: must be a string, got 3 (quote it)",
        id="list-item-at-its-own-line",
    ),
    pytest.param(
        ListOf(Str()), "[a, 3]", "FILE:2: field[1]: must be a string, got 3 (quote it)", id="list-item-in-a-flow-list"
    ),
    pytest.param(
        MapOf(Int(), names=WORD, what="a mapping of word: number"),
        "3",
        "FILE:2: field: must be a mapping of word: number, got 3",
        id="map-not-a-mapping",
    ),
    pytest.param(
        MapOf(Int(), names=WORD, what="a mapping of [{key}.<name>]"),
        "[]",
        "FILE:2: field: must be a mapping of [field.<name>], got []",
        id="map-what-names-its-key",
    ),
    pytest.param(
        MapOf(Int(), names=WORD, what="-"), "\n  a: 1\n  B: 2", "FILE:4: field.B: 'B': not a valid word", id="map-name"
    ),
    pytest.param(
        MapOf(Int(), names=WORD, what="-"),
        "\n  a: 1\n  b: x",
        "FILE:4: field.b: must be a whole number, got 'x'",
        id="map-value",
    ),
    pytest.param(
        Table({"a": Int(), "b": Bool()}),
        "3",
        "FILE:2: field: must be a mapping with keys a, b, got 3",
        id="table-not-a-mapping",
    ),
    pytest.param(
        Table({"a": Int(), "b": Bool()}),
        "\n  a: 1\n  c: 2",
        "FILE:4: field.c: unknown key; expected one of: a, b",
        id="table-unknown-key",
    ),
    pytest.param(
        Table({"a": Int(), "b": Bool()}),
        "\n  a: 1\n  b: 2",
        "FILE:4: field.b: must be true or false, got 2",
        id="table-value",
    ),
    pytest.param(
        Table({"a": Int(), "b": Bool()}, required=("a",)),
        "\n  b: true",
        "FILE:2: field.a: missing: field needs a: ...",
        id="table-required-missing",
    ),
    pytest.param(
        Table({"a": Int(), "l": ListOf(Str())}, appends=True),
        "\n  a+: [1]",
        "FILE:3: field.a+: 'a+' appends to a list, but a is not a list",
        id="table-appends-to-a-non-list",
    ),
    pytest.param(
        Table({"l": ListOf(Str())}),
        "\n  l+: [x]",
        "FILE:3: field.l+: unknown key; expected one of: l",
        id="table-without-appends",
    ),
    pytest.param(Located(Int()), "x", "FILE:2: field: must be a whole number, got 'x'", id="located-passes-refusals"),
]


@pytest.mark.parametrize("kind, written, message", REFUSED)
def test_a_kind_refuses_naming_file_line_and_key(tmp_path: Path, kind: Kind, written: str, message: str) -> None:
    value, at = yaml_field(tmp_path, written)
    assert refusal(kind, value, at) == message


def test_what_was_written_is_cut_short_in_a_message(tmp_path: Path) -> None:
    value, at = yaml_field(tmp_path, "[" + ", ".join(["abcdef"] * 20) + "]")
    shown = "['abcdef', 'abcdef', 'abcdef', 'abcdef', 'abcdef', 'abcd ..."  # 56 characters of it, then " ..."
    assert refusal(Str(), value, at) == f"FILE:2: field: must be a string, got {shown}"


# ------------------------------------------------------------------ TOML: the same kinds, TOML's words and lines
TOML_REFUSED = [
    # (TOML text, kind of the whole document, the whole message)
    pytest.param(
        '[t]\na = "x"\n',
        Table({"t": Table({"a": Int()})}),
        "FILE:2: t.a: must be a whole number, got 'x'",
        id="key-at-its-line",
    ),
    pytest.param(
        "t = 3\n",
        Table({"t": Table({"a": Int()})}),
        "FILE:1: t: must be a table with keys a, got 3",
        id="a-table-is-a-table",
    ),
    pytest.param(
        "[t]\nb = 1\n",
        Table({"t": Table({"a": Int(), "b": Int()}, required=("a",))}),
        "FILE:1: t.a: missing: [t] needs a = ...",
        id="missing-at-its-tables-line",
    ),
    pytest.param(
        "b = 1\n",
        Table({"a": Int(), "b": Int()}, required=("a",)),
        "FILE:1: a: missing: the file needs a = ...",
        id="missing-at-the-top",
    ),
    pytest.param(
        '# one\n\nl = [\n  "a",\n  "",\n]\n',
        Table({"l": ListOf(Str(nonempty=True))}),
        "FILE:3: l[1]: must be a non-empty string, got ''",
        id="list-items-at-the-lists-line",
    ),
    pytest.param(
        '[m."a b"]\nx = 1\n',
        Table({"m": MapOf(Table({"x": Int()}), names=WORD, what="-")}),
        "FILE:1: m.a b: 'a b': not a valid word",
        id="quoted-key",
    ),
]


@pytest.mark.parametrize("text, kind, message", TOML_REFUSED)
def test_toml_refusals_name_file_line_and_key(tmp_path: Path, text: str, kind: Kind, message: str) -> None:
    path = tmp_path / "image.toml"
    path.write_text(text, encoding="utf-8")
    doc = load_toml(path)
    assert refusal(kind, doc.data, At(doc)) == message


# ------------------------------------------------------------------ documents: where a key is written
def test_yaml_lines_of_keys_items_and_unwritten_keys(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ncontainer:\n  mounts:\n    - source: /a\n      target: /b\n  1: one\n", encoding="utf-8")
    doc = load_yaml(path)
    assert [
        doc.line(key)
        for key in [
            ("name",),
            ("container",),
            ("container", "mounts"),
            ("container", "mounts", 0),
            ("container", "mounts", 0, "target"),
            ("container", "1"),
            ("container", "mounts", 0, "readonly"),  # not written: its mapping's line
            ("container", "mounts", 5),  # no such item: the list's line
            ("absent", "deeper"),  # nothing of it written: line 1
        ]
    ] == [1, 2, 3, 4, 5, 6, 4, 3, 1]


def test_toml_key_lines_skip_multiline_values() -> None:
    text = 'a = """\nb = 1\n[c]\n"""\nd = [\n  "[e]",\n]\n[f]\ng = { h = 1 }\n'
    assert key_lines(text) == {("a",): 1, ("d",): 5, ("f",): 8, ("f", "g"): 9}


@pytest.mark.parametrize(
    "key, text",
    [
        pytest.param(("a",), "a", id="key"),
        pytest.param(("a", "b"), "a.b", id="nested"),
        pytest.param(("a", 0, "b"), "a[0].b", id="item"),
        pytest.param((), "", id="the-document"),
    ],
)
def test_keys_are_named_dotted(key: tuple[str | int, ...], text: str) -> None:
    assert dotted(key) == text
