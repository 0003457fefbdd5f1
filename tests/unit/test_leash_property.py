"""For generated profiles: what the compiler accepts, the Cedar engine, a model of Leash (cedar_model.py) and the
profile's own intent decide alike; what it refuses, it refuses with a location, and only where it must.

Paths come from a small alphabet whose names are byte prefixes of one another (a, ab), so the generator hits
Leash's byte-prefix matching and every nesting of allow/read/deny. The places where Leash cannot say what the
profile says are excluded from the intent check only (never from the Cedar == Leash check):
- a directory rule's own path (/a for a rule /a/**): Dir::"/a/" does not match /a;
- a path under a file rule (/ab and /a/b for a rule /a): File::"/a" is a byte prefix.

Exec and network check refusals both ways: the compiler refuses exactly the generated profiles that have a conflict
(`exec_refusal`, `network_refusal`, written from the profile and from the Leash model, not from the compiler), with
the message of that conflict. The last tests mutate the compiler and show that these properties then fail.
"""

from __future__ import annotations

import itertools

import cedar_model as cm
import pytest
from hypothesis import HealthCheck, Phase, event, find, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from agent_sandbox import model, profiles
from agent_sandbox.compilers import leash
from agent_sandbox.errors import Location, NotEnforceable

SOURCE = "gen.yaml"
PARTS = ("a", "b", "ab")
PATHS = tuple("/" + "/".join(p) for n in (1, 2, 3) for p in itertools.product(PARTS, repeat=n))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_profile(
    fs: model.Filesystem | None = None, ex: model.Exec | None = None, net: model.Network | None = None
) -> model.Profile:
    return model.Profile(
        name="gen",
        version="1",
        description="",
        lineage=("gen",),
        network=net or model.Network(),
        filesystem=fs or model.Filesystem(),
        exec=ex or model.Exec(),
        audit=model.Audit(),
        container=model.Container(),
        source=SOURCE,
    )


def located(values: list, key: str, line0: int) -> list[Location]:
    return [Location(SOURCE, line0 + i, f"{key}[{i}]") for i in range(len(values))]


def assert_refused_with_location(error: NotEnforceable) -> None:
    assert error.where is not None and error.where.line > 0, str(error)
    assert f"{SOURCE}:" in str(error)


# ------------------------------------------------------------------ filesystem
path_rules = st.lists(st.tuples(st.one_of(st.just("/"), st.sampled_from(PATHS)), st.booleans()), max_size=4)


@st.composite
def filesystems(draw: st.DrawFn) -> model.Filesystem:
    lists = {}
    for line0, key in ((10, "allow"), (20, "read"), (30, "deny")):
        raw = draw(path_rules)
        wheres = located(raw, f"filesystem.{key}", line0)
        lists[key] = tuple(model.PathRule(p, tree or p == "/", w) for (p, tree), w in zip(raw, wheres, strict=True))
    return model.Filesystem(write=lists["allow"], read=lists["read"], deny=lists["deny"])


def fs_gap(fs: model.Filesystem, path: str) -> bool:
    rules = fs.write + fs.read + fs.deny
    return any(r.recursive and r.path == path for r in rules) or any(
        not r.recursive and path != r.path and path.startswith(r.path) for r in rules
    )


def nested_opposites(fs: model.Filesystem) -> bool:
    """A refusal needs two rules of different kinds, one on a byte prefix of the other."""
    kinds = [(r.prefix, k) for k, rules in (("w", fs.write), ("r", fs.read), ("d", fs.deny)) for r in rules]
    return any(k1 != k2 and p2.startswith(p1) for (p1, k1), (p2, k2) in itertools.permutations(kinds, 2))


@SETTINGS
@given(filesystems())
def test_filesystem_readings_agree(fs):
    profile = make_profile(fs=fs)
    try:
        text = leash.compile_leash(profile)
    except NotEnforceable as error:
        assert_refused_with_location(error)
        assert nested_opposites(fs)
        return
    policy, rules = cm.CedarPolicy(text), cm.leash_rules(text)
    for path in PATHS:
        for action, op, intent in ((cm.READ, "ro", fs.can_read), (cm.WRITE, "rw", fs.can_write)):
            cedar = policy.can(action, path)
            assert cm.leash_file(rules, op, path) is cedar, (path, op)
            if not fs_gap(fs, path):
                assert cedar is intent(path), (path, op)


# ------------------------------------------------------------------ exec
LONG_DIR = "/opt/" + "d" * 56  # 61 bytes: LONG_DIR/su still fits Leash's 64-byte rule paths, LONG_DIR/git does not
MANY_DIRS = ("/usr/bin", *(f"/s{i:02}" for i in range(1, 16)))  # 3 names x 16 + 16 bootstrap = 64 rules exactly
SEARCH_PATHS = (model.Exec().search_path, ("/usr/bin",), (LONG_DIR, "/usr/bin"), MANY_DIRS)
PROGRAMS = ("git", "gi", "sudo", "su", "/usr/bin/git", "/usr/bin/**", "/opt/**", "/opt/x", "/**")
BOOT = "/update-ca-certificates"  # Leash's bootstrap program, which the compiler permits in every search_path dir
EXEC_PATHS = (
    "/usr/bin/git", "/usr/bin/gi", "/usr/bin/gitk", "/usr/bin/sudo", "/usr/bin/su", "/usr/bin/sum",
    "/usr/sbin/su", "/usr/local/bin/git", "/opt/x", "/opt/xy", "/opt/y/z", "/bin/sh",
    "/usr/bin" + BOOT, LONG_DIR + "/su", LONG_DIR + "/git", LONG_DIR + BOOT, "/s01/git", "/s15" + BOOT,
)  # fmt: skip
# What the compiler says for each reason it must refuse (the first that applies, in the order it checks them).
EXEC_REFUSALS = {
    "long": "longer than 64 bytes",
    "tie": "same path with opposite effects",
    "shadow": "lies under",
    "count": f"loads at most {leash.MAX_EXEC_RULES}",
}


@st.composite
def execs(draw: st.DrawFn) -> model.Exec:
    allow = draw(st.lists(st.sampled_from(PROGRAMS), max_size=3, unique=True))
    # An entry in both lists is a tie; let one in five profiles have that, so that other conflicts show too.
    others = PROGRAMS if draw(st.integers(0, 4)) == 0 else tuple(p for p in PROGRAMS if p not in allow)
    deny = draw(st.lists(st.sampled_from(others), max_size=3, unique=True))
    return model.Exec(
        allow=tuple(allow),
        deny=tuple(deny),
        search_path=draw(st.sampled_from(SEARCH_PATHS)),
        where=Location(SOURCE, 0, "exec"),
        allow_where=tuple(located(allow, "exec.allow", 40)),
        deny_where=tuple(located(deny, "exec.deny", 50)),
    )


def note(text: str) -> None:
    if currently_in_test_context():
        event(text)


def exec_prefixes(programs: tuple[str, ...], search_path: tuple[str, ...]) -> set[str]:
    """The byte prefixes Leash matches: a name in each search_path dir, /dir/** as "/dir/", a path as itself."""
    return {base if not tree or base == "/" else base + "/" for base, tree in cm._program_paths(programs, search_path)}


def exec_refusal(ex: model.Exec) -> str | None:
    """Why no policy of one rule per entry can mean the same to Cedar (forbid wins) and Leash (longest prefix wins).

    - long: a prefix over 64 bytes, which Leash's kernel skips;
    - tie: a permit and a forbid on one prefix, which Leash applies in no defined order;
    - shadow: a permit strictly under a forbid that overrides a shorter permit (a forbid that only repeats the
      default deny may be left out, and then nothing conflicts);
    - count: more than 64 rules, counting Leash's bootstrap permits added where no profile rule covers them and
      forbids only where they override a permit or have no permit under them.
    """
    if not ex.restricted:
        return None
    allows, denies = exec_prefixes(ex.allow, ex.search_path), exec_prefixes(ex.deny, ex.search_path)
    if any(len(p.encode()) > leash.MAX_RULE_PATH_BYTES for p in allows | denies):
        return "long"
    if allows & denies:
        return "tie"
    rules = [(p, True) for p in allows] + [(p, False) for p in denies]

    def overrides_a_permit(prefix: str) -> bool:
        shorter = [r for r in rules if len(r[0]) < len(prefix) and prefix.startswith(r[0])]
        return bool(shorter) and max(shorter, key=lambda r: len(r[0]))[1]

    def permit_under(prefix: str) -> bool:
        return any(a != prefix and a.startswith(prefix) for a in allows)

    if any(overrides_a_permit(f) and permit_under(f) for f in denies):
        return "shadow"
    boot = {d.rstrip("/") + BOOT for d in ex.search_path}
    boot = {
        b for b in boot if len(b.encode()) <= leash.MAX_RULE_PATH_BYTES and not any(map(b.startswith, allows | denies))
    }
    forbids = {f for f in denies if overrides_a_permit(f) or not permit_under(f)}
    return "count" if len(allows | boot) + len(forbids) > leash.MAX_EXEC_RULES else None


def check_exec(ex: model.Exec) -> None:
    profile = make_profile(ex=ex)
    must = exec_refusal(ex)
    try:
        text = leash.compile_leash(profile)
    except NotEnforceable as error:
        assert_refused_with_location(error)
        assert must is not None, f"refused, but the profile has no conflict: {error}"
        assert EXEC_REFUSALS[must] in str(error), (must, str(error))
        note(f"exec refused: {must}")
        return
    assert must is None, f"accepted, but the profile has a conflict: {must}"
    note("exec accepted")
    policy, rules = cm.CedarPolicy(text), cm.leash_rules(text)
    exec_rules = [r for r in rules if r.op == "exec"]
    assert len(exec_rules) <= leash.MAX_EXEC_RULES
    assert all(len(r.target.encode()) <= leash.MAX_RULE_PATH_BYTES for r in exec_rules)
    for path in EXEC_PATHS:
        cedar = policy.can(cm.EXEC, path)
        assert cm.leash_exec(rules, path) is cedar, path
        if not cm.exec_byte_prefix_gap(profile, path) and not path.endswith(BOOT):
            assert cedar is cm.exec_intent(profile, path), path


@SETTINGS
@given(execs())
def test_exec_readings_agree_and_refusals_are_needed(ex):
    check_exec(ex)


# ------------------------------------------------------------------ network
LONG_HOST = "a" * 63 + "." + "b" * 60 + ".com"  # 128 bytes: Leash's transpiler rejects names of 128 bytes or more
HOST_RULES = (
    "*", "x.com", "x.com:80", "x.com:443", "*.x.com", "*.x.com:22", "api.x.com", "api.x.com:443", "*.api.x.com",
    "badx.com", "c.org", "1.2.3.4", "1.2.3.4:22", LONG_HOST,
)  # fmt: skip
# badx.com and badapi.x.com are the suffix traps of *.x.com and *.api.x.com; d.net matches no rule.
REQUEST_HOSTS = ("x.com", "api.x.com", "v1.api.x.com", "badx.com", "badapi.x.com", "c.org", "1.2.3.4", "d.net")
PORTS = (443, 80, 22)
REQUESTS = tuple(itertools.product(REQUEST_HOSTS, PORTS))
NETWORK_REFUSALS = {
    "long": (f"over {leash.MAX_HOSTNAME_BYTES} bytes",),
    "contradiction": ("contradict each other",),
    "conflict": ("overlap:", "cannot enforce a wildcard deny"),
}


@st.composite
def networks(draw: st.DrawFn) -> model.Network:
    allow = draw(st.lists(st.sampled_from(HOST_RULES), max_size=3, unique=True))
    if "*" not in allow and draw(st.integers(0, 3)) == 0:  # an open network in about one profile of four
        allow.insert(0, "*")
    deny = draw(st.lists(st.sampled_from(HOST_RULES), max_size=3, unique=True))
    parse = profiles.parse_host
    return model.Network(
        allow=tuple(parse(h, w) for h, w in zip(allow, located(allow, "network.allow", 60), strict=True)),
        deny=tuple(parse(h, w) for h, w in zip(deny, located(deny, "network.deny", 70), strict=True)),
    )


def naive_network_policy(net: model.Network) -> str:
    """One permit per allow, one forbid per deny (deny "*" next to an allowlist is its default, not a rule)."""

    def statement(effect: str, hosts: list[str]) -> str:
        items = ", ".join(f'Host::"{h}"' for h in hosts)
        return f'{effect} (principal, action == Action::"NetworkConnect", resource) when {{ resource in [{items}] }};'

    denies = [str(r) for r in net.deny if not r.is_any]
    return "\n".join(
        [statement("permit", [str(r) for r in net.allow])] + ([statement("forbid", denies)] if denies else [])
    )


def witnesses(net: model.Network) -> tuple[list[str], list[int]]:
    """Requests that reach every rule: the generated alphabet, each name, a subdomain and a suffix trap per wildcard."""
    hosts, ports = list(REQUEST_HOSTS), list(PORTS)
    for rule in net.allow + net.deny:
        if rule.is_wildcard:
            hosts += ["zz." + rule.host[2:], "zz" + rule.host[2:]]
        elif not rule.is_any:
            hosts.append(rule.host)
        ports += [rule.port] if rule.port else []
    return sorted(set(hosts)), sorted(set(ports))


def network_refusal(net: model.Network) -> set[str]:
    """Why no policy of one rule per entry can mean the same to Cedar and to Leash (empty: it can).

    - long: a name Leash's transpiler rejects; contradiction: allow "*" next to deny "*";
    - conflict: on some request, the Leash model of the one-rule-per-entry policy is order-dependent (kernel or
      proxy) or differs from Cedar beyond the documented gaps (cm.ConnectGap) - read with the proxy on 80/443 as
      Leash runs it, and as if it saw every port (a permit and a forbid that both match one connection).
    """
    if net.mode is model.NetworkMode.NONE:
        return set()  # "forbid everything": allowed hosts do not exist, so neither do conflicts
    reasons = set()
    if any(len(r.host.encode()) > leash.MAX_HOSTNAME_BYTES for r in net.allow + net.deny if not r.is_any):
        reasons.add("long")
    if net.mode is model.NetworkMode.OPEN and any(r.is_any for r in net.deny):
        reasons.add("contradiction")
    text = naive_network_policy(net)
    policy, rules = cm.CedarPolicy(text), cm.leash_rules(text)
    hosts, ports = witnesses(net)
    for host, port in itertools.product(hosts, ports):
        cedar = policy.can_connect(host, port)
        if any(cm.connect_disagreement(rules, cedar, host, port, seen) for seen in (cm.PROXY_PORTS, None)):
            return reasons | {"conflict"}
    return reasons


def check_network(net: model.Network) -> None:
    profile = make_profile(net=net)
    must = network_refusal(net)
    try:
        text = leash.compile_leash(profile)
    except NotEnforceable as error:
        assert_refused_with_location(error)
        assert must, f"refused, but the profile has no conflict: {error}"
        assert any(text in str(error) for reason in must for text in NETWORK_REFUSALS[reason]), (must, str(error))
        note(f"network refused: {sorted(must)}")
        return
    assert not must, f"accepted, but the profile has a conflict: {must}"
    note(f"network accepted ({net.mode.value})")
    policy, rules = cm.CedarPolicy(text), cm.leash_rules(text)
    for host, port in REQUESTS:
        cedar = policy.can_connect(host, port)
        for seen in (cm.PROXY_PORTS, None):
            problem = cm.connect_disagreement(rules, cedar, host, port, seen)
            assert problem is None, problem
        gaps = cm.connect_gaps(rules, host, port)
        for gap in gaps:
            note(f"network gap: {gap.name}")
        if cm.ConnectGap.SUFFIX_TRAP not in gaps:
            assert cedar is cm.host_intent(profile, host, port), (host, port)


@SETTINGS
@given(networks())
def test_network_cedar_and_leash_agree_and_refusals_are_needed(net):
    check_network(net)


def network(allow: tuple[str, ...], deny: tuple[str, ...] = ()) -> model.Network:
    parse = profiles.parse_host
    return model.Network(
        allow=tuple(parse(h, w) for h, w in zip(allow, located(list(allow), "network.allow", 60), strict=True)),
        deny=tuple(parse(h, w) for h, w in zip(deny, located(list(deny), "network.deny", 70), strict=True)),
    )


def test_the_documented_connect_gaps_happen_as_documented():
    def read(net: model.Network, host: str, port: int) -> tuple[bool, cm.ConnectReading, frozenset[cm.ConnectGap]]:
        text = leash.compile_leash(make_profile(net=net))
        rules = cm.leash_rules(text)
        return (
            cm.CedarPolicy(text).can_connect(host, port),
            cm.leash_connect(rules, host, port),
            cm.connect_gaps(rules, host, port),
        )

    allowlist = network(("*.x.com", "c.org"))
    # The kernel skips the wildcard: Cedar permits api.x.com, Leash denies it (default deny), on any port.
    for port in (443, 22):
        cedar, leash_reading, gaps = read(allowlist, "api.x.com", port)
        assert (cedar, leash_reading.kernel, leash_reading.decision) == (True, False, False)
        assert gaps == {cm.ConnectGap.KERNEL_SKIPS_WILDCARDS}
    # The suffix trap: Cedar (with this entity model) and the proxy both match badx.com; the profile did not mean it.
    cedar, leash_reading, gaps = read(allowlist, "badx.com", 443)
    assert (cedar, leash_reading.proxy, leash_reading.decision) == (True, True, False)
    assert cm.ConnectGap.SUFFIX_TRAP in gaps and not cm.host_intent(make_profile(net=allowlist), "badx.com", 443)
    # Under allow "*": the proxy's order decides between the permit and the forbid, the kernel's IP rule denies.
    cedar, leash_reading, gaps = read(network(("*",), ("x.com",)), "x.com", 443)
    assert (cedar, leash_reading.kernel, leash_reading.proxy, leash_reading.decision) == (False, False, None, False)
    assert gaps == {cm.ConnectGap.PROXY_ORDER_UNDER_ALLOW_ANY}


# ------------------------------------------------------------------ the properties catch a wrong compiler
def _keep_every_forbid(entries, ops):
    return [leash._Emit(e, op, e.effect(op)) for e in entries for op in ops if e.effect(op) is not None]


def _overlap_ignoring_ports(a, b):
    return a.is_any or b.is_any or leash._names_overlap(a.host, b.host)


# (module of the compiler package, function, mutant, ...): a mutant replaces the function where it is called from
MUTANTS = [
    pytest.param("prefixes", "_shadowed", lambda emits: [], execs, check_exec, id="exec-accepts-permit-under-forbid"),
    pytest.param("prefixes", "_ties", lambda entries: [], execs, check_exec, id="exec-accepts-equal-paths"),
    pytest.param("sections", "_check_count", lambda *args: None, execs, check_exec, id="exec-accepts-over-64-rules"),
    pytest.param("sections", "_check_path", lambda *args: None, execs, check_exec, id="exec-accepts-long-paths"),
    pytest.param("prefixes", "_emits", _keep_every_forbid, execs, check_exec, id="exec-refuses-redundant-forbids"),
    pytest.param("sections", "_check_overlaps", lambda *args: None, networks, check_network, id="net-accepts-overlaps"),
    pytest.param(
        "sections", "_check_open_denies", lambda *args: None, networks, check_network, id="net-accepts-wildcard-deny"
    ),
    pytest.param(
        "sections", "_hosts_overlap", _overlap_ignoring_ports, networks, check_network, id="net-refuses-disjoint-ports"
    ),
]
FIND = settings(
    max_examples=2000, phases=[Phase.generate], deadline=None, database=None, derandomize=True,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip


@pytest.mark.parametrize("module, name, mutant, strategy, check", MUTANTS)
def test_the_property_fails_for_a_mutated_compiler(monkeypatch, module, name, mutant, strategy, check):
    import importlib

    target = importlib.import_module(f"agent_sandbox.compilers.leash.{module}")
    assert hasattr(target, name), f"{module}.{name}: the mutant would replace nothing"
    monkeypatch.setattr(target, name, mutant)

    def violated(value: object) -> bool:
        try:
            check(value)
        except AssertionError:
            return True
        return False

    find(strategy(), violated, settings=FIND)  # raises NoSuchExample if the property never notices
