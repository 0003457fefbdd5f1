"""Image descriptions (images/<image>/image.toml) and the tool catalog (images/catalog.toml).

These TOML files are the single description of what an image holds; Nix reads them with builtins.fromTOML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import tomlkit
from tomlkit.exceptions import ParseError

from .errors import InputError, Location
from .paths import images_dir


@attrs.frozen
class Tool:
    name: str
    nix: str
    debian: tuple[str, ...]
    check: str
    comment: str
    note: str = ""


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

    @property
    def binary(self) -> str:
        return self.check.split()[0]


@attrs.frozen
class Catalog:
    sets: dict[str, tuple[str, ...]]
    tools: dict[str, Tool]
    agents: dict[str, Agent]


@attrs.frozen
class Image:
    name: str
    registry: str
    tag: str
    description: str
    source: str
    uid: int
    gid: int
    tier: str
    package_sets: tuple[str, ...]
    agents: tuple[str, ...]
    debian_suite: str
    path: Path

    @property
    def reference(self) -> str:
        return f"{self.registry}/{self.name}:{self.tag}"

    @property
    def local_reference(self) -> str:
        """What a local (non-registry) build is tagged as."""
        return f"localhost/{self.name}:{self.tag}"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8")).unwrap()
    except FileNotFoundError:
        raise InputError("file not found", Location(path)) from None
    except ParseError as exc:
        raise InputError(f"malformed TOML: {exc}", Location(path, exc.line)) from None


def _require(table: dict[str, Any], key: str, kind: type, path: Path, where: str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise InputError(f"must be set to a {kind.__name__}", Location(path, 0, f"{where}{key}"))
    return value


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or images_dir() / "catalog.toml"
    data = _read_toml(path)
    tools = {
        name: Tool(
            name=name,
            nix=_require(t, "nix", str, path, f"tools.{name}."),
            debian=tuple(t.get("debian", [])),
            check=_require(t, "check", str, path, f"tools.{name}."),
            comment=t.get("comment", ""),
            note=t.get("note", ""),
        )
        for name, t in data.get("tools", {}).items()
    }
    agents = {
        name: Agent(
            name=name,
            nix=_require(a, "nix", str, path, f"agents.{name}."),
            check=_require(a, "check", str, path, f"agents.{name}."),
            comment=a.get("comment", ""),
            npm=a.get("npm", ""),
            pypi=a.get("pypi", ""),
            unfree=bool(a.get("unfree", False)),
            note=a.get("note", ""),
        )
        for name, a in data.get("agents", {}).items()
    }
    sets = {}
    for name, s in data.get("sets", {}).items():
        members = tuple(_require(s, "tools", list, path, f"sets.{name}."))
        for tool in members:
            if tool not in tools:
                raise InputError(f"unknown tool {tool!r}; add [tools.{tool}]", Location(path, 0, f"sets.{name}.tools"))
        sets[name] = members
    return Catalog(sets, tools, agents)


def load_image(ref: str | Path, catalog: Catalog | None = None) -> Image:
    """An image by name (a directory under images/) or by the path of its image.toml."""
    path = Path(ref)
    if path.is_dir():
        path = path / "image.toml"
    elif not path.suffix:
        path = images_dir() / str(ref) / "image.toml"
    data = _read_toml(path)
    catalog = catalog or load_catalog()
    sets = tuple(_require(data, "package_sets", list, path, ""))
    for name in sets:
        if name not in catalog.sets:
            raise InputError(f"unknown package set {name!r}; known: {', '.join(catalog.sets)}", Location(path, 0, "package_sets"))
    agents = tuple(_require(data, "agents", list, path, ""))
    check_agents(agents, catalog, Location(path, 0, "agents"))
    return Image(
        name=_require(data, "name", str, path, ""),
        registry=_require(data, "registry", str, path, ""),
        tag=data.get("tag", "latest"),
        description=data.get("description", ""),
        source=data.get("source", ""),
        uid=int(data.get("uid", 1000)),
        gid=int(data.get("gid", 1000)),
        tier=_require(data, "tier", str, path, ""),
        package_sets=sets,
        agents=agents,
        debian_suite=data.get("debian", {}).get("suite", "bookworm"),
        path=path,
    )


def check_agents(agents: tuple[str, ...], catalog: Catalog, where: Location) -> None:
    for agent in agents:
        if agent not in catalog.agents:
            raise InputError(f"unknown agent {agent!r}; known: {', '.join(catalog.agents)}", where)


def image_tools(image: Image, catalog: Catalog) -> list[Tool]:
    """The image's tools in package-set order, each once."""
    seen: dict[str, Tool] = {}
    for set_name in image.package_sets:
        for tool in catalog.sets[set_name]:
            seen.setdefault(tool, catalog.tools[tool])
    return list(seen.values())


def all_images() -> list[str]:
    return sorted(p.parent.name for p in images_dir().glob("*/image.toml"))
