"""Making image layers on an engine, for the Debian backend: podman (with buildah, same storage) or docker.

`LayerBuilder` holds what both share (import a rootfs, run a command once); `PodmanLayers` makes layers with
buildah, `DockerLayers` with run + commit and build. The engine itself (commands, queries, errors) is
agent_sandbox.engine; this module only says how each engine turns a script or a tree into a layer.
"""

from __future__ import annotations

import abc
import json
import os
import shlex
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .. import process
from ..engine import Engine, detect_engine
from ..errors import CommandFailed
from ..process import LineSink, ignore_line
from .debian_plan import containerfile

Labels = Mapping[str, str]
LabelsFrom = Callable[[str], Labels]


@attrs.frozen
class LayerBuilder(abc.ABC):
    """Turns scripts and trees into layers on `engine`. The subclasses know how each engine does it."""

    engine: Engine

    def import_rootfs(self, tarball: Path, ref: str, changes: Sequence[str], on_line: LineSink = ignore_line) -> None:
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        self.engine.stream([*args, str(tarball), ref], on_line=on_line)

    def run_once(self, ref: str, argv: Sequence[str], *, user: str | None = None) -> str:
        args = ["run", "--rm", "--network=none"]
        if user:
            args += ["--user", user]
        return self.engine.run([*args, "--entrypoint", argv[0], ref, *argv[1:]]).out

    def remove_image(self, ref: str) -> None:
        self.engine.remove_image(ref)

    @abc.abstractmethod
    def run_and_commit(
        self,
        parent: str,
        ref: str,
        *,
        script: str,
        container: str,
        mounts: Sequence[str] = (),
        labels_from: LabelsFrom = lambda _: {},
        on_line: LineSink = ignore_line,
        squash: bool = False,
        network: str | None = None,
    ) -> str:
        """Run `script` as root (bash) on `parent`, commit the result as `ref` with labels_from(stdout).
        `network`: the run's network mode (`host` reaches a registry mirror on the build host's loopback).

        The image config stays the parent's: nothing of the run (its environment, its command) is kept, and
        the script's environment is set inside the script, never with `-e`. Returns the script's stdout.
        The working container never outlives the call; labels_from may raise to refuse the commit.
        `squash`: `ref` is one layer holding the parent's files and the run's, so that what the script removes
        from the parent is gone from the image rather than hidden under whiteouts (the parent stays as it was).
        """

    @abc.abstractmethod
    def add_tree(
        self,
        parent: str,
        ref: str,
        *,
        context: Path,
        labels: Labels,
        config: Mapping[str, Any],
        container: str,
        on_line: LineSink = ignore_line,
    ) -> None:
        """`ref` = `parent` + the tree context/rootfs copied to / + labels (literal values) + config."""


@attrs.frozen
class PodmanLayers(LayerBuilder):
    """podman's store, layers made with buildah (same store): `buildah run` and `buildah config` leave the
    config alone and take labels literally (`podman commit` would keep the run's environment; `podman build
    --label` expands `${...}` in values, and devcontainer.metadata holds `${localEnv:...}`)."""

    buildah: str = "buildah"

    def bcmd(self, *args: str) -> list[str]:
        return [self.buildah, *args]

    def run_and_commit(
        self,
        parent: str,
        ref: str,
        *,
        script: str,
        container: str,
        mounts: Sequence[str] = (),
        labels_from: LabelsFrom = lambda _: {},
        on_line: LineSink = ignore_line,
        squash: bool = False,
        network: str | None = None,
    ) -> str:
        process.run(self.bcmd("from", "--pull-never", "--name", container, parent))
        try:
            run = ["run", "--user", "0:0", "--workingdir", "/", *(["--network", network] if network else [])]
            for mount in mounts:
                run += ["--volume", mount]
            output = process.stream(self.bcmd(*run, container, "--", "/bin/bash", "-c", script), on_line=on_line)
            self._commit(container, ref, labels_from(output), {}, on_line, squash=squash)
            return output
        finally:
            process.run(self.bcmd("rm", container), check=False)

    def add_tree(
        self,
        parent: str,
        ref: str,
        *,
        context: Path,
        labels: Labels,
        config: Mapping[str, Any],
        container: str,
        on_line: LineSink = ignore_line,
    ) -> None:
        process.run(self.bcmd("from", "--pull-never", "--name", container, parent))
        try:
            process.run(self.bcmd("copy", container, str(context / "rootfs"), "/"))
            self._commit(container, ref, labels, config, on_line)
        finally:
            process.run(self.bcmd("rm", container), check=False)

    def _commit(
        self,
        container: str,
        ref: str,
        labels: Labels,
        config: Mapping[str, Any],
        on_line: LineSink,
        *,
        squash: bool = False,
    ) -> None:
        args = ["config"]
        for name, value in labels.items():
            args += ["--label", f"{name}={value}"]
        for name, value in (config.get("Env") or {}).items():
            args += ["--env", f"{name}={value}"]
        if "User" in config:
            args += ["--user", str(config["User"])]
        if "WorkingDir" in config:
            args += ["--workingdir", config["WorkingDir"]]
        if "Entrypoint" in config:
            args += ["--entrypoint", json.dumps(config["Entrypoint"])]
        if "Cmd" in config:
            args += ["--cmd", json.dumps(config["Cmd"])]
        if len(args) > 1:
            process.run(self.bcmd(*args, container))
        squashed = ["--squash"] if squash else []
        process.stream(self.bcmd("commit", "--format", "docker", "--quiet", *squashed, container, ref), on_line=on_line)


@attrs.frozen
class DockerLayers(LayerBuilder):
    """docker: `run` + `commit` (docker keeps no run environment in the config), `build` for the last layer
    (`docker build --label` values are literal)."""

    def run_and_commit(
        self,
        parent: str,
        ref: str,
        *,
        script: str,
        container: str,
        mounts: Sequence[str] = (),
        labels_from: LabelsFrom = lambda _: {},
        on_line: LineSink = ignore_line,
        squash: bool = False,
        network: str | None = None,
    ) -> str:
        # No --entrypoint: `docker commit` keeps a run's entrypoint even when told `ENTRYPOINT []`.
        info = self.engine.inspect(parent, kind="image").get("Config") or {}
        if info.get("Entrypoint"):
            raise CommandFailed(f"{parent} has an entrypoint; the agents step expects none")
        run = ["run", "--name", container, "--user", "0:0", "--workdir", "/"]
        run += ["--network", network] if network else []
        for mount in mounts:
            run += ["--volume", mount]
        try:
            output = self.engine.stream([*run, parent, "/bin/bash", "-c", script], on_line=on_line)
            changes = [
                "CMD " + json.dumps(info.get("Cmd") or ["bash"]),
                f"USER {info.get('User') or 'root'}",
                f"WORKDIR {info.get('WorkingDir') or '/'}",
            ]
            changes += [f"LABEL {name}={json.dumps(value)}" for name, value in labels_from(output).items()]
            if squash:
                # docker commits no squashed layer: the container's whole filesystem, imported as one layer
                # (import keeps no config: the parent's environment goes in as changes, with the rest)
                env = [item.partition("=") for item in info.get("Env") or []]
                changes = [f"ENV {name}={json.dumps(value)}" for name, _, value in env] + changes
                self.export_import(container, ref, changes, on_line)
                return output
            commit = ["commit"]
            for change in changes:
                commit += ["--change", change]
            self.engine.stream([*commit, container, ref], on_line=on_line)
            return output
        finally:
            self.engine.remove_container(container)

    def export_import(self, container: str, ref: str, changes: Sequence[str], on_line: LineSink) -> None:
        parent = os.environ.get("AGENT_SANDBOX_BUILD_TMP") or "/var/tmp"
        with tempfile.TemporaryDirectory(
            prefix="agent-sandbox-squash.", dir=parent if Path(parent).is_dir() else None
        ) as work:
            tarball = Path(work) / "rootfs.tar"
            self.engine.stream(["export", "--output", str(tarball), container], on_line=on_line)
            # the container's init layer comes along with export (commit leaves it out): its /.dockerenv must not
            # end up in the image (tar reports a missing member, which is no error here)
            process.run(["tar", "--delete", "--file", str(tarball), ".dockerenv"], check=False)
            self.import_rootfs(tarball, ref, changes, on_line)

    def add_tree(
        self,
        parent: str,
        ref: str,
        *,
        context: Path,
        labels: Labels,
        config: Mapping[str, Any],
        container: str,
        on_line: LineSink = ignore_line,
    ) -> None:
        (context / "Containerfile").write_text(containerfile(parent, config), encoding="utf-8")
        args = ["build", "--file", str(context / "Containerfile"), "--tag", ref]
        for name, value in labels.items():
            args += ["--label", f"{name}={value}"]
        self.engine.stream([*args, str(context)], on_line=on_line)


def layer_builder(engine: Engine) -> LayerBuilder:
    """podman makes its layers with buildah (which it then needs), docker with its own commands."""
    if engine.name == "podman":
        return PodmanLayers(engine, process.require("buildah", "podman builds its layers with buildah"))
    return DockerLayers(engine)


def resolve_builder(requested: str | None = None) -> LayerBuilder:
    """The engine that builds (engine.detect_engine: the request, AGENT_SANDBOX_ENGINE, podman, docker)."""
    return layer_builder(detect_engine(requested))


# ------------------------------------------------------------------ mmdebstrap
def mmdebstrap_argv(
    *,
    suite: str,
    variant: str,
    packages: Sequence[str],
    sources: Sequence[str],
    apt_options: Sequence[str],
    dpkg_options: Sequence[str],
    script_path: Path,
    output: Path,
) -> list[str]:
    argv = ["mmdebstrap", f"--variant={variant}", "--mode=root", "--format=tar"]
    argv += [f"--aptopt={opt}" for opt in apt_options]
    argv += [f"--dpkgopt={opt}" for opt in dpkg_options]
    if packages:
        argv.append("--include=" + ",".join(packages))
    argv.append(f'--customize-hook=chroot "$1" /bin/sh -eu < {shlex.quote(str(script_path))}')
    argv += [suite, str(output), *sources]
    return argv
