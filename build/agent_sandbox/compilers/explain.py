"""Explain a profile per class: what is allowed and denied, which layer enforces it, and what no layer does (pure).

The layers: the container runtime (run flags), the egress proxy (proxied profiles: Squid, one per sandbox), and Leash's
two halves - its kernel hooks (eBPF LSM) and its TLS-MITM proxy for ports 80/443. Leash facts come from
compilers/leash.py, which cites the Leash source it follows.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import attrs

from .. import egress
from ..model import NetworkMode, Profile
from . import leash

CONTAINER = "container runtime"
EGRESS = "egress proxy"
LEASH_KERNEL = "Leash kernel (eBPF LSM)"
LEASH_PROXY = "Leash proxy (80/443 names)"
LAYERS = (CONTAINER, EGRESS, LEASH_KERNEL, LEASH_PROXY)

CLASSES = ("network", "filesystem", "exec", "capabilities/limits", "audit")

LEASH_NEEDS = (
    "Leash rows hold only when the sandbox runs under Leash on a Linux host whose kernel has BPF LSM enabled "
    "(`bpf` in /sys/kernel/security/lsm), with cgroup v2 and privileged containers. Elsewhere (Docker Desktop, "
    "rootless engines) Leash only warns: its kernel rules silently do not apply."
)


def under_leash(profile: Profile) -> str:
    """What the container layer of `profile` loses when Leash's runner starts the target (`run --enforcer leash`):
    the runner passes no --cap-*, --security-opt, limits, --read-only nor network of ours (strongdm/leash
    internal/runner/runner.go at 61c46b2 forwards only -v, -e, -p and the image)."""
    c = profile.container
    lost = [
        f"--cap-drop {','.join(c.cap_drop)}" if c.cap_drop else "",
        "no-new-privileges at start" if c.no_new_privileges else "",
        "its seccomp profile (user namespaces)" if not c.user_namespaces else "",
        f"memory {c.memory}" if c.memory else "",
        f"cpus {c.cpus:g}" if c.cpus else "",
        f"pids {c.pids}" if c.pids else "",
        "the read-only root" if profile.filesystem.readonly else "",
        {NetworkMode.NONE: "no network", NetworkMode.PROXIED: "its own network and egress proxy (and key gateway)"}.get(
            profile.network.mode, ""
        ),
    ]
    kept = [x for x in lost if x]
    return (
        "Under Leash (`run --enforcer leash`) Leash's runner starts the container and passes none of the tier's "
        "container flags: " + ("this tier loses " + "; ".join(kept) if kept else "this tier sets none") + ". "
        "Leash's entrypoint installs its CA as root, then every command that enters runs as the workspace owner "
        "without capabilities and with no_new_privs (the image's login hook); Leash's own proxy and kernel rules "
        "hold the network."
    )


SOURCES = "Leash facts: strongdm/leash internal/lsm and internal/transpiler (read at 61c46b2)."


@attrs.frozen
class Enforcement:
    layer: str  # one of LAYERS
    what: str


@attrs.frozen
class ClassExplanation:
    name: str  # one of CLASSES
    summary: str
    allowed: tuple[str, ...]
    denied: tuple[str, ...]
    enforced_by: tuple[Enforcement, ...]
    unenforced: tuple[str, ...]  # what no layer enforces

    def layer(self, name: str) -> str | None:
        """What `name` does for this class, or None if it plays no part."""
        return next((e.what for e in self.enforced_by if e.layer == name), None)


@attrs.frozen
class Explanation:
    profile: str  # its name
    lineage: tuple[str, ...]
    description: str
    classes: tuple[ClassExplanation, ...]
    notes: tuple[str, ...]

    def of(self, name: str) -> ClassExplanation:
        return next(c for c in self.classes if c.name == name)


# ------------------------------------------------------------------ network
IPV6 = "IPv6: Leash lets every AF_INET6 connect through (internal/lsm/bpf/lsm_connect.bpf.c); it does not enforce IPv6."


def _network(profile: Profile, plan: leash.LeashPolicy) -> ClassExplanation:
    net = profile.network
    mode = net.mode
    denies = tuple(str(r) for r in net.deny if not r.is_any)
    if mode is NetworkMode.NONE:
        return ClassExplanation(
            "network",
            "none (loopback only)",
            ("loopback only",),
            ("every host",),
            (
                Enforcement(CONTAINER, "--network=none: the container has no interface but loopback"),
                Enforcement(LEASH_KERNEL, 'forbid Host::"*": every IPv4 connect and send is refused'),
                Enforcement(LEASH_PROXY, "refuses every request (none can reach it)"),
            ),
            ("nothing: the container runtime alone cuts all traffic, IPv6 included.",),
        )
    if mode is NetworkMode.PROXIED:
        return _proxied(profile, denies)
    return _open(denies)


def _suffix_gap(profile: Profile) -> str:
    wild = next((r for r in profile.network.allow + profile.network.deny if r.is_wildcard), None)
    example = f"{wild.host} also matches bad{wild.host[2:]}" if wild else "*.x.com also matches badx.com"
    return f"Leash's proxy matches wildcards as a plain suffix: {example} (internal/lsm/net_connect.go CheckConnect)."


def _proxied(profile: Profile, denies: tuple[str, ...]) -> ClassExplanation:
    allowed = tuple(str(r) for r in profile.network.allow)
    return ClassExplanation(
        "network",
        f"proxied allowlist ({len(allowed)} host:port rules)",
        allowed,
        ("every other host and port", *denies),
        (
            Enforcement(
                CONTAINER,
                "`agent-sandbox run` gives the sandbox its own internal network (no route out; on podman without "
                "the engine's DNS server), no resolver (--dns 127.0.0.1) and no IPv6; its only neighbour is its own "
                f"egress proxy, reached as {egress.PROXY_HOST}:{egress.PROXY_PORT} (HTTP(S)_PROXY, both cases). A "
                "program that ignores the proxy variables has no route at all",
            ),
            Enforcement(
                EGRESS,
                "Squid (one per sandbox): CONNECT and plain HTTP only to the listed host:port pairs (no port: 80 "
                "and 443); *.domain matches whole labels only; IP literals only when listed; no destination that "
                "resolves to a loopback, private, link-local (cloud metadata) or reserved address, checked again "
                "when a tunnel is spliced; on 443 the TLS SNI must be the CONNECT host (peek and splice, no "
                "interception) and TLS it must be; other listed ports (git over SSH on 22) are tunnelled as they "
                "are. Every decision is a JSON line in the sandbox's state directory",
            ),
            Enforcement(
                LEASH_KERNEL,
                "IPv4 connect/send only to the addresses the allowed names resolved to when Leash loaded the policy, "
                f"and to the egress proxy ({egress.PROXY_HOST}:{egress.PROXY_PORT}); wildcard names are never "
                "resolved, so the kernel refuses them (fail closed)",
            ),
            Enforcement(
                LEASH_PROXY,
                "host names and *.domain on ports 80/443 for connections that reach it directly; traffic sent "
                "through HTTP(S)_PROXY goes to the egress proxy's port and never reaches it",
            ),
        ),
        (
            "Inside an allowed TLS connection the proxy sees nothing: a request to another name on the same "
            "server (HTTP Host header, domain fronting behind a CDN) or data sent to an allowed host is not "
            "inspected. Allowed non-TLS ports are blind tunnels.",
            "The devcontainer files name one fixed network; run them with `agent-sandbox run` or the compose files "
            "of `policy compile --target devcontainer` for the per-sandbox network and proxy.",
            _suffix_gap(profile) + " (Only under Leash; the egress proxy matches whole labels.)",
            IPV6 + " The sandbox has no IPv6 at all.",
        ),
    )


def _open(denies: tuple[str, ...]) -> ClassExplanation:
    if not denies:
        return ClassExplanation(
            "network",
            "open",
            ("every host",),
            (),
            (
                Enforcement(CONTAINER, "default network: direct, unfiltered egress"),
                Enforcement(LEASH_KERNEL, 'permit Host::"*": refuses nothing, logs every IPv4 connect'),
                Enforcement(LEASH_PROXY, "refuses nothing, logs HTTP(S) requests on 80/443"),
            ),
            ("the network is unrestricted: any host, any port.",),
        )
    return ClassExplanation(
        "network",
        f"open, {len(denies)} denied",
        ("every host not denied",),
        denies,
        (
            Enforcement(CONTAINER, "default network: direct, unfiltered egress (no egress proxy)"),
            Enforcement(
                LEASH_KERNEL,
                "refuses IPv4 connects to the denied addresses (host names resolved once, when Leash loads the policy)",
            ),
            Enforcement(
                LEASH_PROXY,
                'on 80/443 it checks the denies and the Host::"*" permit in no defined order; the kernel rule is '
                "what holds",
            ),
        ),
        (
            (
                "Without Leash nothing enforces network.deny: the container runtime gives open tiers unfiltered "
                f"egress ({', '.join(denies)} stays reachable)."
            ),
            IPV6,
            "A denied host name's addresses are resolved once: its new addresses after a DNS change are not refused.",
        ),
    )


# ------------------------------------------------------------------ filesystem
def _filesystem(profile: Profile, plan: leash.LeashPolicy) -> ClassExplanation:
    fs = profile.filesystem
    runtime = _fs_runtime(profile)
    if not fs.restricted:
        return ClassExplanation(
            "filesystem",
            "unrestricted",
            ("everything the container user may read and write",),
            (),
            (runtime, Enforcement(LEASH_KERNEL, "a permit on everything: refuses nothing, logs every file open")),
            ("no path is protected beyond Unix permissions and the mounts.",)
            + tuple(
                f"the agent can read everything under {m.target} (host {m.source})." for m in profile.container.mounts
            ),
        )
    section = plan.section("filesystem")
    boot = [rule.resource.split('"')[1] for rule in section.rules if rule.bootstrap]
    kernel = (
        "file_open hook: every rule above, the longest matching path wins "
        f"({section.leash_rules}/{leash.MAX_FILE_RULES} rules)"
    )
    if boot:
        kernel += (
            f"; also writable for Leash's own bootstrap: {', '.join(boot)} "
            "(Unix permissions still stop a non-root agent)"
        )
    return ClassExplanation(
        "filesystem",
        f"{len(fs.write)} writable, {len(fs.read)} read-only, {len(fs.deny)} denied"
        + (", read-only root" if fs.readonly else ""),
        tuple(f"read+write {r}" for r in fs.write) + tuple(f"read-only {r}" for r in fs.read),
        tuple(str(r) for r in fs.deny) + ("anything not listed",),
        (runtime, Enforcement(LEASH_KERNEL, kernel)),
        _fs_gaps(profile),
    )


def _fs_runtime(profile: Profile) -> Enforcement:
    box = profile.container
    if profile.filesystem.readonly:
        writable = (
            ", ".join([f"tmpfs {p}" for p in box.tmpfs] + [f"scratch volume {p}" for p in box.scratch]) or "nothing"
        )
        what = (
            f"--read-only root: only {writable} are writable, and nothing there outlives the container; "
            f"/workspace mounted {profile.workspace_mode}"
        )
    else:
        what = f"/workspace mounted {profile.workspace_mode}; elsewhere Unix permissions: the agent runs as {box.user}"
        if "ALL" in box.cap_drop:
            what += " without capabilities, so root-owned files stay read-only"
    for mount in box.mounts:
        what += f"; host {mount.source} mounted at {mount.target} ({'read-only' if mount.readonly else 'read-write'})"
    return Enforcement(CONTAINER, what)


def _fs_gaps(profile: Profile) -> tuple[str, ...]:
    fs = profile.filesystem
    home = profile.container.home
    gaps = [
        "Without Leash, filesystem.read and filesystem.deny are not enforced: the agent reads whatever its Unix "
        f"user can (anything mounted into {home}) and writes wherever it owns files"
        + ("." if fs.readonly else f" (e.g. {home}/.bashrc)."),
        (
            "Leash exempts processes named apt-get, dpkg* and update* from every file rule "
            "(internal/lsm/bpf/lsm_open.bpf.c): a program copied to /tmp/update-x bypasses them all."
        ),
    ]
    files = [r for r in fs.write + fs.read + fs.deny if not r.recursive]
    if files:
        shown = ", ".join(f"{r.path} also covers {r.path}-" for r in files[:3])
        gaps.append(f"File rules are byte prefixes in Leash: {shown}.")
    trees = [r for r in fs.deny if r.recursive and r.path != "/"]
    if trees:
        gaps.append(
            f"A directory rule does not cover the directory itself: listing {trees[0].path} shows its file names."
        )
    if any(r.path == "/" for r in fs.read):
        gaps.append(
            'Read-only "/**" is spelled as one prefix per first byte of a top-level name: opening "/" itself and '
            "top-level names starting with other bytes are refused (fail closed)."
        )
    gaps.append("A hard link gives a file a second path on the same mount; Leash matches the path used to open it.")
    if fs.readonly:
        gaps.append(
            "With the read-only root, Leash's own CA install (/usr/local/share/ca-certificates, /etc/ssl/certs) "
            "fails unless the image or a mount makes them writable."
        )
    return tuple(gaps)


# ------------------------------------------------------------------ exec
def _exec(profile: Profile, plan: leash.LeashPolicy) -> ClassExplanation:
    ex = profile.exec
    runtime = _exec_runtime(profile)
    if not ex.restricted:
        return ClassExplanation(
            "exec",
            "unrestricted",
            ("any program",),
            (),
            (runtime, Enforcement(LEASH_KERNEL, "a permit on everything: refuses nothing, logs every exec")),
            ("exec is unrestricted: any program may run.",),
        )
    section = plan.section("exec")
    kind = "deny-list" if "/**" in ex.allow else "allowlist"
    kernel = (
        f"bprm_check hook on the resolved executable path; names expanded to {', '.join(ex.search_path)} "
        f"({section.leash_rules}/{leash.MAX_EXEC_RULES} rules)"
    )
    denied = tuple(ex.deny) + (() if "/**" in ex.allow else ("anything not listed",))
    shortest = min(ex.deny, key=len, default="su")
    return ClassExplanation(
        "exec",
        f"{kind} ({len(ex.allow)} allowed, {len(ex.deny)} denied)",
        tuple("/** (any program not denied)" if p == "/**" else p for p in ex.allow),
        denied,
        (runtime, Enforcement(LEASH_KERNEL, kernel)),
        (
            (
                "exec deny by name only matches binaries in exec.search_path: the same program elsewhere "
                "(/nix/store/...-sudo/bin/sudo, a copy in /tmp or /workspace) runs."
            ),
            f'Names are byte prefixes: denying "{shortest}" also denies every program whose name starts with it.',
            (
                "Interpreters (python, node, sh) can make the system calls a denied program makes; only capabilities "
                "stop the privileged ones."
            ),
            "Without Leash, exec rules are not enforced at all.",
        ),
    )


def _exec_runtime(profile: Profile) -> Enforcement:
    box = profile.container
    if box.no_new_privileges and "ALL" in box.cap_drop:
        return Enforcement(CONTAINER, "no-new-privileges and no capabilities: setuid programs (sudo, su) gain nothing")
    if box.no_new_privileges:
        return Enforcement(CONTAINER, "no-new-privileges: setuid programs (sudo, su) gain nothing")
    return Enforcement(CONTAINER, "nothing: setuid programs work as usual (no-new-privileges is off)")


# ------------------------------------------------------------------ capabilities and limits
USERNS_REFUSED = (
    "seccomp profile (compilers/seccomp.py: the intersection of podman's and docker's defaults): unshare and "
    "clone with CLONE_NEWUSER and setns refused (EPERM), clone3 ENOSYS, other namespaces only with CAP_SYS_ADMIN"
)
USERNS_ENGINE_DEFAULT = (
    "user namespaces are not blocked by the tier (container.user_namespaces is not false): the engine's default "
    "seccomp profile decides. podman's lets the agent create one (`unshare -Ur`: root with every capability over "
    "its own namespaces, and the kernel code only that reaches); docker's refuses it to a container without "
    "CAP_SYS_ADMIN."
)
CODEX_SANDBOX = (
    "Codex's own sandbox (bubblewrap) needs user namespaces and fails here: run codex with "
    "--dangerously-bypass-approvals-and-sandbox (or -s danger-full-access); this sandbox is the boundary. The "
    "same holds for other tools that sandbox with namespaces (bwrap, unshare, rootless podman)."
)


def _limits(profile: Profile) -> ClassExplanation:
    box = profile.container
    flags = [f"--cap-drop {','.join(box.cap_drop)}" if box.cap_drop else "default capabilities"]
    flags += [f"--cap-add {','.join(box.cap_add)}"] if box.cap_add else []
    flags += ["no-new-privileges"] if box.no_new_privileges else []
    flags += ["no user namespaces"] if not box.user_namespaces else []
    flags += [f"memory {box.memory}"] if box.memory else []
    flags += [f"cpus {box.cpus:g}"] if box.cpus is not None else []
    flags += [f"pids {box.pids}"] if box.pids is not None else []
    flags += ["read-only root"] if profile.filesystem.readonly else []
    missing = [
        name for name, value in (("memory", box.memory), ("cpus", box.cpus), ("pids", box.pids)) if value is None
    ]
    gaps = [f"no {name} limit." for name in missing]
    if not box.cap_drop:
        gaps.append("default container capabilities (CHOWN, DAC_OVERRIDE, SETUID, NET_RAW, ...) are kept.")
    if box.user_namespaces:
        gaps.append(USERNS_ENGINE_DEFAULT)
    dropped = ("every capability",) if "ALL" in box.cap_drop else tuple(f"CAP_{c}" for c in box.cap_drop)
    dropped += ("user namespaces",) if not box.user_namespaces else ()
    kept = tuple(f"CAP_{c}" for c in box.cap_add) or (
        ("no capability",) if "ALL" in box.cap_drop else ("the engine's default capabilities",)
    )
    what = "; ".join(f for f in flags if not f.startswith("no user namespaces"))
    if not box.user_namespaces:
        what += "; " + USERNS_REFUSED
    return ClassExplanation(
        "capabilities/limits",
        ", ".join(flags),
        kept,
        dropped,
        (Enforcement(CONTAINER, what),),
        tuple(gaps) or ("nothing: Leash plays no part here.",),
    )


# ------------------------------------------------------------------ audit
def _audit(profile: Profile) -> ClassExplanation:
    audit = profile.audit
    gaps = [
        "Leash keeps its log in a temporary directory deleted when it exits unless LEASH_LOG_DIR is set.",
        "The log holds the first 20 characters of Authorization headers: treat it as secret.",
        "Without Leash there is no audit trail.",
    ]
    if audit.level.value != "all":
        gaps.insert(
            0,
            f"audit.level {audit.level.value} is not applied by Leash: "
            "it logs every hooked operation, allowed and denied.",
        )
    if not audit.include_args:
        gaps.insert(0, "audit.include_args false is not applied: Leash logs argv of every exec.")
    return ClassExplanation(
        "audit",
        f"level {audit.level.value}, output {audit.output}",
        ("file opens, execs (with argv), connects, HTTP(S) requests, MCP calls: allowed and denied",),
        ("environment variables (never logged)",),
        (
            Enforcement(
                LEASH_KERNEL,
                "records file.open, proc.exec and net.send events "
                "(logfmt, written by leashd outside the agent's reach)",
            ),
            Enforcement(LEASH_PROXY, "records http.request and mcp.call events"),
        ),
        tuple(gaps),
    )


# ------------------------------------------------------------------ entry points
def explain(profile: Profile) -> Explanation:
    """Per class: what the profile allows and denies, which layer enforces it, what no layer does."""
    plan = leash.plan_leash(profile)
    classes = (
        _network(profile, plan),
        _filesystem(profile, plan),
        _exec(profile, plan),
        _limits(profile),
        _audit(profile),
    )
    notes = (CODEX_SANDBOX,) if not profile.container.user_namespaces else ()
    return Explanation(
        profile.name,
        profile.lineage,
        profile.description,
        classes,
        (*notes, LEASH_NEEDS, under_leash(profile), SOURCES),
    )


_WIDTH = 118


def _wrap(text: str, indent: str, first: str = "") -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent=indent + first, subsequent_indent=indent + " " * len(first)) or [
        indent + first
    ]


def _items(label: str, values: Sequence[str]) -> list[str]:
    head = f"  {label:<12}"
    return _wrap(", ".join(values) if values else "-", "", head)


def render_explanation(expl: Explanation) -> str:
    """Plain text: one table per class (allowed, denied, the layers, what no layer enforces)."""
    lines = [f"{expl.profile} ({' <- '.join(expl.lineage)})"]
    lines += _wrap(expl.description, "") if expl.description else []
    for note in expl.notes:
        lines += ["", *_wrap(note, "")]
    width = max(len(layer) for layer in LAYERS) + 2
    for cls in expl.classes:
        lines += ["", f"{cls.name.upper()}: {cls.summary}"]
        lines += _items("allowed", cls.allowed) + _items("denied", cls.denied)
        lines.append("  enforced by")
        for enforcement in cls.enforced_by:
            lines += _wrap(enforcement.what, "    ", f"{enforcement.layer:<{width}}")
        absent = [layer for layer in LAYERS if cls.layer(layer) is None]
        lines += _wrap(", ".join(absent), "    ", f"{'(no part)':<{width}}") if absent else []
        lines.append("  not enforced by any layer")
        for gap in cls.unenforced:
            lines += _wrap(gap, "    ", "- ")
    return "\n".join(lines) + "\n"
