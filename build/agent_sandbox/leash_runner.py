"""`run --enforcer leash`: the `leash` invocation that runs an agent under StrongDM Leash (pure, but `version`).

How Leash's CLI works (strongdm/leash internal/runner/runner.go at 61c46b2, docs/leash.md in ../shared/notes):
it starts the target image itself (`docker run -d --entrypoint /leash/leash-entry-linux-<arch> --cgroupns host
-v <share>:/leash -v <cwd>:<cwd> -w <cwd>`, the image's USER, the engine's default capabilities, the default
network) and a privileged manager in the target's network namespace, then runs the command with
`docker exec -it -w <cwd> <target> bash -lc 'exec <command>'`. It forwards only `-v`, `-e`, `-p`, `--image`,
`--leash-image`, `-l` and `--policy`: none of the tier's container flags (capabilities, no-new-privileges,
limits, read-only root, the sandbox network, the egress proxy) reach the target. What holds instead is Leash's
own kernel and proxy layer, and the image's login-shell hook (images/.../profile.d) that enters every command as
the image user without capabilities and with no_new_privs. `policy explain` and the run banner say so.

What we pass: the tier's compiled Cedar (`--policy`), the image, the manager image pinned to the CLI's own version
(the CLI defaults to `:latest`), the Control UI off (`-l ''`: it has no authentication and binds every
interface), telemetry off for the CLI and the manager, `LEASH_LOG_DIR` in the sandbox's state directory (Leash
deletes its work directory, and the log with it, when it exits), and API keys by name (`-e NAME`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from . import process
from .errors import EnvironmentProblem

MANAGER_IMAGE = "public.ecr.aws/s5i7k8t3/strongdm/leash"


@attrs.frozen
class Invocation:
    argv: tuple[str, ...]
    env: Mapping[str, str]  # set for the leash process, besides the caller's environment
    cwd: Path  # Leash mounts its working directory into the target at the same path
    policy_file: Path
    log_dir: Path


def leash_version(exe: str) -> str:
    """`leash --version` prints `version: X.Y.Z`, `git hash: ...`, `build date: ...` (cmd/leash/main.go)."""
    out = process.run([exe, "--version"], check=False).out
    found = re.search(r"^version:\s*v?(\S+)", out, re.MULTILINE)
    if not found:
        raise EnvironmentProblem(f"{exe} --version did not print a version (`version: X.Y.Z`): {out.strip()[:200]}")
    return found.group(1)


def invocation(
    *,
    exe: str,
    version: str,
    image: str,
    command: Sequence[str],
    workspace: Path,
    state_dir: Path,
    key_names: Sequence[str] = (),
) -> Invocation:
    policy_file = state_dir / "leash.cedar"
    log_dir = state_dir / "leash-log"
    argv = [
        exe,
        "--policy",
        str(policy_file),
        "--image",
        image,
        "--leash-image",
        f"{MANAGER_IMAGE}:v{version}",
        "--listen=",
        "-e",
        "LEASH_DISABLE_TELEMETRY=1",
    ]
    for name in key_names:
        argv += ["-e", name]  # by name: leash reads the value from its own environment
    argv += ["--", *command]
    env = {"LEASH_LOG_DIR": str(log_dir), "LEASH_DISABLE_TELEMETRY": "1"}
    return Invocation(tuple(argv), env, workspace, policy_file, log_dir)
