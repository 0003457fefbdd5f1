"""The SBOM of a Debian-built image (sbom.py): made reproducible, read back as packages, and checked against the
lock. Syft itself runs in the conformance suite (tests/conformance/test_lock_build.py); here its output is a small
SPDX document of ours shaped like Syft's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent_sandbox import lock as lk
from agent_sandbox import sbom as sb
from agent_sandbox.images import Image

ROOTFS = "/var/lib/containers/storage/overlay/abc/merged"


def spdx_package(kind: str, name: str, version: str, where: str) -> dict[str, Any]:
    purl_name = name.replace("@", "%40") if kind == "npm" else name
    prefix = "pkg:deb/debian/" if kind == "deb" else f"pkg:{kind}/"
    return {
        "name": name,
        "versionInfo": version,
        "SPDXID": f"SPDXRef-Package-{kind}-{name}",
        "sourceInfo": f"acquired package info from installed node module manifest file: {where}",
        "externalRefs": [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": f"{prefix}{purl_name}@{version}?arch=amd64",
            }
        ],
    }


def the_lock(image: Image) -> lk.Lock:
    lock = lk.read_lock(lk.lock_path(image.path), image.name)
    assert lock is not None
    return lock


def document(lock: lk.Lock, **changed: str) -> dict[str, Any]:
    """What Syft lists for an image built from `lock` (claude and aider, node, npm, two Debian packages)."""
    assert lock.node is not None and lock.npm is not None
    claude, aider = lock.agents["claude"], lock.agents["aider"]
    node = lock.node.builds["amd64"]
    packages = [
        spdx_package("npm", node.package, node.version, f"/usr/local/lib/node_modules/{node.package}/package.json"),
        spdx_package("npm", "npm", lock.npm.artifact.version, "/usr/local/lib/node_modules/npm/package.json"),
        spdx_package("npm", "semver", "7.0.0", "/usr/local/lib/node_modules/npm/node_modules/semver/package.json"),
        spdx_package(
            "npm",
            claude.package,
            changed.get("claude", claude.version),
            f"/opt/claude/node_modules/{claude.package}/package.json",
        ),
        spdx_package(
            "npm", "example", "1.0.0", f"/opt/claude/node_modules/{claude.package}/examples/example/package.json"
        ),
        *(
            spdx_package("pypi", p.name, p.version, f"/opt/aider/lib/python3.11/site-packages/{p.name}.dist-info")
            for p in aider.python
        ),
        spdx_package("deb", "bash", changed.get("bash", lock.debian["amd64"].packages["bash"]), "/var/lib/dpkg/status"),
    ]
    if "extra" in changed:
        packages.append(
            spdx_package("npm", changed["extra"], "6.6.6", f"/opt/claude/node_modules/{changed['extra']}/package.json")
        )
    return {
        "spdxVersion": "SPDX-2.3",
        "name": ROOTFS,
        "documentNamespace": f"https://anchore.com/syft/dir{ROOTFS}-x",
        "creationInfo": {"created": "2026-01-01T00:00:00Z"},
        "packages": packages,
    }


def versions(lock: lk.Lock) -> dict[str, str]:
    return lock.versions(["claude", "aider"], "amd64")


def test_an_sbom_of_the_locked_image_agrees_with_the_lock(image: Image) -> None:
    lock = the_lock(image)
    assert sb.compare_with_lock(document(lock), lock, versions(lock), "amd64") == []
    sb.check_sbom(document(lock), lock, versions(lock), "amd64")


@pytest.mark.parametrize(
    ("changed", "problem"),
    [
        pytest.param({"claude": "0.0.1"}, "claude: the SBOM does not list @anthropic-ai/claude-code@", id="agent"),
        pytest.param(
            {"extra": "left-pad"},
            "claude: the SBOM lists left-pad@6.6.6, which its lockfile does not",
            id="unlocked-npm-package",
        ),
        pytest.param({"bash": "9.9"}, "debian: the SBOM lists bash 9.9, the lock 5.", id="debian"),
    ],
)
def test_an_sbom_that_lists_other_versions_is_refused(image: Image, changed: dict[str, str], problem: str) -> None:
    lock = the_lock(image)
    problems = sb.compare_with_lock(document(lock, **changed), lock, versions(lock), "amd64")
    assert problems and problems[0].startswith(problem), problems
    with pytest.raises(sb.CommandFailed, match="the SBOM disagrees with the lock"):
        sb.check_sbom(document(lock, **changed), lock, versions(lock), "amd64")


def test_normalise_names_the_image_not_the_host_directory(image: Image) -> None:
    scanned = document(the_lock(image))
    scanned["packages"].append({"SPDXID": "SPDXRef-DocumentRoot-Directory-" + ROOTFS.replace("/", "-"), "name": ROOTFS})
    doc = sb.normalise(
        scanned, rootfs=Path(ROOTFS), name="localhost/x:latest", key="k123", created="2026-11-29T00:00:00Z"
    )
    assert doc["packages"][-1] == {"SPDXID": "SPDXRef-DocumentRoot-Directory--image", "name": "localhost/x:latest"}
    assert doc["name"] == "localhost/x:latest"
    assert doc["documentNamespace"] == f"{sb.NAMESPACE}/localhost%2Fx%3Alatest/k123"
    assert doc["creationInfo"]["created"] == "2026-11-29T00:00:00Z"
    assert ROOTFS not in str(doc) and "overlay" not in str(doc)


@pytest.mark.parametrize(
    ("env", "labels", "expected"),
    [
        pytest.param({"SOURCE_DATE_EPOCH": "1700000000"}, {}, "2023-11-14T22:13:20Z", id="source-date-epoch"),
        pytest.param(
            {}, {"org.opencontainers.image.created": "2026-01-02T03:04:05Z"}, "2026-01-02T03:04:05Z", id="label"
        ),
    ],
)
def test_created_time(env: dict[str, str], labels: dict[str, str], expected: str) -> None:
    assert sb.created_time(labels, env) == expected


def test_packages_reads_purls() -> None:
    doc = {
        "packages": [
            spdx_package("npm", "@a/b", "1.0.0", "/opt/x/node_modules/@a/b/package.json"),
            spdx_package("deb", "libc6", "2.36-9", "/var/lib/dpkg/status"),
            {"name": "no purl", "externalRefs": []},
        ]
    }
    assert sb.packages(doc) == [
        ("npm", "@a/b", "1.0.0", "/opt/x/node_modules/@a/b/package.json"),
        ("deb", "libc6", "2.36-9", "/var/lib/dpkg/status"),
    ]


def test_an_sbom_written_for_the_same_image_and_key_is_reused(tmp_path: Path, image: Image) -> None:
    path = tmp_path / "image.spdx.json"
    doc = sb.normalise(
        document(the_lock(image)),
        rootfs=Path(ROOTFS),
        name="localhost/x:latest",
        key="k1",
        created="2026-11-29T00:00:00Z",
    )
    path.write_text(__import__("json").dumps(doc))
    assert sb.read_sbom(path, name="localhost/x:latest", key="k1") == doc
    assert sb.read_sbom(path, name="localhost/x:latest", key="k2") is None  # another build: scanned again
    assert sb.read_sbom(path, name="localhost/y:latest", key="k1") is None
    assert sb.read_sbom(tmp_path / "missing.json", name="localhost/x:latest", key="k1") is None
