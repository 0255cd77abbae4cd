"""Grader side of the worker: a pool (one fork server) and one session per submission.

Everything that arrives from a session is untrusted data: it is decoded by
`wire.decode` and checked by the grader. Limits are enforced from here, where
the student cannot reach: CPU time is read from /proc for the worker's real
pid, and a session that overruns is killed with its whole process group.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from . import wire
from .isolation import Launch, detect_level

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Limits:
    """What one submission may use. CPU time, not wall time, decides a per-call timeout, so a busy
    machine does not change grades; the wall-clock ceiling only catches code that sleeps."""

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


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class WorkerPool:
    """One sandboxed fork server that imported torch once; `session()` forks a fresh worker per submission."""

    def __init__(self, level: str | None = None, limits: Limits = Limits(), device: str = "cpu"):
        self.level = detect_level(level)
        self.limits = limits
        self.device = device
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.launch: Launch | None = None
        self.exit_statuses: dict[int, int] = {}
        self.server_pid: int | None = None

    def __enter__(self) -> "WorkerPool":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.launch = Launch(self.level, self.limits.tmp_bytes, self.device)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(
                self.launch.command(theirs.fileno()), pass_fds=(theirs.fileno(),), close_fds=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                env=None if self.level == "bwrap" else _clean_env(), cwd=self.launch.stage,
                preexec_fn=self.launch.preexec)
        finally:
            theirs.close()
        self.control = ours
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        message, self.server_pid = _receive_with_pid(ours, self.limits.start_timeout_s)
        if not message or json.loads(message).get("op") != "ready":
            stderr.seek(0)
            detail = stderr.read().decode(errors="replace")[-2000:]
            self.close()
            raise WorkerCrashed(f"the worker could not start at isolation level {self.level!r}: {detail}")
        stderr.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def intact(self) -> bool:
        """Whether the fork server is alive with no signal pending. A submission that signalled it (kill
        returns once the signal is queued) is caught here even if it answered before the signal landed."""
        try:
            status = open(f"/proc/{self.server_pid}/status").read()
        except (OSError, TypeError):
            return False
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return (fields.get("State", "").strip()[:1] not in ("Z", "X")
                and int(fields.get("SigPnd", "0"), 16) == 0 and int(fields.get("ShdPnd", "0"), 16) == 0)

    def restart(self) -> None:
        self.close()
        self.start()

    def close(self) -> None:
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

    def cleanup(self) -> None:
        """Kill whatever the last submission left running; restart the pool if it does not answer."""
        try:
            self.control.send(json.dumps({"op": "cleanup"}).encode())
            ready, _, _ = select.select([self.control], [], [], 10)
            reply = json.loads(self.control.recv(1 << 20)) if ready else {}
            self.exit_statuses.update({int(k): v for k, v in reply.get("statuses", {}).items()})
            if reply.get("op") != "clean":
                raise OSError("no answer")
        except (OSError, ValueError, AttributeError):
            self.restart()

    def session(self, attempts: int = 3) -> "Session":
        """A fresh worker for one submission. A fork server that fails to fork is restarted: that is
        never the fault of the submission about to be graded."""
        for _ in range(attempts):
            if not self.alive():
                self.restart()
            session = self._fork()
            if session is not None:
                return session
            self.restart()
        raise WorkerCrashed(f"the worker could not be started ({attempts} attempts); the grading host may be "
                            "out of memory or processes")

    def _fork(self) -> "Session | None":
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        limits = {"memory_bytes": self.limits.memory_bytes, "file_bytes": self.limits.file_bytes,
                  "nprocs": self.limits.nprocs, "submission_cpu_s": self.limits.submission_cpu_s}
        try:
            socket.send_fds(self.control, [json.dumps({"op": "fork", "limits": limits}).encode()], [theirs.fileno()])
        except OSError:
            ours.close()
            return None
        finally:
            theirs.close()
        pid, ns_pid = _hello(ours, self.limits.start_timeout_s)
        if pid is None:
            ours.close()
            return None
        return Session(self, ours, pid, ns_pid)


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


def _hello(sock: socket.socket, timeout: float) -> tuple[int | None, int | None]:
    """Read the child's greeting: its pid in our namespace (from the kernel) and in its own (from its text)."""
    data, pid = _receive_with_pid(sock, timeout)
    if not data.startswith(b"H") or pid is None:
        return None, None
    try:
        ns_pid = int(data[1:])
    except ValueError:
        return None, None
    return pid, ns_pid


def _clean_env() -> dict[str, str]:
    from .isolation import ENV

    return dict(ENV, PATH=os.environ.get("PATH", ENV["PATH"]))


class Session:
    """One submission's worker. Every method may raise WorkerError; the session is then unusable."""

    def __init__(self, pool: WorkerPool, sock: socket.socket, pid: int, ns_pid: int):
        self.pool = pool
        self.sock = sock
        self.pid = pid
        self.ns_pid = ns_pid
        self.closed = False

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
        self.pool.cleanup()

    def _kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _died(self) -> WorkerCrashed:
        self._kill()
        self.pool.cleanup()
        status = self.pool.exit_statuses.get(self.ns_pid)
        if status is None:
            how = "stopped unexpectedly"
        elif os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            how = f"was killed by {_signal_name(number)}" + (" (out of memory?)" if number == signal.SIGKILL else "")
        else:
            how = f"exited with status {os.WEXITSTATUS(status)} (os._exit or a crash)"
        return WorkerCrashed(f"the worker process running your code {how}")

    def _request(self, header: dict, payloads: list[bytes]) -> tuple[dict, list[bytes]]:
        if self.closed:
            raise WorkerCrashed("the worker for this submission was already stopped")
        limits = self.pool.limits
        try:
            self.sock.settimeout(limits.call_wall_s)
            wire.send(self.sock, header, payloads)
        except (OSError, socket.timeout):
            raise self._died() from None
        start_cpu = _cpu_seconds(self.pid) or 0.0
        deadline = time.monotonic() + limits.call_wall_s
        while True:
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if ready:
                break
            cpu = _cpu_seconds(self.pid)
            if cpu is None:
                raise self._died()
            if cpu - start_cpu > limits.call_cpu_s:
                self._kill()
                raise WorkerTimeout(f"timed out after {limits.call_cpu_s:g} s of CPU time")
            if time.monotonic() > deadline:
                self._kill()
                raise WorkerTimeout(f"timed out after {limits.call_wall_s:g} s without answering "
                                    "(sleeping or waiting on something?)")
        try:
            reply = wire.receive(self.sock)
        except (EOFError, OSError, socket.timeout):
            raise self._died() from None
        except wire.ProtocolError as error:
            self._kill()
            raise ProtocolError(f"the worker sent a malformed reply ({error}); "
                                "did your code write to the grader's channel?") from None
        if not self.pool.intact():
            self._kill()
            raise WorkerCrashed("your code signalled or killed the grader's worker process; its answer was discarded")
        return reply

    def _decode(self, tree: object, payloads: list[bytes]) -> Any:
        try:
            return wire.decode(tree, payloads)
        except (wire.ProtocolError, TypeError, ValueError, RuntimeError) as error:
            self._kill()
            raise ProtocolError(f"the worker sent a malformed value ({error})") from None

    def exec_cells(self, cells: list[dict], watch: list[list[str]] = ()) -> list[CellResult]:
        """Run `cells` in order; first wrap every [label, path] of `watch` so later calls report their use."""
        reply, _ = self._request({"op": "exec", "cells": [{"id": c["id"], "source": c["source"]} for c in cells],
                                  "watch": [list(pair) for pair in watch]}, [])
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

    def call(self, target: str, args: list, kwargs: dict, seed: int = 0) -> CallResult:
        payloads: list[bytes] = []
        header = {"op": "call", "target": target, "seed": seed, "device": self.pool.device,
                  "args": [wire.encode(a, payloads) for a in args],
                  "kwargs": {k: wire.encode(v, payloads) for k, v in kwargs.items()}}
        reply, data = self._request(header, payloads)
        if reply.get("ok") is not True:
            return CallResult(False, None, [], *self._error(reply), forbidden=_forbidden(reply))
        after = reply.get("args_after")
        models = reply.get("models")
        return CallResult(True, self._decode(reply.get("value"), data),
                          [self._decode(a, data) for a in after] if isinstance(after, list) else [],
                          models=models if isinstance(models, list) else [], forbidden=_forbidden(reply))

    def call_module(self, target: str, init_args: list, init_kwargs: dict, state_dict: dict | None, *,
                    dtype: torch.dtype = torch.float32, train: bool = False, method: str = "forward",
                    args: list, kwargs: dict, grad_inputs: list[int], grad_outputs: list | None,
                    seed: int = 0) -> ModuleResult:
        payloads: list[bytes] = []
        encode = lambda value: wire.encode(value, payloads)  # noqa: E731
        header = {"op": "module", "target": target, "seed": seed, "device": self.pool.device,
                  "dtype": wire.DTYPE_NAMES[dtype], "train": train, "method": method,
                  "init_args": [encode(a) for a in init_args], "init_kwargs": {k: encode(v) for k, v in init_kwargs.items()},
                  "state_dict": {k: encode(v) for k, v in (state_dict or {}).items()},
                  "args": [encode(a) for a in args], "kwargs": {k: encode(v) for k, v in kwargs.items()},
                  "grad_inputs": grad_inputs, "grad_outputs": [None if g is None else encode(g) for g in grad_outputs or []]}
        reply, data = self._request(header, payloads)
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
