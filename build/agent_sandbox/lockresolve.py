"""Making and checking an image's lock against the registries (the side effects behind `agent-sandbox lock`).

- npm: versions and `dist.integrity` from the registry's metadata (HTTP GET); an agent's whole dependency tree
  from `npm install --package-lock-only` (lockfileVersion 3) in a scratch directory, with none of the host's npm
  configuration (only its CA bundle: AGENT_SANDBOX_BUILD_CA, as for the build);
- PyPI: the set of packages from `pip install --dry-run --report` for the image's Python (the suite's CPython,
  glibc Linux, wheels only), and the sha256 of each wheel of each from PyPI's JSON API;
- Debian: what mmdebstrap installs from the mirror for the base layer (a real run with the build's arguments,
  discarded; dpkg's list from inside it).

`make_lock` decides what to resolve (missing components, or the ones named in --update) and keeps the rest as it
is; `check_lock` asks the registries whether they still serve exactly what the lock says. Commands run through
process.run (plumbum); HTTP goes through `Http`, which a test can replace.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import ssl
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import attrs

from . import process
from .backends import debian_plan as dp
from .backends.layers import mmdebstrap_argv
from .errors import CommandFailed, EnvironmentProblem, InputError, Location
from .images import Catalog, Image
from .lock import (
    AgentLock,
    DebianLock,
    Lock,
    NodeLock,
    NpmArtifact,
    NpmLock,
    PythonPackage,
    check_package_lock,
    npm_tree,
    wheel_fits,
)

NPM_REGISTRY = "https://registry.npmjs.org/"
PYPI_INDEX = "https://pypi.org/simple/"
HTTP_TIMEOUT = 60
# The image's Python, by Debian suite: PyPI agents are resolved for it (the host's may differ).
SUITE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
WHEEL_ARCHES = ("x86_64", "aarch64")  # the lock serves both architectures' builds


def registry_ca(env: Mapping[str, str]) -> Path | None:
    """The CA bundle for registry requests: the build's (AGENT_SANDBOX_BUILD_CA, else the host's bundle)."""
    from .backends.debian import resolve_build_ca  # debian.py imports this module

    return resolve_build_ca(env)


def npm_registry(env: Mapping[str, str]) -> str:
    return (env.get("AGENT_SANDBOX_NPM_REGISTRY") or NPM_REGISTRY).rstrip("/") + "/"


def pypi_index(env: Mapping[str, str]) -> str:
    return (env.get("AGENT_SANDBOX_PYPI_INDEX") or PYPI_INDEX).rstrip("/") + "/"


# ------------------------------------------------------------------ HTTP
class Http:
    """GET of JSON documents from the registries (standard library; verified TLS with the registry CA bundle)."""

    def __init__(self, ca: Path | None = None) -> None:
        self.context = ssl.create_default_context(cafile=str(ca) if ca else None)

    def get_json(self, url: str, accept: str = "application/json") -> Any:
        request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "agent-sandbox-lock"})
        last = ""
        for _ in range(3):
            try:
                with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT, context=self.context) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise CommandFailed(f"{url}: not found (404)") from None
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
        raise CommandFailed(f"cannot reach {url}: {last}")


# ------------------------------------------------------------------ versions
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def pick_version(spec: str, versions: Sequence[str], tags: Mapping[str, str]) -> str | None:
    """An npm spec as the lock uses them: a dist-tag (`latest`), an exact version, or a major (`22`) or
    major.minor (`22.9`) prefix (the highest release matching it, no pre-releases)."""
    if spec in tags:
        return tags[spec]
    if spec in versions:
        return spec
    if re.fullmatch(r"\d+(\.\d+)?", spec):
        prefix = tuple(int(x) for x in spec.split("."))
        found = [tuple(int(x) for x in m.groups()) for v in versions if (m := _VERSION.match(v))]
        found = [v for v in found if v[: len(prefix)] == prefix]
        return ".".join(map(str, max(found))) if found else None
    return None


# ------------------------------------------------------------------ the resolver
class Resolver(Protocol):
    def npm_artifact(self, package: str, spec: str) -> NpmArtifact: ...
    def npm_tree(self, agent: str, package: str, version: str) -> str: ...
    def pypi_tree(self, package: str, spec: str, python: str) -> tuple[str, tuple[PythonPackage, ...]]: ...
    def debian(self, image: Image, catalog: Catalog, arch: str) -> dict[str, str]: ...


@attrs.define
class Registries:
    """The real registries (or the mirrors AGENT_SANDBOX_NPM_REGISTRY / AGENT_SANDBOX_PYPI_INDEX name)."""

    env: Mapping[str, str] = attrs.Factory(lambda: dict(os.environ))
    http: Http | None = None

    def __attrs_post_init__(self) -> None:
        if self.http is None:
            self.http = Http(registry_ca(self.env))

    @property
    def _http(self) -> Http:
        assert self.http is not None
        return self.http

    # -------------------------------------------------------------- npm
    def npm_metadata(self, package: str) -> Any:
        url = npm_registry(self.env) + urllib.parse.quote(package, safe="@")
        return self._http.get_json(url, accept="application/vnd.npm.install-v1+json; q=1.0, application/json")

    def npm_artifact(self, package: str, spec: str) -> NpmArtifact:
        meta = self.npm_metadata(package)
        versions = meta.get("versions") or {}
        version = pick_version(spec, list(versions), meta.get("dist-tags") or {})
        if version is None or version not in versions:
            raise InputError(f"npm package {package} has no version matching {spec!r}")
        integrity = (versions[version].get("dist") or {}).get("integrity", "")
        if not integrity.startswith("sha512-"):
            raise CommandFailed(f"npm package {package}@{version}: the registry gives no sha512 integrity")
        return NpmArtifact(package, version, integrity)

    def npm_tree(self, agent: str, package: str, version: str) -> str:
        """`npm install --package-lock-only` of exactly package@version: the lockfile's text (v3)."""
        npm = process.require("npm", "the lock's npm trees are resolved by npm: apt-get install npm")
        work = Path(tempfile.mkdtemp(prefix="agent-sandbox-lock-npm."))
        try:
            (work / "package.json").write_text(json.dumps({"name": f"agent-sandbox-{agent}", "private": True}))
            empty, empty_global = work / "user.npmrc", work / "global.npmrc"
            empty.write_text("")
            empty_global.write_text("")
            ca = registry_ca(self.env)
            argv = [
                npm,
                "install",
                "--package-lock-only",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--save-exact",
                "--lockfile-version=3",
                "--omit-lockfile-registry-resolved=false",
                f"--registry={npm_registry(self.env)}",
                f"--userconfig={empty}",
                f"--globalconfig={empty_global}",
                "--loglevel=error",
                "--update-notifier=false",
                *([f"--cafile={ca}"] if ca else []),
                f"{package}@{version}",
            ]
            process.run(argv, cwd=str(work), timeout=600)
            return (work / "package-lock.json").read_text(encoding="utf-8")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # -------------------------------------------------------------- PyPI
    def pypi_tree(self, package: str, spec: str, python: str) -> tuple[str, tuple[PythonPackage, ...]]:
        """`pip install --dry-run --report` of package[==spec] for CPython `python` on glibc Linux (wheels only),
        then every fitting wheel's sha256 from PyPI's JSON API, per package. Returns (its version, packages)."""
        requirement = package if spec == "latest" else f"{package}=={spec}"
        work = Path(tempfile.mkdtemp(prefix="agent-sandbox-lock-pip."))
        try:
            ca = registry_ca(self.env)
            major, minor = python.split(".")[:2]
            platforms = [f"manylinux_2_{n}_x86_64" for n in range(36, 16, -1)]
            platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
            argv = [
                sys.executable,
                "-m",
                "pip",
                "--isolated",
                "--disable-pip-version-check",
                "install",
                "--dry-run",
                "--ignore-installed",
                "--quiet",
                "--report",
                str(work / "report.json"),
                "--only-binary=:all:",
                f"--python-version={major}.{minor}",
                "--implementation=cp",
                f"--abi=cp{major}{minor}",
                *(f"--platform={p}" for p in platforms),
                "--target",
                str(work / "target"),
                f"--index-url={pypi_index(self.env)}",
                *([f"--cert={ca}"] if ca else []),
                requirement,
            ]
            process.run(argv, timeout=900)
            report = json.loads((work / "report.json").read_text(encoding="utf-8"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        chosen = {}
        for item in report.get("install", []):
            meta, info = item["metadata"], item.get("download_info") or {}
            digest = ((info.get("archive_info") or {}).get("hashes") or {}).get("sha256", "")
            chosen[meta["name"]] = (meta["version"], info.get("url", "").rsplit("/", 1)[-1], digest)
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(lambda kv: self._wheels(kv[0], kv[1], python), chosen.items()))
        packages = tuple(sorted(found, key=lambda p: p.name.lower()))
        top = next((v for n, (v, _, _) in chosen.items() if _normal(n) == _normal(package)), None)
        if top is None:
            raise CommandFailed(f"pip resolved no {package}")
        return top, packages

    def pypi_files(self, name: str, version: str) -> dict[str, str]:
        """Every wheel the index serves for name==version: file name -> sha256 (the index's JSON, PEP 691)."""
        url = f"{pypi_index(self.env)}{_normal(name)}/"
        data = self._http.get_json(url, accept="application/vnd.pypi.simple.v1+json")
        out = {}
        for f in data.get("files", []):
            match = WHEEL_VERSION.match(f.get("filename", ""))
            digest = (f.get("hashes") or {}).get("sha256")
            if match and digest and _normal_version(match[1]) == _normal_version(version):
                out[f["filename"]] = digest
        return out

    def _wheels(self, name: str, chosen: tuple[str, str, str], python: str) -> PythonPackage:
        version, filename, digest = chosen
        files = self.pypi_files(name, version)
        wheels = {f: h for f, h in files.items() if f.endswith(".whl") and wheel_fits(f, python, WHEEL_ARCHES)}
        if filename not in files or (digest and files[filename] != digest):
            raise CommandFailed(
                f"PyPI package {name}=={version}: pip chose {filename}, which PyPI's JSON API "
                "does not list with that sha256"
            )
        wheels[filename] = files[filename]
        return PythonPackage(name, version, wheels)

    # -------------------------------------------------------------- Debian
    def debian(self, image: Image, catalog: Catalog, arch: str) -> dict[str, str]:
        """What mmdebstrap installs for the image's base layer on this host's architecture: a real run with the
        build's arguments, discarded, whose hook lists dpkg's packages. (`mmdebstrap --simulate` is not the same:
        it resolves everything at once, where the real run installs the Essential set first, so a dependency that
        an essential package Provides — squid's lsb-base, provided by sysvinit-utils — resolved differently.)"""
        host = dp.debian_arch(platform.machine())
        if arch != host:
            raise EnvironmentProblem(f"the Debian packages for {arch} are resolved on an {arch} host (this is {host})")
        exe = process.require("mmdebstrap", "apt-get install mmdebstrap, or run scripts/setup-host.sh")
        work = Path(tempfile.mkdtemp(prefix="agent-sandbox-lock-debian."))
        try:
            script = work / "setup.sh"
            script.write_text(f"dpkg-query -W -f '{INSTALLED_MARK}${{Package}} ${{Version}}\\n'\n")
            argv = mmdebstrap_argv(
                suite=image.debian_suite,
                variant=dp.MMDEBSTRAP_VARIANT,
                packages=dp.debian_packages(image, catalog),
                sources=dp.mmdebstrap_sources(image.debian_suite),
                apt_options=dp.APT_OPTIONS,
                dpkg_options=dp.DPKG_OPTIONS,
                script_path=script,
                output=Path("/dev/null"),
            )
            argv = [exe, "--quiet", *argv[1:]]
            result = process.run(argv, timeout=1200)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        packages = parse_installed_lines(result.out + "\n" + result.err)
        if not packages:
            raise CommandFailed("mmdebstrap installed no package (no list of dpkg's packages in its output)")
        return packages


INSTALLED_MARK = "@@agent-sandbox-installed "  # the hook's lines: <mark><package> <version>


def parse_installed_lines(text: str) -> dict[str, str]:
    """The hook's `<mark>name version` lines (dpkg-query inside the fresh rootfs) -> {name: version}, sorted."""
    found = {}
    for line in text.splitlines():
        if line.startswith(INSTALLED_MARK):
            name, _, version = line[len(INSTALLED_MARK) :].partition(" ")
            if name and version:
                found[name] = version
    return dict(sorted(found.items()))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


WHEEL_VERSION = re.compile(r"^[^-]+-([^-]+)-.*\.whl$")


def _normal_version(version: str) -> str:
    return re.sub(r"[-_]", ".", version.lower().lstrip("v"))


# ------------------------------------------------------------------ making a lock
def parse_updates(names: Sequence[str], known: Sequence[str]) -> dict[str, str | None]:
    """`--update` arguments (`claude`, `claude=2.1.300`, `node`, `npm`, `debian`) -> {component: version or None}."""
    out: dict[str, str | None] = {}
    for item in names:
        name, sep, version = item.partition("=")
        if name not in known:
            raise InputError(
                f"nothing called {name!r} in this image's lock; known: {', '.join(known)}", Location("--update")
            )
        if sep and (not version or name == "debian"):
            raise InputError(f"{item!r}: expected NAME or NAME=VERSION", Location("--update"))
        out[name] = version or None
    return out


def lockable_agents(image: Image, catalog: Catalog, agents: Sequence[str] | None = None) -> list[str]:
    """The image's agents that a registry serves (the others the Debian backend skips), in image.toml order."""
    chosen = image.agents if agents is None else agents
    return [a for a in dict.fromkeys(chosen) if catalog.agents[a].npm or catalog.agents[a].pypi]


def lock_components(image: Image, catalog: Catalog) -> list[str]:
    agents = lockable_agents(image, catalog)
    npm = any(catalog.agents[a].npm for a in agents)
    return [*(["node", "npm"] if npm else []), *agents, "debian"]


def make_lock(
    image: Image,
    catalog: Catalog,
    old: Lock | None,
    *,
    update: Mapping[str, str | None] | None = None,
    update_all: bool = False,
    resolver: Resolver,
    arch: str,
    report: Callable[[str], None] = lambda _: None,
) -> Lock:
    """The image's lock: `old`'s entries kept unless missing, stale (the catalog names another package, the
    runtime spec moved) or named in `update` ({component: version, or None for the newest}); `update_all`:
    every component resolved again."""
    update = dict(update or {})
    force = set(lock_components(image, catalog)) if update_all else set(update)
    old = old or Lock(image.name)
    agents = lockable_agents(image, catalog)
    npm_agents = [a for a in agents if catalog.agents[a].npm]

    node, npm = old.node, old.npm
    if npm_agents:
        node_pkgs = {arch_: f"node-linux-{dp.NODE_ARCH[arch_]}" for arch_ in ("amd64", "arm64")}
        spec = update.get("node") or dp.NODE_RUNTIME_SPEC
        if node is None or "node" in force or (node.spec != dp.NODE_RUNTIME_SPEC and not update.get("node")):
            report(f"node: resolving node-linux-<arch>@{spec}")
            first = resolver.npm_artifact(node_pkgs["amd64"], spec)
            builds = {"amd64": first}
            builds["arm64"] = resolver.npm_artifact(node_pkgs["arm64"], first.version)
            node = NodeLock(dp.NODE_RUNTIME_SPEC, first.version, builds)
        spec = update.get("npm") or dp.NPM_SPEC
        if npm is None or "npm" in force or (npm.spec != dp.NPM_SPEC and not update.get("npm")):
            report(f"npm: resolving npm@{spec}")
            npm = NpmLock(dp.NPM_SPEC, resolver.npm_artifact("npm", spec))
    else:
        node = npm = None

    locked: dict[str, AgentLock] = {}
    for name in agents:
        entry = catalog.agents[name]
        registry, package = ("npm", entry.npm) if entry.npm else ("pypi", entry.pypi)
        previous = old.agents.get(name)
        if previous is not None and name not in force and (previous.registry, previous.package) == (registry, package):
            locked[name] = previous
            continue
        spec = update.get(name) or "latest"
        report(f"{name}: resolving {package}@{spec}")
        if registry == "npm":
            top = resolver.npm_artifact(package, spec)
            tree = resolver.npm_tree(name, package, top.version)
            agent = AgentLock(name, "npm", package, top.version, top.integrity, tree)
            check_package_lock(agent, Location(f"{package}@{top.version}"))
        else:
            python = SUITE_PYTHON.get(image.debian_suite)
            if python is None:
                raise InputError(f"no known Python for Debian {image.debian_suite} (lockresolve.SUITE_PYTHON)")
            version, packages = resolver.pypi_tree(package, spec, python)
            agent = AgentLock(name, "pypi", package, version, python=packages)
        locked[name] = agent

    include = dp.debian_packages(image, catalog)
    debian = {a: d for a, d in old.debian.items() if d.suite == image.debian_suite and d.include == include}
    if arch not in debian or "debian" in force:
        report(f"debian/{arch}: resolving the base layer's packages (an mmdebstrap run)")
        debian[arch] = DebianLock(image.debian_suite, arch, resolver.debian(image, catalog, arch), include)
    return Lock(image.name, node, npm, locked, dict(sorted(debian.items())))


def missing(image: Image, catalog: Catalog, lock: Lock | None, arch: str) -> list[str]:
    """The components `make_lock` would resolve without --update: those the lock lacks or holds for another
    description (another npm/PyPI package, runtime spec, suite or list of Debian packages)."""
    wanted = lock_components(image, catalog)
    if lock is None:
        return wanted
    out = []
    if "node" in wanted and (lock.node is None or lock.node.spec != dp.NODE_RUNTIME_SPEC):
        out.append("node")
    if "npm" in wanted and (lock.npm is None or lock.npm.spec != dp.NPM_SPEC):
        out.append("npm")
    for name in lockable_agents(image, catalog):
        entry, locked = catalog.agents[name], lock.agents.get(name)
        if locked is None or (locked.registry, locked.package) != (
            ("npm", entry.npm) if entry.npm else ("pypi", entry.pypi)
        ):
            out.append(name)
    d = lock.debian.get(arch)
    if d is None or d.suite != image.debian_suite or d.include != dp.debian_packages(image, catalog):
        out.append("debian")
    return out


# ------------------------------------------------------------------ checking a lock
@attrs.frozen
class Finding:
    component: str
    ok: bool
    message: str


def check_lock(
    lock: Lock, image: Image, catalog: Catalog, *, registries: Registries, arch: str, debian: bool = True
) -> list[Finding]:
    """Whether the registries still serve exactly what the lock says: every npm package's `dist.integrity` (node,
    npm, every package of every agent's tree), every PyPI wheel's sha256, and (`debian`) the versions the mirror
    resolves for this architecture."""
    findings: list[Finding] = []
    jobs: list[tuple[str, str, str, str]] = []  # component, package, version, integrity
    if lock.node is not None:
        jobs += [("node", b.package, b.version, b.integrity) for b in lock.node.builds.values()]
    if lock.npm is not None:
        jobs.append(("npm", "npm", lock.npm.artifact.version, lock.npm.artifact.integrity))
    for agent in lock.agents.values():
        if agent.registry == "npm":
            jobs += [(agent.name, e.name, e.version, e.integrity) for e in npm_tree(agent.package_lock) if e.integrity]

    def npm_job(job: tuple[str, str, str, str]) -> Finding:
        component, package, version, integrity = job
        try:
            served = registries.npm_artifact(package, version).integrity
        except (CommandFailed, InputError) as exc:
            return Finding(component, False, f"{package}@{version}: {exc}")
        if served != integrity:
            return Finding(
                component, False, f"{package}@{version}: the registry serves {served}, the lock says {integrity}"
            )
        return Finding(component, True, f"{package}@{version}")

    def pypi_job(job: tuple[str, PythonPackage]) -> Finding:
        component, p = job
        try:
            served = registries.pypi_files(p.name, p.version)
        except CommandFailed as exc:
            return Finding(component, False, f"{p.name}=={p.version}: {exc}")
        wrong = [f for f, h in p.wheels.items() if served.get(f) != h]
        if wrong:
            return Finding(
                component, False, f"{p.name}=={p.version}: PyPI no longer serves {wrong[0]} with the lock's sha256"
            )
        return Finding(component, True, f"{p.name}=={p.version}")

    pypi = [(agent.name, p) for agent in lock.agents.values() for p in agent.python]
    with ThreadPoolExecutor(max_workers=8) as pool:
        findings += list(pool.map(npm_job, jobs))
        findings += list(pool.map(pypi_job, pypi))
    if debian and arch in lock.debian:
        served = registries.debian(image, catalog, arch)
        locked = lock.debian[arch].packages
        moved = [
            f"{n} {locked.get(n, '(none)')} → {served.get(n, '(none)')}"
            for n in sorted(set(locked) | set(served))
            if locked.get(n) != served.get(n)
        ]
        findings.append(
            Finding(
                f"debian/{arch}",
                not moved,
                f"{len(locked)} packages" if not moved else "the mirror moved: " + ", ".join(moved),
            )
        )
    return findings
