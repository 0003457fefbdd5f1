"""What a running sandbox must look like from inside, derived from its tier's profile, and the checks that say so.

Used by the conformance suite (`suite`, shipped here and run by `agent-sandbox verify`) and by tests/conformance, in
three modules (all re-exported here):
- `expectations`: `expect(profile)` -> `Expectations`, every claim derived from the profile, none kept per tier (pure);
- `checks`:       `parse_*` -> facts from text the container printed; `check_*` -> raise `ConformanceFailure` (an
                  AssertionError, with the evidence) when the facts contradict the expectations (pure);
- `probe`:        `Probe(host)` collects the facts through a pytest-testinfra host (`podman://NAME`, `docker://NAME`).
Not re-exported: `session` (the suite's engine, image and containers; agent_sandbox.pytest_plugin's fixtures hand it
out) and `egress` (a model of the egress proxy's decisions).
"""

from __future__ import annotations

from .checks import (
    PSEUDO_FS,
    UNLIMITED,
    VOLATILE_FS,
    CgroupLimits,
    ConformanceFailure,
    MountEntry,
    check_capabilities,
    check_denied_paths,
    check_env,
    check_escalation,
    check_fork_bomb,
    check_host_mounts,
    check_identity,
    check_interfaces,
    check_limits,
    check_metadata_label,
    check_no_new_privileges,
    check_no_setid_files,
    check_oom,
    check_outside_reach,
    check_root_filesystem,
    check_tmp,
    check_user_namespaces,
    check_workspace_mount,
    check_writable_places,
    mount_of,
    parse_cgroup_limits,
    parse_hog_output,
    parse_mountinfo,
    parse_status,
    split_label_list,
    visible_mounts,
)
from .expectations import (
    CAP_FIELDS,
    CREDENTIAL_PATHS,
    ENGINE_FILES,
    PRIVILEGED_CAPS,
    SYSTEM_DIRS,
    Expectations,
    TierMount,
    cap_mask,
    cap_names,
    describe,
    expect,
)
from .probe import (
    CLONE_NEWUSER_PROBE,
    FETCH,
    FORK_BOMB,
    MEMORY_HOG,
    Probe,
)

__all__ = [
    "CAP_FIELDS",
    "CLONE_NEWUSER_PROBE",
    "CREDENTIAL_PATHS",
    "ENGINE_FILES",
    "FETCH",
    "FORK_BOMB",
    "MEMORY_HOG",
    "PRIVILEGED_CAPS",
    "PSEUDO_FS",
    "SYSTEM_DIRS",
    "UNLIMITED",
    "VOLATILE_FS",
    "CgroupLimits",
    "ConformanceFailure",
    "Expectations",
    "MountEntry",
    "Probe",
    "TierMount",
    "cap_mask",
    "cap_names",
    "check_capabilities",
    "check_denied_paths",
    "check_env",
    "check_escalation",
    "check_fork_bomb",
    "check_host_mounts",
    "check_identity",
    "check_interfaces",
    "check_limits",
    "check_metadata_label",
    "check_no_new_privileges",
    "check_no_setid_files",
    "check_oom",
    "check_outside_reach",
    "check_root_filesystem",
    "check_tmp",
    "check_user_namespaces",
    "check_workspace_mount",
    "check_writable_places",
    "describe",
    "expect",
    "mount_of",
    "parse_cgroup_limits",
    "parse_hog_output",
    "parse_mountinfo",
    "parse_status",
    "split_label_list",
    "visible_mounts",
]
