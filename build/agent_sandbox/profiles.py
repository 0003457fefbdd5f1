"""Read sandbox profiles (YAML), resolve `inherits:` chains, validate, and build the frozen model.

Merge rules of `inherits` (the child is merged over its parent, recursively):
- mappings merge key by key;
- a scalar in the child replaces the parent's;
- a list in the child replaces the parent's list (`allow: []` means "none");
- `key+:` appends to the parent's list instead (duplicates dropped, order kept);
- `name`, `version` and `description` are never inherited.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import model, schema
from .errors import InputError, Location
from .paths import policies_dir
from .schema import Bool, Int, Kind, ListOf, Located, MapOf, Matches, Nullable, Number, Size, Str, Table, Value
from .yamlsource import load_yaml

# ---------------------------------------------------------------- schema
_TEXT = Located(Str(numbers=True))  # a number written unquoted is taken as its text (version: 1.0)
_FLAG = Located(Bool())
_STRINGS = ListOf(Located(Str()))


def _limit(kind: Kind) -> Kind:
    """A resource limit: `null` unsets the parent's."""
    return Located(Nullable(kind))


def _section(**fields: Kind) -> Table:
    """A mapping of the profile format, where `key+:` appends to the parent's list."""
    return Table(fields, appends=True)


MOUNT = Table(
    {"source": Str(), "target": Str(), "readonly": Bool()}, required=("source", "target"), defaults={"readonly": True}
)

SCHEMA = _section(
    name=_TEXT,
    version=_TEXT,
    description=_TEXT,
    inherits=_TEXT,
    network=_section(allow=_STRINGS, deny=_STRINGS),
    filesystem=_section(readonly=_FLAG, allow=_STRINGS, read=_STRINGS, deny=_STRINGS),
    exec=_section(allow=_STRINGS, deny=_STRINGS, search_path=_STRINGS),
    audit=_section(level=_TEXT, output=_TEXT, include_args=_FLAG, include_env=_FLAG),
    container=_section(
        user=_TEXT,
        cap_drop=_STRINGS,
        cap_add=_STRINGS,
        no_new_privileges=_FLAG,
        user_namespaces=_FLAG,
        memory=_limit(Size()),
        cpus=_limit(Number()),
        pids=_limit(Int()),
        tmpfs=_STRINGS,
        scratch=_STRINGS,
        mounts=ListOf(Located(MOUNT), what="a list of {source, target, readonly} mappings"),
        env=MapOf(
            Located(Str(numbers=True)),
            names=Matches(re.compile(r"[A-Za-z_][A-Za-z0-9_]*"), "environment variable name"),
            what="a mapping of NAME: value",
        ),
    ),
)
NOT_INHERITED = ("name", "version", "description", "inherits")

CAPABILITIES = frozenset(model.CAPABILITY_BITS) | {"ALL"}


# ---------------------------------------------------------------- inheritance
def _same(value: Any) -> str:
    """What two list items are compared by when `key+:` drops duplicates (a mapping's key order does not count)."""
    return repr(sorted(value.items())) if isinstance(value, dict) else repr(value)


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in parent.items() if k not in NOT_INHERITED}
    for key, val in child.items():
        if key.endswith("+"):
            base = key[:-1]
            seen = {_same(v.value) for v in out.get(base, [])}
            out[base] = list(out.get(base, [])) + [v for v in val if _same(v.value) not in seen]
        elif isinstance(val, dict) and isinstance(out.get(key), dict) and not isinstance(val, Value):
            out[key] = _merge(out[key], val)
        else:
            out[key] = val
    return out


def _resolve(ref: str, near: Path | None) -> Path:
    """A profile reference: a file path, or a name looked up next to the child, then in images/policies/."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        path = Path(ref)
        return path if path.is_absolute() or near is None else near / path
    dirs = ([near] if near is not None else []) + [policies_dir()]
    for directory in dirs:
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{ref}{suffix}"
            if candidate.is_file():
                return candidate
    return dirs[-1] / f"{ref}.yaml"


def _load_chain(path: Path, seen: tuple[Path, ...], via: Location | None) -> tuple[dict[str, Any], tuple[str, ...]]:
    if not path.is_file():
        if via is not None:
            raise InputError(f"unknown parent profile {path.stem!r}: no file {path}", via)
        raise InputError("no such profile file or tier name", Location(path))
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(p.stem for p in (*seen, resolved))
        raise InputError(f"inheritance cycle: {chain}", via)
    doc = schema.check(load_yaml(path), SCHEMA)
    name = doc["name"].value if "name" in doc else path.stem
    if "inherits" not in doc:
        return doc, (name,)
    parent_ref = doc["inherits"]
    parent, lineage = _load_chain(_resolve(parent_ref.value, path.parent), (*seen, resolved), parent_ref.where)
    return _merge(parent, doc), (name, *lineage)


# ---------------------------------------------------------------- values
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def parse_host(text: str, where: Location) -> model.HostRule:
    raw = text.strip().lower()
    if "/" in raw:
        raise InputError(f"{text!r}: CIDR ranges are not supported (Leash matches single hosts); list hosts", where)
    if raw.startswith("[") or raw.count(":") > 1:
        raise InputError(
            f"{text!r}: IPv6 literals are not supported (Leash enforces IPv4 only); use a host name", where
        )
    host, port = raw, None
    if ":" in raw:
        host, port_text = raw.rsplit(":", 1)
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise InputError(f"{text!r}: port must be a number from 1 to 65535", where)
        port = int(port_text)
    if host == "*":
        if port is not None:
            raise InputError(f"{text!r}: '*' means any host on any port; write it without a port", where)
        return model.HostRule("*", None, where)
    name = host[2:] if host.startswith("*.") else host
    if re.fullmatch(r"[0-9.]+", name):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise InputError(f"{text!r}: not a valid IPv4 address", where) from None
        if host.startswith("*."):
            raise InputError(f"{text!r}: a wildcard needs a domain name, not an address", where)
    elif len(name) > 253 or not _HOSTNAME.fullmatch(name):
        raise InputError(f"{text!r}: not a valid host name (use host, host:port, *.domain or *)", where)
    return model.HostRule(host, port, where)


def parse_path(text: str, where: Location, home: str) -> model.PathRule:
    raw = text.strip()
    if raw == "~" or raw.startswith("~/"):
        raw = home + raw[1:]
    if not raw.startswith("/"):
        raise InputError(f"{text!r}: paths must be absolute (start with / or ~/)", where)
    recursive = raw.endswith("/**") or raw.endswith("/")
    body = raw[:-3] if raw.endswith("/**") else raw
    if any(c in body for c in "*?[]"):
        raise InputError(f"{text!r}: only a trailing /** glob is supported (no layer matches other patterns)", where)
    if "/../" in body + "/" or "\0" in body:
        raise InputError(f"{text!r}: '..' is not allowed in paths", where)
    return model.PathRule(model.normalise(body or "/"), recursive or body in ("", "/"), where)


def parse_program(text: str, where: Location) -> str:
    raw = text.strip()
    if raw.startswith("/"):
        rule = parse_path(raw, where, "/")
        return str(rule) if rule.recursive else rule.path
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", raw):
        raise InputError(f"{text!r}: a program is a name (git) or an absolute path (/usr/bin/git, /opt/**)", where)
    return raw


def parse_size(value: Any, where: Location) -> int:
    match = re.fullmatch(r"(\d+)\s*([kmgt]?)i?b?", str(value).strip().lower())
    if not match:
        raise InputError(f"{value!r}: a size is a number with an optional k, m, g or t suffix (e.g. 8g)", where)
    number: int = int(match.group(1)) * 1024 ** "_kmgt".index(match.group(2) or "_")
    if number < 6 * 1024 * 1024:
        raise InputError(f"{value!r}: container engines refuse memory limits under 6m", where)
    return number


# ---------------------------------------------------------------- building the model
def _values(doc: dict[str, Any], section: str, key: str) -> list[Value]:
    return list(doc.get(section, {}).get(key, []))


def _scalar(doc: dict[str, Any], section: str, key: str, default: Any) -> Any:
    val = doc.get(section, {}).get(key)
    return default if val is None else val.value


def _where(doc: dict[str, Any], section: str, key: str, path: Path) -> Location:
    val = doc.get(section, {}).get(key)
    return val.where if isinstance(val, Value) else Location(path, 0, f"{section}.{key}")


def _set(val: Value | None) -> Value | None:
    """None for a key that is absent or explicitly `null`."""
    return None if val is None or val.value is None else val


def _each(values: list[Value], parse: Callable[[Any, Location], Any]) -> tuple[Any, ...]:
    return tuple(parse(v.value, v.where) for v in values)


def build_profile(doc: dict[str, Any], lineage: tuple[str, ...], path: Path) -> model.Profile:
    defaults = model.Container()
    user = _scalar(doc, "container", "user", defaults.user)
    if not re.fullmatch(r"[a-z_][a-z0-9_-]*", user):
        raise InputError(f"{user!r}: not a valid user name", _where(doc, "container", "user", path))
    home = "/root" if user == "root" else f"/home/{user}"

    def path_rule(text: str, where: Location) -> model.PathRule:
        return parse_path(text, where, home)

    def cap(text: str, where: Location) -> str:
        name = text.strip().upper().removeprefix("CAP_")
        if name not in CAPABILITIES:
            raise InputError(f"{text!r}: not a Linux capability", where)
        return name

    def added_cap(text: str, where: Location) -> str:
        name = cap(text, where)
        if name == "ALL":
            raise InputError("cap_add: ALL gives the agent every capability; list the ones it needs", where)
        return name

    def abs_dir(text: str, where: Location) -> str:
        return parse_path(text, where, home).path

    memory = _set(doc.get("container", {}).get("memory"))
    cpus = _set(doc.get("container", {}).get("cpus"))
    if cpus is not None and not 0 < float(cpus.value) <= 1024:
        raise InputError(f"{cpus.value!r}: cpus must be above 0", cpus.where)
    pids = _set(doc.get("container", {}).get("pids"))
    if pids is not None and pids.value < 16:
        raise InputError(f"{pids.value!r}: a pids limit under 16 leaves no room for a shell", pids.where)
    level_val = _scalar(doc, "audit", "level", model.AuditLevel.ALL.value)
    try:
        level = model.AuditLevel(level_val)
    except ValueError:
        choices = ", ".join(level.value for level in model.AuditLevel)
        raise InputError(
            f"{level_val!r}: audit level is one of {choices}", _where(doc, "audit", "level", path)
        ) from None
    output = _scalar(doc, "audit", "output", model.Audit().output)
    parse_path(output, _where(doc, "audit", "output", path), home)

    container = model.Container(
        user=user,
        cap_drop=_each(_values(doc, "container", "cap_drop"), cap)
        if "cap_drop" in doc.get("container", {})
        else defaults.cap_drop,
        cap_add=_each(_values(doc, "container", "cap_add"), added_cap),
        no_new_privileges=_scalar(doc, "container", "no_new_privileges", defaults.no_new_privileges),
        user_namespaces=_scalar(doc, "container", "user_namespaces", defaults.user_namespaces),
        memory=str(memory.value) if memory else None,
        memory_bytes=parse_size(memory.value, memory.where) if memory else None,
        cpus=float(cpus.value) if cpus else None,
        pids=int(pids.value) if pids else None,
        tmpfs=_each(_values(doc, "container", "tmpfs"), abs_dir)
        if "tmpfs" in doc.get("container", {})
        else defaults.tmpfs,
        scratch=_each(_values(doc, "container", "scratch"), abs_dir),
        mounts=tuple(
            model.Mount(v.value["source"], parse_path(v.value["target"], v.where, home).path, v.value["readonly"])
            for v in _values(doc, "container", "mounts")
        ),
        env=tuple((k, v.value) for k, v in doc.get("container", {}).get("env", {}).items()),
    )
    exec_section = doc.get("exec", {})
    return model.Profile(
        name=str(doc["name"].value) if "name" in doc else path.stem,
        version=str(doc["version"].value) if "version" in doc else "1.0",
        description=str(doc["description"].value) if "description" in doc else "",
        lineage=lineage,
        network=model.Network(
            allow=_each(_values(doc, "network", "allow"), parse_host),
            deny=_each(_values(doc, "network", "deny"), parse_host),
        ),
        filesystem=model.Filesystem(
            readonly=_scalar(doc, "filesystem", "readonly", False),
            write=_each(_values(doc, "filesystem", "allow"), path_rule),
            read=_each(_values(doc, "filesystem", "read"), path_rule),
            deny=_each(_values(doc, "filesystem", "deny"), path_rule),
        ),
        exec=model.Exec(
            allow=_each(_values(doc, "exec", "allow"), parse_program),
            deny=_each(_values(doc, "exec", "deny"), parse_program),
            search_path=(
                tuple(parse_path(v.value, v.where, home).path for v in exec_section["search_path"])
                if "search_path" in exec_section
                else model.Exec().search_path
            ),
            where=Location(path, 0, "exec"),
            allow_where=tuple(v.where for v in _values(doc, "exec", "allow")),
            deny_where=tuple(v.where for v in _values(doc, "exec", "deny")),
        ),
        audit=model.Audit(
            level=level,
            output=output,
            include_args=_scalar(doc, "audit", "include_args", True),
            include_env=_scalar(doc, "audit", "include_env", False),
        ),
        container=container,
        source=str(path),
    )


def load_profile(ref: str | Path) -> model.Profile:
    """Load a tier by name (`strict`) or a profile file by path, with its whole inherits chain."""
    path = _resolve(str(ref), None) if not isinstance(ref, Path) else ref
    doc, lineage = _load_chain(path, (), None)
    return build_profile(doc, lineage, path)


def tier_names() -> list[str]:
    """The shipped tiers, in order of increasing trust."""
    return ["paranoid", "strict", "standard", "trusted"]
