"""The suite's check functions on recorded facts (no container): they pass on a conformant sandbox's facts and
raise on a weakened one's. What a tier expects is derived from its profile, never kept per tier."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import attrs
import pytest

from agent_sandbox import conformance as c
from agent_sandbox.compilers.devcontainer import metadata_label
from agent_sandbox.conformance.session import Session
from agent_sandbox.images import load_image
from agent_sandbox.model import CAPABILITY_BITS, NetworkMode, Profile
from agent_sandbox.profiles import CAPABILITIES, load_profile

Failure = c.ConformanceFailure

# /proc/self/mountinfo of a strict sandbox on podman 4.3 (runc, cgroup v1), shortened
MOUNTINFO = r"""85 54 0:42 / / rw,nodev,relatime - overlay overlay rw,lowerdir=/var/lib/containers/storage/overlay/l/X
86 85 0:45 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
88 85 0:46 / /tmp rw,nosuid,nodev,relatime - tmpfs tmpfs rw
87 85 0:47 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
89 85 0:48 / /dev rw,nosuid,noexec - tmpfs tmpfs rw,size=65536k,mode=755
90 85 254:0 /tmp/ws /workspace rw,relatime - ext4 /dev/vda rw
91 89 0:49 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
93 85 254:0 /run/containers/storage/overlay-containers/ID/userdata/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw
94 85 254:0 /run/containers/storage/overlay-containers/ID/userdata/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw
95 89 0:41 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=64000k
96 85 254:0 /run/containers/storage/overlay-containers/ID/userdata/.containerenv /run/.containerenv rw,relatime - ext4 /dev/vda rw
97 85 254:0 /run/containers/storage/overlay-containers/ID/userdata/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw
98 86 0:50 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
102 98 0:32 /libpod_parent/libpod-ID /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
60 87 0:48 /null /proc/keys rw,nosuid,noexec - tmpfs tmpfs rw,size=65536k,mode=755
"""
DOCKER_SOCK = "120 85 0:22 /run/docker.sock /var/run/docker.sock rw,nosuid,nodev - tmpfs tmpfs rw,mode=755\n"
RO_ROOT = MOUNTINFO.replace("/ / rw,nodev", "/ / ro,nodev").replace("/workspace rw,", "/workspace ro,")
HOST_HOME = "121 85 254:0 /home/alice /home/vscode/host rw,relatime - ext4 /dev/vda rw\n"

ZERO = "0000000000000000"
DOCKER_DEFAULT_BND = "00000000a80425fb"  # docker's default capability set


def expect(tier: str) -> c.Expectations:
    return c.expect(load_profile(tier))


def status(eff: str = ZERO, bnd: str = ZERO, nnp: str = "1") -> dict[str, str]:
    text = f"Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nCapInh:\t{ZERO}\nCapPrm:\t{eff}\nCapEff:\t{eff}\nCapBnd:\t{bnd}\nCapAmb:\t{ZERO}\nNoNewPrivs:\t{nnp}\n"
    return c.parse_status(text)


# ---------------------------------------------------------------- expectations come from the profile
# Hand-written profiles with known values: what `expect` must derive from each (not the shipped tiers, whose
# values would only be copied back).
PROFILES = {
    "handmade": """
name: handmade
network:
  allow: ["api.example.com:443"]
filesystem:
  readonly: true
  allow: ["/workspace/**", "/tmp/**"]
  deny: ["/srv/secrets/**", "~/.netrc"]
container:
  user: agent
  cap_drop: [ALL]
  cap_add: [NET_BIND_SERVICE]
  user_namespaces: false
  memory: 2g
  cpus: 1.5
  pids: 256
  tmpfs: [/tmp, /run/agent]
  scratch: [/home/agent]
  mounts:
    - {source: "${localEnv:HOME}/.ssh", target: "~/.ssh", readonly: true}
  env:
    EDITOR: vi
""",
    "loose": """
name: loose
network:
  allow: ["*"]
filesystem:
  read: ["/workspace/**"]
container:
  user: dev
  cap_drop: [NET_RAW]
  cap_add: [SYS_PTRACE]
  no_new_privileges: false
  tmpfs: []
""",
    "closed": "name: closed\n",
}


@pytest.fixture
def handwritten(tmp_path: Path) -> Callable[[str], Profile]:
    def load(name: str) -> Profile:
        path = tmp_path / f"{name}.yaml"
        path.write_text(PROFILES[name])
        return load_profile(path)

    return load


@pytest.mark.parametrize(
    ("name", "attribute", "value"),
    [
        ("handmade", "tier", "handmade"),
        ("handmade", "user", "agent"),
        ("handmade", "home", "/home/agent"),
        ("handmade", "drops_all_caps", True),
        ("handmade", "bounding_caps", {"NET_BIND_SERVICE"}),
        ("handmade", "cap_drop", frozenset()),
        ("handmade", "no_new_privileges", True),
        ("handmade", "escalation_blocked", True),
        ("handmade", "user_namespaces", False),
        ("handmade", "readonly_root", True),
        ("handmade", "workspace_mode", "rw"),
        ("handmade", "tmpfs", ("/tmp", "/run/agent")),
        ("handmade", "scratch", ("/home/agent",)),
        ("handmade", "mounts", (c.TierMount("/home/agent/.ssh", readonly=True),)),
        ("handmade", "memory_bytes", 2 << 30),
        ("handmade", "cpus", 1.5),
        ("handmade", "pids", 256),
        ("handmade", "network", NetworkMode.PROXIED),
        ("loose", "home", "/home/dev"),
        ("loose", "drops_all_caps", False),
        ("loose", "bounding_caps", None),  # the engine's default set, minus drops
        ("loose", "cap_add", {"SYS_PTRACE"}),
        ("loose", "cap_drop", {"NET_RAW"}),
        ("loose", "no_new_privileges", False),
        ("loose", "escalation_blocked", False),
        ("loose", "user_namespaces", True),  # not refused: the engine's default decides, no claim
        ("loose", "readonly_root", False),
        ("loose", "workspace_mode", "ro"),  # filesystem.read only: the workspace is mounted read-only
        ("loose", "tmpfs", ()),
        ("loose", "mounts", ()),
        ("loose", "memory_bytes", None),
        ("loose", "cpus", None),
        ("loose", "pids", None),
        ("loose", "network", NetworkMode.OPEN),
        ("closed", "network", NetworkMode.NONE),
        ("closed", "tmpfs", ("/tmp",)),
        ("closed", "bounding_caps", frozenset()),
    ],
)
def test_expectations_are_derived_from_the_profile(handwritten, name, attribute, value):
    assert getattr(c.expect(handwritten(name)), attribute) == value


@pytest.mark.parametrize(
    ("name", "attribute", "member", "present"),
    [
        ("handmade", "denied_paths", "/home/agent/.aws", True),  # a credential path under the tier's own home
        ("handmade", "denied_paths", "/run/docker.sock", True),
        ("handmade", "denied_paths", "/srv/secrets", True),  # filesystem.deny
        ("handmade", "denied_paths", "/home/agent/.netrc", True),
        ("handmade", "denied_paths", "/home/agent/.ssh", False),  # mounted on purpose: checked as a mount
        ("handmade", "forbidden_caps", "SYS_ADMIN", True),
        ("handmade", "forbidden_caps", "NET_BIND_SERVICE", False),
        ("loose", "forbidden_caps", "NET_RAW", True),  # dropped explicitly
        ("loose", "forbidden_caps", "SYS_PTRACE", False),  # privileged, but added by the tier
        ("loose", "forbidden_caps", "SYS_ADMIN", True),
        ("loose", "denied_paths", "/home/dev/.ssh", True),
        ("handmade", "env", ("EDITOR", "vi"), True),
        ("handmade", "env", ("AGENT_SANDBOX_TIER", "handmade"), True),
        ("handmade", "unset_env", "ANTHROPIC_API_KEY", True),
    ],
)
def test_derived_sets_hold_what_the_profile_implies(handwritten, name, attribute, member, present):
    assert (member in getattr(c.expect(handwritten(name)), attribute)) is present


def test_expectations_take_the_images_ids_and_the_forwarded_keys(handwritten):
    exp = c.expect(handwritten("handmade"), uid=1234, gid=2345, passed_env=["ANTHROPIC_API_KEY"])
    assert (exp.uid, exp.gid) == (1234, 2345)
    assert "ANTHROPIC_API_KEY" not in exp.unset_env and "OPENAI_API_KEY" in exp.unset_env


def test_the_shipped_tiers_differ_where_they_should():
    paranoid, strict, standard, trusted = (expect(t) for t in ("paranoid", "strict", "standard", "trusted"))
    assert paranoid.network is NetworkMode.NONE and paranoid.readonly_root and paranoid.workspace_mode == "ro"
    assert strict.network is NetworkMode.PROXIED and not strict.readonly_root and strict.workspace_mode == "rw"
    assert standard.network is NetworkMode.OPEN
    assert not trusted.drops_all_caps and not trusted.no_new_privileges and trusted.memory_bytes is None
    assert "/home/vscode/.ssh" in trusted.mount_targets and "/home/vscode/.ssh" not in trusted.denied_paths
    assert "/home/vscode/.ssh" in strict.denied_paths and "/run/docker.sock" in strict.denied_paths


# ---------------------------------------------------------------- capabilities
def test_zero_capabilities_pass_where_the_tier_drops_all():
    c.check_capabilities(expect("strict"), {"1": status(), "self": status()})


def test_default_capabilities_fail_where_the_tier_drops_all():
    with pytest.raises(Failure, match="CapBnd=00000000a80425fb holds .*CHOWN"):
        c.check_capabilities(expect("strict"), {"1": status(bnd=DOCKER_DEFAULT_BND)})


def test_default_capabilities_pass_in_trusted_but_a_privileged_one_fails():
    c.check_capabilities(expect("trusted"), {"1": status(bnd=DOCKER_DEFAULT_BND)})
    sys_admin = f"{int(DOCKER_DEFAULT_BND, 16) | 1 << CAPABILITY_BITS['SYS_ADMIN']:016x}"
    with pytest.raises(Failure, match="SYS_ADMIN"):
        c.check_capabilities(expect("trusted"), {"1": status(bnd=sys_admin)})


def test_no_new_privileges_must_match_the_tier():
    c.check_no_new_privileges(expect("strict"), {"1": status(nnp="1")})
    c.check_no_new_privileges(expect("trusted"), {"1": status(nnp="0")})
    with pytest.raises(Failure, match="NoNewPrivs is 0"):
        c.check_no_new_privileges(expect("strict"), {"self": status(nnp="0")})


def test_cap_masks_round_trip():
    assert c.cap_names(c.cap_mask({"NET_ADMIN", "CHOWN"})) == {"NET_ADMIN", "CHOWN"}
    assert c.cap_names(int(DOCKER_DEFAULT_BND, 16)) == {
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "NET_RAW",
        "SYS_CHROOT",
        "MKNOD",
        "AUDIT_WRITE",
        "SETFCAP",
    }  # docker's documented default set
    assert c.cap_names(1 << 41) == {"bit-mask-0x20000000000"}  # a capability newer than the table


@pytest.mark.parametrize(
    ("name", "bit"),
    [
        ("CHOWN", 0),
        ("SETUID", 7),
        ("NET_ADMIN", 12),
        ("SYS_ADMIN", 21),
        ("MKNOD", 27),
        ("SETFCAP", 31),
        ("MAC_ADMIN", 33),
        ("BPF", 39),
        ("CHECKPOINT_RESTORE", 40),
    ],
)
def test_capability_bits_are_the_kernels(name, bit):
    """linux/capability.h; profiles accept exactly these names (and ALL)."""
    assert CAPABILITY_BITS[name] == bit
    assert len(CAPABILITY_BITS) == 41 and sorted(CAPABILITY_BITS.values()) == list(range(41))
    assert CAPABILITIES == set(CAPABILITY_BITS) | {"ALL"}


# ---------------------------------------------------------------- identity
def test_identity_and_escalation():
    c.check_identity(expect("strict"), uid=1000, user="vscode", init_uids="1000\t1000\t1000\t1000")
    with pytest.raises(Failure, match="root uid"):
        c.check_identity(expect("strict"), uid=1000, user="vscode", init_uids="0\t0\t0\t0")
    c.check_escalation(
        expect("strict"), {"sudo -n id -u": (127, "sudo is not installed"), "su": (1, "su: Authentication failure")}
    )
    with pytest.raises(Failure, match="gave root"):
        c.check_escalation(expect("strict"), {"sudo -n id -u": (0, "0\n")})


def test_user_namespaces_must_fail_where_the_tier_refuses_them():
    refused = {
        "unshare -Ur true": (1, "unshare: unshare failed: Operation not permitted"),
        "python3 clone(CLONE_NEWUSER)": (1, "clone(CLONE_NEWUSER): Operation not permitted"),
    }
    c.check_user_namespaces(expect("paranoid"), refused)
    with pytest.raises(Failure, match=r"`unshare -Ur true` created a user namespace"):
        c.check_user_namespaces(expect("paranoid"), {**refused, "unshare -Ur true": (0, "")})
    with pytest.raises(Failure, match=r"`python3 clone\(CLONE_NEWUSER\)` created a user namespace"):
        c.check_user_namespaces(expect("paranoid"), {**refused, "python3 clone(CLONE_NEWUSER)": (0, "child 42")})
    with pytest.raises(Failure, match="nothing in the image could try"):
        c.check_user_namespaces(expect("paranoid"), {"unshare -Ur true": (127, "unshare is not installed")})
    # a tier that does not refuse them claims nothing, whatever happened
    c.check_user_namespaces(expect("strict"), {"unshare -Ur true": (0, "")})


def test_no_setid_program_may_be_on_the_image():
    c.check_no_setid_files(expect("trusted"), [])
    with pytest.raises(Failure, match="2 setuid/setgid program.*: /usr/bin/passwd, /usr/bin/su"):
        c.check_no_setid_files(expect("trusted"), ["/usr/bin/su", "/usr/bin/passwd"])


# ---------------------------------------------------------------- mounts and filesystem
def test_mountinfo_parsing():
    mounts = c.parse_mountinfo(MOUNTINFO)
    by_point = c.visible_mounts(mounts)
    assert by_point["/workspace"].root == "/tmp/ws" and by_point["/workspace"].host_backed
    assert not by_point["/"].host_backed and not by_point["/tmp"].host_backed
    assert by_point["/sys/fs/cgroup/memory"].readonly
    assert c.mount_of("/workspace/src/x.py", mounts).mount_point == "/workspace"
    assert c.mount_of("/etc/passwd", mounts).mount_point == "/"
    assert c.parse_mountinfo(r"1 0 0:1 /a\040b /x\040y rw - ext4 /dev/vda rw")[0].mount_point == "/x y"


def test_only_engine_files_and_the_workspace_come_from_the_host():
    c.check_host_mounts(expect("strict"), c.parse_mountinfo(MOUNTINFO))
    with pytest.raises(Failure, match="docker.sock"):
        c.check_host_mounts(expect("strict"), c.parse_mountinfo(MOUNTINFO + DOCKER_SOCK))
    with pytest.raises(Failure, match="host path /home/alice is mounted at /home/vscode/host"):
        c.check_host_mounts(expect("strict"), c.parse_mountinfo(MOUNTINFO + HOST_HOME))


def test_trusted_must_have_its_mounts_read_only():
    lines = (
        "130 85 254:0 /h/.ssh /home/vscode/.ssh ro,relatime - ext4 /dev/vda rw\n"
        "131 85 254:0 /h/.gitconfig /home/vscode/.gitconfig ro,relatime - ext4 /dev/vda rw\n"
    )
    c.check_host_mounts(expect("trusted"), c.parse_mountinfo(MOUNTINFO + lines))
    with pytest.raises(Failure, match="mounted rw"):
        c.check_host_mounts(expect("trusted"), c.parse_mountinfo(MOUNTINFO + lines.replace(" ro,", " rw,")))
    with pytest.raises(Failure, match="not mounted"):
        c.check_host_mounts(expect("trusted"), c.parse_mountinfo(MOUNTINFO))


def test_workspace_mode_comes_from_mountinfo():
    mounts = c.parse_mountinfo(MOUNTINFO)
    c.check_workspace_mount(expect("strict"), mounts)
    with pytest.raises(Failure, match="mounted rw, the tier's workspace mode is ro"):
        c.check_workspace_mount(expect("paranoid"), mounts)


def test_root_filesystem_checks_tell_erofs_from_eacces():
    rw_root = c.parse_mountinfo(MOUNTINFO)
    ro_root = c.parse_mountinfo(MOUNTINFO.replace("/ / rw,nodev", "/ / ro,nodev"))
    c.check_root_filesystem(expect("strict"), rw_root, {"/etc": "EACCES", "/usr": "EACCES"})
    c.check_root_filesystem(expect("paranoid"), ro_root, {"/etc": "EROFS", "/usr": "EROFS"})
    with pytest.raises(Failure, match="mounted rw"):
        c.check_root_filesystem(expect("paranoid"), rw_root, {"/etc": "EACCES"})
    with pytest.raises(Failure, match="not EROFS"):
        c.check_root_filesystem(expect("paranoid"), ro_root, {"/etc": "EACCES"})
    with pytest.raises(Failure, match="created a file in /usr"):
        c.check_root_filesystem(expect("trusted"), rw_root, {"/usr": "written"})


@pytest.mark.parametrize(
    ("name", "root", "writes", "complaint"),
    [
        ("strict", MOUNTINFO, {"/etc/ssl/certs": "EACCES", "/usr/local/share/ca-certificates": "EACCES"}, None),
        ("strict", MOUNTINFO, {"/etc/ssl/certs": "written"}, "created a file in /etc/ssl/certs"),
        (
            "standard",
            MOUNTINFO,
            {"/usr/local/share/ca-certificates": "written"},
            "created a file in /usr/local/share/ca-certificates",
        ),
        ("paranoid", RO_ROOT, {"/etc/ssl/certs": "EROFS"}, None),
        ("paranoid", RO_ROOT, {"/usr/local/share/ca-certificates": "ENOENT"}, None),  # an image without it
        ("paranoid", RO_ROOT, {"/etc/ssl/certs": "EACCES"}, "not EROFS"),
    ],
)
def test_the_ca_directories_leash_may_write_are_closed_to_the_agent(name, root, writes, complaint):
    """Leash's bootstrap rules let writes to the CA directories through because Unix permissions stop a non-root
    agent: the suite probes them with the other system directories."""
    assert set(writes) <= set(c.SYSTEM_DIRS)
    if complaint is None:
        c.check_root_filesystem(expect(name), c.parse_mountinfo(root), writes)
    else:
        with pytest.raises(Failure, match=complaint):
            c.check_root_filesystem(expect(name), c.parse_mountinfo(root), writes)


SCRATCH_HOME = (
    "140 85 254:0 /var/lib/containers/storage/volumes/ab12/_data /home/vscode rw,nosuid,nodev - ext4 /dev/vda rw\n"
)


def test_read_only_tiers_write_only_to_volatile_places():
    exp = expect("paranoid")
    assert exp.scratch == ("/home/vscode",) and exp.tmpfs == ("/tmp",)
    mounts = c.parse_mountinfo(RO_ROOT + SCRATCH_HOME)
    c.check_writable_places(exp, mounts, {"/tmp", "/home/vscode", "/dev/shm"})
    with pytest.raises(Failure, match="persists"):
        c.check_writable_places(exp, mounts, {"/tmp", "/home/vscode", "/opt/cache"})
    with pytest.raises(Failure, match="cannot write /home/vscode"):
        c.check_writable_places(exp, mounts, {"/tmp"})
    with pytest.raises(Failure, match="workspace mode is ro"):
        c.check_writable_places(exp, mounts, {"/tmp", "/home/vscode", "/workspace"})
    with pytest.raises(Failure, match="not a volume mount"):
        c.check_writable_places(exp, c.parse_mountinfo(RO_ROOT), {"/tmp", "/home/vscode"})


def test_scratch_must_be_an_engine_volume_not_a_host_directory():
    c.check_host_mounts(expect("paranoid"), c.parse_mountinfo(RO_ROOT + SCRATCH_HOME))
    docker = SCRATCH_HOME.replace("/var/lib/containers/storage/volumes/", "/var/lib/docker/volumes/")
    c.check_host_mounts(expect("paranoid"), c.parse_mountinfo(RO_ROOT + docker))
    host_dir = SCRATCH_HOME.replace("/var/lib/containers/storage/volumes/ab12/_data", "/home/alice")
    with pytest.raises(Failure, match="should be a scratch volume but is host path /home/alice"):
        c.check_host_mounts(expect("paranoid"), c.parse_mountinfo(RO_ROOT + host_dir))
    with pytest.raises(Failure, match="host path .*volumes/ab12/_data is mounted at /home/vscode"):
        c.check_host_mounts(expect("strict"), c.parse_mountinfo(MOUNTINFO + SCRATCH_HOME))


def test_denied_paths_must_be_out_of_reach():
    exp = expect("strict")
    c.check_denied_paths(exp, {p: "absent" for p in exp.denied_paths} | {"/etc/shadow": "unreadable"})
    with pytest.raises(Failure, match=r"\.aws is readable"):
        c.check_denied_paths(exp, {p: "absent" for p in exp.denied_paths} | {"/home/vscode/.aws": "readable"})


def test_tmp_must_be_sticky_and_world_writable():
    c.check_tmp(expect("strict"), 0o1777)
    with pytest.raises(Failure, match="755"):
        c.check_tmp(expect("strict"), 0o755)


# ---------------------------------------------------------------- limits
V1 = {
    "memory.limit_in_bytes": "8589934592\n",
    "memory.memsw.limit_in_bytes": None,
    "pids.max": "512\n",
    "cpu.cfs_quota_us": "200000\n",
    "cpu.cfs_period_us": "100000\n",
}
V2 = {"memory.max": "8589934592\n", "memory.swap.max": "0\n", "pids.max": "512\n", "cpu.max": "200000 100000\n"}
V1_UNLIMITED = {
    "memory.limit_in_bytes": "9223372036854771712\n",
    "pids.max": "max\n",
    "cpu.cfs_quota_us": "-1\n",
    "cpu.cfs_period_us": "100000\n",
}


def test_cgroup_v1_and_v2_limits_both_satisfy_strict():
    c.check_limits(expect("strict"), c.parse_cgroup_limits(V1, 1))
    c.check_limits(expect("strict"), c.parse_cgroup_limits(V2, 2))
    c.check_limits(expect("trusted"), c.parse_cgroup_limits(V1_UNLIMITED, 1))
    c.check_limits(
        expect("trusted"), c.parse_cgroup_limits({"memory.max": "max", "pids.max": "2048", "cpu.max": "max 100000"}, 2)
    )


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"pids.max": "max\n"}, "pids.max is max"),
        ({"memory.max": "max\n"}, "memory limit is unlimited"),
        ({"cpu.max": "max 100000\n"}, "CPU quota is unlimited"),
        ({"memory.swap.max": "max\n"}, "swap limit"),
    ],
)
def test_a_missing_limit_fails(change, complaint):
    with pytest.raises(Failure, match=complaint):
        c.check_limits(expect("strict"), c.parse_cgroup_limits(V2 | change, 2))


def test_a_contained_fork_bomb_and_an_oom_kill():
    exp = expect("strict")
    c.check_fork_bomb(exp, forked=505, error=11, alive_after=True)
    with pytest.raises(Failure, match="never failed"):
        c.check_fork_bomb(exp, forked=576, error=0, alive_after=True)
    with pytest.raises(Failure, match="did not survive"):
        c.check_fork_bomb(exp, forked=505, error=11, alive_after=False)
    assert c.parse_hog_output("Killed\nhog-status=137\noom-kills=1\n") == (137, 1)
    c.check_oom(exp, *c.parse_hog_output("hog-status=137\noom-kills=1\n"))
    with pytest.raises(Failure, match="exited 0"):
        c.check_oom(exp, *c.parse_hog_output("hog-status=0\noom-kills=0\n"))


# ---------------------------------------------------------------- network, env, labels
def test_network_checks():
    c.check_interfaces(expect("paranoid"), ["lo"])
    with pytest.raises(Failure, match="loopback only"):
        c.check_interfaces(expect("paranoid"), ["lo", "eth0"])
    c.check_outside_reach(expect("strict"), {"10.88.0.5": False, "10.89.1.2": False})
    with pytest.raises(Failure, match="reached the outside server at 10.88.0.5"):
        c.check_outside_reach(expect("strict"), {"10.88.0.5": True})
    c.check_outside_reach(expect("standard"), {"10.88.0.5": True, "10.89.1.2": False})
    with pytest.raises(Failure, match="cannot reach"):
        c.check_outside_reach(expect("standard"), {"10.88.0.5": False})


def test_environment_check():
    exp = expect("strict")
    env = dict(exp.env) | {"HOME": "/home/vscode", "PATH": "/usr/bin"}
    c.check_env(exp, env)
    with pytest.raises(Failure, match="HTTPS_PROXY"):
        c.check_env(exp, env | {"HTTPS_PROXY": ""})
    with pytest.raises(Failure, match="ANTHROPIC_API_KEY"):
        c.check_env(exp, env | {"ANTHROPIC_API_KEY": "leaked"})


def test_metadata_label_must_equal_the_compiled_tier():
    want = metadata_label(load_profile("strict"))
    c.check_metadata_label(expect("strict"), json.dumps(want), want)
    with pytest.raises(Failure, match="differs"):
        c.check_metadata_label(expect("strict"), json.dumps(metadata_label(load_profile("standard"))), want)


def test_list_labels_accept_commas_spaces_and_json():
    assert c.split_label_list("claude,codex, gemini aider") == ["claude", "codex", "gemini", "aider"]
    assert c.split_label_list('["nix", "just"]') == ["nix", "just"]
    assert c.split_label_list("") == [] and c.split_label_list(None) is None


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("handmade", "identity: uid 1000 (agent), home /home/agent; sudo/su cannot give root"),
        ("loose", "identity: uid 1000 (dev), home /home/dev"),
        ("handmade", "capabilities: no capabilities but NET_BIND_SERVICE (CapEff/CapPrm/CapBnd); NoNewPrivs 1"),
        ("closed", "capabilities: no capabilities (CapEff/CapPrm/CapBnd); NoNewPrivs 1"),
        ("loose", "capabilities: engine-default capabilities, none of the privileged ones; NoNewPrivs 0"),
        ("handmade", "root filesystem: read-only; nothing the user writes outlives the sandbox"),
        ("loose", "root filesystem: read-write"),
        (
            "handmade",
            ("workspace: /workspace mounted rw; tmpfs: /tmp, /run/agent (/tmp 1777); scratch volumes: /home/agent"),
        ),
        ("loose", "workspace: /workspace mounted ro; tmpfs: none (/tmp 1777)"),
        ("handmade", "limits: memory 2147483648 bytes, cpus 1.5, pids 256"),
        ("loose", "limits: memory unlimited, cpus unlimited, pids: engine default"),
        ("closed", "network: loopback only"),
        (
            "handmade",
            "network: only its own internal network: no route out but its egress proxy "
            "(agent-sandbox-proxy), no DNS, no IPv6",
        ),
        ("loose", "network: reaches other hosts"),
        ("handmade", "user namespaces: refused (unshare -Ur and clone(CLONE_NEWUSER) fail)"),
        ("loose", "user namespaces: the engine's default decides (no claim)"),
        ("closed", "image: no setuid or setgid program the sandbox user can reach"),
    ],
)
def test_every_claim_is_described(handwritten, name, line):
    assert line in c.describe(c.expect(handwritten(name)))


@pytest.mark.parametrize("name", PROFILES)
def test_host_paths_name_the_mounts_and_what_is_out_of_reach(handwritten, name):
    exp = c.expect(handwritten(name))
    (line,) = [line for line in c.describe(exp) if line.startswith("host paths:")]
    assert all(m.target in line for m in exp.mounts) and all(p in line for p in exp.denied_paths)


# ---------------------------------------------------------------- probes that need python3 in the image
@attrs.frozen
class FakeHost:
    has_python3: bool

    def run(self, command: str) -> SimpleNamespace:
        assert command == "command -v python3"
        return SimpleNamespace(rc=0 if self.has_python3 else 1)


@pytest.mark.parametrize(
    ("has_python3", "package_sets", "outcome"),
    [
        (True, ("base", "agentTools"), None),
        (False, ("base", "agentTools"), pytest.fail.Exception),  # agentTools has the python tool: a gap, not a skip
        (False, ("base", "python"), pytest.fail.Exception),
        (False, ("base", "devTools"), pytest.skip.Exception),  # nothing promises python3
        (False, None, pytest.skip.Exception),  # no image description
    ],
)
def test_a_missing_python3_fails_where_the_image_description_promises_it(tmp_path, has_python3, package_sets, outcome):
    desc = load_image("agent-sandbox-devcontainer")
    desc = attrs.evolve(desc, package_sets=package_sets) if package_sets else None
    session = Session("podman", "IMG", desc, tmp_path, tmp_path)
    if outcome is None:
        session.require_python3(FakeHost(has_python3))
    else:
        with pytest.raises(outcome, match="python3"):
            session.require_python3(FakeHost(has_python3))
