"""The conformance suite's session: the engine, the image, and every container the suite starts.

Every tier gets one long-running sandbox per session, started with exactly the tier's compiled run flags
(runtime.start_sandbox -> compilers.runargs.run_args), a fresh host directory as /workspace, and a fake $HOME
holding a .gitconfig and .ssh so that the trusted tier's ${localEnv:HOME} mounts never touch the real ones.
Everything started is removed when the session closes, also when tests fail. The pytest fixtures that hand these
out are agent_sandbox.pytest_plugin's.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import testinfra  # type: ignore[import-untyped]

from .. import images, profiles, runtime
from ..compilers.runargs import api_key_vars
from ..engine import Engine, detect_engine
from ..errors import SandboxError
from ..model import Profile
from ..sandbox import new_name
from .expectations import Expectations, expect
from .probe import Probe

OUTSIDE_NETWORK = "agent-sandbox-conformance-outside"
OUTSIDE_PORT = 8000
MARKER = "conformance-marker.txt"  # planted in every sandbox's workspace; it holds the workspace's label
PYTHON_TOOL = "python"  # the images/catalog.toml tool that provides python3


def describe(image: str, name: str | None) -> images.Image | None:
    """The image.toml that describes `image`: images/<name>/image.toml, else the one whose name is the
    reference's repository name, if there is one."""
    if name is None:
        repo = image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
        if repo not in images.all_images():
            return None
        name = repo
    return images.load_image(name)


def catalog_entries(description: images.Image | None) -> list[str]:
    """Tools then agents of the image description (`tool:NAME`, `agent:NAME`; what test_tools runs over)."""
    if description is None:
        return []
    catalog = images.load_catalog()
    tools = [f"tool:{t.name}" for t in images.image_tools(description, catalog)]
    return tools + [f"agent:{a}" for a in description.agents]


@attrs.define
class Session:
    """The engine, image and every container the suite started (removed at the end, whatever happened)."""

    engine: Engine
    image: str
    description: images.Image | None
    base: Path
    fake_home: Path
    sandboxes: dict[str, runtime.Sandbox] = attrs.Factory(dict)
    extra: list[runtime.Sandbox] = attrs.Factory(list)
    refused: dict[str, str] = attrs.Factory(dict)
    image_info: dict[str, Any] | None = None

    @property
    def uid(self) -> int:
        return self.description.uid if self.description else 1000

    @property
    def gid(self) -> int:
        return self.description.gid if self.description else 1000

    def host_env(self) -> dict[str, str]:
        """What ${localEnv:...} and the forwarded API-key variables see: the fake HOME, no real keys."""
        env = {k: v for k, v in os.environ.items() if k not in api_key_vars()}
        env["HOME"] = str(self.fake_home)
        return env

    def expect(self, profile: Profile) -> Expectations:
        return expect(profile, uid=self.uid, gid=self.gid)

    def new_workspace(self, label: str) -> Path:
        path = self.base / f"workspace-{label}-{secrets.token_hex(3)}"
        path.mkdir()
        (path / MARKER).write_text(f"{label}\n")
        _hand_to(path, self.uid, self.gid)
        return path

    def start(
        self,
        profile: Profile,
        *,
        label: str,
        adjust: Callable[[list[str]], list[str]] | None = None,
        host_env: dict[str, str] | None = None,
    ) -> runtime.Sandbox:
        """A sandbox of `profile` (`host_env`: what ${localEnv:...} resolves against, default `host_env()`); what
        the start warns about is in `Sandbox.warnings`."""
        box = runtime.start_sandbox(
            self.image,
            profile,
            engine=self.engine,
            workspace=self.new_workspace(label),
            name=new_name(f"as-conf-{label}"),
            state_dir=self.base / f"state-{label}-{secrets.token_hex(3)}",
            host_env=self.host_env() if host_env is None else host_env,
            uid=self.uid,
            gid=self.gid,
            adjust=adjust,
            on_warning=lambda message: None,
        )
        self.extra.append(box)
        return box

    def sandbox(self, tier: str) -> runtime.Sandbox:
        """The tier's shared sandbox. If the engine refuses the tier's flags, every test of the tier fails with
        that one reason (a tier that cannot start is not conformant), without retrying the start each time."""
        if tier in self.refused:
            pytest.fail(self.refused[tier], pytrace=False)
        if tier not in self.sandboxes:
            try:
                self.sandboxes[tier] = self.start(profiles.load_profile(tier), label=tier)
            except SandboxError as exc:
                self.refused[tier] = (
                    f"tier {tier}: {self.engine.name} cannot start the image with the tier's run flags: {exc}"
                )
                pytest.fail(self.refused[tier], pytrace=False)
        return self.sandboxes[tier]

    def probe(self, box: runtime.Sandbox) -> Probe:
        """A probe of `box`, through a pytest-testinfra host (`podman://NAME`, `docker://NAME`)."""
        return Probe(testinfra.get_host(box.host_spec))

    def inspect_image(self) -> dict[str, Any]:
        if self.image_info is None:
            self.image_info = self.engine.inspect(self.image, kind="image")
        return self.image_info

    def require_python3(self, host: Any) -> None:
        """Skip a probe that runs python3 inside the sandbox when the image has none, unless the image description
        promises it (the `python` tool): then its absence is a failure, not a gap to skip over."""
        if host.run("command -v python3").rc == 0:
            return
        desc = self.description
        if desc is not None and PYTHON_TOOL in {t.name for t in images.image_tools(desc, images.load_catalog())}:
            pytest.fail(
                f"{self.image} has no python3, although images/{desc.name}/image.toml lists the {PYTHON_TOOL} tool",
                pytrace=False,
            )
        pytest.skip("the image has no python3, which this probe runs inside the sandbox")

    def close(self) -> None:
        for box in self.extra:
            box.remove()


def open_session(
    requested_engine: str | None, image: str, *, named: bool, description: str | None, base: Path
) -> Session:
    """A session on the requested (else the detected) engine. When the engine or the image is missing, the tests
    that need them are skipped — unless an engine or an image was named (`named`): a run asked to verify
    something must not pass by skipping everything."""
    try:
        engine = detect_engine(requested_engine)
    except SandboxError as exc:
        if requested_engine or named:
            pytest.fail(f"no container engine to verify with: {exc}", pytrace=False)
        pytest.skip(f"no container engine: {exc}")
    if not engine.image_exists(image):
        message = f"image {image} is not in {engine.name}'s storage (build it, or pass --image / AGENT_SANDBOX_IMAGE)"
        if named:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    session = Session(engine, image, describe(image, description), base, _fake_home(base))
    _hand_to(session.fake_home, session.uid, session.gid)
    return session


def _hand_to(path: Path, uid: int, gid: int) -> None:
    """Make a host directory usable by the sandbox user: its owner if we may chown, else world-writable. (A real
    user's home belongs to them: the fake one goes to the sandbox uid; where we may not chown, a non-root CI user,
    it is writable for everyone instead, so that only a read-only mount can stop a write.)"""
    for item in [path, *path.rglob("*")]:
        try:
            os.chown(item, uid, gid)
        except PermissionError:
            item.chmod(0o777 if item.is_dir() else 0o666)


def _fake_home(base: Path) -> Path:
    home = base / "fake-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".gitconfig").write_text("[user]\n\tname = agent-sandbox conformance (fake)\n")
    (home / ".ssh" / "known_hosts").write_text("# agent-sandbox conformance: fake, not a real key\n")
    for item in (home, home / ".ssh"):
        item.chmod(0o755)
    for item in (home / ".gitconfig", home / ".ssh" / "known_hosts"):
        item.chmod(0o644)
    return home


# ---------------------------------------------------------------- the "outside" host
@attrs.frozen
class OutsideServer:
    """Our own HTTP server on ordinary networks (never a real internet host): it serves `token` at /token."""

    addresses: tuple[str, ...]
    port: int
    token: str


def _container_addresses(engine: Engine, name: str) -> tuple[str, ...]:
    networks = engine.inspect(name).get("NetworkSettings", {}).get("Networks", {}) or {}
    return tuple(n["IPAddress"] for n in networks.values() if n.get("IPAddress"))


def outside_server(session: Session) -> Iterator[OutsideServer]:
    """An HTTP server in a container on the engine's default network (where an open tier's sandbox lands) and
    on a separate ordinary network of its own; a proxied tier must reach neither of its addresses. Removed (with
    the network, if it made it) when the generator is closed."""
    engine, token = session.engine, secrets.token_hex(16)
    created = False
    if not engine.network_exists(OUTSIDE_NETWORK):
        engine.run(["network", "create", OUTSIDE_NETWORK])
        created = True
    name = new_name("agent-sandbox-conformance-outside")
    script = (
        f"mkdir -p /tmp/www && printf %s {token} > /tmp/www/token && cd /tmp/www && "
        f"exec python3 -m http.server {OUTSIDE_PORT}"
    )
    try:
        engine.run(["run", "--detach", f"--name={name}", "--entrypoint=/bin/sh", session.image, "-c", script])
        engine.run(["network", "connect", OUTSIDE_NETWORK, name])
        server = Probe(testinfra.get_host(f"{engine.name}://{name}"))
        for _ in range(50):
            if server.fetch_token("127.0.0.1", OUTSIDE_PORT, token, timeout=3):
                break
        else:
            pytest.fail("the outside HTTP server did not come up", pytrace=False)
        yield OutsideServer(_container_addresses(engine, name), OUTSIDE_PORT, token)
    finally:
        engine.remove_container(name)
        if created:
            engine.remove_network(OUTSIDE_NETWORK)
