"""Compile a profile into the Cedar dialect StrongDM Leash enforces (pure).

The package: `model` (Leash's limits and actions, the values), `prefixes` (the engine that keeps only rules both
readings below agree on, and refuses the rest naming both rules), `sections` (filesystem, exec, network),
`render` (the Cedar text); `plan_leash` and `compile_leash` here.

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

from pathlib import PurePath

from ...model import Profile
from .model import (
    BOOTSTRAP_DIRS as BOOTSTRAP_DIRS,
)
from .model import (
    BOOTSTRAP_PROGRAMS as BOOTSTRAP_PROGRAMS,
)
from .model import (
    EXEC_OPS as EXEC_OPS,
)
from .model import (
    FILE_OPEN as FILE_OPEN,
)
from .model import (
    FILE_OPS as FILE_OPS,
)
from .model import (
    FILE_READ as FILE_READ,
)
from .model import (
    FILE_WRITE as FILE_WRITE,
)
from .model import (
    GENERATOR as GENERATOR,
)
from .model import (
    MAX_CONNECT_RULES as MAX_CONNECT_RULES,
)
from .model import (
    MAX_EXEC_RULES as MAX_EXEC_RULES,
)
from .model import (
    MAX_FILE_RULES as MAX_FILE_RULES,
)
from .model import (
    MAX_HOSTNAME_BYTES as MAX_HOSTNAME_BYTES,
)
from .model import (
    MAX_RULE_PATH_BYTES as MAX_RULE_PATH_BYTES,
)
from .model import (
    NETWORK_CONNECT as NETWORK_CONNECT,
)
from .model import (
    PROCESS_EXEC as PROCESS_EXEC,
)
from .model import (
    READ_ROOT_BYTES as READ_ROOT_BYTES,
)
from .model import (
    Effect as Effect,
)
from .model import (
    Entry as Entry,
)
from .model import (
    LeashPolicy as LeashPolicy,
)
from .model import (
    Op as Op,
)
from .model import (
    Rule as Rule,
)
from .model import (
    Section as Section,
)
from .prefixes import _Emit as _Emit  # the engine's unit, for the property tests
from .render import render
from .sections import _exec, _filesystem, _network
from .sections import _names_overlap as _names_overlap  # for the property tests


def plan_leash(profile: Profile) -> LeashPolicy:
    """The structured Leash policy for a profile (what compile_leash renders, what explain reads)."""
    sections = (_filesystem(profile), _exec(profile), _network(profile))
    return LeashPolicy(profile.name, profile.lineage, PurePath(profile.source).name, sections)


def compile_leash(profile: Profile) -> str:
    """Cedar text that Leash accepts and enforces as the profile says; NotEnforceable where it cannot."""
    return render(plan_leash(profile))
