"""Compile a profile into the Cedar dialect StrongDM Leash enforces (pure).

Leash parses Cedar with cedar-go and transpiles it to kernel (eBPF LSM) and proxy rules; it does not evaluate
Cedar. What its source does (strongdm/leash, read at 61c46b2; paths below are in that repository):

- `internal/transpiler/cedar_to_leash.go`: every `permit`/`forbid` becomes one rule per (action, resource);
  `FileOpen` -> op open (any mode), `FileOpenReadOnly` -> open:ro, `FileOpenReadWrite` -> open:rw,
  `ProcessExec` -> exec, `NetworkConnect` -> connect. Resources come from the head or from
  `when { resource in [...] }`; a policy without a resource is skipped with a warning; `unless` bodies are
  read as if they were `when` (so we never emit them). Policies come out of a Go map: their order is random.
- `internal/lsm/file_open.go`, `proc_exec.go`: rules are sorted by path length, longest first (`sort.Slice`,
  so equal lengths end up in any order); `checkRootPathPolicy` makes the class default ALLOW when any allow
  rule of the class has the path "/" - whatever its operation - and default DENY otherwise. The default is one
  value per class, not per operation: `permit FileOpenReadOnly on Dir::"/"` would also allow every write that
  no other rule matches. `internal/lsm/manager.go`: a class with no rules is not enforced at all.
- `internal/lsm/bpf/lsm_open.bpf.c` `check_path_policy`: the first (longest) rule whose path is a byte prefix of
  the opened path and whose op is `open` or equals the access (`open:ro` for read-only `f_mode`, `open:rw` for
  any write mode) decides. Rules longer than 64 bytes are skipped; at most 256 rules (`MAX_POLICY_RULES`).
  Processes named `apt-get`, `dpkg*` or `update*` are always allowed (a bypass we can only document).
- `internal/lsm/bpf/lsm_exec.bpf.c` `check_exec_policy`: the same longest-prefix walk over the resolved path
  of the executable (`bpf_d_path`), at most 64 rules.
- `internal/transpiler/cedar_to_leash.go` `applyConnectDefaults` + `internal/lsm/net_connect.go`: connect is
  default-deny unless `Host::"*"` is permitted; `forbid Host::"*"` makes the default an explicit deny. The
  kernel sees IPv4 only (`lsm_connect.bpf.c` lets AF_INET6 through), resolves host names once when the policy is
  loaded, skips wildcard names, and takes the first IP/port rule that matches (sorted by port, then IP). The
  MITM proxy (ports 80/443) checks names with `SimplePolicyChecker.CheckConnect`: first match in the (random)
  policy order, wildcards by plain suffix (`*.x.com` also matches `badx.com`).

Cedar's own reading differs: forbid always wins and anything not permitted is denied. This compiler emits only
rules on which both readings agree (and refuses, naming both rules, where they cannot), so the text means the
same thing to a person, to the cedar engine and to Leash:

- a forbid is emitted only where it overrides a shorter permit, or where no permit lies under it;
- a permit strictly under such a forbid, or two opposite rules on the same path, is refused;
- a permit on "/" is emitted only if every operation of the class has a rule on "/"; a read-only "/**" is
  spelled as one prefix per possible first byte of a top-level name (`READ_ROOT_BYTES`), so that writes stay
  default-deny in Leash as they are in Cedar;
- `FileOpen` appears only next to both `FileOpenReadOnly` and `FileOpenReadWrite` with the same effect (Leash
  applies a `FileOpen` rule to every access mode; Cedar matches it only for the action `FileOpen`).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Sequence
from pathlib import PurePath

import attrs

from .. import egress
from ..errors import Location, NotEnforceable
from ..model import HostRule, NetworkMode, Profile

# Leash's limits (rules per class after transpiling: one per action and resource).
MAX_FILE_RULES = 256  # internal/lsm/bpf/lsm_open.bpf.c MAX_POLICY_RULES; file_open.go MaxPolicyRules
MAX_EXEC_RULES = 64  # internal/lsm/bpf/lsm_exec.bpf.c MAX_POLICY_RULES; proc_exec.go MaxExecPolicyRules
MAX_CONNECT_RULES = 256  # internal/lsm/net_connect.go MaxConnectPolicyRules (counted after DNS expansion)
MAX_RULE_PATH_BYTES = 64  # lsm_open.bpf.c / lsm_exec.bpf.c skip rules with path_len > 64
MAX_HOSTNAME_BYTES = 127  # cedar_to_leash.go buildConnectRule: "hostname too long" at 128

GENERATOR = "agent-sandbox compilers/leash.py"

FILE_OPEN = "FileOpen"
FILE_READ = "FileOpenReadOnly"
FILE_WRITE = "FileOpenReadWrite"
PROCESS_EXEC = "ProcessExec"
NETWORK_CONNECT = "NetworkConnect"

# Leash's own bootstrap inside the agent container (cmd/leash-entry/main.go): it copies its CA into
# /usr/local/share/ca-certificates, runs update-ca-certificates (which writes /etc/ssl/certs) and writes
# /leash/bootstrap.ready. Under a restrictive policy these must stay possible.
BOOTSTRAP_DIRS = ("/etc/ssl/certs", "/leash", "/usr/local/share/ca-certificates")
BOOTSTRAP_PROGRAMS = ("update-ca-certificates",)

# The POSIX portable filename characters: a read-only "/**" becomes File::"/<c>" for each of them.
READ_ROOT_BYTES = "-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"

_BAD_PATH_CHARS = frozenset('"\\') | frozenset(chr(c) for c in range(0x20)) | {"\x7f"}


class Effect(enum.Enum):
    PERMIT = "permit"
    FORBID = "forbid"


class Op(enum.Enum):
    """An access the kernel classifies; the value is the Cedar action that names it."""

    READ = FILE_READ
    WRITE = FILE_WRITE
    EXEC = PROCESS_EXEC


FILE_OPS = (Op.READ, Op.WRITE)
EXEC_OPS = (Op.EXEC,)


@attrs.frozen
class Entry:
    """One path-prefix rule as the profile states it, with its effect per operation."""

    prefix: str  # the byte prefix Leash matches: "/x/" for a directory tree, "/x" for a file
    effects: tuple[tuple[Op, Effect], ...]
    label: str  # what the profile says, e.g. 'filesystem.allow "/workspace/**"'
    where: Location
    bootstrap: bool = False
    group: str = ""  # "read-root" for the first-byte prefixes that spell a read-only "/**"

    def effect(self, op: Op) -> Effect | None:
        return dict(self.effects).get(op)

    @property
    def all_forbid(self) -> bool:
        return all(effect is Effect.FORBID for _, effect in self.effects)

    def covers(self, prefix: str) -> bool:
        """True if this rule's prefix is a byte prefix of `prefix` (Leash's match)."""
        return prefix.startswith(self.prefix)


@attrs.frozen
class Rule:
    """One Cedar (effect, actions, resource); Leash makes one kernel/proxy rule per action."""

    effect: Effect
    actions: tuple[str, ...]
    resource: str  # a Cedar entity literal, e.g. Dir::"/workspace/"
    label: str
    group: str = ""  # rules of one group share a policy statement and a comment
    where: Location = attrs.field(default=Location("<built-in>"), eq=False)
    bootstrap: bool = attrs.field(default=False, eq=False)


@attrs.frozen
class Section:
    name: str  # filesystem | exec | network
    notes: tuple[str, ...]  # comment lines explaining the class
    rules: tuple[Rule, ...]

    @property
    def enforced(self) -> bool:
        """Leash enforces (and logs) a class only if it has at least one rule."""
        return bool(self.rules)

    @property
    def leash_rules(self) -> int:
        return sum(len(rule.actions) for rule in self.rules)


@attrs.frozen
class LeashPolicy:
    profile: str
    lineage: tuple[str, ...]
    source: str  # file name only, so the output does not depend on where the checkout lives
    sections: tuple[Section, ...]

    def section(self, name: str) -> Section:
        return next(s for s in self.sections if s.name == name)


# ------------------------------------------------------------------ helpers
def _place(where: Location) -> str:
    """file:line with the file's name only (deterministic across checkouts)."""
    name = PurePath(str(where.file)).name
    return f"{name}:{where.line}" if where.line else name


def _cite(entry: Entry) -> str:
    return entry.label if entry.bootstrap else f"{entry.label} ({_place(entry.where)})"


def _entity(prefix: str) -> str:
    kind = "Dir" if prefix.endswith("/") else "File"
    return f'{kind}::"{prefix}"'


def _check_path(prefix: str, label: str, where: Location) -> None:
    if len(prefix.encode()) > MAX_RULE_PATH_BYTES:
        raise NotEnforceable(
            f"{label}: Leash ignores rule paths longer than {MAX_RULE_PATH_BYTES} bytes "
            f"({prefix!r} is {len(prefix.encode())}; internal/lsm/bpf/lsm_open.bpf.c); use a shorter parent path",
            where,
        )
    if any(c in _BAD_PATH_CHARS for c in prefix) or "::" in prefix:
        raise NotEnforceable(
            f"{label}: Leash cannot match {prefix!r} (quotes, backslashes, '::' or control characters)", where
        )


def _inherited(entries: Sequence[Entry], entry: Entry, op: Op) -> Effect:
    """The effect Leash would apply under `entry` without it: the longest shorter rule, else default deny."""
    best: Entry | None = None
    for other in entries:
        if other.effect(op) is None or len(other.prefix) >= len(entry.prefix) or not other.covers(entry.prefix):
            continue
        if best is None or len(other.prefix) > len(best.prefix):
            best = other
    effect = best.effect(op) if best is not None else None
    return effect if effect is not None else Effect.FORBID


def _permit_below(entries: Sequence[Entry], entry: Entry, op: Op) -> bool:
    return any(
        other.effect(op) is Effect.PERMIT and other.prefix != entry.prefix and entry.covers(other.prefix)
        for other in entries
    )


@attrs.frozen
class _Emit:
    entry: Entry
    op: Op
    effect: Effect


def _emits(entries: Sequence[Entry], ops: Sequence[Op]) -> list[_Emit]:
    """Per (rule, op): permits always; a forbid if it overrides a shorter permit or no permit lies under it."""
    out = []
    for entry in entries:
        for op in ops:
            effect = entry.effect(op)
            if effect is None:
                continue
            needed = effect is not _inherited(entries, entry, op)
            if effect is Effect.PERMIT or needed or not _permit_below(entries, entry, op):
                out.append(_Emit(entry, op, effect))
    return out


def _ties(entries: Sequence[Entry]) -> list[tuple[Entry, Entry]]:
    """Rules on the same path with different effects: Leash orders them arbitrarily."""
    out = []
    for a, b in itertools.combinations(entries, 2):
        if a.prefix == b.prefix and a.effects != b.effects:
            out.append((a, b))
    return out


def _shadowed(emits: Sequence[_Emit]) -> list[tuple[Entry, Entry]]:
    """(forbid, permit) pairs where the permit lies strictly under the forbid for the same operation."""
    out = []
    for f in emits:
        if f.effect is not Effect.FORBID:
            continue
        for p in emits:
            if (
                p.effect is Effect.PERMIT
                and p.op is f.op
                and p.entry.prefix != f.entry.prefix
                and f.entry.covers(p.entry.prefix)
            ):
                out.append((f.entry, p.entry))
    return out


def _dedupe(entries: Iterable[Entry]) -> list[Entry]:
    seen: dict[tuple[str, tuple[tuple[Op, Effect], ...]], Entry] = {}
    for entry in entries:
        seen.setdefault((entry.prefix, entry.effects), entry)
    return list(seen.values())


def _conflict(entries: Sequence[Entry], ops: Sequence[Op], cls: str) -> tuple[Entry, Entry, str] | None:
    """Two rules Leash and Cedar would read differently, with the reason; None if all agree."""
    for a, b in _ties(entries):
        source = "file_open" if cls == "filesystem" else "proc_exec"
        return (
            a,
            b,
            (
                f"{_cite(b)} and {_cite(a)} name the same path with opposite effects: Leash applies equal-length "
                f"{cls} rules in no defined order (internal/lsm/{source}.go sorts by length only); keep one of them"
            ),
        )
    for forbid, permit in _shadowed(_emits(entries, ops)):
        return (
            forbid,
            permit,
            (
                f"{_cite(permit)} lies under {_cite(forbid)}: Leash lets the longer path win (allow) but Cedar lets "
                "the forbid win (deny), so the policy would mean two things; move the exception out of the denied tree"
            ),
        )
    return None


def _resolve(entries: Sequence[Entry], ops: Sequence[Op], cls: str, leaf: str) -> list[_Emit]:
    """The emitted rules, or NotEnforceable naming the two rules Leash and Cedar would read differently.

    The error points at the rule written last: the profile's own file before its ancestors, then the later line.
    """
    found = _conflict(entries, ops, cls)
    if found is not None:
        a, b, message = found
        at_fault = max((a, b), key=lambda e: (not e.bootstrap, str(e.where.file) == leaf, e.where.line))
        raise NotEnforceable(message, at_fault.where)
    return _emits(entries, ops)


def _decision(entries: Sequence[Entry], prefix: str, op: Op) -> Effect:
    """Longest-prefix decision for a path starting with `prefix` (what the profile and Leash both say)."""
    best = max(
        (e for e in entries if e.effect(op) is not None and e.covers(prefix)), key=lambda e: len(e.prefix), default=None
    )
    effect = best.effect(op) if best is not None else None
    return effect if effect is not None else Effect.FORBID


def _with_bootstrap(
    entries: list[Entry], extra: Sequence[Entry], ops: Sequence[Op], cls: str
) -> tuple[list[Entry], list[str]]:
    """Add Leash's bootstrap permits that are missing and conflict with nothing; say what was done."""
    notes = []
    for boot in extra:
        if all(_decision(entries, boot.prefix, op) is Effect.PERMIT for op in ops):
            notes.append(f"Leash bootstrap: {boot.prefix} is already allowed by the profile.")
            continue
        if len(boot.prefix.encode()) > MAX_RULE_PATH_BYTES:  # Leash's kernel would skip it: Cedar alone would permit
            notes.append(
                f"Leash bootstrap: {boot.prefix} NOT added, Leash ignores rule paths over {MAX_RULE_PATH_BYTES} "
                "bytes; Leash's CA install may fail."
            )
            continue
        denier = next((e for e in entries if e.all_forbid and e.covers(boot.prefix)), None)
        found = _conflict([*entries, boot], ops, cls)
        if denier is None and found is not None:
            denier = found[0] if found[1] is boot else found[1]
        if denier is not None:
            notes.append(
                f"Leash bootstrap: {boot.prefix} NOT added, it conflicts with {_cite(denier)}; Leash's CA install may fail."
            )
            continue
        entries = [*entries, boot]
        notes.append(f"Leash bootstrap: {boot.prefix} added (cmd/leash-entry needs it).")
    return entries, notes


def _root_split(emits: list[_Emit], entries: Sequence[Entry], ops: Sequence[Op]) -> list[_Emit]:
    """Replace a permit on "/" by first-byte prefixes when some operation has no rule on "/".

    Leash's default for the class becomes ALLOW for every operation as soon as any permit names "/"
    (file_open.go checkRootPathPolicy); that agrees with Cedar only if each operation has its own rule on "/".
    """
    at_root = [e for e in emits if e.entry.prefix == "/"]
    if not any(e.effect is Effect.PERMIT for e in at_root) or {e.op for e in at_root} >= set(ops):
        return emits
    taken = {entry.prefix for entry in entries}
    out = [e for e in emits if not (e.entry.prefix == "/" and e.effect is Effect.PERMIT)]
    for root in (e for e in at_root if e.effect is Effect.PERMIT):
        for byte in READ_ROOT_BYTES:
            if "/" + byte not in taken:
                part = attrs.evolve(
                    root.entry, prefix="/" + byte, effects=((root.op, Effect.PERMIT),), group="read-root"
                )
                out.append(_Emit(part, root.op, Effect.PERMIT))
    return out


def _rules(emits: Sequence[_Emit]) -> list[Rule]:
    """One Rule per path and effect; read+write with one effect also gets FileOpen (any access mode)."""
    by_entry: dict[tuple[str, Effect], list[_Emit]] = {}
    for emit in emits:
        by_entry.setdefault((emit.entry.prefix, emit.effect), []).append(emit)
    rules = []
    for (prefix, effect), group in by_entry.items():
        ops = {e.op for e in group}
        actions = tuple(op.value for op in sorted(ops, key=lambda o: o.value))
        if ops == set(FILE_OPS):
            actions = (FILE_OPEN, *actions)
        entry = group[0].entry
        rules.append(Rule(effect, actions, _entity(prefix), _cite(entry), entry.group, entry.where, entry.bootstrap))
    return rules


def _check_count(cls: str, rules: Sequence[Rule], limit: int, source: str, leaf: str) -> None:
    """Leash makes one rule per action and resource; past its limit, name the rule that does not fit.

    Bootstrap rules count first, then the ancestors' rules, then the profile file's own, each in line order.
    """
    total = sum(len(rule.actions) for rule in rules)
    if total <= limit:
        return
    running = sum(len(rule.actions) for rule in rules if rule.bootstrap)
    order = sorted(
        (r for r in rules if not r.bootstrap), key=lambda r: (str(r.where.file) == leaf, r.where.line, r.resource)
    )
    for rule in order:
        running += len(rule.actions)
        if running > limit:
            raise NotEnforceable(
                f"{rule.label.rsplit(' (', 1)[0]}: {cls} needs {total} Leash rules (one per action and path), Leash "
                f"loads at most {limit} ({source}); this rule is past the limit - merge rules into a parent directory",
                rule.where,
            )


# An unrestricted class still gets a permit on everything: with no rules Leash would not enforce it (same result)
# but Cedar would deny everything, so the text would mean two things. This is Leash's own default policy
# (internal/policy/default_cedar_policy.go); it also makes Leash log the class.
_UNRESTRICTED = (
    "unrestricted: one permit on everything, as Leash's built-in default policy has; Leash then logs",
    "this class without refusing anything.",
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


# ------------------------------------------------------------------ entry points
def plan_leash(profile: Profile) -> LeashPolicy:
    """The structured Leash policy for a profile (what compile_leash renders, what explain reads)."""
    sections = (_filesystem(profile), _exec(profile), _network(profile))
    return LeashPolicy(profile.name, profile.lineage, PurePath(profile.source).name, sections)


def compile_leash(profile: Profile) -> str:
    """Cedar text that Leash accepts and enforces as the profile says; NotEnforceable where it cannot."""
    return render(plan_leash(profile))


def render(policy: LeashPolicy) -> str:
    counts = {s.name: s.leash_rules for s in policy.sections}
    lines = [
        f'// Leash policy for sandbox tier "{policy.profile}" (lineage: {" <- ".join(policy.lineage)})',
        f"// Generated by {GENERATOR} from {policy.source}; edit the profile and recompile, not this file.",
        (
            f"// Leash rules: filesystem {counts['filesystem']}/{MAX_FILE_RULES}, exec {counts['exec']}/{MAX_EXEC_RULES}, "
            f"network {counts['network']}/{MAX_CONNECT_RULES} (before DNS expansion)."
        ),
        "// How Leash reads this (strongdm/leash internal/lsm, internal/transpiler): for file and exec rules the longest",
        "// matching path prefix wins, where Cedar lets forbid win - only rules on which both agree are emitted. Leash",
        "// neither enforces nor logs a class without rules, so every class has some. Paths are byte prefixes:",
        '// File::"/etc/shadow" also matches /etc/shadow-, and Dir::"/x/" does not match the directory /x itself.',
    ]
    for section in policy.sections:
        lines += ["", "// " + "-" * 100]
        lines += [f"// {note}" for note in section.notes]
        for rules in _statements(section.rules):
            lines += ["", *_render_statement(rules)]
    return "\n".join(lines) + "\n"


def _statements(rules: Sequence[Rule]) -> list[list[Rule]]:
    def key(rule: Rule) -> tuple[int, tuple[str, ...], str]:
        return (0 if rule.effect is Effect.PERMIT else 1, rule.actions, rule.group)

    ordered = sorted(rules, key=lambda r: (key(r), r.resource))
    return [list(group) for _, group in itertools.groupby(ordered, key=key)]


def _render_statement(rules: Sequence[Rule]) -> list[str]:
    first = rules[0]
    actions = first.actions
    action = (
        f'action == Action::"{actions[0]}"'
        if len(actions) == 1
        else "action in [" + ", ".join(f'Action::"{a}"' for a in actions) + "]"
    )
    head = f"{first.effect.value} (principal, {action}, resource)"
    if first.group:
        body = [f"// {first.label}: read-only everywhere"]
        resources = [r.resource for r in rules]
        chunks = [", ".join(resources[i : i + 8]) for i in range(0, len(resources), 8)]
        items = [f"    {chunk}{',' if i < len(chunks) - 1 else ''}" for i, chunk in enumerate(chunks)]
        return [*body, head, "when { resource in [", *items, "] };"]
    width = max(len(r.resource) for r in rules) + 1
    items = []
    for i, rule in enumerate(rules):
        text = rule.resource + ("," if i < len(rules) - 1 else "")
        items.append(f"    {text.ljust(width)}  // {rule.label}")
    return [head, "when { resource in [", *items, "] };"]
