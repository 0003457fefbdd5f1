"""For generated profiles: what the compiler accepts, the Cedar engine, Leash's longest-prefix walk and the
profile's own intent decide alike; what it refuses, it refuses with a location.

Paths come from a small alphabet whose names are byte prefixes of one another (a, ab), so the generator hits
Leash's byte-prefix matching and every nesting of allow/read/deny. The places where Leash cannot say what the
profile says are excluded from the intent check only (never from the Cedar == Leash check):
- a directory rule's own path (/a for a rule /a/**): Dir::"/a/" does not match /a;
- a path under a file rule (/ab and /a/b for a rule /a): File::"/a" is a byte prefix.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cedar_model as cm
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
        lists[key] = tuple(model.PathRule(p, tree or p == "/", w) for (p, tree), w in zip(raw, wheres))
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
PROGRAMS = ("git", "gi", "sudo", "su", "/usr/bin/git", "/usr/bin/**", "/opt/**", "/opt/x", "/**")
EXEC_PATHS = (
    "/usr/bin/git", "/usr/bin/gi", "/usr/bin/gitk", "/usr/bin/sudo", "/usr/bin/su", "/usr/bin/sum",
    "/usr/sbin/su", "/usr/local/bin/git", "/opt/x", "/opt/xy", "/opt/y/z", "/bin/sh",
)  # fmt: skip


@st.composite
def execs(draw: st.DrawFn) -> model.Exec:
    allow = draw(st.lists(st.sampled_from(PROGRAMS), max_size=3, unique=True))
    deny = draw(st.lists(st.sampled_from(PROGRAMS), max_size=3, unique=True))
    return model.Exec(
        allow=tuple(allow),
        deny=tuple(deny),
        where=Location(SOURCE, 0, "exec"),
        allow_where=tuple(located(allow, "exec.allow", 40)),
        deny_where=tuple(located(deny, "exec.deny", 50)),
    )


@SETTINGS
@given(execs())
def test_exec_readings_agree(ex):
    profile = make_profile(ex=ex)
    try:
        text = leash.compile_leash(profile)
    except NotEnforceable as error:
        assert_refused_with_location(error)
        return
    policy, rules = cm.CedarPolicy(text), cm.leash_rules(text)
    for path in EXEC_PATHS:
        cedar = policy.can(cm.EXEC, path)
        assert cm.leash_exec(rules, path) is cedar, path
        if not cm.exec_byte_prefix_gap(profile, path):
            assert cedar is cm.exec_intent(profile, path), path


# ------------------------------------------------------------------ network
HOSTS = ("a.com", "*.a.com", "b.a.com:443", "c.org", "1.2.3.4", "*")
REQUESTS = tuple(itertools.product(("a.com", "b.a.com", "xa.com", "c.org", "1.2.3.4", "d.net"), (443, 22)))


@st.composite
def networks(draw: st.DrawFn) -> model.Network:
    allow = draw(st.lists(st.sampled_from(HOSTS), max_size=3, unique=True))
    deny = draw(st.lists(st.sampled_from(HOSTS), max_size=2, unique=True))
    parse = profiles.parse_host
    return model.Network(
        allow=tuple(parse(h, w) for h, w in zip(allow, located(allow, "network.allow", 60))),
        deny=tuple(parse(h, w) for h, w in zip(deny, located(deny, "network.deny", 70))),
    )


def suffix_gap(net: model.Network, host: str) -> bool:
    """The Leash proxy's `*.a.com` also matches xa.com: a plain suffix, not a subdomain."""
    return any(
        r.is_wildcard and host.endswith(r.host[2:]) and not host.endswith(r.host[1:]) for r in net.allow + net.deny
    )


@SETTINGS
@given(networks())
def test_network_cedar_decides_the_profiles_intent(net):
    profile = make_profile(net=net)
    try:
        text = leash.compile_leash(profile)
    except NotEnforceable as error:
        assert_refused_with_location(error)
        return
    policy = cm.CedarPolicy(text)
    for host, port in REQUESTS:
        if not suffix_gap(net, host):
            assert policy.can_connect(host, port) is cm.host_intent(profile, host, port), (host, port)
