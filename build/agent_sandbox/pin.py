"""Pinned downloads (images/sources.toml): their hashes computed by Nix's own fetcher, written with tomlkit.

`agent-sandbox pin` wraps `nix-prefetch-url` (through plumbum, like every command: process.py) to hash each
system's download the way `pkgs.fetchurl` will check it, and writes version, URLs, SRI hashes (and the hex in the
comment above each) into images/sources.toml, keeping its comments and order. `pin --check` downloads every pin
again and compares. A missing nix, an unreachable URL, a hash that changed under the same version: one line, a
non-zero exit, and the file untouched (it is written atomically, once, at the end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import tomlkit
from tomlkit.items import Comment, Table

from . import process
from .errors import CommandFailed, EnvironmentProblem, InputError, Location
from .fsutil import atomic_write, read_user_file

HASH_COMMENT = "sha256 "  # the comment above each hash: its hex form, for people comparing with upstream lists


@attrs.frozen
class Pin:
    """One system's download of a source."""

    source: str
    system: str
    url: str
    hash: str  # SRI (sha256-...)


@attrs.frozen
class Hashed:
    sri: str
    hex: str


class NixPrefetch:
    """`nix-prefetch-url` and `nix hash`, through plumbum (process.run)."""

    def __init__(self, exe: str | None = None) -> None:
        found = exe or process.which("nix-prefetch-url")
        if not found or not process.which("nix"):
            raise EnvironmentProblem("nix-prefetch-url is not installed: run scripts/setup-nix.sh (Nix >= 2.8)")
        self.exe = found

    def hash_url(self, url: str, *, timeout: float = 600) -> Hashed:
        result = process.run([self.exe, "--type", "sha256", url], check=False, timeout=timeout)
        if not result.ok:
            last = (result.err.strip().splitlines() or ["no message"])[-1]
            raise CommandFailed(f"cannot download {url}: {last}")
        base32 = result.out.strip().splitlines()[-1]
        sri = process.run(["nix", "hash", "to-sri", "--type", "sha256", base32]).out.strip()
        hex_ = process.run(["nix", "hash", "to-base16", "--type", "sha256", base32]).out.strip()
        return Hashed(sri, hex_)


def load(path: Path) -> tomlkit.TOMLDocument:
    text = read_user_file(path)
    try:
        return tomlkit.parse(text)
    except Exception as exc:  # tomlkit raises several kinds
        raise InputError(f"malformed TOML: {exc}", Location(path)) from None


def pins(doc: Mapping[str, Any], path: Path, names: Sequence[str] = ()) -> list[Pin]:
    """The pins of the named sources (default: all): one per [<source>.<system>] table with a url."""
    chosen = list(names) or [k for k, v in doc.items() if isinstance(v, Mapping)]
    out = []
    for name in chosen:
        table = doc.get(name)
        if not isinstance(table, Mapping):
            known = ", ".join(k for k, v in doc.items() if isinstance(v, Mapping)) or "none"
            raise InputError(f"no source {name!r} (known: {known})", Location(path, 0, name))
        for system, entry in table.items():
            if isinstance(entry, Mapping):
                if "url" not in entry:
                    raise InputError("a pin needs url = ...", Location(path, 0, f"{name}.{system}"))
                out.append(Pin(name, system, str(entry["url"]), str(entry.get("hash", ""))))
    if not out:
        raise InputError("nothing to pin", Location(path))
    return out


def _set_hash_comment(table: Table, hex_: str) -> None:
    """Replace the `# sha256 <hex>` comment above `hash` (or add one)."""
    body = table.value.body
    for index, (key, item) in enumerate(body):
        if key is None and isinstance(item, Comment) and item.as_string().strip().startswith("# " + HASH_COMMENT):
            body[index] = (None, tomlkit.comment(HASH_COMMENT + hex_))
            return
    for index, (key, _) in enumerate(body):
        if key is not None and key.key == "hash":
            body.insert(index, (None, tomlkit.comment(HASH_COMMENT + hex_)))
            return


def pin(
    path: Path, names: Sequence[str] = (), *, version: str | None = None, prefetch: NixPrefetch | None = None
) -> list[str]:
    """Hash every download of the named sources (at `version`: the old version in each URL replaced) and write
    them into `path`. Returns one line per change. Refuses a hash that changed under an unchanged version."""
    doc = load(path)
    todo = pins(doc, path, names)
    if version is not None and len({p.source for p in todo}) != 1:
        raise InputError("--version applies to one source: name it", Location("--version"))
    fetch = prefetch or NixPrefetch()
    changes: list[str] = []
    for p in todo:
        table = doc[p.source]
        old_version = str(table.get("version", ""))
        url = p.url.replace(old_version, version) if version and old_version else p.url
        hashed = fetch.hash_url(url)
        same_version = version is None or version == old_version
        if same_version and url == p.url and p.hash and hashed.sri != p.hash:
            raise CommandFailed(
                f"{p.source} {old_version} for {p.system}: the download's hash changed "
                f"({p.hash} -> {hashed.sri}) under the same version; {path} is unchanged"
            )
        entry = table[p.system]
        if url != p.url:
            entry["url"] = url
        if hashed.sri != p.hash:
            entry["hash"] = hashed.sri
            _set_hash_comment(entry, hashed.hex)
            changes.append(f"{p.source} {p.system}: {p.hash or '(none)'} -> {hashed.sri}")
    if version is not None and str(doc[todo[0].source].get("version", "")) != version:
        changes.insert(0, f"{todo[0].source}: version {doc[todo[0].source].get('version', '')} -> {version}")
        doc[todo[0].source]["version"] = version
    if changes:
        atomic_write(path, tomlkit.dumps(doc))
    return changes


def check(path: Path, names: Sequence[str] = (), *, prefetch: NixPrefetch | None = None) -> list[str]:
    """Download every pin again; CommandFailed naming the first one whose hash differs."""
    fetch = prefetch or NixPrefetch()
    lines = []
    for p in pins(load(path), path, names):
        hashed = fetch.hash_url(p.url)
        if hashed.sri != p.hash:
            raise CommandFailed(
                f"{p.source} {p.system}: {p.url} now hashes to {hashed.sri}, pinned {p.hash or '(none)'}"
            )
        lines.append(f"{p.source} {p.system}: ok ({p.hash})")
    return lines
