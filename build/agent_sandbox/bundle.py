"""Every policy a profile compiles into, as files: what images carry under /etc/agent-sandbox/<tier>/ per tier.

`images/compiled/policies.json` is this bundle for every shipped tier, generated (`make compile`) so that
Nix can read it with builtins.fromJSON; a test fails when it is stale. Nobody edits it by hand. Its `labels`
section (labels.label_contract) gives Nix the label names and the build-independent label values.
"""

from __future__ import annotations

import json
from typing import Any

from . import profiles
from .compilers.devcontainer import metadata_label
from .compilers.explain import explain, render_explanation
from .compilers.leash import compile_leash
from .compilers.runargs import run_args
from .compilers.seccomp import seccomp_json
from .labels import label_contract
from .model import Profile

GENERATED = "images/compiled/policies.json"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False) + "\n"


def tier_files(profile: Profile, *, uid: int = 1000, gid: int = 1000) -> dict[str, str]:
    """seccomp.json only for a profile that refuses user namespaces: the profile its run flags name (under
    ${localEnv:HOME}/.local/share/agent-sandbox/seccomp/ on the host; a copy in the image to take out)."""
    files = {
        "leash.cedar": compile_leash(profile),
        "run-args.json": _json(run_args(profile, uid=uid, gid=gid)),
        "devcontainer-metadata.json": _json(metadata_label(profile, uid=uid, gid=gid)),
        "explain.txt": render_explanation(explain(profile)),
    }
    seccomp = seccomp_json(profile)
    if seccomp is not None:
        files["seccomp.json"] = seccomp
    return files


def compiled_policies(*, uid: int = 1000, gid: int = 1000) -> dict[str, Any]:
    """The generated document for every shipped tier (the content of images/compiled/policies.json)."""
    tiers = {}
    for name in profiles.tier_names():
        profile = profiles.load_profile(name)
        tiers[name] = {
            "lineage": list(profile.lineage),
            "user": profile.container.user,
            "metadata": metadata_label(profile, uid=uid, gid=gid),
            "files": tier_files(profile, uid=uid, gid=gid),
        }
    return {
        "generator": "agent-sandbox policy compile-all",
        "uid": uid,
        "gid": gid,
        "tiers": tiers,
        "labels": label_contract({name: tier["metadata"] for name, tier in tiers.items()}),
    }


def render_compiled(*, uid: int = 1000, gid: int = 1000) -> str:
    return _json(compiled_policies(uid=uid, gid=gid))
