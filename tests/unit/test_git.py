"""git on the host for spawn, against real repositories (no container): finding the repository, the questions
`spawn`, `list` and `rm` ask, and worktrees made and taken back whole."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent_sandbox import git
from agent_sandbox.errors import InputError

IDENT = ["-c", "user.name=dev", "-c", "user.email=dev@example.invalid"]


def sh_git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *IDENT, *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> git.Repo:
    path = tmp_path / "project"
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "app.py").write_text("print(1)\n")
    sh_git(path, "add", ".")
    sh_git(path, "commit", "-q", "-m", "initial")
    return git.find_repo(path)


def commit_on(repo: git.Repo, branch: str, message: str) -> str:
    """A commit on `branch` without checking it out (the main worktree stays on main)."""
    tree = sh_git(repo.toplevel, "rev-parse", f"{branch}^{{tree}}")
    sha = sh_git(repo.toplevel, "commit-tree", "-p", branch, "-m", message, tree)
    sh_git(repo.toplevel, "update-ref", f"refs/heads/{branch}", sha)
    return sha


def test_the_repository_is_found_from_anywhere_in_it(repo):
    (repo.toplevel / "sub").mkdir()
    found = git.find_repo(repo.toplevel / "sub")
    assert found.toplevel == repo.toplevel and found.git_dir == repo.toplevel / ".git"
    assert (found.uid, found.gid) == (os.getuid(), os.getgid())


def test_the_main_repository_is_found_from_a_linked_worktree(repo, tmp_path):
    tree = git.add_worktree(repo, tmp_path / "wt", "agent/x", "HEAD")
    assert git.find_repo(tree.path) == repo


@pytest.mark.parametrize(
    "make, words",
    [
        pytest.param(lambda p: p.mkdir(), "is not in a git repository", id="plain-directory"),
        pytest.param(lambda p: None, "no such directory", id="missing"),
        pytest.param(
            lambda p: subprocess.run(["git", "init", "-q", "--bare", str(p)], check=True), "bare", id="bare-repository"
        ),
    ],
)
def test_what_is_not_a_repository_with_a_worktree_is_bad_input(tmp_path, make, words):
    path = tmp_path / "x"
    make(path)
    with pytest.raises(InputError, match=words):
        git.find_repo(path)


def test_refs_resolve_to_their_full_names(repo):
    sh_git(repo.toplevel, "tag", "v1")
    head = sh_git(repo.toplevel, "rev-parse", "HEAD")
    assert git.resolve(repo, "main") == ("refs/heads/main", head)
    assert git.resolve(repo, "v1") == ("refs/tags/v1", head)
    assert git.resolve(repo, "HEAD") == ("refs/heads/main", head)
    assert git.resolve(repo, head[:10]) == (head, head)
    for bad in ("nope", "--all", "main..v1"):
        with pytest.raises(InputError, match="not a commit"):
            git.resolve(repo, bad)


def test_dirty_means_tracked_changes_only(repo):
    assert git.dirty(repo) == []
    (repo.toplevel / "new.txt").write_text("untracked\n")
    assert git.dirty(repo) == []
    (repo.toplevel / "app.py").write_text("print(2)\n")
    assert git.dirty(repo) == ["app.py"]


def test_ahead_counts_the_agents_commits_and_only_on_what_rm_would_drop(repo, tmp_path):
    git.add_worktree(repo, tmp_path / "wt", "agent/x", "HEAD")
    assert git.ahead(repo, "refs/heads/main", "agent/x") == 0 and git.only_on(repo, "agent/x") == 0
    commit_on(repo, "agent/x", "one")
    commit_on(repo, "agent/x", "two")
    assert git.ahead(repo, "refs/heads/main", "agent/x") == 2 and git.only_on(repo, "agent/x") == 2
    sh_git(repo.toplevel, "branch", "keep", "agent/x~1")  # another branch has the first
    assert git.only_on(repo, "agent/x") == 1
    sh_git(repo.toplevel, "merge", "-q", "--ff-only", "agent/x")
    assert git.ahead(repo, "refs/heads/main", "agent/x") == 0 and git.only_on(repo, "agent/x") == 0


def test_a_worktree_is_made_on_its_branch_and_taken_back_whole(repo, tmp_path):
    tree = git.add_worktree(repo, tmp_path / "agents" / "x", "agent/x", "HEAD")
    assert (tree.path / ".git").read_text().strip() == f"gitdir: {tree.admin_dir}"  # absolute: the container's path
    assert tree.admin_dir.parent == repo.git_dir / "worktrees"
    assert git.branch_exists(repo, "agent/x")
    (tree.path / "app.py").write_text("changed\n")
    assert git.worktree_dirty(repo, tree) == ["app.py"]
    git.remove_worktree(repo, tree)
    git.delete_branch(repo, "agent/x")
    assert not tree.path.exists() and not tree.admin_dir.exists() and not git.branch_exists(repo, "agent/x")
    assert sh_git(repo.toplevel, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_the_worktree_state_is_read_without_its_git_file(repo, tmp_path):
    """An agent that rewrites its worktree's .git file does not choose what the host's git reads."""
    tree = git.add_worktree(repo, tmp_path / "wt", "agent/x", "HEAD")
    evil = tmp_path / "evil"
    subprocess.run(["git", "init", "-q", str(evil)], check=True)
    (tree.path / ".git").write_text(f"gitdir: {evil}/.git\n")
    (tree.path / "app.py").write_text("changed\n")
    assert git.worktree_dirty(repo, tree) == ["app.py"]


@pytest.mark.skipif(os.geteuid() != 0, reason="handing over needs root (as agent-sandbox under sudo)")
def test_as_root_what_worktree_add_made_is_handed_to_the_owner(tmp_path, monkeypatch):
    path = tmp_path / "project"
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    sh_git(path, "commit", "-q", "--allow-empty", "-m", "initial")
    for item in [tmp_path, *tmp_path.rglob("*")]:
        os.chown(item, 1000, 1000)
    repo = git.Repo(path, path / ".git", 1000, 1000)
    monkeypatch.setenv("SUDO_UID", "1000")  # git trusts the owner's repository as under sudo
    tree = git.add_worktree(repo, tmp_path / "project.agents" / "x", "agent/x", "HEAD")
    made = [
        tree.path,
        *tree.path.rglob("*"),
        tree.admin_dir,
        *tree.admin_dir.rglob("*"),
        tree.path.parent,
        repo.git_dir / "worktrees",
        repo.git_dir / "refs/heads/agent",
        repo.git_dir / "refs/heads/agent/x",
        repo.git_dir / "logs/refs/heads/agent/x",
    ]
    assert {p: p.lstat().st_uid for p in made if p.lstat().st_uid != 1000} == {}
