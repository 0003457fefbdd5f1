"""What mkDevContainer must pass to dockerTools.buildLayeredImage: the contract, as plain checks.

Each check raises AssertionError naming the broken promise. The tests call them on the arguments
the stand-in recorded (and on what its fake store paths hold, for check_tools); test_contract_catches_wrong_calls
calls them on a deliberately broken copy of nixlib or of the catalog to show they fail.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from nixharness import FIXTURE, REPO, attr_of

from agent_sandbox import labels, profiles
from agent_sandbox.compilers.devcontainer import metadata_label
from agent_sandbox.images import Catalog, Image, Tool, image_tools

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ZONEINFO = "/usr/share/zoneinfo"  # where Debian keeps time zones (and the tzdata tool's check looks)
INSTALL_POLICY = re.compile(r"^install -D -m 0644 (\S+) \./etc/agent-sandbox/([^/\s]+)/(\S+)$", re.MULTILINE)
SETUID = re.compile(r"chmod\s+(-\S+\s+)*([0-7]?[4-7][0-7]{3}|[ugoa]*\+[rwx]*s)\b")


def nix_attr(tool_nix: str, tool_name: str) -> str:
    """The stand-in attribute of a catalog tool: its nixpkgs attribute, or nixlib's own package."""
    return tool_nix or tool_name


def default_output(attr: str) -> str:
    """A package's default output, as the stand-in has it (the fixture's `outputs`, first; `out` without them)."""
    spec = tomllib.loads(FIXTURE.read_text())["attrs"].get(attr, {})
    return spec.get("outputs", ["out"])[0]


def tool_attrs(tool: Tool) -> list[str]:
    """The stand-in attributes of a tool's packages: the default output's attribute (`glibc`), and `<attr>.<output>`
    for each other output the catalog's `nix_outputs` names (`glibc.bin`), as the stand-in names their store paths."""
    attr = nix_attr(tool.nix, tool.name)
    if not tool.nix_outputs:
        return [attr]
    default = default_output(attr)
    return [attr if output == default else f"{attr}.{output}" for output in tool.nix_outputs]


def expected_contents(image: Image, catalog: Catalog, agents: Sequence[str]) -> list[str]:
    tools = [attr for t in image_tools(image, catalog) for attr in tool_attrs(t)]
    extra = [] if "update-ca-certificates" in tools else ["update-ca-certificates"]
    return tools + [catalog.agents[a].nix for a in agents] + extra


def env_of(config: dict[str, Any]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in config["Env"])


def check_contents(args: dict[str, Any], image: Image, catalog: Catalog, agents: Sequence[str]) -> None:
    got = [attr_of(p) for p in args["contents"]]
    assert got == expected_contents(image, catalog, agents), f"contents {got}"


LOGIN_HOOK = "etc/profile.d/00-agent-sandbox-user.sh"


def check_config(args: dict[str, Any], image: Image, user: str = "vscode") -> None:
    config = args["config"]
    # root for Leash's bootstrap, and only with the login hook that continues as the user (in the image's tree)
    assert config["User"] == "0:0", f"User {config['User']!r}"
    assert (image.path.parent / "rootfs" / LOGIN_HOOK).is_file(), f"{LOGIN_HOOK} is not in the image's tree"
    assert config["WorkingDir"] == "/workspace", config["WorkingDir"]
    env = env_of(config)
    assert env["HOME"] == f"/home/{user}" and env["USER"] == user, env
    assert env["SSL_CERT_FILE"] == CA_BUNDLE and env["NIX_SSL_CERT_FILE"] == CA_BUNDLE, env
    # glibc looks for zones in TZDIR, else in its own $out/share/zoneinfo (which has no zones); check_tools checks
    # that the directory holds them
    assert env.get("TZDIR") == ZONEINFO, f"TZDIR {env.get('TZDIR')!r}: want {ZONEINFO}"
    assert "/bin" in env["PATH"].split(":") and "NIX_PATH" in env, env
    cmd = config["Cmd"]
    assert len(cmd) == 2 and cmd[1] == "-l", (
        f"Cmd {cmd}: the default command is a login shell (the hook makes it the user's)"
    )
    assert attr_of(cmd[0].removesuffix("/bin/bash")) == "bashInteractive", f"Cmd {cmd}"
    assert "Entrypoint" not in config, "Leash injects its own entrypoint; the image must not set one"
    assert args["enableFakechroot"] is True and 1 < args.get("maxLayers", 100) <= 125


def expected_labels(
    image: Image, catalog: Catalog, agents: Sequence[str], tier: str, *, revision: str
) -> dict[str, str]:
    """What the Nix image must carry: labels.py's labels for backend "nix", every shipped tier installed, nothing
    skipped (every catalog tool and agent is a nixpkgs or nixlib package); no created time, no agent versions."""
    return labels.image_labels(
        image,
        catalog,
        tier=tier,
        tiers=sorted(profiles.tier_names()),
        metadata=metadata_label(profiles.load_profile(tier), uid=image.uid, gid=image.gid),
        agents=agents,
        skipped_tools=(),
        skipped_agents=(),
        backend="nix",
        revision=revision,
        version=project_version(),
    )


def project_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def check_labels(args: dict[str, Any], image: Image, catalog: Catalog, agents: Sequence[str], tier: str) -> None:
    got = args["config"]["Labels"]
    expected_metadata = metadata_label(profiles.load_profile(tier), uid=image.uid, gid=image.gid)
    metadata = got.get(labels.LABEL_METADATA)
    assert metadata is not None and json.loads(metadata) == expected_metadata, (
        f"{labels.LABEL_METADATA} differs from Python's"
    )
    revision = got.get(labels.LABEL_REVISION, "")
    assert revision, 'no revision label (the commit, "dirty" outside a clean checkout)'
    want = expected_labels(image, catalog, agents, tier, revision=revision)
    wrong = sorted(name for name in set(got) | set(want) if got.get(name) != want.get(name))
    assert not wrong, "labels differ from labels.image_labels: " + "; ".join(
        f"{name}: {got.get(name)!r} (want {want.get(name)!r})" for name in wrong
    )
    assert not set(got) & set(labels.DEBIAN_ONLY), "a Nix image sets no build-time or Debian-only label"


def check_root_commands(args: dict[str, Any], image: Image, user: str = "vscode") -> None:
    cmds = args["fakeRootCommands"]
    shell = env_shell(args)
    home = f"/home/{user}"
    assert f"\n{user}:x:{image.uid}:{image.gid}:{user}:{home}:{shell}\n" in cmds, "passwd line for the user"
    assert f"\n{user}:x:{image.gid}:\n" in cmds, "group line for the user"
    assert "\nroot:!:1::::::\n" in cmds, "root has no password"
    assert re.search(r"^chmod 1777 \./tmp\b", cmds, re.MULTILINE), "/tmp 1777"
    assert f"chown -R {image.uid}:{image.gid} .{home} ./workspace" in cmds, "/workspace and home owned by the user"
    assert "mkdir -p ./etc/ssl/certs ./usr/local/share/ca-certificates" in cmds
    assert re.search(
        r"^UPDATE_CA_CERTIFICATES_SYSROOT=\. \S+-stand-in-update-ca-certificates/bin/update-ca-certificates$",
        cmds,
        re.MULTILINE,
    )
    assert "./usr/sbin/update-ca-certificates" in cmds
    code = "\n".join(line for line in cmds.splitlines() if not line.lstrip().startswith("#"))
    assert "sudo" not in code, "no sudo in the image"
    assert not SETUID.search(code), "no setuid bit may be set"


def env_shell(args: dict[str, Any]) -> str:
    return args["config"]["Cmd"][0]


def policy_files(args: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{tier: {file: content}} installed by fakeRootCommands (contents read from the store files)."""
    files: dict[str, dict[str, str]] = {}
    for store, tier, name in INSTALL_POLICY.findall(args["fakeRootCommands"]):
        files.setdefault(tier, {})[name] = Path(store).read_text(encoding="utf-8")
    return files


def check_policies(args: dict[str, Any], image: Image) -> None:
    from agent_sandbox import bundle  # needs every compiler (Leash, explain)

    expected = {
        tier: bundle.tier_files(profiles.load_profile(tier), uid=image.uid, gid=image.gid)
        for tier in profiles.tier_names()
    }
    assert policy_files(args) == expected, "policy files differ from the Python bundle"
    assert "chmod -R a-w,a+rX ./etc/agent-sandbox" in args["fakeRootCommands"]


def check_tree(args: dict[str, Any], image: Image) -> None:
    """images/<image>/rootfs is copied in, as the Debian backend does (the same files, read from the store)."""
    tree = image.path.parent / "rootfs"
    if not tree.is_dir():
        return
    match = re.search(r"cp -R --no-preserve=ownership (/nix/store/\S+)/\. \./", args["fakeRootCommands"])
    assert match, "the image's rootfs tree is not copied"
    stored = Path(match.group(1))
    ours = {p.relative_to(tree): p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    theirs = {p.relative_to(stored): p.read_bytes() for p in stored.rglob("*") if p.is_file()}
    assert ours == theirs, "the stored tree differs from images/<image>/rootfs"
    assert "Include /etc/ssh/ssh_config.d/*.conf" in args["fakeRootCommands"]


# ------------------------------------------------------------------ what the tools' checks need
Store = Mapping[str, Sequence[str]]  # a store path -> the files it holds (relative), as the stand-in says
STORE_PATH = re.compile(r"^/nix/store/[^/]+")


class ImageRoot:
    """The image's file tree as far as the contract can know it without building: `contents` linked at / (as
    symlinkJoin does: each element's files, a package being its default output only), then what fakeRootCommands
    does to it. Paths map to a symlink target, or None for a file or directory of the layer itself."""

    def __init__(self, store: Store) -> None:
        self.store = {path: tuple(files) for path, files in store.items()}
        self.entries: dict[str, str | None] = {}

    # ---------------------------------------------------------------- building
    def add(self, path: str, target: str | None = None) -> None:
        self.entries[normal(path)] = target

    def remove(self, path: str) -> None:
        self.entries.pop(normal(path), None)

    def link_contents(self, contents: Sequence[str]) -> None:
        for element in contents:
            for rel in self.store_files(element):
                self.entries.setdefault("/" + rel, f"{element}/{rel}")  # lndir: the first element wins

    def store_files(self, store_path: str) -> tuple[str, ...]:
        assert store_path in self.store, f"the stand-in does not say what {store_path} holds"
        return self.store[store_path]

    # ---------------------------------------------------------------- looking
    def exists(self, path: str, _depth: int = 0) -> bool:
        """Whether `path` resolves in the image (symlinks followed)."""
        assert _depth < 20, f"symlink loop at {path}"
        if STORE_PATH.match(path):
            return self.in_store(path)
        parts = [p for p in normal(path).split("/") if p]
        for i in range(1, len(parts) + 1):
            here = "/" + "/".join(parts[:i])
            target = self.entries.get(here)
            if target is not None:  # a symlink: go on from its target
                base = target if target.startswith("/") else str(PurePosixPath(here).parent / target)
                rest = "/".join(parts[i:])
                return self.exists(f"{base}/{rest}" if rest else base, _depth + 1)
        here = "/" + "/".join(parts)
        return here == "/" or here in self.entries or any(e.startswith(here + "/") for e in self.entries)

    def in_store(self, path: str) -> bool:
        match = STORE_PATH.match(path)
        assert match
        files = self.store.get(match.group(0))
        if files is None:
            return False  # a store path the stand-in knows nothing of
        rel = path[match.end() :].strip("/")
        return not rel or rel in files or any(f.startswith(rel + "/") for f in files)

    def visible(self) -> Iterator[str]:
        """Every path the image shows (links into the store expanded one level), for glob patterns."""
        for path, target in self.entries.items():
            yield path
            if target is not None and STORE_PATH.match(target):
                match = STORE_PATH.match(target)
                assert match
                rel = target[match.end() :].strip("/")
                for f in self.store.get(match.group(0), ()):
                    if rel and f.startswith(rel + "/"):
                        yield f"{path}/{f[len(rel) + 1 :]}"

    def matches(self, pattern: str) -> bool:
        if not any(c in pattern for c in "*?["):
            return self.exists(pattern)
        return any(PurePosixPath(p).match(pattern) and self.exists(p) for p in self.visible())

    def executable(self, name: str, path_dirs: Sequence[str]) -> bool:
        if name.startswith("/"):
            return self.exists(name)
        return any(self.exists(f"{d.rstrip('/')}/{name}") for d in path_dirs if d.startswith("/"))


def normal(path: str) -> str:
    """An image path from a fakeRootCommands path ("./etc/x", "./home/u/y") or an absolute one."""
    if path in (".", "./"):
        return "/"
    path = path.removeprefix(".") if path.startswith("./") else path
    assert path.startswith("/"), f"not a path in the image: {path!r}"
    return str(PurePosixPath(path))


HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")
UPDATE_CA = re.compile(r"^UPDATE_CA_CERTIFICATES_SYSROOT=\. \S+/bin/update-ca-certificates$")


def run_fake_root_commands(root: ImageRoot, commands: str) -> None:
    """Apply what fakeRootCommands does to the tree, line by line. Only the idioms mkDevContainer uses are understood;
    any other command fails (teach it here rather than guess). Heredoc bodies are data; what an `if` block does is
    not credited (the contract cannot know the condition)."""
    heredoc: str | None = None
    depth = 0
    for raw in commands.splitlines():
        line = raw.strip()
        if heredoc is not None:
            if line == heredoc:
                heredoc = None
            continue
        if not line or line.startswith("#"):
            continue
        if match := HEREDOC.search(line):
            heredoc = match.group(1)
            line = line[: match.start()].strip()
        if re.match(r"^if\b", line):
            depth += 1
            continue
        if line == "fi":
            depth -= 1
            continue
        if depth:
            continue
        if UPDATE_CA.match(line):
            # nixlib/update-ca-certificates.sh (run for real in test_update_ca_certificates.py): the bundle, and
            # ca-bundle.crt a link to it
            root.add("/etc/ssl/certs/ca-certificates.crt")
            root.add("/etc/ssl/certs/ca-bundle.crt", "ca-certificates.crt")
            root.add("/usr/local/share/ca-certificates")
            continue
        words = shlex.split(line)
        command, rest = words[0], words[1:]
        options = [w for w in rest if w.startswith("-")]
        operands = [w for w in rest if not w.startswith("-")]
        if command in ("chmod", "chown"):
            continue  # modes and owners: check_root_commands looks at those
        if command == "mkdir":
            for path in operands:
                root.add(path)
        elif command == "rm":
            for path in operands:
                root.remove(path)
        elif command == "ln":
            assert any("s" in o for o in options) and len(operands) == 2, f"fakeRootCommands: not understood: {line}"
            root.add(operands[1], operands[0])
        elif command in ("cat", "echo") and ">" in rest:
            root.add(rest[rest.index(">") + 1])
        elif command == "install":
            operands = [w for i, w in enumerate(rest) if not w.startswith("-") and rest[i - 1] != "-m"]
            root.add(operands[-1])
        elif command == "cp":
            src, dest = operands[-2], operands[-1]
            if src.endswith("/.") and dest in ("./", "."):  # a tree copied onto /
                for rel in tree_files(root, src.removesuffix("/.")):
                    root.add("/" + rel)
            else:
                root.add(dest)
        else:
            raise AssertionError(f"fakeRootCommands: the contract does not understand this line: {line}")


def tree_files(root: ImageRoot, source: str) -> list[str]:
    if source in root.store:
        return list(root.store[source])
    base = Path(source)
    assert base.is_dir(), f"cannot read the tree {source}"
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file() or p.is_symlink())


def image_root(args: dict[str, Any], store: Store) -> ImageRoot:
    root = ImageRoot(store)
    root.link_contents(args["contents"])
    run_fake_root_commands(root, args["fakeRootCommands"])
    return root


# What a catalog check command needs, read from the command itself: `a || b` needs a or b; `a | b` needs both;
# `test -e|-x|-s|-f|-d PATH` needs PATH; `command -v NAME` and any other command need their program on PATH;
# `ls PATHS... | grep -q .` (the libstdcxx check) needs one of PATHS (globs allowed).
NEED_PATH_TESTS = ("-e", "-x", "-s", "-f", "-d")
REDIRECTION = re.compile(r"^\d*>(&\d+|/dev/null)?$|^\d*>>?/dev/null$")


Need = tuple[str, str]  # ("path", PATH), ("paths", "P1 P2 ..."): one of them, ("program", NAME)
Stage = tuple[Need, ...]  # one command of a pipeline
Pipeline = tuple[Stage, ...]


def needs_of(check: str) -> tuple[Pipeline, ...]:
    """What a check needs: alternatives (||), each a pipeline whose every command's needs must be met."""
    alternatives: list[Pipeline] = []
    for alternative in check.split("||"):
        stages: list[Stage] = []
        for stage in alternative.split("|"):
            words = [w for w in shlex.split(stage) if not REDIRECTION.match(w)]
            assert words, f"cannot read the check {check!r}"
            if words[0] == "test":
                assert len(words) == 3 and words[1] in NEED_PATH_TESTS, f"cannot read the check {check!r}"
                stages.append((("path", words[2]),))
            elif words[:2] == ["command", "-v"]:
                stages.append((("program", words[2]),))
            elif words[0] == "ls" and (paths := [w for w in words[1:] if not w.startswith("-")]):
                stages.append((("program", "ls"), ("paths", " ".join(paths))))
            else:
                stages.append((("program", words[0]),))
        alternatives.append(tuple(stages))
    return tuple(alternatives)


def unmet(root: ImageRoot, need: Need, path_dirs: Sequence[str]) -> str | None:
    kind, value = need
    if kind == "path":
        return None if root.matches(value) else value
    if kind == "paths":
        return None if any(root.matches(p) for p in value.split()) else f"one of {value}"
    return None if root.executable(value, path_dirs) else f"the program {value} (on PATH)"


def check_tools(args: dict[str, Any], image: Image, catalog: Catalog, agents: Sequence[str], store: Store) -> None:
    """Every catalog check the conformance suite runs in the image (each tool's and agent's `check`) finds what it
    needs in what the image gets: its contents (default outputs, linked at /) and what fakeRootCommands makes.
    Also: TZDIR holds the zones, and every link fakeRootCommands makes into the store points at something there."""
    root = image_root(args, store)
    env = env_of(args["config"])
    path_dirs = env["PATH"].split(":")
    checks = [(f"tool {t.name}", t.check) for t in image_tools(image, catalog)]
    checks += [(f"agent {a}", catalog.agents[a].check) for a in agents]
    problems = []
    for who, check in checks:
        missing = []
        for alternative in needs_of(check):
            gaps = [gap for stage in alternative for need in stage if (gap := unmet(root, need, path_dirs))]
            if not gaps:
                break
            missing.append(" and ".join(gaps))
        else:
            problems.append(f"{who}: `{check}` needs {' or '.join(missing)}, which the image does not have")
    if "TZDIR" in env and not root.exists(env["TZDIR"] + "/UTC"):
        problems.append(f"TZDIR={env['TZDIR']} holds no zones (no UTC there)")
    for path, target in root.entries.items():
        if target is not None and STORE_PATH.match(target) and not root.in_store(target):
            problems.append(f"{path} links to {target}, which the store path does not hold")
    assert not problems, "; ".join(problems)


def check_image(
    args: dict[str, Any], image: Image, catalog: Catalog, agents: Sequence[str], tier: str, store: Store
) -> None:
    check_contents(args, image, catalog, agents)
    check_config(args, image)
    check_labels(args, image, catalog, agents, tier)
    check_root_commands(args, image)
    check_policies(args, image)
    check_tree(args, image)
    check_tools(args, image, catalog, agents, store)
