"""Image descriptions (images/<image>/image.toml) and the tool catalog (images/catalog.toml).

These TOML files are the single description of what an image holds; Nix reads them with builtins.fromTOML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import tomlkit
from tomlkit.exceptions import TOMLKitError

from . import model, profiles
from .errors import InputError, Location
from .fsutil import read_user_file
from .paths import images_dir


@attrs.frozen
class Tool:
    name: str
    nix: str
    debian: tuple[str, ...]
    check: str
    comment: str
    note: str = ""
    # The outputs of the nixpkgs attribute the image gets (the default output alone when empty): a package in
    # dockerTools' `contents` is its default output only, and glibc's default (`out`, the libraries) has no getconf.
    nix_outputs: tuple[str, ...] = ()


@attrs.frozen
class Agent:
    name: str
    nix: str
    check: str
    comment: str
    npm: str = ""
    pypi: str = ""
    unfree: bool = False
    note: str = ""
    keys: tuple[str, ...] = ()  # API-key variables no gateway serves (forwarded into the sandbox by name)
    providers: tuple[str, ...] = ()  # the model APIs it talks to (their keys stay in the gateway)

    @property
    def binary(self) -> str:
        return self.check.split()[0]


@attrs.frozen
class Provider:
    """A model API whose key the sandbox's gateway holds (catalog [providers.<name>])."""

    name: str
    host: str
    key: str  # the variable holding the user's key
    header: str  # how the key is sent
    prefix: str  # before the key in that header ("Bearer ")
    paths: tuple[str, ...]  # the API's path prefixes: the gateway forwards nothing else
    port: int  # the gateway's port in the sandbox's proxy
    comment: str = ""


@attrs.frozen
class Catalog:
    sets: dict[str, tuple[str, ...]]
    tools: dict[str, Tool]
    agents: dict[str, Agent]
    providers: dict[str, Provider] = attrs.Factory(dict)

    def agent_keys(self, agent: str) -> tuple[str, ...]:
        """Every API-key variable `agent` reads: its providers' and its own."""
        entry = self.agents[agent]
        return tuple(dict.fromkeys([*(self.providers[p].key for p in entry.providers), *entry.keys]))


# What an image is for: only devcontainers hold agents and tiers; the egress proxy and other services (the test
# suite's stand-ins for the internet) run their entrypoint.
ROLES = ("devcontainer", "egress-proxy", "service")


@attrs.frozen
class Image:
    name: str
    registry: str
    tag: str
    description: str
    source: str
    user: str  # created by Nix and the Debian backend; the image's tier must run as it
    uid: int
    gid: int
    tier: str
    package_sets: tuple[str, ...]
    agents: tuple[str, ...]
    debian_suite: str
    path: Path
    role: str = "devcontainer"
    entrypoint: tuple[str, ...] = ()  # service images: what they run (devcontainers are started with a command)
    state_dirs: tuple[str, ...] = ()  # service images: directories owned by the image's user (0700), e.g. its log

    @property
    def is_devcontainer(self) -> bool:
        return self.role == "devcontainer"

    @property
    def reference(self) -> str:
        return f"{self.registry}/{self.name}:{self.tag}"

    @property
    def local_reference(self) -> str:
        """What a local (non-registry) build is tagged as."""
        return f"localhost/{self.name}:{self.tag}"


# ---------------------------------------------------------------- reading TOML with line numbers
_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_PART = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_TABLE_LINE = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(rf"\s*({_DOTTED})\s*=(.*)$")
_TRIPLE = ('"' * 3, "'" * 3)


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
    """(key, line, whether it is an array-of-tables header) for each table header and each `key =` line.

    A scan of the text, not a parser (tomlkit keeps no line numbers), good enough for our files: it skips
    multi-line strings and arrays; keys inside inline tables are not listed (their table's line stands in)."""
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


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The 1-based line where each table (`[a.b]`: ("a", "b")) and each key (under its table) is first written."""
    lines: dict[tuple[str, ...], int] = {}
    for key, number, _ in _written_keys(text):
        for i in range(1, len(key) + 1):
            lines.setdefault(key[:i], number)
    return lines


def _written_twice(text: str) -> tuple[tuple[str, ...], int, int] | None:
    """The first key or table written a second time: (key, its first line, the second line)."""
    seen: dict[tuple[str, ...], int] = {}
    for key, number, array in _written_keys(text):
        if key in seen and not array:
            return key, seen[key], number
        seen.setdefault(key, number)
    return None


@attrs.frozen
class _Source:
    """A parsed TOML file and where its keys are written."""

    path: Path
    data: dict[str, Any]
    lines: dict[tuple[str, ...], int]

    def where(self, *key: str | int) -> Location:
        """The location of a key; ints are list indexes (reported at the list's line). A key that is not
        written (a missing one) is reported at its table's line, a top-level one at line 1."""
        names = tuple(k for k in key if isinstance(k, str))
        line = next((self.lines[names[:i]] for i in range(len(names), 0, -1) if names[:i] in self.lines), 1)
        dotted = ""
        for k in key:
            dotted += f"[{k}]" if isinstance(k, int) else (f".{k}" if dotted else k)
        return Location(self.path, line, dotted)


def _read_toml(path: Path) -> _Source:
    text = read_user_file(path)
    try:
        data = tomlkit.parse(text).unwrap()
    except TOMLKitError as exc:
        twice = _written_twice(text) if "already exists" in str(exc) else None
        if twice is not None:
            key, first, second = twice
            where = Location(path, second, ".".join(key))
            raise InputError(f"written twice (first on line {first}); keep one", where) from None
        problem = str(exc).split(" at line ")[0]
        where = Location(path, getattr(exc, "line", 0) or 1)
        raise InputError(f"malformed TOML: {problem}; fix the syntax", where) from None
    return _Source(path, data, key_lines(text))


# ---------------------------------------------------------------- schema
STR, NONEMPTY, INT, BOOL, STRLIST = "str", "nonempty", "int", "bool", "strlist"
EACH = "each"  # (EACH, schema): a table of named tables ([tools.<name>]), each checked against schema

IMAGE_SCHEMA: dict[str, Any] = {
    "name": NONEMPTY,
    "role": NONEMPTY,
    "registry": NONEMPTY,
    "tag": NONEMPTY,
    "description": STR,
    "source": STR,
    "user": NONEMPTY,
    "uid": INT,
    "gid": INT,
    "tier": NONEMPTY,
    "package_sets": STRLIST,
    "agents": STRLIST,
    "entrypoint": STRLIST,
    "state_dirs": STRLIST,
    "debian": {"suite": NONEMPTY},
}
IMAGE_REQUIRED = ("name", "registry", "package_sets")
DEVCONTAINER_REQUIRED = ("tier", "agents")

CATALOG_SCHEMA: dict[str, Any] = {
    "sets": (EACH, {"comment": STR, "tools": STRLIST}),
    "tools": (
        EACH, {"nix": STR, "nix_outputs": STRLIST, "debian": STRLIST, "check": NONEMPTY, "comment": STR, "note": STR}
    ),
    "agents": (
        EACH,
        {"nix": STR, "check": NONEMPTY, "comment": STR, "npm": STR, "pypi": STR, "unfree": BOOL, "note": STR,
         "keys": STRLIST, "providers": STRLIST},
    ),
    "providers": (
        EACH,
        {"host": NONEMPTY, "key": NONEMPTY, "header": NONEMPTY, "prefix": STR, "paths": STRLIST, "port": INT,
         "comment": STR},
    ),
}
CATALOG_REQUIRED = {
    "sets": ("tools",),
    "tools": ("nix", "check"),
    "agents": ("nix", "check"),
    "providers": ("host", "key", "header", "paths", "port"),
}

DEFAULT_USER = "vscode"  # the defaults of nixlib/mk-agent-image.nix
DEFAULT_ID = 1000
MAX_ID = 2**31 - 1

_ENTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # catalog entries: Nix attribute names, tag parts, labels
_IMAGE_NAME = re.compile(r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*")
_REGISTRY = re.compile(r"[a-z0-9][a-z0-9.-]*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_USER = re.compile(r"[a-z_][a-z0-9_-]*")
_SUITE = re.compile(r"[a-z][a-z0-9-]*")
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_ABS_PATH = re.compile(r"(/[A-Za-z0-9._-]+)+")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")
_HEADER = re.compile(r"[A-Za-z0-9-]+")
_PATH_PREFIX = re.compile(r"/([A-Za-z0-9._~-]+/)*")
_ATTR_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*(?:\.[A-Za-z_][A-Za-z0-9_'-]*)*")
_OUTPUT = re.compile(r"[a-z][a-zA-Z0-9_-]*")  # a derivation output: out, bin, lib, getent, ...

_KIND_NAMES = {
    STR: "a string",
    NONEMPTY: "a non-empty string",
    INT: "a whole number",
    BOOL: "true or false",
    STRLIST: 'a list of strings (["a", "b"])',
}
_KIND_OK = {
    STR: lambda v: isinstance(v, str),
    NONEMPTY: lambda v: isinstance(v, str) and v.strip() != "",
    INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
    BOOL: lambda v: isinstance(v, bool),
}


def _check_value(value: Any, kind: str, src: _Source, key: tuple[str, ...]) -> None:
    if kind == STRLIST:
        if not isinstance(value, list):
            hint = f' (write ["{value}"])' if isinstance(value, str) else ""
            raise InputError(f"must be {_KIND_NAMES[kind]}, got {value!r}{hint}", src.where(*key))
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise InputError(f"must be a non-empty string, got {item!r}", src.where(*key, i))
    elif not _KIND_OK[kind](value):
        raise InputError(f"must be {_KIND_NAMES[kind]}, got {value!r}", src.where(*key))


def _check_table(table: Any, schema: dict[str, Any], src: _Source, key: tuple[str, ...]) -> None:
    """Refuse unknown keys and wrongly typed values, recursively (what profiles._annotate does for YAML)."""
    if not isinstance(table, dict):
        raise InputError(f"must be a table with keys {', '.join(schema)}", src.where(*key))
    for name, value in table.items():
        kind = schema.get(name)
        if kind is None:
            raise InputError(f"unknown key; expected one of: {', '.join(schema)}", src.where(*key, name))
        if isinstance(kind, dict):
            _check_table(value, kind, src, (*key, name))
        elif isinstance(kind, tuple):
            if not isinstance(value, dict):
                raise InputError(f"must be a table of [{name}.<name>] tables", src.where(*key, name))
            for entry, body in value.items():
                if not _ENTRY_NAME.fullmatch(entry):
                    raise InputError("not a valid name (letters, digits, - and _)", src.where(*key, name, entry))
                _check_table(body, kind[1], src, (*key, name, entry))
        else:
            _check_value(value, kind, src, (*key, name))


def _require_keys(table: dict[str, Any], required: tuple[str, ...], src: _Source, key: tuple[str, ...]) -> None:
    for name in required:
        if name not in table:
            owner = f"[{'.'.join(key)}]" if key else "the file"
            raise InputError(f"missing: {owner} needs {name} = ...", src.where(*key, name))


def _valid(pattern: re.Pattern[str], value: str, what: str, where: Location) -> str:
    if not pattern.fullmatch(value):
        raise InputError(f"{value!r}: not a valid {what}", where)
    return value


# ---------------------------------------------------------------- the catalog
def load_catalog(path: Path | None = None) -> Catalog:
    path = path or images_dir() / "catalog.toml"
    src = _read_toml(path)
    data = src.data
    _check_table(data, CATALOG_SCHEMA, src, ())
    for section, required in CATALOG_REQUIRED.items():
        for name, body in data.get(section, {}).items():
            _require_keys(body, required, src, (section, name))
    tools: dict[str, Tool] = {}
    for name, t in data.get("tools", {}).items():
        if t["nix"]:
            _valid(_ATTR_PATH, t["nix"], "nixpkgs attribute path", src.where("tools", name, "nix"))
        outputs = t.get("nix_outputs", [])
        if "nix_outputs" in t and (not t["nix"] or not outputs or len(set(outputs)) != len(outputs)):
            raise InputError("nix_outputs: the outputs of the tool's `nix` attribute, at least one, each once",
                             src.where("tools", name, "nix_outputs"))
        for i, output in enumerate(outputs):
            _valid(_OUTPUT, output, "derivation output name", src.where("tools", name, "nix_outputs", i))
        for i, package in enumerate(t.get("debian", [])):
            _valid(_DEBIAN_PACKAGE, package, "Debian package name", src.where("tools", name, "debian", i))
        tools[name] = Tool(
            name=name,
            nix=t["nix"],
            debian=tuple(t.get("debian", [])),
            check=t["check"],
            comment=t.get("comment", ""),
            note=t.get("note", ""),
            nix_outputs=tuple(outputs),
        )
    providers: dict[str, Provider] = {}
    for name, v in data.get("providers", {}).items():
        _valid(_HOST, v["host"], "host name", src.where("providers", name, "host"))
        _valid(_ENV_NAME, v["key"], "environment variable name", src.where("providers", name, "key"))
        _valid(_HEADER, v["header"], "HTTP header name", src.where("providers", name, "header"))
        for i, prefix in enumerate(v["paths"]):
            _valid(_PATH_PREFIX, prefix, "path prefix (/.../)", src.where("providers", name, "paths", i))
        if not 1024 < v["port"] < 65536 or v["port"] == 3128:
            raise InputError(f"{v['port']}: the gateway's port is from 1025 to 65535, not 3128 (the proxy's)",
                             src.where("providers", name, "port"))
        providers[name] = Provider(name, v["host"], v["key"], v["header"], v.get("prefix", ""), tuple(v["paths"]),
                                   v["port"], v.get("comment", ""))
    ports = [p.port for p in providers.values()]
    if len(set(ports)) != len(ports):
        raise InputError("two providers share a gateway port; give each its own", src.where("providers"))
    agents: dict[str, Agent] = {}
    for name, a in data.get("agents", {}).items():
        for i, provider in enumerate(a.get("providers", [])):
            if provider not in providers:
                raise InputError(f"unknown provider {provider!r}; add [providers.{provider}]",
                                 src.where("agents", name, "providers", i))
        if a["nix"]:
            _valid(_ATTR_PATH, a["nix"], "nixpkgs attribute path", src.where("agents", name, "nix"))
        agents[name] = Agent(
            name=name,
            nix=a["nix"],
            check=a["check"],
            comment=a.get("comment", ""),
            npm=a.get("npm", ""),
            pypi=a.get("pypi", ""),
            unfree=a.get("unfree", False),
            note=a.get("note", ""),
            keys=tuple(_valid(_ENV_NAME, k, "environment variable name", src.where("agents", name, "keys", i))
                       for i, k in enumerate(a.get("keys", []))),
            providers=tuple(a.get("providers", [])),
        )
    sets: dict[str, tuple[str, ...]] = {}
    for name, s in data.get("sets", {}).items():
        members = tuple(s["tools"])
        for i, tool in enumerate(members):
            if tool not in tools:
                raise InputError(f"unknown tool {tool!r}; add [tools.{tool}]", src.where("sets", name, "tools", i))
        sets[name] = members
    return Catalog(sets, tools, agents, providers)


# ---------------------------------------------------------------- image descriptions
def image_path(ref: str | Path) -> Path:
    """images/<ref>/image.toml for a name, <dir>/image.toml for a directory, else the file itself."""
    path = Path(ref)
    if path.is_dir():
        return path / "image.toml"
    if "/" not in str(ref) and not str(ref).endswith(".toml"):
        return images_dir() / str(ref) / "image.toml"
    return path


def load_image(ref: str | Path, catalog: Catalog | None = None) -> Image:
    """An image by name (a directory under images/), by directory, or by the path of its image.toml."""
    path = image_path(ref)
    if not path.exists():
        known = ", ".join(all_images()) or "none"
        if path == images_dir() / str(ref) / "image.toml":
            raise InputError(f"unknown image {str(ref)!r} (no {path}); known: {known}; or give an image.toml's path")
        raise InputError(f"no such image directory or image.toml; images under images/: {known}", Location(path))
    src = _read_toml(path)
    data = src.data
    _check_table(data, IMAGE_SCHEMA, src, ())
    _require_keys(data, IMAGE_REQUIRED, src, ())
    role = data.get("role", "devcontainer")
    if role not in ROLES:
        raise InputError(f"{role!r}: the role is one of {', '.join(ROLES)}", src.where("role"))
    if role == "devcontainer":
        _require_keys(data, DEVCONTAINER_REQUIRED, src, ())
        for key in ("entrypoint", "state_dirs"):
            if key in data:
                raise InputError(f"a devcontainer image has no {key} (that is for service images); remove it",
                                 src.where(key))
    else:
        _require_keys(data, ("entrypoint",), src, ())
        for key in DEVCONTAINER_REQUIRED:
            if data.get(key):
                raise InputError(f"a {role} image holds no {key}; remove the key", src.where(key))
    catalog = catalog or load_catalog()

    name = _valid(_IMAGE_NAME, data["name"], "image name (lower-case letters, digits, . _ -)", src.where("name"))
    if path.parent.parent.resolve() == images_dir().resolve() and name != path.parent.name:
        raise InputError(
            f"{name!r} is not the directory's name {path.parent.name!r} (Nix finds the image by it); rename one",
            src.where("name"),
        )
    registry = _valid(_REGISTRY, data["registry"], "registry (host[:port]/path, lower case)", src.where("registry"))
    tag = _valid(_TAG, data.get("tag", "latest"), "image tag (letters, digits, _ . -; up to 128)", src.where("tag"))
    ids = {key: data.get(key, DEFAULT_ID) for key in ("uid", "gid")}
    for key, value in ids.items():
        if not 0 <= value <= MAX_ID:
            raise InputError(f"{value}: must be from 0 to {MAX_ID}", src.where(key))
    suite = data.get("debian", {}).get("suite", "bookworm")
    _valid(_SUITE, suite, "Debian suite", src.where("debian", "suite"))

    sets = tuple(data["package_sets"])
    for i, set_name in enumerate(sets):
        if set_name not in catalog.sets:
            known = ", ".join(catalog.sets)
            raise InputError(f"unknown package set {set_name!r}; known: {known}", src.where("package_sets", i))
    agents = tuple(data.get("agents", ()))
    for i, agent in enumerate(agents):
        check_agents((agent,), catalog, src.where("agents", i))

    tier = data.get("tier", "")
    user = _valid(_USER, data.get("user", DEFAULT_USER), "user name", src.where("user"))
    profile = load_tier(tier, src.where("tier")) if role == "devcontainer" else None
    if profile is not None and user != profile.container.user:
        unset = "" if "user" in data else f" (no user is set: Nix defaults it to {DEFAULT_USER!r})"
        raise InputError(
            f"the image's user is {user!r}{unset} but tier {tier!r} runs as {profile.container.user!r}; "
            f'set user = "{profile.container.user}" or pick a tier that runs as {user!r}',
            src.where("user" if "user" in data else "tier"),
        )
    return Image(
        name=name,
        registry=registry,
        tag=tag,
        description=data.get("description", ""),
        source=data.get("source", ""),
        user=user,
        uid=ids["uid"],
        gid=ids["gid"],
        tier=tier,
        package_sets=sets,
        agents=agents,
        debian_suite=suite,
        path=path,
        role=role,
        entrypoint=tuple(data.get("entrypoint", ())),
        state_dirs=tuple(_valid(_ABS_PATH, d, "absolute path", src.where("state_dirs", i))
                         for i, d in enumerate(data.get("state_dirs", ()))),
    )


def load_tier(ref: str, where: Location) -> model.Profile:
    """A shipped tier or a profile (a name in images/policies/, or a file's path), as `load_profile` finds it.
    An unknown one is refused at `where`; a broken profile file is reported at its own line."""
    if not profiles._resolve(ref, None).is_file():
        known = ", ".join(profiles.tier_names())
        raise InputError(f"unknown tier {ref!r}; known: {known} (or the path of a profile file)", where)
    return profiles.load_profile(ref)


def check_user(image: Image, profile: model.Profile, where: Location) -> None:
    """The tier runs as the image's user (image.toml `user`: the user Nix and the Debian backend create)."""
    if profile.container.user != image.user:
        raise InputError(
            f"tier {profile.name!r} runs as user {profile.container.user!r}, but image {image.name}'s user is "
            f"{image.user!r} ({image.path}); use a profile with container.user: {image.user}",
            where,
        )


def check_agents(agents: tuple[str, ...], catalog: Catalog, where: Location) -> None:
    for agent in agents:
        if agent not in catalog.agents:
            raise InputError(f"unknown agent {agent!r}; known: {', '.join(catalog.agents)}", where)


def api_key_vars(catalog: Catalog) -> tuple[str, ...]:
    """Every API-key variable of the catalog's agents, each once, in catalog order."""
    return tuple(dict.fromkeys(key for name in catalog.agents for key in catalog.agent_keys(name)))


def image_tools(image: Image, catalog: Catalog) -> list[Tool]:
    """The image's tools in package-set order, each once."""
    seen: dict[str, Tool] = {}
    for set_name in image.package_sets:
        for tool in catalog.sets[set_name]:
            seen.setdefault(tool, catalog.tools[tool])
    return list(seen.values())


def all_images() -> list[str]:
    return sorted(p.parent.name for p in images_dir().glob("*/image.toml"))


def image_tree(image: Image) -> Path:
    """images/<image>/rootfs/: files the image holds as they are (copied to / by the Debian backend)."""
    return image.path.parent / "rootfs"
