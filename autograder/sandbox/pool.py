"""Grader side of the worker: a pool (one fork server) and one session per submission.

Everything that arrives from a session is untrusted data: it is decoded by
`wire.decode` and checked by the grader. Budgets are enforced from here, where
the student cannot reach, while every request is waiting: CPU time and memory
are read from /proc for all of the submission's processes (the session's first
process and everything below it: it is a child subreaper, so orphans stay
below it), and the wall clock runs for the whole submission. A session that
overruns is killed whole (its pid namespace, or all of its user id).
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from . import wire
from ..trusted import TrustedCalls
from .isolation import (IsolationError, Launch, candidates, check_references, detected_level, forced_level,
                        remember_level)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
POLL_S = 0.05
_STATUS_FIELDS = re.compile(rb"^(State|SigPnd|ShdPnd):\s*(\S+)", re.M)
MAX_TREE = 4096  # more processes than any RLIMIT_NPROC we set: a fork bomb's tail goes uncounted, not unkilled


@dataclass(frozen=True)
class Limits:
    """What one submission may use. CPU time, not wall time, decides a per-call timeout, so a busy
    machine does not change grades; the wall-clock ceilings only catch code that sleeps. Memory and CPU
    budgets count all of a submission's processes together; memory_bytes is also each process's
    address-space limit, so a single oversized allocation fails inside the student's code."""

    call_cpu_s: float = 10.0
    submission_wall_s: float = 300.0
    submission_cpu_s: int = 600
    memory_bytes: int = 6 * 2**30
    file_bytes: int = 16 * 2**20
    tmp_bytes: int = 64 * 2**20
    nprocs: int = 256
    start_timeout_s: float = 120.0

    @property
    def call_wall_s(self) -> float:
        return 3 * self.call_cpu_s + 5


class WorkerError(Exception):
    """The worker could not answer: it timed out, died, or spoke nonsense. The message is for the student."""


class WorkerTimeout(WorkerError):
    pass


class WorkerCrashed(WorkerError):
    pass


class ProtocolError(WorkerError):
    pass


@dataclass
class CellResult:
    id: str
    ok: bool
    error: str = ""
    stdout: str = ""
    stderr: str = ""


@dataclass
class CallResult:
    ok: bool
    value: Any = None
    args_after: list = field(default_factory=list)
    error_type: str = ""
    message: str = ""
    models: list = field(default_factory=list)   # per model argument: {parameter name: [requires_grad, numel]}
    input_grads: list = field(default_factory=list)  # gradients of the grad_inputs, when asked for
    forbidden: dict = field(default_factory=dict)  # watched call -> times the call made it (see worker.watch)


@dataclass
class ModuleResult:
    ok: bool
    outputs: list = field(default_factory=list)
    input_grads: list = field(default_factory=list)
    param_grads: dict = field(default_factory=dict)
    error_type: str = ""
    message: str = ""
    forbidden: dict = field(default_factory=dict)  # watched call -> times the call made it (see worker.watch)


def _forbidden(reply: dict) -> dict[str, int]:
    """The watched-call counts of a reply; untrusted, so only short names with positive int counts are kept."""
    calls = reply.get("forbidden")
    if not isinstance(calls, dict):
        return {}
    return {str(k)[:200]: v for k, v in list(calls.items())[:50] if type(v) is int and v > 0}


def _stat(pid: int) -> list[str]:
    """Fields 3 onwards of /proc/PID/stat (after the command name, which may hold spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _tree(pid: int) -> list[int]:
    """`pid` and every process below it, or [] once `pid` is gone."""
    found, frontier = [], [pid]
    while frontier and len(found) < MAX_TREE:
        found += frontier
        children = []
        for parent in frontier:
            try:
                for task in os.listdir(f"/proc/{parent}/task"):
                    with open(f"/proc/{parent}/task/{task}/children") as handle:
                        children += [int(child) for child in handle.read().split()]
            except OSError:
                pass
        frontier = children
    return found if _stat(pid) else []


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of `pids`, with that of the children each has waited for."""
    ticks = 0
    for pid in pids:
        fields = _stat(pid)
        ticks += sum(int(value) for value in fields[11:15]) if fields else 0  # utime stime cutime cstime
    return ticks / CLOCK_TICKS


def _memory_bytes(pids: list[int]) -> int:
    """Memory `pids` use together. Resident sizes (cheap to read) count pages shared after a fork once per
    process, so only when they add up to more than a budget is the proportional set size (which splits
    each shared page between its users, costly to read) summed to decide."""
    return sum(_read_int(f"/proc/{pid}/statm", 1) * PAGE_BYTES for pid in pids)


def _proportional_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                total += next(int(line.split()[1]) for line in handle if line.startswith("Pss:")) * 1024
        except (OSError, StopIteration, ValueError):
            pass
    return total


def _read_int(path: str, index: int) -> int:
    try:
        with open(path) as handle:
            return int(handle.read().split()[index])
    except (OSError, IndexError, ValueError):
        return 0


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class WorkerPool:
    """One sandboxed fork server that imported torch once; `session()` forks a fresh worker per submission."""

    def __init__(self, level: str | None = None, limits: Limits = Limits(), device: str = "cpu"):
        self.level = forced_level(level) or detected_level()   # None: the strongest that starts
        self.limits = limits
        self.device = device
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.launch: Launch | None = None
        self.exit_statuses: dict[int, int] = {}
        self.server_pid: int | None = None
        self._status: int | None = None   # descriptor of the fork server's /proc status (see intact)

    def __enter__(self) -> "WorkerPool":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, verify_references: bool = True) -> None:
        """Start the fork server and wait until it is ready (`launch` then `finish`)."""
        self.launch_server()
        self.finish(verify_references)

    def launch_server(self) -> None:
        """Start the fork server without waiting for it (it imports torch meanwhile): at the given level, or
        else at the strongest candidate, in which case `finish` falls back to weaker ones. The start is the
        probe, so nothing starts twice."""
        self._untried = [self.level] if self.level else candidates()
        self._probing = self.level is None
        self._launch(self._untried.pop(0))

    def finish(self, verify_references: bool = True) -> None:
        """Wait for the fork server `launch_server` started. At the "uid" level, refuse if a submission could
        read a reference."""
        while True:
            try:
                self._wait_ready()
                if not self._probing or self._runs_a_cell():
                    break
                failure: BaseException = WorkerCrashed(f"a worker at level {self.level!r} could not run a cell")
            except (WorkerError, IsolationError, OSError) as error:
                failure = error
            self.close()
            if not (self._probing and self._untried):
                raise failure
            self._launch(self._untried.pop(0))
        if self._probing:
            remember_level(self.level)
        if self.level == "uid" and verify_references:
            try:
                check_references(self.launch.uids[1])
            except BaseException:
                self.close()
                raise

    def _runs_a_cell(self) -> bool:
        with self.session() as session:
            return session.exec_cells([{"id": "probe", "source": "import os, wave\nos.listdir('.')"}])[0].ok

    def _launch(self, level: str) -> None:
        self.level = level
        self.launch = Launch(level, self.limits.tmp_bytes, self.device)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(
                self.launch.command(theirs.fileno()), pass_fds=(theirs.fileno(),), close_fds=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                env=None if level == "bwrap" else _clean_env(), cwd=self.launch.stage,
                preexec_fn=self.launch.preexec)
        except BaseException:
            ours.close()
            self.close()
            raise
        finally:
            theirs.close()
        self.control = ours
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def _wait_ready(self) -> None:
        message, self.server_pid = _receive_with_pid(self.control, self.limits.start_timeout_s)
        self._status = os.open(f"/proc/{self.server_pid}/status", os.O_RDONLY) if self.server_pid else None
        if not message or json.loads(message).get("op") != "ready":
            self._stderr.seek(0)
            detail = self._stderr.read().decode(errors="replace")[-2000:]
            raise WorkerCrashed(f"the worker could not start at isolation level {self.level!r}: {detail}")
        self._stderr.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def intact(self) -> bool:
        """Whether the fork server is alive with no signal pending. A submission that signalled it (kill
        returns once the signal is queued) is caught here even if it answered before the signal landed.
        Asked after every message, so its status file is kept open (a dead server's no longer reads)."""
        try:
            status = os.pread(self._status, 8192, 0)
        except (OSError, TypeError):
            return False
        fields = dict(_STATUS_FIELDS.findall(status))
        return (fields.get(b"State", b"")[:1] not in (b"Z", b"X")
                and int(fields.get(b"SigPnd", b"0"), 16) == 0 and int(fields.get(b"ShdPnd", b"0"), 16) == 0)

    def restart(self) -> None:
        self.close()
        self.start()

    def close(self) -> None:
        if self._status is not None:
            os.close(self._status)
            self._status = None
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
            self.process = None
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.launch is not None:
            self.launch.cleanup()
            self.launch = None

    def cleanup(self, uid: int | None) -> None:
        """After a submission: the fork server kills and reaps whatever it left running and removes what it
        wrote. A fork server that does not answer, or could not clean up, is restarted."""
        try:
            self.control.send(json.dumps({"op": "cleanup", "uid": uid}).encode())
            ready, _, _ = select.select([self.control], [], [], 30)
            reply = json.loads(self.control.recv(1 << 20)) if ready else {}
            self.exit_statuses.update({int(k): v for k, v in reply.get("statuses", {}).items()})
            if reply.get("op") != "clean":
                raise OSError("not clean")
        except (OSError, ValueError, AttributeError):
            self.restart()

    def session(self, attempts: int = 3, deadline: float | None = None,
                watch: list[list[str]] | tuple = ()) -> "Session":
        """A fresh worker for one submission, stopped when the clock (time.monotonic) reaches `deadline`
        (by default `limits.submission_wall_s` from now), whose replies count the calls of every [label, path]
        of `watch` (see worker.watch). A fork server that fails to fork is restarted: that is never the fault of
        the submission about to be graded."""
        if deadline is None:
            deadline = time.monotonic() + self.limits.submission_wall_s
        error = ""
        for _ in range(attempts):
            if not self.alive():
                self.restart()
            session = self._fork(deadline, [list(pair) for pair in watch])
            if isinstance(session, Session):
                return session
            error = session
            self.restart()
        raise WorkerCrashed(f"the worker could not be started ({attempts} attempts{': ' + error if error else ''}); "
                            "the grading host may be out of memory or processes")

    def _fork(self, deadline: float, watch: list[list[str]]) -> "Session | str":
        """A new session, or why there is none."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        uid = self.launch.submission_uid()
        limits = {"memory_bytes": self.limits.memory_bytes, "file_bytes": self.limits.file_bytes,
                  "nprocs": self.limits.nprocs, "submission_cpu_s": self.limits.submission_cpu_s}
        try:
            request = {"op": "fork", "limits": limits, "uid": uid, "watch": watch}
            socket.send_fds(self.control, [json.dumps(request).encode()], [theirs.fileno()])
        except OSError as error:
            ours.close()
            return str(error)
        finally:
            theirs.close()
        data, pid = _receive_with_pid(ours, self.limits.start_timeout_s)
        if not data.startswith(b"H") or pid is None or not data[1:].isdigit():
            ours.close()
            self.cleanup(uid)
            return data[1:].decode(errors="replace")[:500] if data.startswith(b"E") else ""
        return Session(self, ours, pid, int(data[1:]), uid, deadline)


def _receive_with_pid(sock: socket.socket, timeout: float) -> tuple[bytes, int | None]:
    """One message and its sender's pid, which the kernel attaches (SO_PASSCRED) as numbered in our pid
    namespace, whatever the sender's own namespace calls it."""
    ready, _, _ = select.select([sock], [], [], timeout)
    if not ready:
        return b"", None
    data, ancillary, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(struct.calcsize("3i")))
    pid = None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("3i", payload[:12])[0]
    return data, pid


def _clean_env() -> dict[str, str]:
    from .isolation import ENV

    return dict(ENV, PATH=os.environ.get("PATH", ENV["PATH"]))


@dataclass
class _Waiting:
    """A request the grader waits on: its wall-clock deadline, and the submission's CPU time when a poll first
    found it unanswered. Read then, not when the request is sent, so a call answered within POLL_S (nearly
    all) never reads /proc; the per-call CPU budget is short by at most that first poll's CPU."""

    deadline: float
    start_cpu: float | None = None


class Session:
    """One submission's worker. Every method may raise WorkerError; the session is then unusable.

    `pid` is the submission's first process as the grader numbers it (pid 1 of its own pid namespace where
    there is one); `server_pid` the same process's parent as the fork server numbers it (its exit status);
    `uid` the user id it runs as, where it has one of its own."""

    def __init__(self, pool: WorkerPool, sock: socket.socket, pid: int, server_pid: int, uid: int | None,
                 deadline: float):
        self.pool = pool
        self.sock = sock
        self.receiver = wire.Receiver(sock)
        self.pid = pid
        self.server_pid = server_pid
        self.uid = uid
        self.deadline = deadline
        self.closed = False
        self.stopped = ""  # why the grader stopped it, repeated to every later request
        self.trusted = TrustedCalls({})  # graded names computed here on the worker's behalf (see trust)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._kill()
        self.sock.close()
        self.pool.cleanup(self.uid)

    def _kill(self) -> None:
        """Kill the submission's first process: with it dies its pid namespace, everything in it. Without
        one, the fork server's cleanup kills the rest (all of its user id, or all left below itself)."""
        for kill in (os.killpg, os.kill):
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _stop(self, error: WorkerError) -> WorkerError:
        self._kill()
        self.stopped = str(error)
        return error

    def _died(self) -> WorkerCrashed:
        self._kill()
        self.pool.cleanup(self.uid)
        status = self.pool.exit_statuses.get(self.server_pid)
        if status is None:
            how = "stopped unexpectedly"
        elif os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            how = f"was killed by {_signal_name(number)}" + (" (out of memory?)" if number == signal.SIGKILL else "")
        else:
            how = f"exited with status {os.WEXITSTATUS(status)} (os._exit or a crash)"
        return WorkerCrashed(f"the worker process running your code {how}")

    def _over_budget(self, waiting: _Waiting) -> WorkerError | None:
        """Why the request now waiting must be stopped, if it must. Raises WorkerCrashed when the
        submission's processes are gone."""
        limits = self.pool.limits
        processes = _tree(self.pid)
        if not processes:
            raise self._died()
        cpu = _cpu_seconds(processes)
        if waiting.start_cpu is None:
            waiting.start_cpu = cpu
        now = time.monotonic()
        if cpu - waiting.start_cpu > limits.call_cpu_s:
            return WorkerTimeout(f"timed out after {limits.call_cpu_s:g} s of CPU time")
        if cpu > limits.submission_cpu_s:
            return WorkerTimeout(f"stopped: the submission used up its budget of {limits.submission_cpu_s:g} s of "
                                 "CPU time (all its processes together); later checks were not run")
        if now > self.deadline:
            return WorkerTimeout(f"stopped: the submission used up its {limits.submission_wall_s:g} s wall-clock "
                                 "budget (all checks together); later checks were not run")
        if now > waiting.deadline:
            return WorkerTimeout(f"timed out after {limits.call_wall_s:g} s without answering "
                                 "(sleeping or waiting on something?)")
        if _memory_bytes(processes) > limits.memory_bytes and _proportional_bytes(processes) > limits.memory_bytes:
            return WorkerCrashed(f"stopped: your code's processes together used more than "
                                 f"{limits.memory_bytes / 2**30:g} GiB of memory")
        return None

    def _request(self, header: dict, payloads: list[bytes]) -> tuple[dict, list[bytes]]:
        self._send(header, payloads)
        return self._reply(wire.reply_limit(payloads))

    def _send(self, header: dict, payloads: list[bytes]) -> None:
        if self.closed or self.stopped:
            raise WorkerCrashed(self.stopped or "the worker for this submission was already stopped")
        try:
            self.sock.settimeout(self.pool.limits.call_wall_s)
            wire.send(self.sock, header, payloads)
        except (OSError, socket.timeout):
            raise self._died() from None

    def _reply(self, max_bytes: int) -> tuple[dict, list[bytes]]:
        """The reply to the oldest request not yet answered, within one call's limits; callbacks of trusted
        functions that come first are answered."""
        waiting = _Waiting(time.monotonic() + self.pool.limits.call_wall_s)
        while True:
            reply = self._next_message(waiting, max_bytes)
            if reply[0].get("op") == "callback":
                self._answer_callback(*reply)
                continue
            self.trusted.forget()
            if not self.pool.intact():
                self._kill()
                raise WorkerCrashed("your code signalled or killed the grader's worker process; its answer was "
                                    "discarded")
            return reply

    def _next_message(self, waiting: _Waiting, max_bytes: int) -> tuple[dict, list[bytes]]:
        """Wait for the worker's next message within the call's CPU and wall limits and the submission's."""
        while not self.receiver.early and not select.select([self.sock], [], [], POLL_S)[0]:
            error = self._over_budget(waiting)
            if error is not None:
                raise self._stop(error)
        try:
            reply = self.receiver.receive(max_bytes)
        except (EOFError, OSError, socket.timeout):
            raise self._died() from None
        except wire.TooLarge as error:
            self._kill()
            raise ProtocolError(f"your code returned {error}: far more than these inputs call for") from None
        except wire.ProtocolError as error:
            raise self._stop(ProtocolError(f"the worker sent a malformed reply ({error}); "
                                           "did your code write to the grader's channel?")) from None
        return reply

    def trust(self, functions: dict[str, Any]) -> None:
        """Replace the graded names in `functions` by stand-ins the grader computes with these functions (see
        `autograder.trusted`); the functions themselves never leave this process."""
        self.trusted = TrustedCalls(functions)
        self._request({"op": "trust", "names": sorted(functions)}, [])

    def _answer_callback(self, header: dict, data: list[bytes]) -> None:
        """Compute one call (or vector-Jacobian product) of a trusted function the worker asked for."""
        if header.get("name") not in self.trusted:
            self._kill()
            raise ProtocolError("the worker asked for a trusted function it was not given; "
                                "did your code write to the grader's channel?")
        try:
            args = [self._decode(a, data) for a in header.get("args", [])]
            kwargs = {str(k): self._decode(v, data) for k, v in dict(header.get("kwargs", {})).items()}
            grads = [self._decode(g, data) for g in header.get("grad_outputs", [])]
        except (TypeError, AttributeError, ValueError) as error:
            self._kill()
            raise ProtocolError(f"the worker sent a malformed callback ({error})") from None
        payloads: list[bytes] = []
        try:
            reply = self.trusted.answer(header["name"], header.get("kind"), args, kwargs, grads,
                                        keep=header.get("keep") is True, call=header.get("call"))
            reply = dict(reply, ok=True, values=[wire.encode(v, payloads) for v in reply.get("values", [])])
        except Exception as error:  # noqa: BLE001 - inputs the trusted function refuses: the student's error
            payloads, reply = [], {"ok": False, "message": f"{type(error).__name__}: {error}"[:2000]}
        try:
            wire.send(self.sock, reply, payloads)
        except OSError:
            raise self._died() from None

    def _decode(self, tree: object, payloads: list[bytes]) -> Any:
        try:
            return wire.decode(tree, payloads)
        except (wire.ProtocolError, TypeError, ValueError, RuntimeError) as error:
            self._kill()
            raise ProtocolError(f"the worker sent a malformed value ({error})") from None

    def exec_cells(self, cells: list[dict]) -> list[CellResult]:
        """Run `cells` in order."""
        reply, _ = self._request({"op": "exec", "cells": [{"id": c["id"], "source": c["source"]} for c in cells]}, [])
        try:
            return [CellResult(str(c["id"]), bool(c["ok"]), str(c.get("error", ""))[:4000],
                               str(c.get("stdout", ""))[:10000], str(c.get("stderr", ""))[:10000])
                    for c in reply["cells"]]
        except (KeyError, TypeError) as error:
            self._kill()
            raise ProtocolError(f"the worker sent a malformed reply ({error})") from None

    def _error(self, reply: dict) -> tuple[str, str]:
        mro = reply.get("error_mro") if isinstance(reply.get("error_mro"), list) else []
        kind = str(reply.get("error_type", "Exception"))[:100]
        # A subclass of ValueError counts as ValueError, as `except ValueError` would.
        if "ValueError" in mro and kind != "ValueError":
            kind = f"ValueError ({kind})"
        return kind, str(reply.get("message", ""))[:2000]

    def call(self, target: str, args: list, kwargs: dict, seed: int = 0, *, grad_inputs: list[int] | None = None,
             grad_outputs: list | None = None, args_after: bool = False) -> CallResult:
        """Call `target`; with `grad_inputs`, also backward from the outputs weighted by `grad_outputs`; with
        `args_after`, also send back the arguments as the call left them."""
        payloads: list[bytes] = []
        header = self._call_header(payloads, target, args, kwargs, seed, grad_inputs=grad_inputs,
                                   grad_outputs=grad_outputs, args_after=args_after)
        return self._call_result(*self._request(header, payloads))

    def call_module(self, target: str, init_args: list, init_kwargs: dict, state_dict: dict | None, *,
                    dtype: torch.dtype = torch.float32, train: bool = False, method: str = "forward",
                    args: list, kwargs: dict, grad_inputs: list[int], grad_outputs: list | None,
                    seed: int = 0) -> ModuleResult:
        """Build the module `target`, load `state_dict`, run `method` (and backward from the outputs weighted by
        `grad_outputs`)."""
        payloads: list[bytes] = []
        header = self._module_header(payloads, target, init_args, init_kwargs, state_dict, dtype=dtype, train=train,
                                     method=method, args=args, kwargs=kwargs, grad_inputs=grad_inputs,
                                     grad_outputs=grad_outputs, seed=seed)
        return self._module_result(*self._request(header, payloads))

    def batch(self, calls: list[tuple[str, tuple, dict]]) -> Iterator[CallResult | ModuleResult]:
        """Make `calls` ((method, args, kwargs) of `call` or `call_module`) in one request; yield their results in
        order, each as the worker sends it, every call within the limits of one. The worker makes every call,
        whatever the ones before it returned. Stopping before the last result stops the session."""
        kinds = {"call": (self._call_header, self._call_result), "call_module": (self._module_header, self._module_result)}
        payloads: list[bytes] = []
        requests, limits = [], []
        for method, args, kwargs in calls:
            mark = len(payloads)
            requests.append(kinds[method][0](payloads, *args, **kwargs))
            limits.append(wire.reply_limit(payloads[mark:]))
        self._send({"op": "batch", "requests": requests}, payloads)
        answered = 0
        try:
            for (method, _, _), limit in zip(calls, limits):
                reply = self._reply(limit)
                answered += 1
                yield kinds[method][1](*reply)
        finally:
            if answered < len(calls) and not self.stopped:
                self._stop(WorkerCrashed("the grader stopped reading this submission's answers"))

    def _call_header(self, payloads: list[bytes], target: str, args: list, kwargs: dict, seed: int = 0, *,
                     grad_inputs: list[int] | None = None, grad_outputs: list | None = None,
                     args_after: bool = False) -> dict:
        header = {"op": "call", "target": target, "seed": seed, "device": self.pool.device,
                  "args": [wire.encode(a, payloads) for a in args],
                  "kwargs": {k: wire.encode(v, payloads) for k, v in kwargs.items()}, "args_after": args_after}
        if grad_inputs:
            header["grad_inputs"] = list(grad_inputs)
            header["grad_outputs"] = [None if g is None else wire.encode(g, payloads) for g in grad_outputs or []]
        return header

    def _call_result(self, reply: dict, data: list[bytes]) -> CallResult:
        if reply.get("ok") is not True:
            return CallResult(False, None, [], *self._error(reply), forbidden=_forbidden(reply))
        after = reply.get("args_after")
        models = reply.get("models")
        grads = reply.get("input_grads")
        return CallResult(True, self._decode(reply.get("value"), data),
                          [self._decode(a, data) for a in after] if isinstance(after, list) else [],
                          models=models if isinstance(models, list) else [],
                          input_grads=[self._decode(g, data) for g in grads] if isinstance(grads, list) else [],
                          forbidden=_forbidden(reply))

    def _module_header(self, payloads: list[bytes], target: str, init_args: list, init_kwargs: dict,
                       state_dict: dict | None, *, dtype: torch.dtype = torch.float32, train: bool = False,
                       method: str = "forward", args: list, kwargs: dict, grad_inputs: list[int],
                       grad_outputs: list | None, seed: int = 0) -> dict:
        encode = lambda value: wire.encode(value, payloads)  # noqa: E731
        return {"op": "module", "target": target, "seed": seed, "device": self.pool.device,
                "dtype": wire.DTYPE_NAMES[dtype], "train": train, "method": method,
                "init_args": [encode(a) for a in init_args], "init_kwargs": {k: encode(v) for k, v in init_kwargs.items()},
                "state_dict": {k: encode(v) for k, v in (state_dict or {}).items()},
                "args": [encode(a) for a in args], "kwargs": {k: encode(v) for k, v in kwargs.items()},
                "grad_inputs": grad_inputs, "grad_outputs": [None if g is None else encode(g) for g in grad_outputs or []]}

    def _module_result(self, reply: dict, data: list[bytes]) -> ModuleResult:
        if reply.get("ok") is not True:
            return ModuleResult(False, error_type=self._error(reply)[0], message=self._error(reply)[1],
                                forbidden=_forbidden(reply))
        try:
            return ModuleResult(True, [self._decode(o, data) for o in reply["outputs"]],
                                [self._decode(g, data) for g in reply["input_grads"]],
                                {str(k): self._decode(v, data) for k, v in reply["param_grads"].items()},
                                forbidden=_forbidden(reply))
        except (KeyError, TypeError, AttributeError) as error:
            self._kill()
            raise ProtocolError(f"the worker sent a malformed reply ({error})") from None
