"""The worker: runs untrusted student code and sends back data, never verdicts.

Started by the grader as `python -I worker.py CONTROL_FD` inside the sandbox.
It is a fork server: it imports torch once, then for every submission
receives a socket over its control socket (SCM_RIGHTS), forks, and the child
serves that submission's requests on it. The child sends back what the
student's code returned, encoded by wire.py; the grader decides everything.

This file must not import anything of the project but wire.py beside it: in
the sandbox neither the references nor the rubrics exist.
"""
from __future__ import annotations

import ctypes
import io
import json
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback

os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

# -I leaves the script's own folder off sys.path; wire.py sits beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy  # noqa: E402,F401 - imported once here so every forked child has it for free
import torch  # noqa: E402

import wire  # noqa: E402

torch.set_num_threads(1)
OUTPUT_LIMIT = 8 * 1024
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


class CappedText(io.TextIOBase):
    """A stdout/stderr stand-in that keeps the first OUTPUT_LIMIT characters and drops the rest."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        room = OUTPUT_LIMIT - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += len(text[:room])
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def value(self) -> str:
        note = f"\n... ({self.dropped} more characters not shown)" if self.dropped else ""
        return "".join(self.parts) + note


def _student_traceback(error: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith("<cell")]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(error), error)
    return "".join(lines)[-4000:]


def _error_reply(error: BaseException) -> dict:
    kind = type(error)
    names = [k.__name__ for k in kind.__mro__]
    try:
        message = str(error)[:2000]
    except BaseException:  # noqa: BLE001 - a hostile __str__
        message = "(the exception's message could not be read)"
    return {"ok": False, "error_type": kind.__name__, "error_mro": names, "message": message,
            "traceback": _student_traceback(error)}


def _without_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


# --- forbidden shortcuts ------------------------------------------------------------------------
# The rubric may forbid calls that defeat an exercise (torch's own attention inside the student's).
# Before the submission's cells run, every path the grader names is replaced, in every torch module
# that holds the same object, by a wrapper that counts its calls; each reply carries the counts made
# while serving it. Counts are data: the grader decides what they cost. Code running in this process
# can still get around the wrappers (the README says how); they catch aliases, getattr tricks and
# calls made inside torch's own functions.

CALLS: dict[str, int] = {}  # label -> calls since the current request began
WATCHED: set[str] = set()   # paths already wrapped in this process


def _lookup(path: str) -> object:
    """The object at a dotted path under torch (torch.nn.functional.x, torch._C._nn.x, torch.ops.aten.x)."""
    parts = path.split(".")
    if parts[0] != "torch":
        raise AttributeError(f"only torch paths are watched, not {path!r}")
    found: object = torch
    for part in parts[1:]:
        found = getattr(found, part)
    return found


def _counting(label: str, original):
    def counted(*args, **kwargs):
        CALLS[label] = CALLS.get(label, 0) + 1
        return original(*args, **kwargs)
    counted.__name__ = getattr(original, "__name__", label)
    counted.__doc__ = getattr(original, "__doc__", None)
    counted.counts_as = label  # a second path to the same object finds it already counted
    return counted


def watch(pairs: list) -> None:
    """Count calls of each [label, path]: a function is replaced wherever torch keeps it, a class
    (torch.nn.MultiheadAttention) has its forward counted, so subclasses and aliases count too."""
    for label, path in pairs:
        if str(path) in WATCHED:
            continue
        WATCHED.add(str(path))
        parent_path, _, attribute = str(path).rpartition(".")
        try:
            parent = _lookup(parent_path)
            original = getattr(parent, attribute)
        except (AttributeError, RuntimeError):
            continue  # this torch has no such route
        if hasattr(original, "counts_as"):
            continue
        if isinstance(original, type):
            original.forward = _counting(str(label), original.forward)
            continue
        wrapper = _counting(str(label), original)
        setattr(parent, attribute, wrapper)
        for name, module in list(sys.modules.items()):
            if name.split(".")[0] == "torch" and module is not None:
                for key, value in list(vars(module).items()):
                    if value is original:
                        setattr(module, key, wrapper)


class Child:
    """Serves one submission's requests: exec cells, call functions, run modules."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}

    def serve(self) -> None:
        while True:
            try:
                header, payloads = wire.receive(self.sock)
            except (EOFError, OSError, wire.ProtocolError):
                return
            out, err = CappedText(), CappedText()
            sys.stdout, sys.stderr = out, err
            CALLS.clear()
            try:
                reply, reply_payloads = self.handle(header, payloads)
            except BaseException as error:  # noqa: BLE001 - SystemExit, KeyboardInterrupt: reported, not obeyed
                reply, reply_payloads = _error_reply(error), []
            finally:
                sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            reply.update(stdout=out.value(), stderr=err.value(), forbidden=dict(CALLS))
            try:
                wire.send(self.sock, reply, reply_payloads)
            except (OSError, ValueError):
                return

    def handle(self, header: dict, payloads: list[bytes]) -> tuple[dict, list[bytes]]:
        op = header.get("op")
        if op == "exec":
            watch(header.get("watch") or [])
            return self.exec_cells(header["cells"]), []
        if op == "call":
            return self.call(header, payloads)
        if op == "module":
            return self.module(header, payloads)
        raise ValueError(f"unknown op {op!r}")

    def exec_cells(self, cells: list[dict]) -> dict:
        results = []
        for cell in cells:
            out, err = CappedText(), CappedText()
            sys.stdout, sys.stderr = out, err
            try:
                code = compile(_without_magics(cell["source"]), f"<cell {cell['id']}>", "exec")
                exec(code, self.namespace)  # noqa: S102 - this is the sandbox
                results.append({"id": cell["id"], "ok": True})
            except BaseException as error:  # noqa: BLE001
                results.append({"id": cell["id"], "ok": False, "error": _student_traceback(error)})
            results[-1].update(stdout=out.value(), stderr=err.value())
        return {"ok": True, "cells": results}

    def _target(self, name: str):
        if name not in self.namespace:
            raise NameError(f"name {name!r} is not defined: did its cell run without errors?")
        return self.namespace[name]

    def _args(self, header: dict, payloads: list[bytes], device: str) -> tuple[list, dict]:
        def place(value):
            if isinstance(value, (torch.Tensor, torch.nn.Module)):
                return value.to(device)
            if isinstance(value, (list, tuple)):
                return type(value)(place(v) for v in value)
            return value
        args = [place(wire.decode(a, payloads, modules=True)) for a in header["args"]]
        kwargs = {k: place(wire.decode(v, payloads, modules=True)) for k, v in header["kwargs"].items()}
        return args, kwargs

    def call(self, header: dict, payloads: list[bytes]) -> tuple[dict, list[bytes]]:
        torch.manual_seed(header.get("seed", 0))
        args, kwargs = self._args(header, payloads, header.get("device", "cpu"))
        try:
            value = self._target(header["target"])(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001
            return _error_reply(error), []
        out: list[bytes] = []
        # A model the grader had built for this call reports which parameters now require gradients.
        models = [{name: [bool(p.requires_grad), int(p.numel())] for name, p in a.named_parameters()}
                  for a in args if isinstance(a, torch.nn.Module)]
        return {"ok": True, "value": wire.encode(value, out), "models": models,
                "args_after": [wire.encode(a, out) for a in args]}, out

    def module(self, header: dict, payloads: list[bytes]) -> tuple[dict, list[bytes]]:
        torch.manual_seed(header.get("seed", 0))
        device = header.get("device", "cpu")
        init_args, init_kwargs = self._args({"args": header["init_args"], "kwargs": header["init_kwargs"]},
                                            payloads, device)
        args, kwargs = self._args(header, payloads, device)
        state = {k: wire.decode(v, payloads) for k, v in (header.get("state_dict") or {}).items()}
        grad_outputs = [None if g is None else wire.decode(g, payloads).to(device)
                        for g in header.get("grad_outputs") or []]
        dtype = wire.DTYPES[header.get("dtype", "float32")]
        try:
            module = self._target(header["target"])(*init_args, **init_kwargs)
            module = module.to(device=device, dtype=dtype)
            if state:
                module.load_state_dict(state, strict=True)
            module.train(bool(header.get("train", False)))
            for index in header.get("grad_inputs", []):
                args[index] = args[index].detach().clone().requires_grad_(True)
            output = getattr(module, header.get("method", "forward"))(*args, **kwargs)
            flat = list(output) if isinstance(output, (tuple, list)) else [output]
            pairs = [(o, g) for o, g in zip(flat, grad_outputs)
                     if g is not None and isinstance(o, torch.Tensor) and o.requires_grad]
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
            param_grads = {name: p.grad for name, p in module.named_parameters() if p.grad is not None}
            input_grads = [args[i].grad for i in header.get("grad_inputs", [])]
        except BaseException as error:  # noqa: BLE001
            return _error_reply(error), []
        out: list[bytes] = []
        return {"ok": True, "outputs": [wire.encode(o, out) for o in flat],
                "input_grads": [wire.encode(g, out) for g in input_grads],
                "param_grads": {k: wire.encode(v, out) for k, v in param_grads.items()}}, out


def _limit(name: str, value: int) -> None:
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError):
        pass  # a limit the host does not allow us to set stays as it was


def run_child(sock: socket.socket, limits: dict) -> None:
    os.setsid()  # its own process group: the grader kills the whole group
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    home = tempfile.mkdtemp(prefix="submission-")
    os.chdir(home)
    _limit("RLIMIT_AS", limits["memory_bytes"])
    _limit("RLIMIT_FSIZE", limits["file_bytes"])
    _limit("RLIMIT_NPROC", limits["nprocs"])
    _limit("RLIMIT_CORE", 0)
    _limit("RLIMIT_CPU", limits["submission_cpu_s"])
    try:
        # The grader learns our pid as its pid namespace numbers it from this message's credentials,
        # and our pid as the fork server numbers it (for the exit status) from its text.
        sock.sendall(b"H" + str(os.getpid()).encode())
        Child(sock).serve()
    finally:
        shutil.rmtree(home, ignore_errors=True)
        os._exit(0)


def _kill_leftovers() -> None:
    """Kill every process the last submission left behind. This server is a child subreaper, so even
    processes that double-forked or started their own session were re-parented to it."""
    for _ in range(50):
        _reap()
        children = set()
        for task in os.listdir(f"/proc/{os.getpid()}/task"):
            try:
                children.update(int(c) for c in open(f"/proc/{os.getpid()}/task/{task}/children").read().split())
            except OSError:
                pass
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
        _reap()


def serve_forever(control: socket.socket) -> None:
    """The fork server: one child per 'fork' request, until the control socket closes.

    The control socket is SOCK_SEQPACKET: every message is one JSON record. A 'cleanup' request comes
    after every submission: by then its worker is dead, so every child left is a left-over."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    control.send(json.dumps({"op": "ready"}).encode())
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 16, 1)
        except OSError:
            return
        if not message:
            return
        request = json.loads(message)
        if request.get("op") == "cleanup":
            _kill_leftovers()
            control.send(json.dumps({"op": "clean", "statuses": EXIT_STATUSES}).encode())
            EXIT_STATUSES.clear()
            continue
        if not fds:
            continue
        sock = socket.socket(fileno=fds[0])
        pid = os.fork()
        if pid == 0:
            control.close()
            run_child(sock, request["limits"])
        sock.close()


EXIT_STATUSES: dict[int, int] = {}  # raw wait statuses of finished children, reported at the next cleanup


def _reap() -> None:
    """Collect finished children into EXIT_STATUSES."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        EXIT_STATUSES[pid] = status


class _RefuseImports:
    """Outside a sandbox the project is on disk: refuse imports of the references and the grader.
    A speed bump, not a wall (the files can still be read); the isolation level says so."""

    blocked = ("solutions", "autograder")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ImportError(f"{name} is not available to submissions")
        return None


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    sandboxed = sys.argv[2] == "sandboxed"
    if not sandboxed:
        sys.meta_path.insert(0, _RefuseImports())
    libc = ctypes.CDLL(None)
    # Children run student code as our uid: they must not be able to read or trace this process.
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    # Orphans of a submission become our children, so cleanup can find and kill them.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    serve_forever(control)


if __name__ == "__main__":
    main()
