"""Two readings of a compiled Leash policy, for tests: the real Cedar engine and a model of Leash itself.

Cedar reading (cedarpy, the Rust engine). Leash matches byte prefixes; Cedar has only `in` (entity ancestry), so a
request is turned into entities whose ancestors are exactly what Leash's prefix match would hit:

- a path P is the resource File::"P"; its parents are, for every proper byte prefix q of P, Dir::"q" if q ends
  with "/" and File::"q" otherwise. So `resource in [Dir::"/workspace/"]` is Leash's match of the prefix
  "/workspace/", and `resource in [File::"/etc/shadow"]` also holds for /etc/shadow- (Leash compares bytes, not
  path components: internal/lsm/bpf/lsm_open.bpf.c simple_string_starts_with). A directory's own path (/x) is
  not under Dir::"/x/", as in Leash.
- a connection to host:port is the resource Host::"host:port" with parents Host::"host", Host::"*" and, for every
  proper suffix s of the host name, Host::"*.s" and Host::"*.s:port": the Leash proxy's plain suffix match
  (internal/lsm/net_connect.go CheckConnect), so *.cursor.com also covers badcursor.com.
- actions are FileOpenReadOnly / FileOpenReadWrite (the kernel's open:ro / open:rw), ProcessExec, NetworkConnect;
  the principal is User::"agent" (Leash ignores principals). Opens with neither read nor write mode (Leash's bare
  `open` op) are not modelled.

Leash reading (`leash_file`, `leash_exec`): the policy is transpiled the way internal/transpiler/cedar_to_leash.go
does (one rule per action and resource), then evaluated like lsm_open.bpf.c / lsm_exec.bpf.c: rules sorted by
path length, the longest rule whose path is a byte prefix and whose op is `open` or the access decides; equal
lengths come in no defined order (reported as None when they disagree); no match -> the class default, which is
ALLOW iff some allow rule has the path "/" (file_open.go checkRootPathPolicy); a class without rules is not
enforced (allowed).

Leash reading of NetworkConnect (`leash_connect`): two layers, both from the transpiled rules.
- The kernel (internal/lsm/net_connect.go LoadPolicies + bpf/lsm_connect.bpf.c check_connect_policy) sees IPv4
  address and port only. Host names are resolved once when the policy loads - in this model a name is its own
  address, so names never collide (real DNS can: see the gaps) - wildcard names are skipped, `permit Host::"*"`
  only sets the default, `forbid Host::"*"` does not resolve and is dropped. Rules are sorted by port, then
  address, and the first match decides: a port-less rule on an address beats a port rule on it; equal
  (port, address) rules come in no defined order (None when they disagree).
- The MITM proxy (iptables redirects TCP 80/443; internal/proxy/proxy.go -> SimplePolicyChecker.CheckConnect)
  sees the host name (SNI or Host header; the address for an IP literal), the original address and port. It
  takes the first matching rule in the transpiled order, which comes from a Go map (cedar_to_leash.go
  TranspilePolicySet ranges over nativePolicySet.Map()): random, so None when matching rules disagree. `*.x.com`
  matches any longer name ending in "x.com" (plain suffix: badx.com too); `*` matches every name.
- Both default to ALLOW iff some `permit Host::"*"` and no `forbid Host::"*"` (cedar_to_leash.go
  applyConnectDefaults; net_connect.go). A connection to 80/443 must pass both layers; others only the kernel.
Where Leash cannot say what Cedar says, the difference is a named `ConnectGap`, never silently skipped.
"""

from __future__ import annotations

import enum
import ipaddress
import json
from collections.abc import Iterable, Sequence

import attrs
import cedarpy

from agent_sandbox.model import Profile

READ, WRITE, EXEC, CONNECT = "FileOpenReadOnly", "FileOpenReadWrite", "ProcessExec", "NetworkConnect"
PRINCIPAL = {"type": "User", "id": "agent"}
_OPS = {"FileOpen": "open", READ: "ro", WRITE: "rw", EXEC: "exec", CONNECT: "connect"}


# ------------------------------------------------------------------ Cedar reading
def _uid(kind: str, ident: str) -> dict[str, str]:
    return {"type": kind, "id": ident}


def path_entity(path: str) -> tuple[dict[str, str], list[dict]]:
    parents = [_uid("Dir" if path[:i].endswith("/") else "File", path[:i]) for i in range(1, len(path))]
    return _uid("File", path), [{"uid": _uid("File", path), "attrs": {}, "parents": parents}]


def host_entity(host: str, port: int) -> tuple[dict[str, str], list[dict]]:
    parents = [_uid("Host", host), _uid("Host", "*")]
    for i in range(1, len(host)):
        parents += [_uid("Host", f"*.{host[i:]}"), _uid("Host", f"*.{host[i:]}:{port}")]
    ident = f"{host}:{port}"
    return _uid("Host", ident), [{"uid": _uid("Host", ident), "attrs": {}, "parents": parents}]


class CedarPolicy:
    """The real Cedar engine over a compiled policy, with the entity model above."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.policies = cedarpy.PolicySet.from_str(text)

    def _allows(self, action: str, resource: dict[str, str], entities: list[dict]) -> bool:
        request = {"principal": PRINCIPAL, "action": _uid("Action", action), "resource": resource, "context": {}}
        result = cedarpy.is_authorized(request, self.policies, entities)
        assert not list(result.diagnostics.errors), list(result.diagnostics.errors)
        return result.decision == cedarpy.Decision.Allow

    def can(self, action: str, path: str) -> bool:
        return self._allows(action, *path_entity(path))

    def can_connect(self, host: str, port: int) -> bool:
        return self._allows(CONNECT, *host_entity(host, port))


# ------------------------------------------------------------------ Leash reading
@attrs.frozen
class LeashRule:
    allow: bool
    op: str  # open | ro | rw | exec | connect
    target: str  # a path ("/x/" for Dir) or a host[:port]


def leash_rules(text: str) -> list[LeashRule]:
    """Transpile like cedar_to_leash.go: one rule per action and resource from `resource in [...]`."""
    doc = json.loads(cedarpy.policies_to_json_str(text))
    rules = []
    for policy in doc["staticPolicies"].values():
        assert policy["principal"] == {"op": "All"}, "Leash ignores principal constraints"
        actions = policy["action"].get("entities") or [policy["action"]["entity"]]
        targets = []
        for condition in policy["conditions"]:
            assert condition["kind"] == "when", "Leash reads `unless` as `when`"
            for item in condition["body"]["in"]["right"]["Set"]:
                entity = item["Value"]["__entity"]
                targets.append(entity["id"])
        assert targets, "Leash skips a policy without resources"
        for action in actions:
            rules += [LeashRule(policy["effect"] == "permit", _OPS[action["id"]], t) for t in targets]
    return rules


def _walk(rules: Sequence[LeashRule], path: str, default: bool) -> bool | None:
    """The kernel's walk: the longest rule whose path is a byte prefix decides; none -> the class default."""
    matching = [r for r in rules if path.startswith(r.target) and len(r.target.encode()) <= 64]
    if not matching:
        return default
    longest = max(len(r.target) for r in matching)
    effects = {r.allow for r in matching if len(r.target) == longest}
    return effects.pop() if len(effects) == 1 else None


def _default(rules: Sequence[LeashRule]) -> bool:
    """ALLOW iff an allow rule of the class names "/", whatever its op (checkRootPathPolicy)."""
    return any(r.allow and r.target == "/" for r in rules)


def leash_file(rules: Iterable[LeashRule], op: str, path: str) -> bool | None:
    """op is "ro" or "rw"; a rule with op `open` applies to every access (lsm_open.bpf.c check_path_policy)."""
    file_rules = [r for r in rules if r.op in ("open", "ro", "rw")]
    if not file_rules:
        return True  # class not enforced (manager.go)
    return _walk([r for r in file_rules if r.op in ("open", op)], path, _default(file_rules))


def leash_exec(rules: Iterable[LeashRule], path: str) -> bool | None:
    exec_rules = [r for r in rules if r.op == "exec"]
    if not exec_rules:
        return True
    return _walk(exec_rules, path, _default(exec_rules))


# ------------------------------------------------------------------ Leash reading: network
PROXY_PORTS = frozenset({80, 443})  # internal/assets/apply-iptables.sh: nat OUTPUT REDIRECT --dport 80 / 443


@attrs.frozen
class ConnectRule:
    """One transpiled connect rule (cedar_to_leash.go buildConnectRule): an address or a name, port 0 = any."""

    allow: bool
    name: str  # host name pattern ("" for an address rule): "x.com", "*.x.com" or "*"
    address: str  # IPv4 literal ("" for a name rule)
    port: int

    @property
    def wildcard(self) -> bool:
        return self.name.startswith("*.")

    @property
    def kernel_address(self) -> str | None:
        """The address the kernel loads this rule for (a name resolves to itself here); None if it skips it."""
        if self.address:
            return self.address
        if self.wildcard or self.name == "*":  # wildcards skipped; "*" sets the default or fails to resolve
            return None
        return self.name

    def proxy_matches(self, host: str, port: int) -> bool:
        """SimplePolicyChecker.CheckConnect's test for one rule; the request's address is `host` itself."""
        if self.address and self.address != host:
            return False
        if self.port and self.port != port:
            return False
        if not self.name:
            return True
        if self.wildcard:
            suffix = self.name[2:]
            return host.endswith(suffix) and len(host) > len(suffix)
        return self.name in (host, "*")


def connect_rules(rules: Iterable[LeashRule]) -> list[ConnectRule]:
    out = []
    for rule in rules:
        if rule.op != "connect":
            continue
        host, _, port_text = rule.target.partition(":")  # strings.SplitN(hostname, ":", 2)
        port = int(port_text) if port_text.isdigit() and int(port_text) < 65536 else 0
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            out.append(ConnectRule(rule.allow, host, "", port))
        else:
            out.append(ConnectRule(rule.allow, "", host, port))
    return out


def _one(effects: set[bool]) -> bool | None:
    return effects.pop() if len(effects) == 1 else None


@attrs.frozen
class ConnectReading:
    kernel: bool | None  # None: equal (port, address) rules disagree
    proxy: bool | None  # None: matching rules disagree, so the random rule order decides
    proxied: bool  # the port is redirected to the proxy, which must allow too

    @property
    def decision(self) -> bool | None:
        layers = [self.kernel, self.proxy] if self.proxied else [self.kernel]
        if False in layers:
            return False
        return None if None in layers else True


def leash_connect(
    rules: Iterable[LeashRule], host: str, port: int, proxy_ports: frozenset[int] | None = PROXY_PORTS
) -> ConnectReading:
    """Leash's decision on connecting to host:port. proxy_ports=None reads as if the proxy saw every port."""
    conn = connect_rules(rules)
    deny_any = any(not r.allow and r.name == "*" and not r.port for r in conn)
    default = not deny_any and any(r.allow and r.name == "*" and not r.port for r in conn)
    # The kernel: rules on this address, port-less ones first (sort by port); `permit Host::"*:P"` would also
    # make the kernel default ALLOW (LoadPolicies ignores its port) - the compiler never writes one.
    kernel_default = not deny_any and any(r.allow and r.name == "*" for r in conn)
    kernel: bool | None = kernel_default
    for group_port in (0, port):
        effects = {r.allow for r in conn if r.kernel_address == host and r.port == group_port}
        if effects:
            kernel = _one(effects)
            break
    effects = {r.allow for r in conn if r.proxy_matches(host, port)}
    proxy = _one(effects) if effects else default
    return ConnectReading(kernel, proxy, proxy_ports is None or port in proxy_ports)


class ConnectGap(enum.Enum):
    """Where Leash cannot enforce what the Cedar text says: expected divergences, each with its direction."""

    KERNEL_SKIPS_WILDCARDS = (
        "net_connect.go LoadPolicies skips `*.x` names, so a wildcard permit never opens the kernel: Leash denies "
        "(default deny, unless another rule admits the address) what Cedar permits. Safe direction only."
    )
    SUFFIX_TRAP = (
        "CheckConnect's `*.x.com` is a plain suffix match, so badx.com matches too. The Cedar entity model here "
        "follows the proxy, so Cedar and the proxy agree with each other and both differ from the profile's "
        'intent (subdomains only); the kernel still denies it unless a permit Host::"*" opens the default.'
    )
    PROXY_ORDER_UNDER_ALLOW_ANY = (
        'Under `permit Host::"*"` (the only way to make Leash\'s proxy default-allow) the proxy meets that permit '
        "and a forbid on a name or address in random order; the kernel's IP rule for the forbid is what enforces "
        "it. Names resolved at load only: a name whose address changes later is then up to the rule order."
    )


# Not modelled, so not tested here (documented limits of Leash, not of a compiled policy): distinct names that
# share an address (CDNs) meet in the kernel as equal (port, address) rules; DNS answers that change after the
# policy loads; IPv6 (lsm_connect.bpf.c lets AF_INET6 through); names longer than 127 bytes (the transpiler drops
# that resource with an error, cedar_to_leash.go convertPolicy; the compiler refuses them).


def connect_gaps(rules: Iterable[LeashRule], host: str, port: int) -> frozenset[ConnectGap]:
    """The documented gaps that touch the request host:port."""
    matching = [r for r in connect_rules(rules) if r.proxy_matches(host, port)]
    gaps = set()
    if any(r.allow and r.wildcard for r in matching):
        gaps.add(ConnectGap.KERNEL_SKIPS_WILDCARDS)
    if any(r.wildcard and not host.endswith(r.name[1:]) for r in matching):
        gaps.add(ConnectGap.SUFFIX_TRAP)
    permits = [r for r in matching if r.allow]
    forbids = [r for r in matching if not r.allow]
    kernel_forbids = all(r.kernel_address is not None for r in forbids)
    if permits and forbids and all(r.name == "*" for r in permits) and kernel_forbids:
        gaps.add(ConnectGap.PROXY_ORDER_UNDER_ALLOW_ANY)
    return frozenset(gaps)


def connect_disagreement(
    rules: Sequence[LeashRule], cedar: bool, host: str, port: int, proxy_ports: frozenset[int] | None = PROXY_PORTS
) -> str | None:
    """Why Leash would not decide host:port as Cedar does, beyond the documented gaps; None if it would."""
    reading = leash_connect(rules, host, port, proxy_ports)
    gaps = connect_gaps(rules, host, port)
    where = f"{host}:{port}"
    if reading.kernel is None:
        return f"{where}: the kernel has equal (port, address) rules with opposite effects"
    if reading.proxied:
        if reading.proxy is None and ConnectGap.PROXY_ORDER_UNDER_ALLOW_ANY not in gaps:
            return f"{where}: the proxy's matching rules disagree and their order is random"
        if reading.proxy is not None and reading.proxy is not cedar:
            return f"{where}: the proxy says {reading.proxy}, Cedar {cedar}"
    decision = reading.decision
    if decision is None:
        return f"{where}: Leash's decision depends on the rule order"
    if decision is not cedar and not (cedar and ConnectGap.KERNEL_SKIPS_WILDCARDS in gaps):
        return f"{where}: Leash says {decision} (kernel {reading.kernel}), Cedar {cedar}"
    return None


# ------------------------------------------------------------------ the profile's intent
def _program_paths(programs: Sequence[str], search_path: Sequence[str]) -> list[tuple[str, bool]]:
    """(path, is_tree) for exec entries: names live in each search_path directory."""
    out = []
    for program in programs:
        if program.startswith("/"):
            out.append((program[:-3] or "/", True) if program.endswith("/**") else (program, False))
        else:
            out += [(f"{d.rstrip('/')}/{program}", False) for d in search_path]
    return out


def _covers(rule: tuple[str, bool], path: str) -> bool:
    base, tree = rule
    if not tree:
        return path == base
    return base == "/" or path == base or path.startswith(base + "/")


def exec_intent(profile: Profile, path: str) -> bool:
    """Longest matching entry (a denial wins a tie), default deny: as model.Filesystem does for paths."""
    ex = profile.exec
    if not ex.restricted:
        return True
    best: tuple[int, bool] | None = None
    for programs, allowed in ((ex.deny, False), (ex.allow, True)):
        for rule in _program_paths(programs, ex.search_path):
            if _covers(rule, path):
                score = len(rule[0]) + (1 if rule[1] and rule[0] != "/" else 0)
                if best is None or score > best[0]:
                    best = (score, allowed)
    return best[1] if best else False


def exec_byte_prefix_gap(profile: Profile, path: str) -> bool:
    """True where Leash's byte-prefix match differs from the entry's meaning (File::"/usr/bin/su" vs sum)."""
    ex = profile.exec
    rules = _program_paths(ex.allow + ex.deny, ex.search_path)
    return any(not tree and path != base and path.startswith(base) for base, tree in rules) or any(
        tree and path == base and base != "/" for base, tree in rules
    )


def host_intent(profile: Profile, host: str, port: int) -> bool:
    """allow/deny host rules; a wildcard means proper subdomains (at a dot); deny "*" is the default marker."""

    def matches(rule_host: str, rule_port: int | None) -> bool:
        if rule_port is not None and rule_port != port:
            return False
        if rule_host == "*":
            return True
        if rule_host.startswith("*."):
            return host.endswith(rule_host[1:])
        return host == rule_host

    net = profile.network
    if not net.allow:
        return False
    if any(matches(r.host, r.port) for r in net.deny if not r.is_any):
        return False
    return any(matches(r.host, r.port) for r in net.allow)
