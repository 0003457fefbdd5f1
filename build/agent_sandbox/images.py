"""Image descriptions (images/<image>/image.toml) and the tool catalog (images/catalog.toml).

These TOML files are the single description of what an image holds; Nix reads them with builtins.fromTOML.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from . import model, profiles, schema
from .errors import InputError, Location
from .paths import images_dir
from .schema import At, Bool, Int, Kind, ListOf, MapOf, Matches, Str, Table
from .tomlsource import load_toml


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


# ---------------------------------------------------------------- schema
_TEXT = Str()
_NAME = Str(nonempty=True)
_NAMES = ListOf(Str(nonempty=True))
# catalog entries' names: Nix attribute names, tag parts, labels
_ENTRY_NAME = Matches(re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*"), "name (letters, digits, - and _)")


def _named(required: tuple[str, ...], **fields: Kind) -> MapOf:
    """A table of named tables ([tools.<name>]), each with `fields`."""
    return MapOf(Table(fields, required=required), names=_ENTRY_NAME, what="a table of [{key}.<name>] tables")


IMAGE_SCHEMA = Table(
    {
        "name": _NAME,
        "role": _NAME,
        "registry": _NAME,
        "tag": _NAME,
        "description": _TEXT,
        "source": _TEXT,
        "user": _NAME,
        "uid": Int(),
        "gid": Int(),
        "tier": _NAME,
        "package_sets": _NAMES,
        "agents": _NAMES,
        "entrypoint": _NAMES,
        "state_dirs": _NAMES,
        "debian": Table({"suite": _NAME}),
    },
    required=("name", "registry", "package_sets"),
)
DEVCONTAINER_REQUIRED = ("tier", "agents")

CATALOG_SCHEMA = Table(
    {
        "sets": _named(("tools",), comment=_TEXT, tools=_NAMES),
        "tools": _named(
            ("nix", "check"), nix=_TEXT, nix_outputs=_NAMES, debian=_NAMES, check=_NAME, comment=_TEXT, note=_TEXT
        ),
        "agents": _named(
            ("nix", "check"),
            nix=_TEXT,
            check=_NAME,
            comment=_TEXT,
            npm=_TEXT,
            pypi=_TEXT,
            unfree=Bool(),
            note=_TEXT,
            keys=_NAMES,
            providers=_NAMES,
        ),
        "providers": _named(
            ("host", "key", "header", "paths", "port"),
            host=_NAME,
            key=_NAME,
            header=_NAME,
            prefix=_TEXT,
            paths=_NAMES,
            port=Int(),
            comment=_TEXT,
        ),
    }
)

DEFAULT_USER = "vscode"  # the defaults of nixlib/mk-agent-image.nix
DEFAULT_ID = 1000
MAX_ID = 2**31 - 1

_IMAGE_NAME = Matches(re.compile(r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*"), "image name (lower-case letters, digits, . _ -)")
_REGISTRY = Matches(
    re.compile(r"[a-z0-9][a-z0-9.-]*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"),
    "registry (host[:port]/path, lower case)",
)
_TAG = Matches(re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"), "image tag (letters, digits, _ . -; up to 128)")
_USER = Matches(re.compile(r"[a-z_][a-z0-9_-]*"), "user name")
_SUITE = Matches(re.compile(r"[a-z][a-z0-9-]*"), "Debian suite")
_DEBIAN_PACKAGE = Matches(re.compile(r"[a-z0-9][a-z0-9+.-]+"), "Debian package name")
_ABS_PATH = Matches(re.compile(r"(/[A-Za-z0-9._-]+)+"), "absolute path")
_ENV_NAME = Matches(re.compile(r"[A-Z_][A-Z0-9_]*"), "environment variable name")
_HOST = Matches(re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+"), "host name")
_HEADER = Matches(re.compile(r"[A-Za-z0-9-]+"), "HTTP header name")
_PATH_PREFIX = Matches(re.compile(r"/([A-Za-z0-9._~-]+/)*"), "path prefix (/.../)")
_ATTR_PATH = Matches(re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*(?:\.[A-Za-z_][A-Za-z0-9_'-]*)*"), "nixpkgs attribute path")
_OUTPUT = Matches(re.compile(r"[a-z][a-zA-Z0-9_-]*"), "derivation output name")  # out, bin, lib, getent, ...


# ---------------------------------------------------------------- the catalog
def load_catalog(path: Path | None = None) -> Catalog:
    path = path or images_dir() / "catalog.toml"
    src = load_toml(path)
    data = schema.check(src, CATALOG_SCHEMA)
    tools: dict[str, Tool] = {}
    for name, t in data.get("tools", {}).items():
        if t["nix"]:
            _ATTR_PATH(t["nix"], src.at("tools", name, "nix"))
        outputs = t.get("nix_outputs", [])
        if "nix_outputs" in t and (not t["nix"] or not outputs or len(set(outputs)) != len(outputs)):
            raise InputError(
                "nix_outputs: the outputs of the tool's `nix` attribute, at least one, each once",
                src.where("tools", name, "nix_outputs"),
            )
        for i, output in enumerate(outputs):
            _OUTPUT(output, src.at("tools", name, "nix_outputs", i))
        for i, package in enumerate(t.get("debian", [])):
            _DEBIAN_PACKAGE(package, src.at("tools", name, "debian", i))
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
        _HOST(v["host"], src.at("providers", name, "host"))
        _ENV_NAME(v["key"], src.at("providers", name, "key"))
        _HEADER(v["header"], src.at("providers", name, "header"))
        for i, prefix in enumerate(v["paths"]):
            _PATH_PREFIX(prefix, src.at("providers", name, "paths", i))
        if not 1024 < v["port"] < 65536 or v["port"] == 3128:
            raise InputError(
                f"{v['port']}: the gateway's port is from 1025 to 65535, not 3128 (the proxy's)",
                src.where("providers", name, "port"),
            )
        providers[name] = Provider(
            name,
            v["host"],
            v["key"],
            v["header"],
            v.get("prefix", ""),
            tuple(v["paths"]),
            v["port"],
            v.get("comment", ""),
        )
    ports = [p.port for p in providers.values()]
    if len(set(ports)) != len(ports):
        raise InputError("two providers share a gateway port; give each its own", src.where("providers"))
    agents: dict[str, Agent] = {}
    for name, a in data.get("agents", {}).items():
        for i, provider in enumerate(a.get("providers", [])):
            if provider not in providers:
                raise InputError(
                    f"unknown provider {provider!r}; add [providers.{provider}]",
                    src.where("agents", name, "providers", i),
                )
        if a["nix"]:
            _ATTR_PATH(a["nix"], src.at("agents", name, "nix"))
        agents[name] = Agent(
            name=name,
            nix=a["nix"],
            check=a["check"],
            comment=a.get("comment", ""),
            npm=a.get("npm", ""),
            pypi=a.get("pypi", ""),
            unfree=a.get("unfree", False),
            note=a.get("note", ""),
            keys=tuple(_ENV_NAME(k, src.at("agents", name, "keys", i)) for i, k in enumerate(a.get("keys", []))),
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
    src = load_toml(path)
    data = schema.check(src, IMAGE_SCHEMA)
    role = data.get("role", "devcontainer")
    if role not in ROLES:
        raise InputError(f"{role!r}: the role is one of {', '.join(ROLES)}", src.where("role"))
    if role == "devcontainer":
        schema.require(data, DEVCONTAINER_REQUIRED, At(src))
        for key in ("entrypoint", "state_dirs"):
            if key in data:
                raise InputError(
                    f"a devcontainer image has no {key} (that is for service images); remove it", src.where(key)
                )
    else:
        schema.require(data, ("entrypoint",), At(src))
        for key in DEVCONTAINER_REQUIRED:
            if data.get(key):
                raise InputError(f"a {role} image holds no {key}; remove the key", src.where(key))
    catalog = catalog or load_catalog()

    name = _IMAGE_NAME(data["name"], src.at("name"))
    if path.parent.parent.resolve() == images_dir().resolve() and name != path.parent.name:
        raise InputError(
            f"{name!r} is not the directory's name {path.parent.name!r} (Nix finds the image by it); rename one",
            src.where("name"),
        )
    registry = _REGISTRY(data["registry"], src.at("registry"))
    tag = _TAG(data.get("tag", "latest"), src.at("tag"))
    ids = {key: data.get(key, DEFAULT_ID) for key in ("uid", "gid")}
    for key, value in ids.items():
        if not 0 <= value <= MAX_ID:
            raise InputError(f"{value}: must be from 0 to {MAX_ID}", src.where(key))
    suite = data.get("debian", {}).get("suite", "bookworm")
    _SUITE(suite, src.at("debian", "suite"))

    sets = tuple(data["package_sets"])
    for i, set_name in enumerate(sets):
        if set_name not in catalog.sets:
            known = ", ".join(catalog.sets)
            raise InputError(f"unknown package set {set_name!r}; known: {known}", src.where("package_sets", i))
    agents = tuple(data.get("agents", ()))
    for i, agent in enumerate(agents):
        check_agents((agent,), catalog, src.where("agents", i))

    tier = data.get("tier", "")
    user = _USER(data.get("user", DEFAULT_USER), src.at("user"))
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
        state_dirs=tuple(_ABS_PATH(d, src.at("state_dirs", i)) for i, d in enumerate(data.get("state_dirs", ()))),
    )


def load_tier(ref: str, where: Location) -> model.Profile:
    """A shipped tier or a profile (a name in images/policies/, or a file's path), as `load_profile` finds it.
    An unknown one is refused at `where`; a broken profile file is reported at its own line."""
    if not profiles._resolve(ref, None).is_file():
        known = ", ".join(profiles.tier_names())
        raise InputError(f"unknown tier {ref!r}; known: {known} (or the path of a profile file)", where)
    return profiles.load_profile(ref)


def check_user(image: Image, profile: model.Profile, where: Location) -> None:
    """The profile runs as the image's user (image.toml `user`: the user Nix and the Debian backend create)."""
    if profile.container.user != image.user:
        raise InputError(
            f"profile {profile.name!r} runs as user {profile.container.user!r}, but image {image.name}'s user is "
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
