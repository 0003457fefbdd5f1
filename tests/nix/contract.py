"""What mkDevContainer must pass to dockerTools.buildLayeredImage: the contract, as plain checks.

Each check raises AssertionError naming the broken promise. The tests call them on the arguments
the stand-in recorded; test_contract_catches_wrong_calls calls them on a deliberately broken
copy of nixlib to show they fail.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent_sandbox import labels, profiles
from agent_sandbox.compilers.devcontainer import metadata_label
from agent_sandbox.images import Catalog, Image, image_tools

from nixharness import REPO, attr_of

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
INSTALL_POLICY = re.compile(r"^install -D -m 0644 (\S+) \./etc/agent-sandbox/([^/\s]+)/(\S+)$", re.MULTILINE)
SETUID = re.compile(r"chmod\s+(-\S+\s+)*([0-7]?[4-7][0-7]{3}|[ugoa]*\+[rwx]*s)\b")


def nix_attr(tool_nix: str, tool_name: str) -> str:
    """The stand-in attribute of a catalog tool: its nixpkgs attribute, or nixlib's own package."""
    return tool_nix or tool_name


def expected_contents(image: Image, catalog: Catalog, agents: Sequence[str]) -> list[str]:
    tools = [nix_attr(t.nix, t.name) for t in image_tools(image, catalog)]
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
    assert "/bin" in env["PATH"].split(":") and "NIX_PATH" in env, env
    cmd = config["Cmd"]
    assert len(cmd) == 2 and cmd[1] == "-l", f"Cmd {cmd}: the default command is a login shell (the hook makes it the user's)"
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
    assert revision, "no revision label (the commit, \"dirty\" outside a clean checkout)"
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
    assert re.search(r"^UPDATE_CA_CERTIFICATES_SYSROOT=\. \S+-stand-in-update-ca-certificates/bin/update-ca-certificates$", cmds, re.MULTILINE)
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


def check_image(args: dict[str, Any], image: Image, catalog: Catalog, agents: Sequence[str], tier: str) -> None:
    check_contents(args, image, catalog, agents)
    check_config(args, image)
    check_labels(args, image, catalog, agents, tier)
    check_root_commands(args, image)
    check_policies(args, image)
    check_tree(args, image)
