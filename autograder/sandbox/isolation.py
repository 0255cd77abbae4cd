"""Isolation levels: how the worker is walled off from the grader, strongest first.

- "bwrap": bubblewrap namespaces (user, pid, net, ipc, uts, mount). The worker
  sees a read-only root holding only the system libraries, the Python
  install and the virtual environment; the project (references, rubrics,
  submissions, gradebook) does not exist there, the network is unreachable,
  the environment is empty, /tmp and /dev/shm are small private tmpfs. When
  the grader runs as root the sandbox runs as an unprivileged user id.
- "rlimits": no usable bubblewrap but root: a separate process started from
  a clean interpreter, as an unprivileged user id, in its own session, with
  resource limits and an empty environment. Where the kernel lets root make
  a mount namespace, the project tree is hidden behind an empty tmpfs (the
  virtual environment excepted) and /tmp, /var/tmp, /dev/shm are small
  private tmpfs; the network stays reachable. Imports of `solutions` and
  `autograder` are refused as a second line.
- "unprotected": neither (a laptop without root or user namespaces): the
  same separate process, as the grading user. Fine for trying the tool, not
  for grading strangers' code.
"""
from __future__ import annotations

import ctypes
import glob
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

LEVELS = ("bwrap", "rlimits", "unprotected")
STRONGEST = LEVELS[0]
# As root, each fork server runs as a user id of its own, so per-user limits (RLIMIT_NPROC counts every
# process of a user) never let one job slot's fork bomb starve another.
POOL_UID_BASE = 200_000
PR_SET_PDEATHSIG = 1
WORKER_DIR = Path(__file__).resolve().parent
SANDBOX_WORKER_DIR = "/grader"
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
       "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class IsolationError(Exception):
    """The requested isolation level cannot be had here."""


def _is_root() -> bool:
    return os.geteuid() == 0


def _traversable_by_nobody(path: Path) -> bool:
    """Whether every folder above `path` lets other users through (root's home usually does not)."""
    for parent in [path, *path.parents]:
        try:
            if not parent.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


class Launch:
    """Builds the command that starts the fork server at a given level, and owns what it needs on disk."""

    def __init__(self, level: str, tmp_bytes: int, device: str = "cpu"):
        if level not in LEVELS:
            raise IsolationError(f"unknown isolation level {level!r}; choose one of {', '.join(LEVELS)}")
        self.level = level
        self.tmp_bytes = tmp_bytes
        self.device = device
        # As root the stage lives in /run, so that the sandbox can cover /tmp with a small tmpfs of its own.
        self.stage = Path(tempfile.mkdtemp(prefix="autograder-stage-", dir="/run" if _is_root() else None))
        os.chmod(self.stage, 0o755)

    def cleanup(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)

    def command(self, control_fd: int) -> list[str]:
        """The command that starts the fork server, talking on `control_fd`."""
        if self.level == "bwrap":
            return self.wrap([sys.executable, "-I", f"{SANDBOX_WORKER_DIR}/worker.py", str(control_fd), "sandboxed"])
        # Outside bwrap the worker files are copied to a folder the unprivileged user can read.
        for name in ("worker.py", "wire.py"):
            shutil.copy(WORKER_DIR / name, self.stage / name)
            os.chmod(self.stage / name, 0o644)
        return self.wrap([sys.executable, "-I", str(self.stage / "worker.py"), str(control_fd), "plain"])

    def wrap(self, program: list[str]) -> list[str]:
        """`program` as this level runs it."""
        if self.level == "bwrap":
            return self._bwrap(program)
        if self.level == "rlimits" and _is_root():
            return self._as_nobody(program, hide_project=True)
        return program

    def preexec(self) -> None:
        """Runs in the child before exec: its own session, so the grader can kill the whole group, and
        death with its parent, so a grader killed mid-batch leaves no fork server behind."""
        os.setsid()
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def _stage(self, path: Path) -> Path:
        stage = self.stage / f"bind{len(list(self.stage.glob('bind*')))}"
        stage.mkdir()
        return stage

    def _as_nobody(self, program: list[str], *, hide_project: bool, reachable: tuple[Path, ...] = ()) -> list[str]:
        """As root: in a private mount namespace, cover what the worker must not reach or fill (folders nobody
        may not traverse, like root's home; with `hide_project` the project tree and the world-writable
        folders), put back the paths it needs (the Python install, the virtual environment, `reachable`), then
        run `program` as an unprivileged user."""
        keep = [Path(sys.base_prefix), Path(sys.prefix), *reachable]
        covers = [next(p for p in reversed([path, *path.parents]) if not p.stat().st_mode & 0o001)
                  for path in keep if not _traversable_by_nobody(path)]
        if hide_project:
            covers.append(WORKER_DIR.parent.parent)
            # World-writable folders get small tmpfs of their own, so a submission cannot fill the disk.
            writable = [f for f in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(f)]
        else:
            writable = []
        staged = [(path, self._stage(path)) for path in keep]
        q = lambda path: shlex.quote(str(path))  # noqa: E731
        steps = [f"mount --bind {q(path)} {q(stage)}" for path, stage in staged]
        steps += [f"mount -t tmpfs -o mode=755,size=1m tmpfs {q(folder)}" for folder in dict.fromkeys(covers)]
        steps += [f"mount -t tmpfs -o size={self.tmp_bytes},mode=1777 tmpfs {q(folder)}" for folder in writable]
        steps += [f"mkdir -p {q(path)} && mount --bind {q(stage)} {q(path)}" for path, stage in staged]
        uid = POOL_UID_BASE + os.getpid()
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--pdeathsig", "KILL"]
        script = " && ".join([*steps, f"exec {shlex.join(drop + program)}"])
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]

    def _bwrap(self, program: list[str]) -> list[str]:
        binds = [(str(p), str(p)) for p in (Path(sys.base_prefix), Path(sys.prefix))]
        binds.append((str(WORKER_DIR), SANDBOX_WORKER_DIR))
        size = str(self.tmp_bytes)
        args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
                "--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                "--size", size, "--tmpfs", "/tmp", "--chdir", "/tmp"]
        for system in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
            if os.path.exists(system):
                args += ["--ro-bind", system, system]
        args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        for source, target in binds:
            args += ["--ro-bind", source, target]
        if self.device == "cuda":
            for node in sorted(glob.glob("/dev/nvidia*")):
                args += ["--dev-bind", node, node]
        for key, value in ENV.items():
            args += ["--setenv", key, value]
        args += ["--remount-ro", "/", *program]  # only /tmp and /dev/shm (size-limited) stay writable
        if not _is_root():
            return args
        # As root, bwrap itself runs as nobody; what nobody cannot reach is made reachable first.
        return self._as_nobody(args, hide_project=False, reachable=(Path(sys.prefix), WORKER_DIR))


def _probe(level: str) -> bool:
    """Whether an interpreter importing torch starts at `level` here."""
    launch = Launch(level, tmp_bytes=1 << 20)
    try:
        argv = launch.wrap([sys.executable, "-I", "-c", "import torch"])
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=120, preexec_fn=launch.preexec)
        return result.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        launch.cleanup()


_detected: dict[str, str] = {}


def detect_level(forced: str | None = None) -> str:
    """The strongest level that works here, or `forced` (also settable as AUTOGRADER_ISOLATION)."""
    forced = forced or os.environ.get("AUTOGRADER_ISOLATION")
    if forced:
        if forced not in LEVELS:
            raise IsolationError(f"unknown isolation level {forced!r}; choose one of {', '.join(LEVELS)}")
        return forced
    if "level" not in _detected:
        if shutil.which("bwrap") and (not _is_root() or (shutil.which("unshare") and shutil.which("setpriv"))) \
                and _probe("bwrap"):
            _detected["level"] = "bwrap"
        else:
            _detected["level"] = "rlimits" if _is_root() else "unprotected"
    return _detected["level"]


def require_isolation(level: str, required: str) -> None:
    """Refuse to go on when `level` is weaker than `required`."""
    if LEVELS.index(level) > LEVELS.index(required):
        raise IsolationError(f"isolation level {level!r} is weaker than the required {required!r}: "
                             "install bubblewrap (`apt-get install bubblewrap`) and allow user namespaces, "
                             "or grade as root for 'rlimits'")
