"""Run a command as root runs in a container without CAP_SYS_ADMIN (Docker's default, and Gradescope's).

usage (as root): unshare --mount --propagation private python tests/unprivileged_container.py COMMAND...

First, with the privileges it still has, it arranges the file system as a grading image would: the
Python install readable by every user (here it lives under root's home, mode 700), and the references
in private copies that `protect_references()` makes unreadable to other users (so the checkout's own
modes never change). Then it does what Docker does: a seccomp filter that refuses new namespaces and
mounts, and CAP_SYS_ADMIN dropped from the bounding set; and runs COMMAND.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from autograder.sandbox import isolation, seccomp

DOCKER_DENIES = ("unshare", "setns", "mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen",
                 "fsconfig", "fsmount", "fspick", "mount_setattr")


def _bind(source: Path, target: Path) -> None:
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)


def python_readable_by_all(stage: Path) -> None:
    for index, path in enumerate(dict.fromkeys([Path(sys.base_prefix), Path(sys.prefix)])):
        if isolation._traversable_by_nobody(path):
            continue
        closed = next(p for p in reversed([path, *path.parents]) if not p.stat().st_mode & 0o001)
        keep = stage / f"python{index}"
        keep.mkdir()
        _bind(path, keep)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", str(closed)], check=True)
        path.mkdir(parents=True, exist_ok=True)
        _bind(keep, path)


def references_in_protected_copies(stage: Path) -> None:
    for index, path in enumerate(isolation.reference_paths()):
        copy = stage / f"reference{index}"
        shutil.copytree(path, copy, symlinks=True)
        _bind(copy, path)
    isolation.protect_references()


def stage_of(pid: int) -> Path:
    """Where the run with process id `pid` keeps its copies: a tmpfs in its own mount namespace, mounted
    on a folder the caller removes afterwards."""
    return Path(f"/run/autograder-container-{pid}")


def main() -> None:
    stage = stage_of(os.getpid())
    stage.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=700", "tmpfs", str(stage)], check=True)
    python_readable_by_all(stage)
    references_in_protected_copies(stage)
    seccomp.install(seccomp.program({name: seccomp.DENIED[name] for name in DOCKER_DENIES}, unix_sockets_only=False))
    os.execvp("setpriv", ["setpriv", "--bounding-set", "-sys_admin", *sys.argv[1:]])


if __name__ == "__main__":
    main()
