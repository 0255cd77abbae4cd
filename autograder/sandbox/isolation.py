"""Isolation levels: how the worker is walled off from the grader, strongest first.

At every level the worker is a fork server started from a clean interpreter
(never forked from the grader), and each submission runs in a process forked
from it that, before any student code: gets a working folder nothing else can
see, drops every privilege and capability, sets NoNewPrivs, loads the seccomp
filter of seccomp.py (no namespaces, mounts, ptrace, System V IPC or sockets
but AF_UNIX), and sets resource limits. The grader adds per-submission budgets
(memory and CPU of all its processes, wall clock) read from /proc (pool.py).

- "bwrap": bubblewrap namespaces (user, pid, net, ipc, uts, mount), with
  further user namespaces disabled. The fork server sees a read-only root
  holding only the system libraries, the Python install and the virtual
  environment; the project (references, rubrics, submissions, gradebook) does
  not exist there, the environment is empty. Each submission gets a pid, mount
  and IPC namespace of its own with fresh tmpfs on /tmp and /dev/shm, and is
  killed whole with its namespace. When the grader runs as root the sandbox
  runs as an unprivileged user id.
- "rlimits": root that may make namespaces, no usable bubblewrap. The fork
  server runs in a mount, network, IPC and UTS namespace of its own, with the
  project covered by an empty tmpfs and every mount read-only; each submission
  gets its own pid, mount and IPC namespace with fresh tmpfs on /tmp, /var/tmp
  and /dev/shm, and an unprivileged user id of its own. The rest of the host's
  file system is readable with its usual permissions.
- "uid": root that may not make namespaces (a container without CAP_SYS_ADMIN,
  as Docker and Gradescope run by default). Each submission runs as an
  unprivileged user id of its own, in a home folder of mode 700, and is
  killed whole by a kill(-1) as that user id; what it left in world-writable
  folders is removed. The references must be unreadable to other users
  (`protect_references`); the pool refuses to start while they are not.
- "unprotected": none of the above (a laptop without root or user
  namespaces): the same fork server, as the grading user. Fine for trying the
  tool, not for grading strangers' code.
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import json
import os
import random
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

LEVELS = ("bwrap", "rlimits", "uid", "unprotected")
STRONGEST = LEVELS[0]
# As root, each pool gets a block of user ids no process uses: the bwrap sandbox runs as the first, each
# submission at "rlimits" and "uid" as one of the others. Per-user limits (RLIMIT_NPROC counts every process
# of a user) then never let one submission starve another, and kill(-1) as that user id stops it whole.
POOL_UID_BASE = 200_000
UID_BLOCK = 1024
PR_SET_PDEATHSIG = 1
WORKER_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = WORKER_DIR.parent.parent
WORKER_FILES = ("worker.py", "wire.py", "seccomp.py")
SANDBOX_WORKER_DIR = "/grader"
STAGE_PREFIX = "autograder-stage-"
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


def _process_uids() -> dict[int, int]:
    """The real user id of every process running now, by pid. Zombies are left out: they are already dead,
    and waiting for their parents to reap them would make every sweep slow."""
    found = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
            if not fields["State"].split()[0] == "Z":
                found[int(entry)] = int(fields["Uid"].split()[0])
        except (OSError, ValueError, KeyError, IndexError):
            pass
    return found


_blocks_taken: set[int] = set()


def _uid_block() -> int:
    """The first of UID_BLOCK user ids that no running process uses and no other pool here holds."""
    in_use = set(_process_uids().values())
    while True:
        base = POOL_UID_BASE + random.SystemRandom().randrange(1 << 20) * UID_BLOCK
        if base not in _blocks_taken and not any(base <= uid < base + UID_BLOCK for uid in in_use):
            _blocks_taken.add(base)
            return base


def kill_uids(uids: range) -> None:
    """SIGKILL every process whose real user id is in `uids` (a grader-side sweep after a pool closes)."""
    for _ in range(100):
        pids = [pid for pid, uid in _process_uids().items() if uid in uids]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


@lru_cache(maxsize=1)
def world_writable_dirs() -> tuple[str, ...]:
    """Every folder on this host that any user may write to and reach, found by walking the file system
    (/proc and /sys aside). Takes seconds; computed once per process."""
    found = []
    for root, dirs, _ in os.walk("/"):
        if root == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "sys")]
        kept = []
        for name in dirs:
            try:
                mode = os.lstat(os.path.join(root, name)).st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode) and mode & 0o001:  # a folder others may not traverse hides all below it
                kept.append(name)
                if mode & 0o002:
                    found.append(os.path.join(root, name))
        dirs[:] = kept
    return tuple(found)


def reference_paths() -> list[Path]:
    """Every place that holds reference code or rubrics: the reference package wherever it is installed,
    the rubrics, the notebooks and authoring files whose solution regions hold the same code (with
    the `__pycache__` folders inside them), and the recorded replays, which hold the reference's outputs
    (autograder.replays.path)."""
    paths = [PROJECT_ROOT / "solutions", WORKER_DIR.parent / "rubrics",
             PROJECT_ROOT / "assignments" / "source", PROJECT_ROOT / "assignments" / "authoring",
             PROJECT_ROOT / "build" / "replays"]
    spec = importlib.util.find_spec("solutions")
    paths += [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return [path for path in dict.fromkeys(p.resolve() for p in paths) if path.exists()]


def readable_by(uid: int, paths: list[Path]) -> list[str]:
    """The files and folders under `paths` that user id `uid` may read: access(2) decides, as that user
    (`test -r` in a shell running as it), so the modes of every folder above, ACLs and ownership count."""
    names = [str(path) for top in paths for path in [top, *top.rglob("*")]]
    readable = []
    for start in range(0, len(names), 500):
        try:
            result = subprocess.run(["/bin/sh", "-c", 'for f; do [ -r "$f" ] && echo "$f"; done; exit 0', "sh",
                                     *names[start:start + 500]], user=uid, group=uid, extra_groups=[],
                                    capture_output=True, text=True, timeout=60, cwd="/")
        except (OSError, subprocess.SubprocessError) as error:
            raise IsolationError(f"could not check what user id {uid} may read: {error}") from None
        readable += result.stdout.splitlines()
    return readable


def protect_references() -> list[Path]:
    """As root, make every reference path unreadable to other users (mode go-rwx on each top folder, which
    closes everything below it). What the "uid" level needs; the Gradescope set-up calls it."""
    paths = reference_paths()
    for path in paths:
        os.chmod(path, stat.S_IMODE(path.stat().st_mode) & ~0o077)
    return paths


def check_references(uid: int) -> None:
    """Refuse to run student code as `uid` while it could read a reference."""
    readable = readable_by(uid, reference_paths())
    if readable:
        shown = "\n  ".join(readable[:10]) + (f"\n  ... and {len(readable) - 10} more" if len(readable) > 10 else "")
        raise IsolationError(
            "at isolation level 'uid' student code runs as an unprivileged user that could read reference code or "
            f"rubrics:\n  {shown}\nMake them unreadable to other users first: `chmod go-rwx "
            + " ".join(shlex.quote(str(p)) for p in reference_paths())
            + "` (autograder.sandbox.protect_references() does this).")


@lru_cache(maxsize=1)
def _bwrap_disables_userns() -> bool:
    """Whether this bubblewrap has --disable-userns (0.8 and newer)."""
    help_text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True).stdout
    return "--disable-userns" in help_text


def _remove_stale_stages() -> None:
    """Remove the stages of graders that were killed before they could clean up (their pid is gone)."""
    for stage in glob.glob(f"/run/{STAGE_PREFIX}*-*"):
        pid = stage.removeprefix(f"/run/{STAGE_PREFIX}").split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(stage, ignore_errors=True)


class Launch:
    """Builds the command that starts the fork server at a given level, and owns what it needs on disk."""

    def __init__(self, level: str, tmp_bytes: int, device: str = "cpu"):
        if level not in LEVELS:
            raise IsolationError(f"unknown isolation level {level!r}; choose one of {', '.join(LEVELS)}")
        if level in ("rlimits", "uid") and not _is_root():
            raise IsolationError(f"isolation level {level!r} switches to unprivileged user ids, which needs root")
        self.level = level
        self.tmp_bytes = tmp_bytes
        self.device = device
        self.uids = range(0)
        if _is_root() and level != "unprotected":
            base = _uid_block()
            self.uids = range(base, base + UID_BLOCK)
        self.next_uid = 0
        # As root the stage lives in /run, so that the sandbox can cover /tmp with a small tmpfs of its own.
        if _is_root():
            _remove_stale_stages()
        self.stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir="/run" if _is_root() else None))
        os.chmod(self.stage, 0o755)

    def cleanup(self) -> None:
        """Kill whatever still runs as this pool's user ids (a grader killed mid-submission leaves a pid
        namespace whose first process outlived the fork server), then remove the stage."""
        if self.uids:
            kill_uids(self.uids)
            _blocks_taken.discard(self.uids.start)
        shutil.rmtree(self.stage, ignore_errors=True)

    def submission_uid(self) -> int | None:
        """The user id the next submission runs as, or None where it keeps the fork server's."""
        if self.level not in ("rlimits", "uid"):
            return None
        self.next_uid = self.next_uid % (UID_BLOCK - 1) + 1  # the block's first id is the bwrap sandbox's
        return self.uids[self.next_uid]

    def worker_config(self) -> dict:
        """What the fork server needs to know about its surroundings (see worker.py)."""
        private = {"bwrap": ["/tmp", "/dev/shm"], "rlimits": [f for f in ("/tmp", "/var/tmp", "/dev/shm")
                                                              if os.path.isdir(f) and not os.path.islink(f)]}
        return {"sandboxed": self.level == "bwrap", "namespaces": self.level in private,
                "private_dirs": private.get(self.level, []), "tmp_bytes": self.tmp_bytes,
                "keep": sorted({sys.prefix, sys.base_prefix}),
                "read_only_root": self.level == "rlimits",
                "scratch": str(self.stage / "scratch") if self.level == "uid" else None,
                "sweep_dirs": list(world_writable_dirs()) if self.level == "uid" else []}

    def command(self, control_fd: int) -> list[str]:
        """The command that starts the fork server, talking on `control_fd`."""
        config = json.dumps(self.worker_config())
        if self.level == "bwrap":
            return self.wrap([sys.executable, "-I", f"{SANDBOX_WORKER_DIR}/worker.py", str(control_fd), config])
        # Outside bwrap the worker files are copied to a folder the unprivileged user can read.
        for name in WORKER_FILES:
            shutil.copy(WORKER_DIR / name, self.stage / name)
            os.chmod(self.stage / name, 0o644)
        if self.level == "uid":
            (self.stage / "scratch").mkdir(mode=0o711)
        return self.wrap([sys.executable, "-I", str(self.stage / "worker.py"), str(control_fd), config])

    def wrap(self, program: list[str]) -> list[str]:
        """`program` as this level runs it."""
        if self.level == "bwrap":
            return self._bwrap(program)
        if self.level == "rlimits":
            return self._private_mounts(program, hide_project=True, network=False)
        return program

    def preexec(self) -> None:
        """Runs in the child before exec: its own session, so the grader can kill the whole group, and
        death with its parent, so a grader killed mid-batch leaves no fork server behind."""
        os.setsid()
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def _private_mounts(self, program: list[str], *, hide_project: bool, network: bool,
                        reachable: tuple[Path, ...] = (), uid: int | None = None) -> list[str]:
        """As root: in a private mount namespace, cover what the worker must not reach (folders others
        may not traverse, like root's home; with `hide_project` the project tree), put back the paths it
        needs (the Python install, the virtual environment, `reachable`), then run `program`, as `uid`
        if given. Without `network` the namespace also has no network, IPC or host name of the host's."""
        keep = [Path(sys.base_prefix), Path(sys.prefix), *reachable]
        covers = [next(p for p in reversed([path, *path.parents]) if not p.stat().st_mode & 0o001)
                  for path in keep if not _traversable_by_nobody(path)]
        if hide_project:
            covers.append(PROJECT_ROOT)
        if uid is not None:
            program = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--pdeathsig", "KILL",
                       *program]
        if not covers and network:
            return program  # nothing to hide or reach: no mount namespace needed (nor CAP_SYS_ADMIN)
        staged = [(path, self.stage / f"bind{index}") for index, path in enumerate(keep)]
        q = lambda path: shlex.quote(str(path))  # noqa: E731
        steps = [f"mkdir {q(stage)} && mount --bind {q(path)} {q(stage)}" for path, stage in staged]
        steps += [f"mount -t tmpfs -o mode=755,size=1m tmpfs {q(folder)}" for folder in dict.fromkeys(covers)]
        steps += [f"mkdir -p {q(path)} && mount --bind {q(stage)} {q(path)}" for path, stage in staged]
        script = " && ".join([*steps, f"exec {shlex.join(program)}"])
        spaces = ["--mount"] if network else ["--mount", "--net", "--ipc", "--uts"]
        return ["unshare", *spaces, "--propagation", "private", "--", "/bin/sh", "-c", script]

    def _bwrap(self, program: list[str]) -> list[str]:
        binds = [(str(p), str(p)) for p in (Path(sys.base_prefix), Path(sys.prefix))]
        binds.append((str(WORKER_DIR), SANDBOX_WORKER_DIR))
        size = str(self.tmp_bytes)
        # The fork server keeps CAP_SYS_ADMIN of the sandbox's user namespace to give each submission
        # namespaces of its own; each submission drops it (and every other capability) before running.
        args = ["bwrap", "--unshare-all", "--unshare-user", "--cap-add", "CAP_SYS_ADMIN",
                "--die-with-parent", "--new-session", "--clearenv",
                "--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                "--size", size, "--tmpfs", "/tmp", "--chdir", "/tmp"]
        if _bwrap_disables_userns():
            args.insert(3, "--disable-userns")  # no nested user namespace (and root) inside; seccomp also refuses
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
        # As root, bwrap itself runs as the pool's first user id; what it cannot reach is made reachable first.
        return self._private_mounts(args, hide_project=False, network=True, reachable=(Path(sys.prefix), WORKER_DIR),
                                    uid=self.uids.start)


_detected: dict[str, str] = {}


def candidates() -> list[str]:
    """The levels worth trying here, strongest first; "unprotected" always starts."""
    found = ["bwrap"] if shutil.which("bwrap") else []
    found += ["rlimits", "uid"] if _is_root() and shutil.which("unshare") and shutil.which("setpriv") else []
    return [*found, "unprotected"]


def forced_level(forced: str | None = None) -> str | None:
    """`forced`, or the AUTOGRADER_ISOLATION environment variable, checked; None when neither is set."""
    forced = forced or os.environ.get("AUTOGRADER_ISOLATION")
    if forced and forced not in LEVELS:
        raise IsolationError(f"unknown isolation level {forced!r}; choose one of {', '.join(LEVELS)}")
    return forced or None


def remember_level(level: str) -> None:
    """Record the level a worker pool found by starting: later pools and `detect_level` need not probe."""
    _detected.setdefault("level", level)


def detected_level() -> str | None:
    return _detected.get("level")


def detect_level(forced: str | None = None) -> str:
    """The strongest level that works here (found by starting a worker pool once), or `forced`."""
    level = forced_level(forced) or detected_level()
    if level is None:
        from .pool import Limits, WorkerPool

        pool = WorkerPool(limits=Limits(start_timeout_s=60))
        try:
            pool.start(verify_references=False)
        finally:
            pool.close()
        level = pool.level
    return level


def require_isolation(level: str, required: str) -> None:
    """Refuse to go on when `level` is weaker than `required`."""
    if LEVELS.index(level) > LEVELS.index(required):
        raise IsolationError(f"isolation level {level!r} is weaker than the required {required!r}: "
                             "install bubblewrap (`apt-get install bubblewrap`) and allow user namespaces, "
                             "or grade as root for 'rlimits' or 'uid'")
