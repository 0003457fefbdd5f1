"""Image descriptions (image.toml) and the catalog (catalog.toml): schema, line numbers, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_sandbox import images, profiles
from agent_sandbox.errors import InputError

# An image description whose every line is one key (line numbers below count on it).
GOOD_IMAGE = """\
name = "demo"
registry = "ghcr.io/example/demo"
user = "vscode"
tier = "strict"
package_sets = ["base"]
agents = ["claude"]
"""

GOOD_CATALOG = """\
[sets.base]
tools = ["bash"]

[tools.bash]
nix = "bashInteractive"
debian = ["bash"]
check = "bash --version"

[agents.claude]
nix = "claude-code"
npm = "@anthropic-ai/claude-code"
unfree = true
check = "claude --version"
"""


def edit(text: str, key: str, line: str | None, extra: str = "") -> str:
    """`text` with the line of `key =` replaced by `line` (None: left out, so later lines move up), plus `extra`."""
    lines = [(line if row.startswith(f"{key} =") else row) for row in text.splitlines()]
    return "\n".join(row for row in lines if row is not None) + "\n" + extra


def image(key: str = "", line: str | None = "", extra: str = "") -> str:
    return edit(GOOD_IMAGE, key, line, extra) if key else GOOD_IMAGE + extra


def catalog(key: str = "", line: str | None = "", extra: str = "") -> str:
    return edit(GOOD_CATALOG, key, line, extra) if key else GOOD_CATALOG + extra


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def assert_one_line(caught: pytest.ExceptionInfo[InputError], path: Path, line: int, key: str, words: str) -> None:
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}:"), message
    if key:
        assert f":{line}: {key}: " in message, message
    assert words in message, message
    assert "\n" not in message


# ------------------------------------------------------------------ good files
def test_the_shipped_files_load() -> None:
    cat = images.load_catalog()
    img = images.load_image("agent-sandbox-devcontainer", cat)
    assert img.user == profiles.load_profile(img.tier).container.user == "vscode"
    assert cat.tools["bash"].debian == ("bash",)
    assert cat.tools["bash"].nix_outputs == ()  # the default output
    assert cat.tools["glibc"].nix_outputs == ("out", "bin")  # getconf is in glibc's bin output


def test_defaults(tmp_path: Path) -> None:
    img = images.load_image(write(tmp_path, "image.toml", image("user", None)), images.load_catalog())
    assert (img.user, img.uid, img.gid, img.tag, img.debian_suite) == ("vscode", 1000, 1000, "latest", "bookworm")


def test_an_image_by_directory(tmp_path: Path) -> None:
    write(tmp_path, "image.toml", GOOD_IMAGE)
    assert images.load_image(tmp_path).name == "demo"


# ------------------------------------------------------------------ bad image.toml: file, line, key, what to do
BAD_IMAGE = [
    # (image.toml text, expected line, expected key, words in the message)
    ('name = "demo\n', 1, "", "malformed TOML"),
    (image(extra='name = "again"\n'), 7, "name", "written twice (first on line 1)"),
    (image(extra='[debain]\nsuite = "bookworm"\n'), 7, "debain", "unknown key"),
    (image(extra='[debian]\nsiute = "bookworm"\n'), 8, "debian.siute", "unknown key"),
    (image(extra='debian = "bookworm"\n'), 7, "debian", "must be a table"),
    (image(extra="[debian]\nsuite = 12\n"), 8, "debian.suite", "non-empty string"),
    (image(extra='[debian]\nsuite = "Bookworm!"\n'), 8, "debian.suite", "not a valid Debian suite"),
    (image(extra="users = 1\n"), 7, "users", "unknown key"),
    (image(extra='uid = "abc"\n'), 7, "uid", "whole number"),
    (image(extra="uid = true\n"), 7, "uid", "whole number"),
    (image(extra="gid = -1\n"), 7, "gid", "from 0"),
    (image(extra="gid = 1.5\n"), 7, "gid", "whole number"),
    (image(extra='tag = "a b"\n'), 7, "tag", "not a valid image tag"),
    (image(extra="tag = 1\n"), 7, "tag", "non-empty string"),
    (image(extra='tag = ""\n'), 7, "tag", "non-empty string"),
    (image("name", 'name = "Demo Image"'), 1, "name", "not a valid image name"),
    (image("name", None), 1, "name", "missing"),
    (image("registry", 'registry = "https://ghcr.io/x"'), 2, "registry", "not a valid registry"),
    (image("user", 'user = "root"'), 3, "user", "runs as 'vscode'"),
    (image("user", 'user = "Bad User"'), 3, "user", "not a valid user name"),
    (image("tier", 'tier = "nope"'), 4, "tier", "unknown tier"),
    (image("tier", "tier = ['strict']"), 4, "tier", "non-empty string"),
    (image("package_sets", 'package_sets = ["base", "nope"]'), 5, "package_sets[1]", "unknown package set"),
    (image("package_sets", 'package_sets = "base"'), 5, "package_sets", 'write ["base"]'),
    (image("agents", 'agents = "claude"'), 6, "agents", "list of strings"),
    (image("agents", 'agents = ["claude", 3]'), 6, "agents[1]", "non-empty string"),
    (image("agents", 'agents = ["claude", "nope"]'), 6, "agents[1]", "unknown agent 'nope'; known:"),
    (image("agents", 'agents = [\n  "claude",\n  "nope",\n]'), 6, "agents[1]", "unknown agent"),
    (image(extra='description = """\ntier = "x"\n"""\n[debain]\n'), 10, "debain", "unknown key"),
]


@pytest.mark.parametrize("text, line, key, words", BAD_IMAGE)
def test_bad_image_names_file_line_and_key(tmp_path: Path, text: str, line: int, key: str, words: str) -> None:
    path = write(tmp_path, "image.toml", text)
    with pytest.raises(InputError) as caught:
        images.load_image(path, images.load_catalog())
    assert_one_line(caught, path, line, key, words)


def test_a_tier_that_runs_as_another_user_is_refused_at_the_tier_line(tmp_path: Path) -> None:
    profile = write(tmp_path, "agent.yaml", "name: agent\ninherits: strict\ncontainer:\n  user: agent\n")
    path = write(tmp_path, "image.toml", image("user", None).replace('"strict"', f'"{profile}"'))
    with pytest.raises(InputError) as caught:
        images.load_image(path, images.load_catalog())
    assert_one_line(caught, path, 3, "tier", "runs as 'agent'")
    path.write_text(image("user", 'user = "agent"').replace('"strict"', f'"{profile}"'), encoding="utf-8")
    assert images.load_image(path, images.load_catalog()).user == "agent"


def test_an_unknown_image_name_lists_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown image 'no-such-image'.*known: agent-sandbox-devcontainer"):
        images.load_image("no-such-image")


def test_the_directory_name_is_the_image_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "images" / "other").mkdir(parents=True)
    path = write(tmp_path / "images" / "other", "image.toml", GOOD_IMAGE)
    monkeypatch.setattr(images, "images_dir", lambda: tmp_path / "images")
    with pytest.raises(InputError) as caught:
        images.load_image("other", images.load_catalog(Path(__file__).parents[2] / "images" / "catalog.toml"))
    assert_one_line(caught, path, 1, "name", "directory")


# ------------------------------------------------------------------ bad catalog.toml
BAD_CATALOG = [
    # (catalog.toml text, expected line, expected key, words in the message)
    ("[sets.base\n", 1, "", "malformed TOML"),
    (catalog(extra="[toolz.x]\n"), 14, "toolz", "unknown key"),
    (catalog(extra="[sets.base]\ntools = []\n"), 14, "sets.base", "written twice"),
    ("sets = 3\n", 1, "sets", "table of [sets.<name>] tables"),
    ("[[tools]]\nnix = 'x'\n", 1, "tools", "table of [tools.<name>] tables"),
    (catalog("debian", 'debian = "x"'), 6, "tools.bash.debian", 'list of strings (["a", "b"]), got \'x\''),
    (catalog("debian", 'debain = ["bash"]'), 6, "tools.bash.debain", "unknown key"),
    (catalog("debian", 'debian = ["Bad Pkg"]'), 6, "tools.bash.debian[0]", "not a valid Debian package name"),
    (catalog("debian", "debian = [1]"), 6, "tools.bash.debian[0]", "non-empty string"),
    (catalog("debian", 'npm = "bash"'), 6, "tools.bash.npm", "unknown key"),
    (catalog("nix", "nix = 1"), 5, "tools.bash.nix", "must be a string"),
    (catalog("nix", 'nix = "a b"'), 5, "tools.bash.nix", "nixpkgs attribute path"),
    (
        catalog("debian", 'debian = []\nnix_outputs = ["out", "Bin"]'),
        7,
        "tools.bash.nix_outputs[1]",
        "derivation output",
    ),
    (catalog("debian", "debian = []\nnix_outputs = []"), 7, "tools.bash.nix_outputs", "at least one, each once"),
    (catalog("debian", 'debian = []\nnix_outputs = ["out", "out"]'), 7, "tools.bash.nix_outputs", "each once"),
    (
        catalog(extra='[tools.x]\nnix = ""\nnix_outputs = ["out"]\ncheck = "x"\n'),
        16,
        "tools.x.nix_outputs",
        "`nix` attribute",
    ),
    (catalog("check", 'check = ""'), 7, "tools.bash.check", "non-empty string"),
    (catalog("check", None), 4, "tools.bash.check", "missing: [tools.bash] needs check"),
    (catalog("tools", 'tools = ["bash", "nope"]'), 2, "sets.base.tools[1]", "unknown tool 'nope'"),
    (catalog("tools", 'tools = "bash"'), 2, "sets.base.tools", "list of strings"),
    (catalog("tools", None), 1, "sets.base.tools", "missing"),
    (catalog("unfree", 'unfree = "yes"'), 12, "agents.claude.unfree", "true or false"),
    (catalog("npm", "npm = ['@x/y']"), 11, "agents.claude.npm", "must be a string"),
    (catalog(extra='[agents."bad name"]\nnix = "x"\ncheck = "x"\n'), 14, "agents.bad name", "not a valid name"),
    (catalog(extra='[agents.cursor]\nnix = "cursor-cli"\n'), 14, "agents.cursor.check", "missing"),
]


@pytest.mark.parametrize("text, line, key, words", BAD_CATALOG)
def test_bad_catalog_names_file_line_and_key(tmp_path: Path, text: str, line: int, key: str, words: str) -> None:
    path = write(tmp_path, "catalog.toml", text)
    with pytest.raises(InputError) as caught:
        images.load_catalog(path)
    assert_one_line(caught, path, line, key, words)
