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
"""

from __future__ import annotations

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
