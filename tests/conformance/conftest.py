"""The conformance suite's settings and shared sandboxes.

Options (each also read from the environment, for plain `pytest` runs from the repository root):
  --image REF            AGENT_SANDBOX_IMAGE    image to verify (default localhost/agent-sandbox-devcontainer:latest)
  --tier NAME            AGENT_SANDBOX_TIERS    tiers to verify; repeat the option or comma-separate (default: all four)
  --engine podman|docker AGENT_SANDBOX_ENGINE   container engine (default: podman, else docker if its daemon answers)
  --image-description X  AGENT_SANDBOX_IMAGE_DESCRIPTION  images/<X>/image.toml describing the image (default: the
                         image.toml whose name matches the reference's repository name, if any)

Every tier gets one long-running sandbox per session, started with exactly the tier's compiled run flags
(runtime.start_sandbox -> compilers.runargs.run_args), a fresh host directory as /workspace, and a fake $HOME
holding a .gitconfig and .ssh so that the trusted tier's ${localEnv:HOME} mounts never touch the real ones.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import testinfra
from agent_sandbox import conformance, images, profiles, runtime
from agent_sandbox.engine import ENGINES, Engine, detect_engine
from agent_sandbox.sandbox import new_name

from . import testnet
from agent_sandbox.compilers.runargs import api_key_vars
from agent_sandbox.errors import SandboxError
from agent_sandbox.model import Profile

DEFAULT_IMAGE = "localhost/agent-sandbox-devcontainer:latest"
OUTSIDE_NETWORK = "agent-sandbox-conformance-outside"
OUTSIDE_PORT = 8000
MARKER = "conformance-marker.txt"

# Tests that need no container (pure checks) live in these modules.
PURE_MODULES = {"test_checks.py", "test_verify_report.py"}


# ---------------------------------------------------------------- options
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agent-sandbox conformance")
    group.addoption("--image", default=None, help=f"image reference to verify (default {DEFAULT_IMAGE})")
    group.addoption("--tier", action="append", default=None, help="tier to verify (repeatable; default all)")
    group.addoption("--engine", default=None, choices=ENGINES, help="podman or docker (default: detect)")
    group.addoption("--image-description", default=None, help="images/<NAME>/image.toml describing the image")


def _option(config: pytest.Config, name: str, env: str) -> Any:
    value = config.getoption(name, default=None)
    return value if value else os.environ.get(env) or None


def image_ref(config: pytest.Config) -> str:
    return _option(config, "--image", "AGENT_SANDBOX_IMAGE") or DEFAULT_IMAGE


def image_given(config: pytest.Config) -> bool:
    return bool(_option(config, "--image", "AGENT_SANDBOX_IMAGE"))


def selected_tiers(config: pytest.Config) -> list[str]:
    raw = config.getoption("--tier", default=None) or [os.environ.get("AGENT_SANDBOX_TIERS", "")]
    names = [t.strip() for item in raw for t in item.split(",") if t.strip()]
    return names or profiles.tier_names()


def image_description(config: pytest.Config) -> images.Image | None:
    """The image.toml that describes the image under test, if there is one."""
    name = _option(config, "--image-description", "AGENT_SANDBOX_IMAGE_DESCRIPTION")
    if name is None:
        repo = image_ref(config).rsplit("/", 1)[-1].split("@")[0].split(":")[0]
        if repo not in images.all_images():
            return None
        name = repo
    return images.load_image(name)


def catalog_names(config: pytest.Config) -> list[str]:
    """Tools then agents of the image description (what test_tools parametrizes over)."""
    desc = image_description(config)
    if desc is None:
        return []
    catalog = images.load_catalog()
    return [f"tool:{t.name}" for t in images.image_tools(desc, catalog)] + [f"agent:{a}" for a in desc.agents]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    if "catalog_entry" in metafunc.fixturenames:
        entries = catalog_names(config) or ["none"]
        metafunc.parametrize("catalog_entry", entries, ids=[e.split(":")[-1] for e in entries])
    if "tier" in metafunc.fixturenames:
        metafunc.parametrize("tier", selected_tiers(config))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name not in PURE_MODULES and item.path.parent == Path(__file__).parent:
            item.add_marker(pytest.mark.container)


# ---------------------------------------------------------------- session state
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

    def new_workspace(self, label: str) -> Path:
        path = self.base / f"workspace-{label}-{secrets.token_hex(3)}"
        path.mkdir()
        (path / MARKER).write_text(f"{label}\n")
        _hand_to(path, self.uid, self.gid)
        return path

    def start(self, profile: Profile, *, label: str, adjust: Any = None,
              host_env: dict[str, str] | None = None) -> runtime.Sandbox:
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
                self.refused[tier] = f"tier {tier}: {self.engine.name} cannot start the image with the tier's run flags: {exc}"
                pytest.fail(self.refused[tier], pytrace=False)
        return self.sandboxes[tier]

    def inspect_image(self) -> dict[str, Any]:
        if self.image_info is None:
            self.image_info = self.engine.inspect(self.image, kind="image")
        return self.image_info

    def close(self) -> None:
        for box in self.extra:
            box.remove()


def _hand_to(path: Path, uid: int, gid: int) -> None:
    """Make a host directory usable by the sandbox user: its owner if we may chown, else world-writable."""
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


def _own_fake_home(home: Path, uid: int, gid: int) -> None:
    """A real user's home belongs to them: hand the fake one to the sandbox uid. Where we may not chown (a
    non-root CI user), make it writable for everyone instead, so that only a read-only mount can stop a write."""
    _hand_to(home, uid, gid)


@pytest.fixture(scope="session")
def session(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    requested = _option(pytestconfig, "--engine", "AGENT_SANDBOX_ENGINE")
    try:
        engine = detect_engine(requested)
    except SandboxError as exc:
        # Asked for explicitly (an engine or an image), the run must not pass by skipping everything.
        if requested or image_given(pytestconfig):
            pytest.fail(f"no container engine to verify with: {exc}", pytrace=False)
        pytest.skip(f"no container engine: {exc}")
    image = image_ref(pytestconfig)
    if not engine.image_exists(image):
        message = f"image {image} is not in {engine.name}'s storage (build it, or pass --image / AGENT_SANDBOX_IMAGE)"
        if image_given(pytestconfig):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("conformance")
    state = Session(engine, image, image_description(pytestconfig), base, _fake_home(base))
    _own_fake_home(state.fake_home, state.uid, state.gid)
    try:
        yield state
    finally:
        state.close()


# ---------------------------------------------------------------- per-tier fixtures
@pytest.fixture
def profile(tier: str) -> Profile:
    return profiles.load_profile(tier)


@pytest.fixture
def expected(profile: Profile, session: Session) -> conformance.Expectations:
    return conformance.expect(profile, uid=session.uid, gid=session.gid)


@pytest.fixture
def sandbox(session: Session, tier: str) -> runtime.Sandbox:
    return session.sandbox(tier)


@pytest.fixture
def host(sandbox: runtime.Sandbox) -> Any:
    return testinfra.get_host(sandbox.host_spec)


@pytest.fixture
def probe(host: Any) -> conformance.Probe:
    return conformance.Probe(host)


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


@pytest.fixture(scope="session")
def outside(session: Session) -> Iterator[OutsideServer]:
    """An HTTP server in a container on the engine's default network (where an open tier's sandbox lands) and
    on a separate ordinary network of its own; a proxied tier must reach neither of its addresses."""
    engine, token = session.engine, secrets.token_hex(16)
    created = False
    if not engine.network_exists(OUTSIDE_NETWORK):
        engine.run(["network", "create", OUTSIDE_NETWORK])
        created = True
    name = new_name("agent-sandbox-conformance-outside")
    script = f"mkdir -p /tmp/www && printf %s {token} > /tmp/www/token && cd /tmp/www && exec python3 -m http.server {OUTSIDE_PORT}"
    try:
        engine.run(["run", "--detach", f"--name={name}", "--entrypoint=/bin/sh", session.image, "-c", script])
        engine.run(["network", "connect", OUTSIDE_NETWORK, name])
        server = testinfra.get_host(f"{engine.name}://{name}")
        for _ in range(50):
            if conformance.Probe(server).fetch_token("127.0.0.1", OUTSIDE_PORT, token, timeout=3):
                break
        else:
            pytest.fail("the outside HTTP server did not come up", pytrace=False)
        yield OutsideServer(_container_addresses(engine, name), OUTSIDE_PORT, token)
    finally:
        engine.remove_container(name)
        if created:
            engine.remove_network(OUTSIDE_NETWORK)


@pytest.fixture(scope="session")
def internet(session: Session) -> Iterator[testnet.Internet]:
    if not session.engine.image_exists(testnet.IMAGE):
        pytest.fail(f"{testnet.IMAGE} is not in {session.engine.name}'s storage: build it "
                    "(agent-sandbox build tests/images/internet --backend debian)", pytrace=False)
    yield from testnet.start(session.engine, session.base)



PYTHON_TOOL = "python"  # the images/catalog.toml tool that provides python3


def require_python3(session: Session, host: Any) -> None:
    """Skip a probe that runs python3 inside the sandbox when the image has none, unless the image description
    promises it (the `python` tool): then its absence is a failure, not a gap to skip over."""
    if host.run("command -v python3").rc == 0:
        return
    desc = session.description
    if desc is not None and PYTHON_TOOL in {t.name for t in images.image_tools(desc, images.load_catalog())}:
        pytest.fail(f"{session.image} has no python3, although images/{desc.name}/image.toml lists the "
                    f"{PYTHON_TOOL} tool", pytrace=False)
    pytest.skip("the image has no python3, which this probe runs inside the sandbox")


@pytest.fixture
def python3(session: Session, host: Any) -> None:
    """The probes that fork, allocate or speak HTTP run python3 inside the image (agentTools ships it)."""
    require_python3(session, host)
