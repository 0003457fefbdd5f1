"""git on the host, for `spawn`: the repository, its agents' worktrees and branches (every command through
process.run, i.e. plumbum).

Only ever run in the *main* repository (`git -C <main worktree>`), never inside an agent's worktree: what an agent
wrote there (nested repositories, a `.gitattributes`) is not for the host's git to act on. The worktree's own
state is read through its administrative directory with the worktree given explicitly, and with the programs a
repository can name (fsmonitor, hooks) switched off.

Ownership: the sandbox's user writes the worktree and the repository's git directory. When agent-sandbox runs as
root (rootful engines: `sudo agent-sandbox spawn`, which git trusts by SUDO_UID) what git creates for an agent is
root's: `hand_over` gives it to the repository's owner, as git would have made it for them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from . import process
from .errors import CommandFailed, InputError, Location
from .process import Result

# Options for every command we run: absolute paths in a new worktree's `.git` file (git 2.48's
# worktree.useRelativePaths would write a path that means something else inside the container), and no
# program the repository's configuration names.
SAFE = ("-c", "worktree.useRelativePaths=false", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null")
QUIET_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"}  # reading never rewrites the index


@attrs.frozen
class Repo:
    """A non-bare repository: its main worktree and its (common) git directory, and who owns them."""

    toplevel: Path
    git_dir: Path
    uid: int
    gid: int

    @property
    def name(self) -> str:
        return self.toplevel.name


@attrs.frozen
class Worktree:
    """A linked worktree: where its files are and its administrative directory (`<git dir>/worktrees/<name>`)."""

    path: Path
    admin_dir: Path


def git(args: Sequence[str], *, cwd: Path, check: bool = True, env: Mapping[str, str] | None = None) -> Result:
    base = dict(os.environ) if env is None else dict(env)
    base.update(QUIET_ENV)
    return process.run(["git", "-C", str(cwd), *SAFE, *args], check=check, env=base)


def find_repo(directory: Path) -> Repo:
    """The repository `directory` is in (any of its worktrees): InputError when there is none or it is bare."""
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory", Location("--repo"))
    found = git(
        ["rev-parse", "--path-format=absolute", "--git-common-dir", "--is-bare-repository"], cwd=directory, check=False
    )
    if not found.ok:
        reason = found.err.strip().splitlines()[-1] if found.err.strip() else "not a git repository"
        raise InputError(
            f"{directory} is not in a git repository ({reason.removeprefix('fatal: ')})", Location("--repo")
        )
    common, bare = found.out.split()
    if bare == "true":
        raise InputError(f"{directory} is a bare repository: spawn needs one with a working tree", Location("--repo"))
    listed = git(["worktree", "list", "--porcelain"], cwd=directory).out
    main = next(line.split(" ", 1)[1] for line in listed.splitlines() if line.startswith("worktree "))
    stat = Path(common).stat()
    return Repo(Path(main), Path(common), stat.st_uid, stat.st_gid)


# ---------------------------------------------------------------- questions (read only)
def check_branch_name(repo: Repo, branch: str) -> None:
    if not git(["check-ref-format", "--branch", branch], cwd=repo.toplevel, check=False).ok:
        raise InputError(f"{branch!r} is not a valid branch name")


def branch_exists(repo: Repo, branch: str) -> bool:
    return git(["show-ref", "--verify", "--quiet", f"refs/heads/{branch}"], cwd=repo.toplevel, check=False).ok


def resolve(repo: Repo, ref: str) -> tuple[str, str]:
    """`ref` as (its full name, or the commit when it has none, e.g. HEAD detached; the commit)."""
    commit = git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], cwd=repo.toplevel, check=False
    )
    if not commit.ok or ref.startswith("-"):
        raise InputError(f"{ref!r} is not a commit of {repo.toplevel}", Location("--from"))
    full = git(["rev-parse", "--symbolic-full-name", ref], cwd=repo.toplevel, check=False)
    name = full.out.strip() if full.ok and full.out.strip().startswith("refs/") else commit.out.strip()
    return name, commit.out.strip()


def dirty(repo: Repo) -> list[str]:
    """Tracked files of the main worktree with changes not committed (untracked files do not count)."""
    out = git(["status", "--porcelain", "--untracked-files=no", "--ignore-submodules=all"], cwd=repo.toplevel).out
    return [line[3:] for line in out.splitlines() if line.strip()]


def worktree_dirty(repo: Repo, tree: Worktree) -> list[str]:
    """Changes in an agent's worktree, read through its administrative directory (never its `.git` file) and
    without the submodules an agent might have planted."""
    if not tree.path.is_dir() or not tree.admin_dir.is_dir():
        return []
    out = git(
        [
            "--git-dir",
            str(tree.admin_dir),
            "--work-tree",
            str(tree.path),
            "status",
            "--porcelain",
            "--ignore-submodules=all",
        ],
        cwd=repo.toplevel,
        check=False,
    )
    return [line[3:] for line in out.out.splitlines() if line.strip()] if out.ok else []


def count(repo: Repo, revisions: Sequence[str]) -> int:
    result = git(["rev-list", "--count", *revisions], cwd=repo.toplevel, check=False)
    return int(result.out.strip()) if result.ok and result.out.strip().isdigit() else 0


def ahead(repo: Repo, base: str, branch: str) -> int:
    """Commits on `branch` that `base` (a full ref name or a commit) does not have."""
    return count(repo, [f"refs/heads/{branch}", "--not", base, "--"])


def only_on(repo: Repo, branch: str) -> int:
    """Commits that only `branch` has (no other branch, tag or remote-tracking branch): what deleting it drops."""
    # (--exclude's pattern is relative to refs/heads/ for --branches, and applies to it alone)
    return count(
        repo, [f"refs/heads/{branch}", "--not", f"--exclude={branch}", "--branches", "--tags", "--remotes", "--"]
    )


def last_commit_time(repo: Repo, branch: str) -> int | None:
    result = git(["log", "-1", "--format=%ct", f"refs/heads/{branch}", "--"], cwd=repo.toplevel, check=False)
    return int(result.out.strip()) if result.ok and result.out.strip().isdigit() else None


# ---------------------------------------------------------------- changes
def add_worktree(repo: Repo, path: Path, branch: str, commit: str) -> Worktree:
    """A new worktree at `path` on a new branch at `commit`, handed to the repository's owner."""
    parent_existed = path.parent.exists()
    git(["worktree", "add", "--quiet", "-b", branch, str(path), commit], cwd=repo.toplevel)
    tree = worktree_at(path)
    hand_over(repo, branch, tree, parent_created=not parent_existed)
    return tree


def worktree_at(path: Path) -> Worktree:
    """The worktree at `path`, from its `.git` file (`gitdir: <admin dir>`)."""
    text = (path / ".git").read_text(encoding="utf-8").strip()
    if not text.startswith("gitdir: "):
        raise CommandFailed(f"{path}/.git is not a worktree's .git file")
    return Worktree(path, Path(text.removeprefix("gitdir: ")))


def remove_worktree(repo: Repo, tree: Worktree) -> None:
    """The worktree's files and its administrative directory (`--force`: the caller decided; `git worktree remove`
    deletes without looking inside), then whatever git still lists for it."""
    if tree.path.exists():
        git(["worktree", "remove", "--force", "--force", str(tree.path)], cwd=repo.toplevel, check=False)
    git(["worktree", "prune"], cwd=repo.toplevel, check=False)


def delete_branch(repo: Repo, branch: str) -> None:
    if branch_exists(repo, branch):
        git(["branch", "--quiet", "-D", branch], cwd=repo.toplevel)
    give_back(repo, [repo.git_dir / "packed-refs"])


def hand_over(repo: Repo, branch: str, tree: Worktree, *, parent_created: bool = False) -> None:
    """What `worktree add` created, owned by the repository's owner (it is root's when we run as root): the
    worktree and its administrative directory (all of them), the branch and its reflog, and the directories
    created for them (those alone: never what was there before)."""
    if os.geteuid() != 0 or repo.uid == 0:
        return
    whole = [tree.path, tree.admin_dir]
    single = [tree.admin_dir.parent] + ([tree.path.parent] if parent_created else [])
    for prefix in ("refs/heads", "logs/refs/heads"):
        ref = repo.git_dir / prefix / branch
        single += [ref, *(p for p in ref.parents if repo.git_dir / prefix in p.parents)]
    for top in whole:
        chown_root_owned(repo, [top, *top.rglob("*")] if top.is_dir() and not top.is_symlink() else [top])
    chown_root_owned(repo, single)


def give_back(repo: Repo, paths: Sequence[Path]) -> None:
    """Files git rewrote as root in the owner's repository (packed-refs after a branch deletion), given back."""
    if os.geteuid() == 0 and repo.uid != 0:
        chown_root_owned(repo, paths)


def chown_root_owned(repo: Repo, paths: Sequence[Path]) -> None:
    for item in paths:
        try:
            if item.lstat().st_uid == 0:
                os.chown(item, repo.uid, repo.gid, follow_symlinks=False)
        except FileNotFoundError:
            pass
