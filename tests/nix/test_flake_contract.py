"""The flake's outputs, evaluated against the test stand-in (see nixharness.py), hold the contract.

These tests cannot build the real image (nixpkgs is not reachable here); they check what our
Nix code passes to nixpkgs: package lists, image config, labels, root commands, policy files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import contract
import pytest
from nixharness import FIXTURE, REPO, SYSTEM, SYSTEMS, Harness, attr_of, image_expr, requires_nix

from agent_sandbox import labels, profiles
from agent_sandbox.images import load_catalog, load_image

pytestmark = requires_nix

IMAGE = "agent-sandbox-devcontainer"
OWNER_SETS = ("base", "vscodeCompat", "devTools", "nixTools")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def image(catalog):
    return load_image(IMAGE, catalog)


# ------------------------------------------------------------------ outputs
@pytest.mark.parametrize("system", SYSTEMS)
def test_outputs_evaluate_with_override_input(harness: Harness, system: str) -> None:
    """The real flake.lock, nixpkgs overridden on the command line by the stand-in's absolute path."""

    def names(output: str) -> list[str]:
        proc = harness.run(
            ["eval", "--json", f"path:{harness.plain}#{output}.{system}", "--apply", "builtins.attrNames",
             "--override-input", "nixpkgs", f"path:{harness.stand_in}", "--no-write-lock-file"],
        )  # fmt: skip
        return json.loads(proc.stdout)

    assert names("packages") == ["agent-sandbox", IMAGE, "leash"]
    assert names("lib") == ["mkAgentImage", "mkDevContainer"]
    assert set(OWNER_SETS) | {"agentTools", "agentSandbox", "agentCLIs"} <= set(names("packageSets"))
    assert names("devShells") == ["default"]
    assert names("checks") == ["agent-sandbox", "leash-version", "policies-fresh"]
    # the lock file in the copy is untouched: nixpkgs stays pinned for real builds
    assert (harness.plain / "flake.lock").read_text() == (REPO / "flake.lock").read_text()


def test_flake_lock_pins_the_owners_nixpkgs() -> None:
    lock = json.loads((REPO / "flake.lock").read_text())
    fixture = tomllib.loads(FIXTURE.read_text())
    nixpkgs = lock["nodes"][lock["nodes"]["root"]["inputs"]["nixpkgs"]]
    assert nixpkgs["locked"] == {
        "lastModified": fixture["pinned_last_modified"],
        "narHash": fixture["pinned_nar_hash"],
        "owner": "NixOS",
        "repo": "nixpkgs",
        "rev": fixture["pinned_rev"],
        "type": "github",
    }
    assert nixpkgs["original"] == {"owner": "NixOS", "ref": "nixpkgs-unstable", "repo": "nixpkgs", "type": "github"}
    assert set(lock["nodes"]) == {"root", "nixpkgs"}, "no other inputs: nothing else to fetch"


# ------------------------------------------------------------------ package sets
def test_package_sets_are_the_catalog(summary: dict[str, Any], catalog) -> None:
    for key in ("packageSets", "packageSetsArm"):
        sets = summary[key]
        assert set(sets) == set(catalog.sets) | {"agentCLIs"}
        for name, tools in catalog.sets.items():
            want = [attr for t in tools for attr in contract.tool_attrs(catalog.tools[t])]
            assert [attr_of(p) for p in sets[name]] == want, name
        assert [attr_of(p) for p in sets["agentCLIs"]] == [catalog.agents[a].nix for a in sorted(catalog.agents)]


def test_no_package_list_is_written_in_nix(catalog) -> None:
    """One source of truth: which tools an image holds is in catalog.toml, not in Nix code. Only the
    packages mkDevContainer needs for paths inside the image are named in Nix."""
    nix_code = "\n".join(p.read_text() for p in [REPO / "flake.nix", *sorted((REPO / "nixlib").glob("*.nix"))])
    assert "with pkgs; [" not in nix_code
    used_for_paths = {
        *("bashInteractive", "coreutils", "findutils", "gnugrep", "cacert"),
        *("tzdata", "glibc", "stdenv.cc.cc.lib", "nix-direnv"),
    }
    attrs = [t.nix for t in catalog.tools.values() if t.nix] + [a.nix for a in catalog.agents.values()]
    named = {a for a in attrs if re.search(rf"pkgs\.{re.escape(a)}(?![\w.-])", nix_code)}
    assert named <= used_for_paths, named - used_for_paths


# ------------------------------------------------------------------ the image
def test_image_holds_the_contract(summary: dict[str, Any], image, catalog) -> None:
    contract.check_image(summary["image"], image, catalog, image.agents, image.tier, summary["stores"]["image"])
    assert summary["imageName"] == f"{image.registry}/{image.name}" and summary["imageTag"] == image.tag


def test_image_for_aarch64_holds_the_same_contract(summary: dict[str, Any], image, catalog) -> None:
    contract.check_image(summary["imageArm"], image, catalog, image.agents, image.tier, summary["stores"]["imageArm"])


def test_metadata_label_is_the_python_compilers(summary: dict[str, Any], image) -> None:
    from agent_sandbox.compilers.devcontainer import metadata_label

    label = summary["image"]["config"]["Labels"][labels.LABEL_METADATA]
    assert json.loads(label) == metadata_label(profiles.load_profile(image.tier))


def test_every_tier_is_installed_with_the_bundles_files(summary: dict[str, Any], image) -> None:
    files = contract.policy_files(summary["image"])
    assert sorted(files) == sorted(profiles.tier_names())
    contract.check_policies(summary["image"], image)


def test_variant_changes_agents_tier_and_tag(summary: dict[str, Any], image, catalog) -> None:
    from agent_sandbox.backends.nix import variant_tag

    variant = summary["variant"]
    contract.check_image(variant, image, catalog, ("claude",), "paranoid", summary["stores"]["variant"])
    agents = {attr_of(p) for p in variant["contents"]} & {a.nix for a in catalog.agents.values()}
    assert agents == {"claude-code"}
    assert variant["config"]["Labels"][labels.LABEL_TIER] == "paranoid"
    assert summary["variantTag"] == variant_tag(image, ["claude"], "paranoid") == "latest-paranoid-claude"
    assert variant["config"]["Labels"] != summary["image"]["config"]["Labels"]


# ------------------------------------------------------------------ labels: one source, both backends alike
SAME_AS_DEBIAN = {  # summary key -> (agents, tier): what both backends can build
    "variant": (("claude",), "paranoid"),
    "registryAgents": (("claude", "codex", "gemini", "aider"), "strict"),
    "noAgents": ((), "strict"),
}


@pytest.mark.parametrize("key", sorted(SAME_AS_DEBIAN))
def test_nix_and_debian_label_an_image_alike(
    summary: dict[str, Any], image, catalog, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Debian plan (before its build adds created and agent versions) and the Nix image carry the same
    label names, but for what only Debian sets, and equal values for what no backend or build changes."""
    from agent_sandbox.backends import debian

    agents, tier = SAME_AS_DEBIAN[key]
    nix = summary[key]["config"]["Labels"]
    contract.check_labels(summary[key], image, catalog, agents, tier)
    monkeypatch.setattr(debian, "git_revision", lambda root: "0123abcd")  # known, whatever the checkout
    plan = debian.plan_build(IMAGE, agents=agents, tier=tier, env={})
    deb = dict(plan.labels)
    assert set(nix) == set(deb) - set(labels.DEBIAN_ONLY), set(nix) ^ (set(deb) - set(labels.DEBIAN_ONLY))
    assert {name: nix[name] for name in labels.BACKEND_INDEPENDENT} == {
        name: deb[name] for name in labels.BACKEND_INDEPENDENT
    }
    assert (nix[labels.LABEL_BACKEND], deb[labels.LABEL_BACKEND]) == ("nix", "debian")
    assert nix[labels.LABEL_SKIPPED_TOOLS] == nix[labels.LABEL_SKIPPED_AGENTS] == ""
    assert deb[labels.LABEL_SKIPPED_AGENTS] == ""  # no agent of these is Nix-only
    assert nix[labels.LABEL_AGENTS] == ",".join(agents)  # present even when empty


def test_bare_mkdevcontainer_labels(summary: dict[str, Any]) -> None:
    """Without tier, agents or description: no tier or metadata label, an empty agents label, no empty OCI label."""
    got = summary["bare"]["config"]["Labels"]
    assert labels.LABEL_TIER not in got and labels.LABEL_METADATA not in got
    assert labels.LABEL_DESCRIPTION not in got and labels.LABEL_SOURCE not in got
    assert got[labels.LABEL_AGENTS] == "" and got[labels.LABEL_BACKEND] == "nix"
    assert got[labels.LABEL_TIERS] == ",".join(sorted(profiles.tier_names()))
    assert got[labels.LABEL_POLICIES] == labels.POLICIES_DIR
    assert got[labels.LABEL_TITLE] == "devcontainer"


def test_no_label_name_is_written_in_nix() -> None:
    """Label names come from images/compiled/policies.json (labels.py), never from a string in Nix code."""
    nix_code = "\n".join(p.read_text() for p in [REPO / "flake.nix", *sorted((REPO / "nixlib").glob("*.nix"))])
    written = [name for name in labels.NAMES.values() if f'"{name}"' in nix_code]
    assert not written, written


# ------------------------------------------------------------------ Leash, the CLI, the dev shell
@pytest.mark.parametrize("system", SYSTEMS)
def test_leash_comes_from_the_pinned_release(summary: dict[str, Any], system: str) -> None:
    sources = tomllib.loads((REPO / "images" / "sources.toml").read_text())
    pin = sources["leash"][system]
    leash = summary["leash"][system]
    assert leash["src"] == {"url": pin["url"], "hash": pin["hash"]}
    assert pin["hash"].startswith("sha256-") and len(pin["hash"]) == 51
    arch = {"x86_64-linux": "amd64", "aarch64-linux": "arm64"}[system]
    v = sources["leash"]["version"]
    assert pin["url"] == f"https://github.com/strongdm/leash/releases/download/v{v}/leash_{v}_linux_{arch}.tar.gz"
    assert leash["args"]["pname"] == "leash" and leash["args"]["version"] == v
    assert 'install -D -m 0755 "$bin" "$out/bin/leash"' in leash["args"]["installPhase"]


def test_leash_without_hash_stops_evaluation(harness: Harness) -> None:
    copy = harness.mutated(
        "no-leash-hash", "images/sources.toml",
        'hash = "sha256-YuZEVTEzw0158P5tC9OsaFrn8SEPDBvqipwPYMzRcNo="', 'hash = ""',
    )  # fmt: skip
    _, proc = harness.eval_expr(f"{harness.flake(copy)}.packages.x86_64-linux.leash.outPath", check=False)
    assert proc.returncode != 0
    assert "has no hash for x86_64-linux" in proc.stderr and "nix store prefetch-file" in proc.stderr


def normalized(name: str) -> str:
    """A Python package name as PEP 503 compares them (nixpkgs' ruamel-yaml is PyPI's ruamel.yaml)."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def test_cli_package(summary: dict[str, Any]) -> None:
    cli = summary["cli"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert cli["pname"] == pyproject["project"]["name"] and cli["version"] == pyproject["project"]["version"]
    deps = {normalized(attr_of(p).removeprefix("python3Packages.")) for p in cli["dependencies"]}
    wanted = {normalized(re.split("[<>=~!;]", d)[0]) for d in pyproject["project"]["dependencies"]}
    assert deps == wanted
    assert cli["pyproject"] is True and cli["pythonImportsCheck"] == ["agent_sandbox"]
    assert "agent_sandbox/data" in cli["postInstall"]


def test_dev_shell_has_python_cli_and_leash(summary: dict[str, Any]) -> None:
    names = [p.rsplit("-stand-in-", 1)[1] for p in summary["devShell"]["packages"]]
    assert names[0] == "python3" and names[1].startswith("agent-sandbox-") and names[2].startswith("leash-")


def test_checks(summary: dict[str, Any]) -> None:
    assert "policy compile-all --check" in summary["checks"]["policies-fresh"]["script"]
    assert "/bin/leash --version" in summary["checks"]["leash-version"]["script"]


# ------------------------------------------------------------------ the leash-version check, run
LEASH_STANDIN = REPO / "tests" / "standins" / "leash"  # prints leash 1.1.5's --version lines


def run_check_script(script: str, leash: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The check's runCommand script as its builder runs it (bash, errexit, nounset, pipefail, $out set),
    with the leash package's binary replaced by `leash` (the stand-in nixpkgs builds nothing)."""
    binaries = set(re.findall(r"(/nix/store/\S+/bin/leash) --version", script))
    assert len(binaries) == 1, script
    out = tmp_path / "out"
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace(binaries.pop(), str(leash))],
        capture_output=True, text=True, timeout=30, cwd=tmp_path, env={**os.environ, "out": str(out)},
    )  # fmt: skip


def fake_leash(tmp_path: Path, version: str) -> Path:
    path = tmp_path / f"leash-{version}"
    path.write_text(f"#!/bin/sh\nprintf 'version: %s\\ngit hash: 0000000\\n' '{version}'\n")
    path.chmod(0o755)
    return path


def test_leash_version_check_passes_for_the_pinned_release(summary: dict[str, Any], tmp_path: Path) -> None:
    pinned = tomllib.loads((REPO / "images" / "sources.toml").read_text())["leash"]["version"]
    script = summary["checks"]["leash-version"]["script"]
    assert f'"version: {pinned}"' in script  # the pin is compared with, not just printed
    proc = run_check_script(script, LEASH_STANDIN, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_text().splitlines()[0] == f"version: {pinned}"


@pytest.mark.parametrize("printed", ["1.1.4", "1.1.50", ""])
def test_leash_version_check_fails_for_another_release(summary: dict[str, Any], tmp_path: Path, printed: str) -> None:
    proc = run_check_script(summary["checks"]["leash-version"]["script"], fake_leash(tmp_path, printed), tmp_path)
    assert proc.returncode != 0
    assert f"leash --version printed 'version: {printed}', images/sources.toml pins leash 1.1.5" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_leash_version_check_follows_sources_toml(harness: Harness, tmp_path: Path) -> None:
    """A version bumped in images/sources.toml (URLs and hashes left behind) fails the check."""
    copy = harness.mutated("leash-bumped", "images/sources.toml", 'version = "1.1.5"', 'version = "1.2.0"')
    script, _ = harness.eval_expr(f"{harness.flake(copy)}.checks.{SYSTEM}.leash-version.standInArgs.script")
    assert '"version: 1.2.0"' in script
    proc = run_check_script(script, LEASH_STANDIN, tmp_path)
    assert proc.returncode != 0
    assert "printed 'version: 1.1.5', images/sources.toml pins leash 1.2.0" in proc.stderr


# ------------------------------------------------------------------ unfree, fixture, stand-in
def test_unfree_is_allowed_only_by_name(harness: Harness, catalog) -> None:
    flake = (REPO / "flake.nix").read_text()
    assert "allowUnfree = false;" in flake and "allowUnfree = true" not in flake
    unfree = {a.nix for a in catalog.agents.values() if a.unfree}
    fixture = tomllib.loads(FIXTURE.read_text())["attrs"]
    assert unfree == {k for k, v in fixture.items() if v.get("unfree")} == {"claude-code", "cursor-cli"}
    # without the predicate the stand-in refuses them, as nixpkgs does
    copy = harness.mutated(
        "no-unfree-predicate", "flake.nix",
        "allowUnfreePredicate = pkg: builtins.elem (util.packageName pkg) unfreeAllowed;",
        "allowUnfreePredicate = pkg: false;",
    )  # fmt: skip
    _, proc = harness.eval_expr(f"{harness.flake(copy)}.packages.x86_64-linux.{IMAGE}.outPath", check=False)
    assert proc.returncode != 0 and "has an unfree license" in proc.stderr


def test_every_fixture_entry_is_used(summary: dict[str, Any]) -> None:
    """The stand-in offers only fixture entries (anything else fails evaluation); and none is stale."""
    fixture = tomllib.loads(FIXTURE.read_text())["attrs"]
    assert set(summary["_traced"]) == set(fixture)


def test_stand_in_implements_every_function(harness: Harness) -> None:
    fixture = tomllib.loads(FIXTURE.read_text())["attrs"]
    arguments = f'{{ system = "{SYSTEM}"; fakeHash = x: x; fakeStore = {{ }}; }}'
    impls, _ = harness.eval_expr(f"builtins.attrNames (import {harness.stand_in}/impls.nix {arguments})")
    assert set(impls) == {name for name, spec in fixture.items() if spec["kind"] != "package"}
    for name, spec in fixture.items():
        assert spec["kind"] in ("package", "function", "value") and spec["defined_in"] and spec["checked_at"], name
        if "outputs" in spec or "files" in spec:  # what a package holds, and where that was read
            outputs = spec.get("outputs", ["out"])
            assert spec["kind"] == "package" and len(set(outputs)) == len(outputs), name
            assert set(spec.get("files", {})) <= set(outputs) and spec["files_evidence"], name


def test_contract_reads_every_catalog_check(catalog) -> None:
    """check_tools derives what each check needs from the command; a form it cannot read fails here first."""
    for entry in [*catalog.tools.values(), *catalog.agents.values()]:
        assert contract.needs_of(entry.check), entry.name
    assert contract.needs_of("test -x /usr/sbin/useradd || command -v useradd") == (
        ((("path", "/usr/sbin/useradd"),),),
        ((("program", "useradd"),),),
    )
    assert contract.needs_of("nc -h 2>&1 | grep -q -- '-X proxy_protocol'") == (
        ((("program", "nc"),), (("program", "grep"),)),
    )


def test_stand_in_rejects_unknown_attributes(harness: Harness) -> None:
    """An attribute missing from the fixture fails evaluation (so the flake cannot use one silently)."""
    copy = harness.mutated(
        "unknown-attr", "nixlib/update-ca-certificates.nix", "${pkgs.gnugrep}/bin", "${pkgs.busybox}/bin"
    )
    _, proc = harness.eval_expr(f"{harness.flake(copy)}.packages.x86_64-linux.{IMAGE}.outPath", check=False)
    assert proc.returncode != 0 and "busybox" in proc.stderr


# ------------------------------------------------------------------ the contract checks can fail
MUTATIONS = {
    # root without a login shell would stay root: the default command must be one (the hook makes it the user's)
    "root-shell-not-a-login-shell": (
        "nixlib/mk-dev-container.nix",
        '    Cmd = [ shell "-l" ];\n',
        "    Cmd = [ shell ];\n",
        "Cmd",
    ),
    "image-tree-not-copied": (
        "nixlib/mk-dev-container.nix",
        "    cp -R --no-preserve=ownership ${tree}/. ./\n",
        "\n",
        "tree",
    ),
    "setuid-sudo": (
        "nixlib/mk-dev-container.nix",
        "    chmod 0700 ./root\n",
        "    chmod 0700 ./root\n    cp ${pkgs.coreutils}/bin/env ./usr/bin/sudo\n    chmod 4755 ./usr/bin/sudo\n",
        "sudo",
    ),
    "no-policies": ("nixlib/mk-dev-container.nix", "    ${installPolicies}\n", "\n", "policy files"),
    "wrong-metadata-tier": (
        "nixlib/mk-dev-container.nix",
        "// (if tier == null then { } else labelDoc.tiers.${tier});",
        "// labelDoc.tiers.trusted;",
        "devcontainer.metadata",
    ),
    "empty-agents-label-left-out": (
        "nixlib/mk-dev-container.nix",
        '(builtins.filter (name: (allLabels.${name} or null) == "") labelDoc.omitWhenEmpty);',
        '(builtins.filter (name: allLabels.${name} == "") (builtins.attrNames allLabels));',
        "skipped-tools",
    ),
    "label-name-typo": (
        "nixlib/mk-dev-container.nix",
        "    ${names.agents} = join agents;\n",
        '    "dev.agent-sandbox.agent" = join agents;\n',
        "dev.agent-sandbox.agents",
    ),
    "wrong-backend": (
        "nixlib/mk-dev-container.nix",
        '${names.backend} = "nix";',
        '${names.backend} = "debian";',
        "backend",
    ),
    # the catalog's checks, in what the image gets (check_tools): time zones at the Debian path, glibc's getconf
    "no-zoneinfo-link": (
        "nixlib/mk-dev-container.nix",
        "    ln -sfn ${pkgs.tzdata}/share/zoneinfo ./usr/share/zoneinfo\n",
        "\n",
        r"tool tzdata: `test -e /usr/share/zoneinfo/UTC` needs /usr/share/zoneinfo/UTC",
    ),
    "zoneinfo-link-to-a-missing-path": (
        "nixlib/mk-dev-container.nix",
        "ln -sfn ${pkgs.tzdata}/share/zoneinfo ./usr/share/zoneinfo",
        "ln -sfn ${pkgs.tzdata}/zoneinfo ./usr/share/zoneinfo",
        r"/usr/share/zoneinfo links to /nix/store/\S+-stand-in-tzdata/zoneinfo, which the store path does not hold",
    ),
    "no-tzdir": ("nixlib/mk-dev-container.nix", '      "TZDIR=/usr/share/zoneinfo"\n', "", "TZDIR"),
    # the image's glibc as it was: the default output only (`out`, the libraries), without `bin` and its getconf
    "glibc-default-output-only": (
        "images/catalog.toml",
        'nix_outputs = ["out", "bin"]                     # out: the libraries '
        "(VS Code's node); bin: getconf, ldd, locale\n",
        "",
        r"tool glibc: `getconf GNU_LIBC_VERSION` needs the program getconf \(on PATH\)",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_contract_catches_wrong_calls(harness: Harness, name: str, image) -> None:
    path, old, new, complaint = MUTATIONS[name]
    copy = harness.mutated(f"mutant-{name}", path, old, new)
    value, _ = harness.eval_expr(image_expr(copy, f"packages.x86_64-linux.{IMAGE}"))
    catalog = load_catalog(copy / "images" / "catalog.toml")  # the contract of the copy's own catalog
    with pytest.raises(AssertionError, match=complaint):
        contract.check_image(value["args"], image, catalog, image.agents, image.tier, value["store"])


def test_stand_in_rejects_unknown_build_arguments(harness: Harness) -> None:
    copy = harness.mutated(
        "bad-argument", "nixlib/mk-dev-container.nix", "  maxLayers = 100;\n", "  maxLayerz = 100;\n"
    )
    _, proc = harness.eval_expr(f"{harness.flake(copy)}.packages.x86_64-linux.{IMAGE}.outPath", check=False)
    assert proc.returncode != 0 and "maxLayerz" in proc.stderr
