"""The Compose project of a coordinator and N agents, planned (pure): the description read (bad input names file,
line and key), subnets, and every service carrying exactly its sandbox plan's flags."""

from __future__ import annotations

import ipaddress
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agent_sandbox import compose, spawn
from agent_sandbox.compilers.devcontainer import compose_service
from agent_sandbox.errors import InputError
from agent_sandbox.profiles import load_profile
from agent_sandbox.sandbox import Plan, Request

GOOD = """\
name: auth
from: main
tier: strict
agents:
  login: {agent: claude, task: "Implement the login form"}
  api:
    agent: codex
    tier: standard
    task: "Implement the REST endpoints"
  idle: {agent: shell}
coordinator:
  agent: claude
  task: "Merge the agents' branches"
"""


def describe(tmp_path: Path, text: str) -> compose.Description:
    path = tmp_path / "agents.yaml"
    path.write_text(textwrap.dedent(text))
    return compose.load_description(path)


def test_a_description_names_agents_tiers_tasks_and_a_coordinator(tmp_path):
    d = describe(tmp_path, GOOD)
    assert d.project == "auth" and d.repo == tmp_path and d.image == compose.DEFAULT_IMAGE
    assert [(m.name, m.agent, m.tier, m.base, m.task is not None) for m in d.members] == [
        ("login", "claude", "strict", "main", True),
        ("api", "codex", "standard", "main", True),
        ("idle", "shell", "strict", "main", False),
        ("coordinator", "claude", "strict", "main", True),
    ]
    assert [m.name for m in d.agents] == ["login", "api", "idle"] and d.coordinator is not None
    assert d.coordinator.sandbox(d.project) == "auth-coordinator"


def test_the_project_defaults_to_the_files_name(tmp_path):
    path = tmp_path / "sprint-3.yaml"
    path.write_text("agents:\n  a: {agent: shell}\n")
    assert compose.load_description(path).project == "sprint-3"


@pytest.mark.parametrize(
    "text, where, words",
    [
        pytest.param("agents:\n  a: {agent: shell}\nfoo: 1\n", ":3: foo", "unknown key", id="unknown-key"),
        pytest.param("name: x\n", ":1: agents", "missing", id="no-agents"),
        pytest.param(
            "agents:\n  a: {agent: shell, colour: red}\n", ":2: agents.a.colour", "unknown key", id="unknown-agent-key"
        ),
        pytest.param(
            "agents:\n  a: {agent: claude}\n", ":2: agents.a", "--task is required", id="agent-without-a-task"
        ),
        pytest.param(
            "agents:\n  a: {agent: nobody, task: x}\n", ":2: agents.a.agent", "unknown agent", id="unknown-agent"
        ),
        pytest.param(
            "agents:\n  a:\n    agent: shell\n    task: true\n",
            ":4: agents.a.task",
            "non-empty string",
            id="task-not-a-string",
        ),
        pytest.param("name: 'bad name'\nagents:\n  a: {agent: shell}\n", ":1: name", "sandbox name", id="bad-project"),
        pytest.param("agents:\n  a/b: {agent: shell}\n", ":2: agents.a/b", "sandbox name", id="bad-agent-name"),
        pytest.param(
            "agents:\n  coordinator: {agent: shell}\ncoordinator: {agent: shell}\n",
            ":2",
            "may not be called",
            id="agent-named-coordinator",
        ),
        pytest.param("agents: {}\n", ":1: agents", "at least one agent", id="no-agent"),
        pytest.param("agents: [a, b]\n", ":1: agents", "must be a mapping", id="agents-a-list"),
        pytest.param("agents:\n  a: {agent: shell\n", ":3", "malformed YAML", id="malformed"),
    ],
)
def test_a_bad_description_is_one_error_naming_file_line_and_key(tmp_path, text, where, words):
    with pytest.raises(InputError) as caught:
        describe(tmp_path, text)
    message = str(caught.value)
    assert f"agents.yaml{where}" in message and words in message and "\n" not in message, message


# ---------------------------------------------------------------- subnets
def test_subnets_are_stable_distinct_and_avoid_the_engines_networks():
    names = [f"agent{i}" for i in range(20)]
    first = compose.choose_subnets("p", names, ())
    assert first == compose.choose_subnets("p", names, ())
    assert len(set(first.values())) == 20
    taken = [first["agent3"], first["agent7"]]
    again = compose.choose_subnets("p", names, taken)
    assert again["agent3"] not in taken and again["agent7"] not in taken
    assert all(compose.SUBNET_POOL.supernet_of(ipaddress.IPv4Network(s)) for s in again.values())


def test_the_proxy_has_the_second_address():
    assert compose.proxy_address("10.230.7.0/24") == "10.230.7.2"


# ---------------------------------------------------------------- rendering
W = Path("/home/dev/p.agents")
G = Path("/home/dev/p/.git")


def planned(
    name: str,
    tier: str,
    command: tuple[str, ...] | None,
    subnet: str | None = "10.230.1.0/24",
    waits: tuple[str, ...] = (),
) -> compose.Planned:
    member = compose.Member(name, "shell", "x" if command else None, tier, None, where=None)  # type: ignore[arg-type]
    sandbox = f"p-{name}"
    mounts = spawn.git_mounts(
        G, W / sandbox, G / "worktrees" / sandbox, f"agent/{sandbox}", writable=True, exists=lambda _: True
    )
    request = Request(
        "img",
        load_profile(tier),
        W / sandbox,
        sandbox,
        "podman",
        Path(f"/state/{sandbox}"),
        mounts=mounts,
        own_network=True,
        env=spawn.git_env(sandbox),
    )
    plan = Plan(request)
    return compose.Planned(
        member, plan, command, subnet if plan.proxy else None, plan.squid_conf if plan.proxy else None, wait_for=waits
    )


def rendered() -> dict[str, Any]:
    items = [
        planned("locked", "strict", ("bash", "-c", "echo $HOME")),
        planned("open", "standard", ("bash", "-c", "make")),
        planned("reader", "paranoid", ("bash", "-c", "ls")),
        planned("coordinator", "strict", ("bash", "-c", "git merge"), "10.230.2.0/24", ("locked", "open")),
    ]
    return compose.render("p", items, outbound_network=None)


@pytest.mark.parametrize(
    "name, tier, network",
    [
        pytest.param("locked", "strict", "p-locked-net", id="strict"),
        pytest.param("open", "standard", "p-open-net", id="standard"),
        pytest.param("reader", "paranoid", None, id="paranoid"),
    ],
)
def test_every_service_carries_exactly_its_sandbox_plans_flags(name, tier, network):
    """The service is Plan.agent_run's flags translated (compose_service), nothing dropped, nothing added but
    the container's name, image and command."""
    item = planned(name, tier, ("bash", "-c", "x"))
    argv = item.plan.agent_run(compose.proxy_address("10.230.1.0/24") if item.plan.proxy else None)
    at = next(i for i, a in enumerate(argv) if a.startswith("--entrypoint="))
    flags = [f for f in argv[3:at] if not (f.startswith("--env=") and "=" not in f[len("--env=") :])]
    expected = compose_service(flags, {network: network} if network else {})
    service = rendered()["services"][name]
    for key, value in expected.items():
        if key == "environment":
            assert service[key][: len(value)] == value
        else:
            assert service[key] == value, key
    assert service["container_name"] == f"p-{name}" and service["image"] == "img"
    if network is None:
        assert service["network_mode"] == "none"
    else:
        assert service["networks"] == [network]


def test_api_keys_go_in_by_name_only():
    environment = rendered()["services"]["locked"]["environment"]
    assert "ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY:-}" in environment
    assert not [e for e in environment if e.startswith("ANTHROPIC_API_KEY=") and "${" not in e]


def test_a_dollar_in_a_task_reaches_the_agent_as_written():
    entry = rendered()["services"]["locked"]["entrypoint"]
    assert entry[-1] == "echo $$HOME"  # Compose reads $$ as $


def test_each_proxied_agent_has_its_own_internal_network_and_proxy():
    doc = rendered()
    networks, services = doc["networks"], doc["services"]
    assert networks["p-locked-net"]["internal"] is True and networks["p-locked-net"]["x-podman.disable_dns"]
    assert networks["p-locked-net"]["ipam"]["config"] == [{"subnet": "10.230.1.0/24"}]
    assert networks["p-open-net"].get("internal") is None and networks["p-open-net"]["driver_opts"] == {
        "isolate": "true"
    }
    assert "p-reader-net" not in networks
    proxy = services["locked-proxy"]
    assert proxy["container_name"] == "p-locked-proxy"
    assert proxy["networks"] == {"p-locked-net": {"ipv4_address": "10.230.1.2"}, compose.OUTBOUND: {}}
    assert services["locked"]["extra_hosts"][-1] == "agent-sandbox-proxy:10.230.1.2"
    assert services["locked"]["depends_on"] == ["locked-proxy"]
    assert "open-proxy" not in services and "reader-proxy" not in services
    assert networks[compose.OUTBOUND] == {"name": "p-outbound"}


def test_an_existing_outbound_network_is_external():
    items = [planned("locked", "strict", ("true",))]
    assert compose.render("p", items, outbound_network="corp")["networks"][compose.OUTBOUND] == {
        "name": "corp",
        "external": True,
    }


# ---------------------------------------------------------------- the members' entry script, run here
def run_entry(
    tmp_path: Path, *, report: bool, wait_for: tuple[str, ...], command: str, probe: str | None = None
) -> subprocess.Popen[str]:
    """The entry script in bash here; `probe`: the proxy's readiness probe instead of none (a proxied member)."""
    script = compose.entry_script(
        wait_proxy=probe is not None, report=report, wait_for=wait_for, probe=probe or "", ready=2
    )
    script = script.replace(compose.STATUS_DIR, str(tmp_path / "status")).replace(
        compose.AGENTS_DIR, str(tmp_path / "agents")
    )
    return subprocess.Popen(
        ["bash", "-c", script, "agent-sandbox", "bash", "-c", command],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_an_agent_leaves_its_exit_status(tmp_path):
    (tmp_path / "status").mkdir()
    proc = run_entry(tmp_path, report=True, wait_for=(), command="echo working; exit 3")
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 3 and out == "working\n"
    assert (tmp_path / "status" / compose.STATUS_FILE).read_text() == "3\n"


@pytest.mark.parametrize(
    "probe, code, out, status",
    [
        pytest.param("true", 3, "working\n", "3\n", id="proxy-answers"),
        pytest.param("false", 97, "", "97\n", id="proxy-refuses"),
        pytest.param("sleep 5", 97, "", "97\n", id="proxy-silent"),
    ],
)
def test_a_proxied_agent_starts_only_once_its_proxy_answers(tmp_path, probe, code, out, status):
    (tmp_path / "status").mkdir()
    proc = run_entry(tmp_path, report=True, wait_for=(), command="echo working; exit 3", probe=probe)
    got, err = proc.communicate(timeout=10)
    assert (proc.returncode, got) == (code, out), err
    assert (tmp_path / "status" / compose.STATUS_FILE).read_text() == status
    assert ("does not answer: not starting" in err) == (code == compose.PROBE_FAILED)


def test_the_coordinator_starts_when_every_agent_ended_well(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "agents" / name).mkdir(parents=True)
    proc = run_entry(tmp_path, report=False, wait_for=("a", "b"), command="echo merging")
    (tmp_path / "agents" / "a" / "exit").write_text("0\n")
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=1.5)  # b has not ended
    (tmp_path / "agents" / "b" / "exit").write_text("0\n")
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out == "merging\n"


def test_the_coordinator_does_not_start_after_a_failed_agent(tmp_path):
    (tmp_path / "agents" / "a").mkdir(parents=True)
    (tmp_path / "agents" / "a" / "exit").write_text("2\n")
    proc = run_entry(tmp_path, report=False, wait_for=("a",), command="echo merging")
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and out == "" and "a failed (exit 2)" in err


def test_the_coordinator_reads_each_agents_status_read_only_and_an_agent_writes_only_its_own():
    states = {"a": Path("/s/p-a"), "b": Path("/s/p-b"), "coordinator": Path("/s/p-coordinator")}
    coordinator = compose.Member("coordinator", "shell", "x", "strict", None, where=None)  # type: ignore[arg-type]
    agent = compose.Member("a", "shell", "x", "strict", None, where=None)  # type: ignore[arg-type]
    assert [(m.source, m.target, m.readonly) for m in compose.status_mounts(states, coordinator, ("a", "b"))] == [
        (Path("/s/p-a/status"), f"{compose.AGENTS_DIR}/a", True),
        (Path("/s/p-b/status"), f"{compose.AGENTS_DIR}/b", True),
    ]
    assert [(m.source, m.target, m.readonly) for m in compose.status_mounts(states, agent, ())] == [
        (Path("/s/p-a/status"), compose.STATUS_DIR, False)
    ]
