"""`agent-sandbox build --backend debian`: the image description built on Debian, in three cached layers.

The plan (what to build, cache keys, labels, scripts) is pure: debian_plan.py. The commands (mmdebstrap,
podman/docker) are at the edge: ../engine.py and layers.py. This module runs the phases, reports progress and rolls
back:

    base      mmdebstrap rootfs -> `import`                         (Debian packages, user, CA layout)
    agents    `run` (host CA bundle mounted for this step only) -> squashed `commit`   (npm / PyPI agent CLIs,
              Node's own build replacing Debian's node/npm, which the step removes: squashed, so they leave)
    policies  `build` of a generated Containerfile                 (/etc/agent-sandbox/<tier>/, labels, config)

Each layer is tagged <cache repo>:<phase>-<key>; a layer whose tag exists is not built again. Only a complete
build is tagged with the image's local reference.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .. import __version__, lockresolve, process, profiles
from .. import lock as lk
from ..compilers.devcontainer import metadata_label
from ..engine import Engine, installed_engine
from ..errors import CommandFailed, EnvironmentProblem, InputError, Location
from ..images import Catalog, Image, check_agents, check_user, image_tree, load_catalog, load_image
from ..paths import project_root
from ..signals import Terminated, sigterm_unwinds
from . import debian_plan as dp
from .events import OnEvent, Reporter, ignore
from .layers import LayerBuilder, mmdebstrap_argv, resolve_builder

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CA_OFF = ("", "0", "no", "none", "off", "false")


# ------------------------------------------------------------------ result
@attrs.frozen
class BuildResult:
    """What a build produced (a dry run: what it would build).

    `agents`: the agents the image holds (each one's `--version` ran in the build); `agent_versions` also has
    the node and npm it runs on. `skipped`: tools and agents of the description the image goes without.
    `cache_hits`: phase -> reused from cache. `sizes`: phase -> size in bytes of the image up to that layer,
    and "image" -> the final image's size.
    """

    image: str
    engine: str
    agents: tuple[str, ...]
    agent_versions: Mapping[str, str]
    skipped: tuple[dp.Skipped, ...]
    cache_hits: Mapping[str, bool]
    sizes: Mapping[str, int]
    seconds: float  # wall time of the build (of the planning, for a dry run: not reported)
    keys: Mapping[str, str] = attrs.field(factory=dict)
    dry_run: bool = False
    sbom: str = ""  # where the image's SPDX SBOM was written (build --sbom)

    def summary(self) -> str:
        hits = ", ".join(f"{p} {'cached' if hit else 'built'}" for p, hit in self.cache_hits.items())
        if self.dry_run:  # nothing was built: no build time to report
            lines = [f"would build {self.image} with {self.engine}"]
        else:
            verb = "up to date:" if self.cache_hits and all(self.cache_hits.values()) else "built"
            lines = [f"{verb} {self.image} with {self.engine} in {self.seconds:.1f} s"]
        if hits:
            lines.append(f"  layers: {hits}")
        if self.sizes.get("image"):
            lines.append(f"  size: {human_size(self.sizes['image'])}")
        if self.agents:
            versions = ", ".join(f"{a} {self.agent_versions.get(a, '?')}" for a in self.agents)
            lines.append(f"  agents: {versions}")
        for s in self.skipped:
            lines.append(f"  skipped {s.kind} {s.name}: {s.reason}")
        if self.sbom:
            lines.append(f"  SBOM: {self.sbom} (the lock's versions)")
        return "\n".join(lines)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


# ------------------------------------------------------------------ inputs (read-only)
def git_revision(root: Path) -> str:
    """HEAD's commit of the repository at root, read from .git without running git ("" when unknown)."""
    try:
        gitdir = root / ".git"
        if gitdir.is_file():  # a worktree: "gitdir: <path>"
            gitdir = (root / gitdir.read_text().split(":", 1)[1].strip()).resolve()
        common = gitdir
        if (gitdir / "commondir").is_file():
            common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
        head = (gitdir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head[4:].strip()
        for base in (gitdir, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        for line in (common / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except (OSError, IndexError):
        pass
    return ""


def resolve_build_ca(env: Mapping[str, str]) -> Path | None:
    """The CA bundle mounted during the agents step: AGENT_SANDBOX_BUILD_CA (a path, or off), else the host's."""
    value = env.get("AGENT_SANDBOX_BUILD_CA")
    if value is None or value == "auto":
        return HOST_CA if HOST_CA.is_file() else None
    if value.strip().lower() in CA_OFF:
        return None
    path = Path(value)
    if not path.is_file():
        raise InputError(f"AGENT_SANDBOX_BUILD_CA={value}: no such file (a CA bundle, or 'off')")
    return path


def tier_bundle(tier_profile: Any, uid: int, gid: int) -> dict[str, dict[str, str]]:
    """/etc/agent-sandbox/<tier>/ files for every shipped tier (and the chosen one, if it is a custom profile)."""
    from .. import bundle  # the compilers behind it are heavier; only needed when planning a build

    files = {name: bundle.tier_files(profiles.load_profile(name), uid=uid, gid=gid) for name in profiles.tier_names()}
    if tier_profile.name not in files:
        files[tier_profile.name] = bundle.tier_files(tier_profile, uid=uid, gid=gid)
    return files


def load_inputs(
    image_name: str, agents: Sequence[str] | None, tier: str | None
) -> tuple[Image, Catalog, tuple[str, ...], Any]:
    catalog = load_catalog()
    image = load_image(image_name, catalog)
    chosen = tuple(agents) if agents is not None else image.agents
    check_agents(chosen, catalog, Location("--agents"))
    profile = profiles.load_profile(tier or image.tier)
    check_user(image, profile, Location("--tier"))
    return image, catalog, chosen, profile


def read_tree(root: Path) -> dict[str, dp.TreeFile]:
    """images/<image>/rootfs as {absolute path in the image: file}; executables keep their mode (0755)."""
    if not root.is_dir():
        return {}
    tree = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        mode = 0o755 if os.access(path, os.X_OK) else 0o644
        tree["/" + path.relative_to(root).as_posix()] = dp.TreeFile(path.read_text(encoding="utf-8"), mode)
    return tree


def image_lock(
    image: Image, catalog: Catalog, *, say: Callable[[str], None], write: bool, env: Mapping[str, str]
) -> lk.Lock:
    """The image's lock (images/<image>/lock.toml). A build without one, or with one that lacks a component of
    the description (an agent added, the Debian package list changed), says so, resolves what is missing from
    the registries and writes it (a dry run writes nothing)."""
    path = lk.lock_path(image.path)
    old = lk.read_lock(path, image.name)
    arch = dp.debian_arch(platform.machine())
    todo = lockresolve.missing(image, catalog, old, arch)
    if old is not None and not todo:
        return old
    what = "no lock" if old is None else f"the lock lacks {', '.join(todo)}"
    say(
        f"{path}: {what}: resolving {'it' if old is None else 'them'} from the registries"
        + ("" if write else " (a dry run writes nothing)")
    )
    new = lockresolve.make_lock(image, catalog, old, resolver=lockresolve.Registries(dict(env)), arch=arch)
    if write:
        lk.write_lock(new, path)
        say(f"wrote {path}: " + "; ".join(line.strip() for line in lk.diff(old, new) if not line.startswith("  ")))
    return new


def plan_build(
    image_name: str,
    *,
    agents: Sequence[str] | None = None,
    tier: str | None = None,
    env: Mapping[str, str] | None = None,
    say: Callable[[str], None] = lambda _: None,
    write_lock: bool = False,
) -> dp.Plan:
    """Everything but the commands: read the description and its lock, compile the tiers, compute keys."""
    env = os.environ if env is None else env
    cache_repo = env.get("AGENT_SANDBOX_CACHE_REPO") or dp.DEFAULT_CACHE_REPO
    if env.get("AGENT_SANDBOX_AGENT_PINS"):
        raise InputError(
            "AGENT_SANDBOX_AGENT_PINS is gone: the image's lock says which versions are built; pin one "
            "with `agent-sandbox lock --update claude=2.1.332`"
        )
    catalog = load_catalog()
    described = load_image(image_name, catalog)
    if not described.is_devcontainer:
        if agents is not None or tier is not None:
            raise InputError(
                f"{described.name} is a {described.role} image: it holds no agents and no tier",
                Location("--agents" if agents is not None else "--tier"),
            )
        lock = image_lock(described, catalog, say=say, write=write_lock, env=env)
        return dp.make_service_plan(
            described,
            catalog,
            revision=git_revision(project_root()),
            version=__version__,
            tree=read_tree(image_tree(described)),
            machine=platform.machine(),
            cache_repo=cache_repo,
            lock=lock,
        )
    image, catalog, chosen, profile = load_inputs(image_name, agents, tier)
    outside = [a for a in lockresolve.lockable_agents(image, catalog, chosen) if a not in image.agents]
    if outside:
        raise InputError(
            f"{', '.join(outside)}: not among {image.name}'s agents ({image.path}), so not in its lock; "
            "add it to image.toml's agents",
            Location("--agents"),
        )
    lock = image_lock(image, catalog, say=say, write=write_lock, env=env)
    return dp.make_plan(
        image,
        catalog,
        agents=chosen,
        tier=profile.name,
        user_name=image.user,
        tier_files=tier_bundle(profile, image.uid, image.gid),
        metadata=metadata_label(profile, uid=image.uid, gid=image.gid),
        revision=git_revision(project_root()),
        version=__version__,
        machine=platform.machine(),
        lock=lock,
        cache_repo=cache_repo,
        tree=read_tree(image_tree(image)),
    )


# ------------------------------------------------------------------ phases
def scratch_dir(prefix: str) -> Path:
    parent = os.environ.get("AGENT_SANDBOX_BUILD_TMP") or "/var/tmp"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent if Path(parent).is_dir() else None))


def build_base(plan: dp.Plan, engine: LayerBuilder, report: Reporter) -> None:
    process.require("mmdebstrap", "apt-get install mmdebstrap, or run scripts/setup-host.sh")
    work = scratch_dir("agent-sandbox-base.")
    try:
        script = work / "setup.sh"
        script.write_text(plan.base_script, encoding="utf-8")
        tarball = work / "rootfs.tar"
        argv = mmdebstrap_argv(
            suite=plan.suite,
            variant=dp.MMDEBSTRAP_VARIANT,
            packages=plan.packages,
            sources=dp.mmdebstrap_sources(plan.suite),
            apt_options=dp.APT_OPTIONS,
            dpkg_options=dp.DPKG_OPTIONS,
            script_path=script,
            output=tarball,
        )
        seen: list[str] = []
        try:
            process.stream(argv, on_line=collecting(report.line, seen))
        except CommandFailed as exc:
            raise named_failure(exc, seen, plan) from None
        report.line(f"importing {human_size(tarball.stat().st_size)} rootfs")
        changes = [
            f"ENV PATH={dp.PATH}",
            'CMD ["bash"]',
            f"LABEL {dp.LABEL_CACHE_KEY}={plan.keys['base']}",
        ]
        engine.import_rootfs(tarball, plan.cache_ref("base"), changes, on_line=report.line)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_agents(plan: dp.Plan, engine: LayerBuilder, report: Reporter, build_ca: Path | None) -> dict[str, str]:
    """Install the agent CLIs in a container of layer 1 from the lock's files (mounted read-only at
    dp.LOCK_MOUNT); the host CA bundle is visible to this step only. A download whose hash is not the lock's
    fails the step with one line naming the component, and nothing is committed."""
    script = plan.agents_script
    mounts: list[str] = []
    exports = [f"{name}={env_value}" for name in MIRRORS if (env_value := os.environ.get(name))]
    if build_ca is not None:
        mounts.append(f"{build_ca}:{dp.BUILD_CA_PATH}:ro")
        exports += [f"{name}={dp.BUILD_CA_PATH}" for name in ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "PIP_CERT")]
    if exports:
        script = "export " + " ".join(shlex.quote(e) for e in exports) + "\n" + script
    parent, ref = plan.cache_ref("base"), plan.cache_ref("agents")
    found: dict[str, str] = {}
    seen: list[str] = []

    def labels_from(output: str) -> dict[str, str]:
        found.update(dp.parse_versions(output))
        missing = [a.name for a in plan.agents if a.name not in found]
        if missing:
            raise CommandFailed(f"the agents step reported no version for {', '.join(missing)}")
        wrong = [f"{n} {found.get(n)} (locked {v})" for n, v in plan.versions.items() if found.get(n) != v]
        if wrong:
            raise CommandFailed(f"the agents step installed other versions than the lock's: {', '.join(wrong)}")
        report.line("committing")
        return agents_labels(plan, found)

    work = scratch_dir("agent-sandbox-lock.")
    try:
        for rel, text in plan.lock_files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text, encoding="utf-8")
        for directory in [work, *(p for p in work.rglob("*") if p.is_dir())]:
            directory.chmod(0o755)
        mounts.append(f"{work}:{dp.LOCK_MOUNT}:ro")
        engine.run_and_commit(
            parent,
            ref,
            script=script,
            container=build_container_name(plan, "agents"),
            mounts=mounts,
            labels_from=labels_from,
            on_line=collecting(report.line, seen),
            squash=True,  # what the script removes (Debian's node) leaves the image
            network="host" if any(on_loopback(os.environ.get(n, "")) for n in MIRRORS) else None,
        )
    except CommandFailed as exc:
        raise named_failure(exc, seen, plan) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    try:
        check_ca_untouched(engine, parent, ref)
    except BaseException:
        engine.remove_image(ref)
        raise
    return found


MIRRORS = ("AGENT_SANDBOX_NPM_REGISTRY", "AGENT_SANDBOX_PYPI_INDEX")


def on_loopback(url: str) -> bool:
    """A mirror on the build host's loopback interface (the agents step then shares the host's network)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def collecting(sink: Callable[[str], None], seen: list[str]) -> Callable[[str], None]:
    """A line sink that also keeps every line (the failure's cause may be anywhere in a step's output)."""

    def both(line: str) -> None:
        seen.append(line)
        sink(line)

    return both


def named_failure(exc: CommandFailed, lines: Sequence[str], plan: dp.Plan) -> CommandFailed:
    """A failed step whose output shows a download that is not the lock's: one line naming the component."""
    lock = plan.lock
    message = lk.integrity_failure([*lines, *str(exc).splitlines()], lock) if lock is not None else None
    return CommandFailed(message) if message else exc


def build_container_name(plan: dp.Plan, phase: str) -> str:
    return f"agent-sandbox-build-{phase}-{plan.keys[phase][:12]}-{os.getpid()}"


def agents_labels(plan: dp.Plan, versions: Mapping[str, str]) -> dict[str, str]:
    """Recorded on layer 2, where layer 3 (and any later cache hit) reads them without running anything."""
    return {dp.LABEL_AGENT_VERSIONS: dp.format_versions(versions), dp.LABEL_CACHE_KEY: plan.keys["agents"]}


def check_ca_untouched(engine: LayerBuilder, base: str, agents: str) -> None:
    """The image's CA bundle is Debian's own: layer 2 must not have changed it (the host's was only mounted)."""
    argv = ["sha256sum", dp.BUILD_CA_PATH]
    before, after = engine.run_once(base, argv).split()[0], engine.run_once(agents, argv).split()[0]
    if before != after:
        raise CommandFailed(f"the agents step changed {dp.BUILD_CA_PATH}: the build host's CA bundle leaked in")


def final_labels(plan: dp.Plan, versions: Mapping[str, str]) -> dict[str, str]:
    labels = dict(plan.labels)
    if "agents" in plan.phases:
        labels[dp.LABEL_AGENT_VERSIONS] = dp.format_versions(versions)
    labels[dp.LABEL_CACHE_KEY] = plan.keys[plan.phases[-1]]
    labels[dp.LABEL_CREATED] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return labels


def build_tree(plan: dp.Plan, engine: LayerBuilder, report: Reporter, versions: Mapping[str, str]) -> None:
    """The last layer: plan.files (the tiers' files, the image's own tree), labels and config."""
    phase = plan.phases[-1]
    work = scratch_dir(f"agent-sandbox-{phase}.")
    try:
        root = work / "rootfs"
        for path, file in plan.files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.text, encoding="utf-8")
            target.chmod(file.mode)
        for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            directory.chmod(0o755)
        engine.add_tree(
            plan.cache_ref(plan.phases[-2]),
            plan.cache_ref(phase),
            context=work,
            labels=final_labels(plan, versions),
            config=plan.config,
            container=build_container_name(plan, phase),
            on_line=report.line,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------ the build
def build_debian(
    image_name: str,
    *,
    agents: tuple[str, ...] | None = None,
    tier: str | None = None,
    engine: str | None = None,
    dry_run: bool = False,
    progress: OnEvent = ignore,
    tag: str | None = None,
    sbom: Path | None = None,
) -> BuildResult:
    """Build IMAGE with Debian packages and registry agent CLIs; tag it localhost/<name>:<tag>.

    `progress`: called with each event of the build (backends/events.py); the CLI draws them. `tag`: the reference
    the built image gets instead of the description's localhost/<name>:<tag> (the cache layers are the same).
    Installs what the image's lock (images/<image>/lock.toml) names, checking every hash; without a lock (or
    with one that lacks a component) it says so, resolves it and writes it first.
    Environment: AGENT_SANDBOX_ENGINE, AGENT_SANDBOX_BUILD_CA (path | off; default: the host bundle),
    AGENT_SANDBOX_CACHE_REPO, AGENT_SANDBOX_BUILD_TMP, AGENT_SANDBOX_NPM_REGISTRY / AGENT_SANDBOX_PYPI_INDEX
    (mirrors: the lock's hashes are checked whatever serves the bytes; not part of any key).
    SIGTERM unwinds like Ctrl-C (KeyboardInterrupt); once cleaned up, it raises CommandFailed("interrupted by SIGTERM").
    """
    started = time.monotonic()
    report = Reporter(progress)
    try:
        with sigterm_unwinds():
            return _build(image_name, agents, tier, engine, dry_run, report, started, tag, sbom)
    except Terminated as exc:  # rolled back by now: working containers and temp dirs are gone
        raise CommandFailed(f"interrupted by {exc}") from None


def _build(
    image_name: str,
    agents: tuple[str, ...] | None,
    tier: str | None,
    engine: str | None,
    dry_run: bool,
    report: Reporter,
    started: float,
    tag: str | None = None,
    sbom: Path | None = None,
) -> BuildResult:
    plan = plan_build(image_name, agents=agents, tier=tier, say=report.info, write_lock=not dry_run)
    described = plan.image  # what the SBOM calls the image, whatever --tag names it here
    if tag:
        plan = attrs.evolve(plan, image=tag)
    build_ca = resolve_build_ca(os.environ)
    if dry_run:
        name = dry_run_engine(engine)
        report.info(dp.render_plan(plan, engine=name, build_ca=str(build_ca) if build_ca else None))
        return result_of(plan, name, {}, {}, {}, started, dry_run=True)
    builder = resolve_builder(engine)
    hits, versions = run_phases(plan, builder, report, build_ca)
    eng = builder.engine
    eng.tag(plan.cache_ref(plan.phases[-1]), plan.image)
    sizes = {phase: eng.image_size(plan.cache_ref(phase)) for phase in plan.phases}
    sizes["image"] = sizes[plan.phases[-1]]
    if sbom is not None:
        write_checked_sbom(plan, eng, versions, sbom, report, name=described)
    result = result_of(plan, eng.name, hits, versions, sizes, started)
    return attrs.evolve(result, sbom=str(sbom)) if sbom is not None else result


def write_checked_sbom(
    plan: dp.Plan, eng: Engine, versions: Mapping[str, str], out: Path, report: Reporter, *, name: str
) -> None:
    """The image's SPDX SBOM (Syft), named after the description's reference and keyed by the last layer's key
    (the same inputs give the same document), checked against the lock: it must list the locked versions."""
    from .. import sbom as sb

    key = plan.keys[plan.phases[-1]]
    doc = sb.read_sbom(out, name=name, key=key)  # written for this very image already (a cache hit): kept
    if doc is None:
        report.start("sbom", "SPDX SBOM (syft)")
        doc = sb.write_sbom(eng, plan.image, out, name=name, key=key)
    if plan.lock is not None:
        sb.check_sbom(doc, plan.lock, versions, plan.arch)
    report.done("sbom", f"{out}: {len(sb.packages(doc))} packages, as locked")


def run_phases(
    plan: dp.Plan, builder: LayerBuilder, report: Reporter, build_ca: Path | None
) -> tuple[dict[str, bool], dict[str, str]]:
    eng = builder.engine
    hits: dict[str, bool] = {}
    versions: dict[str, str] = {}
    for phase in plan.phases:
        ref = plan.cache_ref(phase)
        phase_start = time.monotonic()
        if eng.image_id(ref):
            hits[phase] = True
            report.done(phase, f"cache hit {ref}")
            continue
        hits[phase] = False
        report.start(phase, PHASE_TITLES[phase])
        if phase == "base":
            build_base(plan, builder, report)
        elif phase == "agents":
            versions = build_agents(plan, builder, report, build_ca)
        else:
            if not versions and "agents" in plan.phases:
                versions = recorded_versions(eng, plan.cache_ref("agents"))
            build_tree(plan, builder, report, versions)
        size = human_size(eng.image_size(ref))
        report.done(phase, f"built {ref} in {time.monotonic() - phase_start:.1f} s ({size})")
    if not versions and "agents" in plan.phases:
        versions = recorded_versions(eng, plan.cache_ref(plan.phases[-1]))
    return hits, versions


PHASE_TITLES = {
    "base": "mmdebstrap rootfs + import",
    "agents": "agent CLIs from npm/PyPI",
    "policies": "tier policies, image files, labels, config",
    "files": "image files, labels, config",
}


def recorded_versions(eng: Engine, ref: str) -> dict[str, str]:
    text = eng.image_labels(ref).get(dp.LABEL_AGENT_VERSIONS, "")
    return dict(item.partition("=")[::2] for item in text.split(",") if "=" in item)


def dry_run_engine(requested: str | None) -> str:
    """The engine a build would use; a dry run still prints its plan on a host without one."""
    try:
        return installed_engine(requested).name
    except EnvironmentProblem as exc:
        return f"none ({exc})"


def result_of(
    plan: dp.Plan,
    engine: str,
    hits: Mapping[str, bool],
    versions: Mapping[str, str],
    sizes: Mapping[str, int],
    started: float,
    *,
    dry_run: bool = False,
) -> BuildResult:
    return BuildResult(
        image=plan.image,
        engine=engine,
        agents=plan.agent_names,
        agent_versions=dict(versions),
        skipped=plan.skipped,
        cache_hits=dict(hits),
        sizes=dict(sizes),
        seconds=round(time.monotonic() - started, 2),
        keys=dict(plan.keys),
        dry_run=dry_run,
    )
