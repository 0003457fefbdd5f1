"""Leash's limits, its actions and the values the compiler works with (pure)."""

from __future__ import annotations

import enum

import attrs

from ...errors import Location

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
