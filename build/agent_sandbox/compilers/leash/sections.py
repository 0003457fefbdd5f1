"""The three rule classes - filesystem, exec, network - each compiled into one Section (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from ... import egress
from ...errors import Location, NotEnforceable
from ...model import HostRule, NetworkMode, Profile
from .model import (
    BOOTSTRAP_DIRS,
    BOOTSTRAP_PROGRAMS,
    EXEC_OPS,
    FILE_OPEN,
    FILE_OPS,
    FILE_READ,
    FILE_WRITE,
    MAX_CONNECT_RULES,
    MAX_EXEC_RULES,
    MAX_FILE_RULES,
    MAX_HOSTNAME_BYTES,
    NETWORK_CONNECT,
    PROCESS_EXEC,
    Effect,
    Entry,
    Op,
    Rule,
    Section,
)
from .prefixes import (
    _UNRESTRICTED,
    _check_count,
    _check_path,
    _dedupe,
    _entity,
    _place,
    _resolve,
    _root_split,
    _rules,
    _with_bootstrap,
)


# ------------------------------------------------------------------ filesystem
def _fs_entries(profile: Profile) -> list[Entry]:
    fs = profile.filesystem
    kinds = (
        ("filesystem.allow", fs.write, Effect.PERMIT, Effect.PERMIT),
        ("filesystem.read", fs.read, Effect.PERMIT, Effect.FORBID),
        ("filesystem.deny", fs.deny, Effect.FORBID, Effect.FORBID),
    )
    entries = []
    for key, rules, read, write in kinds:
        for rule in rules:
            label = f'{key} "{rule}"'
            _check_path(rule.prefix, label, rule.where)
            entries.append(Entry(rule.prefix, ((Op.READ, read), (Op.WRITE, write)), label, rule.where))
    return _dedupe(entries)


def _fs_bootstrap(profile: Profile) -> list[Entry]:
    where = Location(profile.source, 0, "leash bootstrap")
    both = ((Op.READ, Effect.PERMIT), (Op.WRITE, Effect.PERMIT))
    return [Entry(d + "/", both, "Leash bootstrap (cmd/leash-entry)", where, bootstrap=True) for d in BOOTSTRAP_DIRS]


def _filesystem(profile: Profile) -> Section:
    if not profile.filesystem.restricted:
        rule = Rule(
            Effect.PERMIT, (FILE_OPEN, FILE_READ, FILE_WRITE), _entity("/"), "filesystem: no rules in the profile"
        )
        return Section("filesystem", _UNRESTRICTED, (rule,))
    entries = _fs_entries(profile)
    _resolve(entries, FILE_OPS, "filesystem", profile.source)
    entries, notes = _with_bootstrap(entries, _fs_bootstrap(profile), FILE_OPS, "filesystem")
    rules = _rules(_root_split(_resolve(entries, FILE_OPS, "filesystem", profile.source), entries, FILE_OPS))
    _check_count("filesystem", rules, MAX_FILE_RULES, "internal/lsm/bpf/lsm_open.bpf.c", profile.source)
    header: tuple[str, ...] = (
        "filesystem: Leash file_open LSM (internal/lsm/bpf/lsm_open.bpf.c). allow = read+write, read = read-only,",
        'deny = no access. Anything not permitted below is denied (no permit names "/" for every access mode).',
    )
    if any(rule.group == "read-root" for rule in rules):
        header += (
            'A read-only "/**" is spelled as one File:: prefix per first byte of a top-level name: a permit on "/"',
            'would make Leash allow every unmatched write too. Opening "/" itself and top-level names that start',
            "with other bytes are denied.",
        )
    return Section("filesystem", header + tuple(notes), tuple(rules))


# ------------------------------------------------------------------ exec
def _program_prefixes(program: str, search_path: Sequence[str]) -> list[str]:
    """A name becomes one path per search_path directory; `/dir/**` a directory; a path itself."""
    if program.startswith("/"):
        if program.endswith("/**"):
            return [program[:-2]]  # "/opt/**" -> "/opt/", "/**" -> "/"
        return [program]
    return [f"{directory.rstrip('/')}/{program}" for directory in search_path]


def _exec_entries(
    profile: Profile, programs: Sequence[str], wheres: Sequence[Location], key: str, effect: Effect
) -> list[Entry]:
    ex = profile.exec
    entries = []
    for i, program in enumerate(programs):
        label = f'{key} "{program}"'
        where = wheres[i] if i < len(wheres) else ex.where
        for prefix in _program_prefixes(program, ex.search_path):
            _check_path(prefix, label, where)
            entries.append(Entry(prefix, ((Op.EXEC, effect),), label, where))
    return entries


def _exec_bootstrap(profile: Profile) -> list[Entry]:
    where = Location(profile.source, 0, "leash bootstrap")
    return [
        Entry(prefix, ((Op.EXEC, Effect.PERMIT),), f'Leash bootstrap "{program}"', where, bootstrap=True)
        for program in BOOTSTRAP_PROGRAMS
        for prefix in _program_prefixes(program, profile.exec.search_path)
    ]


def _exec(profile: Profile) -> Section:
    ex = profile.exec
    if not ex.restricted:
        rule = Rule(Effect.PERMIT, (PROCESS_EXEC,), _entity("/"), "exec: no rules in the profile")
        return Section("exec", _UNRESTRICTED, (rule,))
    entries = _dedupe(
        _exec_entries(profile, ex.allow, ex.allow_where, "exec.allow", Effect.PERMIT)
        + _exec_entries(profile, ex.deny, ex.deny_where, "exec.deny", Effect.FORBID)
    )
    _resolve(entries, EXEC_OPS, "exec", profile.source)
    entries, notes = _with_bootstrap(entries, _exec_bootstrap(profile), EXEC_OPS, "exec")
    rules = _rules(_resolve(entries, EXEC_OPS, "exec", profile.source))
    _check_count("exec", rules, MAX_EXEC_RULES, "internal/lsm/bpf/lsm_exec.bpf.c", profile.source)
    header: tuple[str, ...] = (
        "exec: Leash bprm_check LSM (internal/lsm/bpf/lsm_exec.bpf.c) on the executable's resolved path.",
        f"Names are looked up in exec.search_path ({', '.join(ex.search_path)}) only; a copy elsewhere is not matched.",
        'Paths are byte prefixes: File::"/usr/bin/su" also matches /usr/bin/sum.',
    )
    return Section("exec", header + tuple(notes), tuple(rules))


# ------------------------------------------------------------------ network
def _host_entity(rule: HostRule | str) -> str:
    return f'Host::"{rule}"'


def _names_overlap(a: str, b: str) -> bool:
    """Could one name match the other under the proxy's plain-suffix wildcard?"""
    if a == b:
        return True
    for wild, name in ((a, b), (b, a)):
        if wild.startswith("*."):
            suffix = wild[2:]
            other = name.removeprefix("*.")
            if other.endswith(suffix) and (len(other) > len(suffix) or name.startswith("*.")):
                return True
    return False


def _hosts_overlap(a: HostRule, b: HostRule) -> bool:
    if a.is_any or b.is_any:
        return True
    if a.port is not None and b.port is not None and a.port != b.port:
        return False
    return _names_overlap(a.host, b.host)


def _network(profile: Profile) -> Section:
    net = profile.network
    if net.mode is NetworkMode.NONE:
        return _network_none(profile)
    denies = [r for r in net.deny if not r.is_any]
    _check_hosts(net.allow, "network.allow")
    _check_hosts(denies, "network.deny")
    if net.mode is NetworkMode.OPEN:
        _check_open_denies(net.deny)
        if not denies:
            everything = Rule(Effect.PERMIT, (NETWORK_CONNECT,), _host_entity("*"), "network: open, nothing denied")
            return Section("network", _UNRESTRICTED, (everything,))
    _check_overlaps([r for r in net.allow if not r.is_any], denies)
    rules = [
        Rule(Effect.PERMIT, (NETWORK_CONNECT,), _host_entity(r), f'network.allow "{r}" ({_place(r.where)})')
        for r in net.allow
    ]
    rules += [
        Rule(Effect.FORBID, (NETWORK_CONNECT,), _host_entity(r), f'network.deny "{r}" ({_place(r.where)})')
        for r in denies
    ]
    notes = _network_notes(net.mode, net.deny)
    if net.mode is NetworkMode.PROXIED:
        proxy_rule, proxy_note = _egress_proxy(denies)
        rules += [proxy_rule] if proxy_rule else []
        notes += (proxy_note,) if proxy_note else ()
    if len(rules) > MAX_CONNECT_RULES:
        over = [*net.allow, *denies][min(MAX_CONNECT_RULES, len(net.allow) + len(denies) - 1)]
        raise NotEnforceable(
            f'"{over}": the network class needs {len(rules)} Leash rules, Leash loads at most {MAX_CONNECT_RULES} '
            "IP rules (internal/lsm/net_connect.go), and every host name may resolve to several",
            over.where,
        )
    return Section("network", notes, tuple(rules))


def _network_none(profile: Profile) -> Section:
    notes = (
        'network: none. Leash\'s connect class must have a rule to be enforced at all; `forbid Host::"*"` makes its',
        "default an explicit deny (cedar_to_leash.go applyConnectDefaults) and denies every host in Cedar too.",
    )
    where = Location(profile.source, 0, "network.allow")
    rule = Rule(Effect.FORBID, (NETWORK_CONNECT,), _host_entity("*"), f"network.allow is empty ({_place(where)})")
    return Section("network", notes, (rule,))


def _check_hosts(rules: Sequence[HostRule], key: str) -> None:
    for rule in rules:
        if len(rule.host.encode()) > MAX_HOSTNAME_BYTES:
            raise NotEnforceable(
                f'{key} "{rule}": Leash refuses host names over {MAX_HOSTNAME_BYTES} bytes', rule.where
            )


def _check_overlaps(allows: Sequence[HostRule], denies: Sequence[HostRule]) -> None:
    """A permit and a forbid that can match one connection: Leash picks either, Cedar the forbid."""
    for allowed in allows:
        for denied in denies:
            if _hosts_overlap(allowed, denied):
                raise NotEnforceable(
                    f'network.allow "{allowed}" ({_place(allowed.where)}) and network.deny "{denied}" '
                    f"({_place(denied.where)}) overlap: Leash's proxy takes the first matching rule in no defined "
                    "order and its kernel the first IP/port rule, while Cedar lets the forbid win; make them disjoint",
                    denied.where,
                )


def _egress_proxy(denies: Sequence[HostRule]) -> tuple[Rule | None, str | None]:
    """With HTTP(S)_PROXY set, Leash's kernel sees connections to the egress proxy: permit it, unless denied."""
    proxy = HostRule(egress.PROXY_HOST, egress.PROXY_PORT)
    blocker = next((d for d in denies if _hosts_overlap(proxy, d)), None)
    if blocker is not None:
        return None, f'The egress proxy {proxy} is NOT permitted: network.deny "{blocker}" ({_place(blocker.where)}).'
    return Rule(Effect.PERMIT, (NETWORK_CONNECT,), _host_entity(proxy), "the egress proxy (egress.py)"), None


def _check_open_denies(deny: Sequence[HostRule]) -> None:
    for rule in deny:
        if rule.is_any:
            raise NotEnforceable('network.allow "*" and network.deny "*" contradict each other; drop one', rule.where)
        if rule.is_wildcard:
            raise NotEnforceable(
                f'network.deny "{rule}": under allow "*" Leash cannot enforce a wildcard deny: its kernel skips '
                'wildcard names and its proxy checks the deny and Host::"*" in no defined order; list host names',
                rule.where,
            )


def _network_notes(mode: NetworkMode, deny: Sequence[HostRule]) -> tuple[str, ...]:
    if mode is NetworkMode.OPEN:
        return (
            'network: open. `permit Host::"*"` makes Leash default-allow; each deny is a kernel IPv4 rule (names are',
            "resolved once when Leash loads the policy); on 80/443 Leash's proxy weighs it against the permit in no",
            "defined order, so the kernel rule is what holds. IPv6 is not enforced.",
        )
    marker = ' (network.deny "*" is that default, not a rule)' if any(r.is_any for r in deny) else ""
    return (
        f"network: proxied allowlist. Anything not permitted is denied{marker}:",
        'the class has rules and no Host::"*" permit. No `forbid Host::"*"` is emitted: Cedar would let it beat',
        "every permit below. The kernel enforces IPv4 only, resolves names once at load and skips wildcard names",
        "(so it refuses wildcard hosts); the proxy matches names on ports 80/443. With HTTP(S)_PROXY set,",
        "connections go to the egress proxy, which is therefore permitted too.",
    )
