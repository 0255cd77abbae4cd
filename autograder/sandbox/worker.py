"""The worker: runs untrusted student code and sends back data, never verdicts.

Started by the grader as `python -I worker.py CONTROL_FD` inside the sandbox.
It is a fork server: it imports torch once, then for every submission
receives a socket over its control socket (SCM_RIGHTS), forks, and the child
serves that submission's requests on it. The child sends back what the
student's code returned, encoded by wire.py; the grader decides everything.

This file must not import anything of the project but wire.py and seccomp.py
beside it: in the sandbox neither the references nor the rubrics exist.
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
import stat
import sys
import tempfile
import time
import traceback

os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

# -I leaves the script's own folder off sys.path; wire.py sits beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy  # noqa: E402,F401 - imported once here so every forked child has it for free
import torch  # noqa: E402

import seccomp  # noqa: E402
import wire  # noqa: E402

torch.set_num_threads(1)


def _pay_lazy_imports() -> None:
    """torch imports some modules on first use: a backward pass with explicit output gradients pulls in sympy
    (about 0.3 s). Paid here, once, it is not paid again in every submission's forked child."""
    x = torch.ones(2, requires_grad=True)
    torch.autograd.backward([x * 2], [torch.ones(2)])


_pay_lazy_imports()


def _seed(seed: int) -> None:
    """Seed torch before a call. torch.manual_seed also queues a seed for CUDA, capturing a stack trace each
    time (about 70 us a call); without CUDA, seeding the CPU generator alone is the same thing."""
    if torch.cuda.is_available():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


OUTPUT_LIMIT = 8 * 1024
LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID = 0x00020000, 0x08000000, 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x1000, 0x4000, 0x40000
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 0x1


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
# Every path the grader names with a fork request is replaced, in every torch module that holds the
# same object, by a wrapper that counts its calls. That is done here in the fork server, once per path
# (finding every holder takes tens of milliseconds), so each submission's process inherits the wrappers.
# Each reply carries the counts made while serving it, of the calls its own grader named. Counts are
# data: the grader decides what they cost. Code running in this process can still get around the
# wrappers (the README says how); they catch aliases, getattr tricks and calls made inside torch's own
# functions.

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

    def __init__(self, sock: socket.socket, reported: set[str]):
        self.sock = sock
        self.reported = reported  # the labels of the watched calls this submission's grader asked about
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}

    def serve(self) -> None:
        """Answer requests until the grader hangs up. A "batch" request holds several; each gets its own reply,
        sent as soon as it is made, exactly as if it had come alone."""
        while True:
            try:
                header, payloads = wire.receive(self.sock)
            except (EOFError, OSError, wire.ProtocolError):
                return
            requests = header.get("requests") if header.get("op") == "batch" else [header]
            for request in requests if isinstance(requests, list) else []:
                if not self.answer(request if isinstance(request, dict) else {}, payloads):
                    return

    def answer(self, header: dict, payloads: list[bytes]) -> bool:
        """Handle one request and send its reply, with what the student's code printed and the watched calls it
        made; whether the grader is still there."""
        out, err = CappedText(), CappedText()
        sys.stdout, sys.stderr = out, err
        CALLS.clear()
        try:
            reply, reply_payloads = self.handle(header, payloads)
        except BaseException as error:  # noqa: BLE001 - SystemExit, KeyboardInterrupt: reported, not obeyed
            reply, reply_payloads = _error_reply(error), []
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        reply.update(stdout=out.value(), stderr=err.value(),
                     forbidden={label: count for label, count in CALLS.items() if label in self.reported})
        try:
            wire.send(self.sock, reply, reply_payloads)
        except (OSError, ValueError):
            return False
        return True

    def handle(self, header: dict, payloads: list[bytes]) -> tuple[dict, list[bytes]]:
        op = header.get("op")
        if op == "exec":
            return self.exec_cells(header["cells"]), []
        if op == "call":
            return self.call(header, payloads)
        if op == "module":
            return self.module(header, payloads)
        if op == "trust":
            for name in header.get("names", []):
                self.namespace[str(name)] = self._trusted(str(name))
            return {"ok": True}, []
        raise ValueError(f"unknown op {op!r}")

    def _trusted(self, name: str):
        """A stand-in for the graded name `name` that the grader computes: each call (and, for gradients, each
        backward) is a "callback" message on this submission's socket, answered by the grader before it reads the
        reply to its own request. The trusted code never enters this process. A call that will be differentiated
        asks the grader to keep its graph, so the backward pass sends only the output gradients."""
        def trusted(*args, **kwargs):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            differentiable = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
            reply, outputs = self._callback({"kind": "call", "name": name, "keep": differentiable}, args, kwargs)
            if differentiable:
                kept = reply.get("call")

                def vjp(grads):
                    answer, received = self._callback({"kind": "vjp", "name": name, "call": kept}, args, kwargs,
                                                      grads, send_args=False)
                    if answer.get("forgotten"):
                        answer, received = self._callback({"kind": "vjp", "name": name}, args, kwargs, grads)
                    return received
                outputs = _TrustedGradient.apply(vjp, outputs, *tensors)
            return outputs[0] if reply.get("single") else tuple(outputs)
        trusted.__name__ = name
        return trusted

    def _callback(self, header: dict, args: tuple, kwargs: dict, grads: tuple = (), *,
                  send_args: bool = True) -> tuple[dict, list]:
        """(the grader's reply, the values it holds, on the arguments' device)."""
        payloads: list[bytes] = []
        header = dict(header, op="callback", grad_outputs=[wire.encode(g, payloads) for g in grads])
        if send_args:
            header.update(args=[wire.encode(a, payloads) for a in args],
                          kwargs={k: wire.encode(v, payloads) for k, v in kwargs.items()})
        wire.send(self.sock, header, payloads)
        reply, data = wire.receive(self.sock)
        if reply.get("ok") is not True:
            raise RuntimeError(str(reply.get("message", "the trusted function failed")))
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), "cpu")
        values = [wire.decode(v, data) for v in reply.get("values", [])]
        return reply, [v.to(device) if isinstance(v, torch.Tensor) else v for v in values]

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
        _seed(header.get("seed", 0))
        args, kwargs = self._args(header, payloads, header.get("device", "cpu"))
        grad_inputs = header.get("grad_inputs") or []
        for index in grad_inputs:
            args[index] = args[index].detach().clone().requires_grad_(True)
        try:
            value = self._target(header["target"])(*args, **kwargs)
            if grad_inputs:
                self._backward(_flat(value), header, payloads)
        except BaseException as error:  # noqa: BLE001
            return _error_reply(error), []
        out: list[bytes] = []
        # A model the grader had built for this call reports which parameters now require gradients.
        models = [{name: [bool(p.requires_grad), int(p.numel())] for name, p in a.named_parameters()}
                  for a in args if isinstance(a, torch.nn.Module)]
        reply = {"ok": True, "value": wire.encode(value, out), "models": models}
        if header.get("args_after"):
            reply["args_after"] = [wire.encode(a, out) for a in args]
        if grad_inputs:
            reply["input_grads"] = [wire.encode(args[i].grad, out) for i in grad_inputs]
        return reply, out

    def _backward(self, flat: list, header: dict, payloads: list[bytes]) -> None:
        """Backward from every output whose shape matches the grader's weights for it. A wrongly shaped output
        gets no backward pass, so the grader reports its shape, not an error of its own backward."""
        grad_outputs = [None if g is None else wire.decode(g, payloads).to(header.get("device", "cpu"))
                        for g in header.get("grad_outputs") or []]
        pairs = [(o, g) for o, g in zip(flat, grad_outputs)
                 if g is not None and isinstance(o, torch.Tensor) and o.requires_grad and o.shape == g.shape]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])

    def module(self, header: dict, payloads: list[bytes]) -> tuple[dict, list[bytes]]:
        _seed(header.get("seed", 0))
        device = header.get("device", "cpu")
        init_args, init_kwargs = self._args({"args": header["init_args"], "kwargs": header["init_kwargs"]},
                                            payloads, device)
        args, kwargs = self._args(header, payloads, device)
        state = {k: wire.decode(v, payloads) for k, v in (header.get("state_dict") or {}).items()}
        dtype = wire.DTYPES[header.get("dtype", "float32")]
        try:
            module = self._target(header["target"])(*init_args, **init_kwargs)
            module = module.to(device=device, dtype=dtype)
            if state:
                _load_parameters(module, state)
            module.train(bool(header.get("train", False)))
            for index in header.get("grad_inputs", []):
                args[index] = args[index].detach().clone().requires_grad_(True)
            output = getattr(module, header.get("method", "forward"))(*args, **kwargs)
            flat = _flat(output)
            self._backward(flat, header, payloads)
            param_grads = {name: p.grad for name, p in module.named_parameters() if p.grad is not None}
            input_grads = [args[i].grad for i in header.get("grad_inputs", [])]
        except BaseException as error:  # noqa: BLE001
            return _error_reply(error), []
        out: list[bytes] = []
        return {"ok": True, "outputs": [wire.encode(o, out) for o in flat],
                "input_grads": [wire.encode(g, out) for g in input_grads],
                "param_grads": {k: wire.encode(v, out) for k, v in param_grads.items()}}, out


class _TrustedGradient(torch.autograd.Function):
    """Outputs computed by the grader, joined to the autograd graph of `tensors`; backward asks the grader for
    the vector-Jacobian product."""

    @staticmethod
    def forward(ctx, vjp, outputs, *tensors):
        ctx.vjp = vjp
        ctx.count = len(tensors)
        results = tuple(o.clone() for o in outputs)
        ctx.mark_non_differentiable(*[r for r in results if not r.is_floating_point()])
        return results

    @staticmethod
    def backward(ctx, *grads):
        received = ctx.vjp(grads)
        return (None, None, *received[:ctx.count])


def _flat(value: object) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _load_parameters(module: torch.nn.Module, state: dict) -> None:
    """Load the parameters the contract names; buffers of the module's own (a cache, a constant) may stay."""
    result = module.load_state_dict(state, strict=False)
    parameters = dict(module.named_parameters())
    missing = [name for name in result.missing_keys if name in parameters]
    if result.unexpected_keys or missing:
        raise RuntimeError("the module's parameters are not named as the task says: "
                           + "; ".join(filter(None, [
                               f"missing {sorted(result.unexpected_keys)}" if result.unexpected_keys else "",
                               f"unexpected {sorted(missing)}" if missing else ""])))


def _limit(name: str, value: int) -> None:
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError):
        pass  # a limit the host does not allow us to set stays as it was


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def _enter_namespaces(config: dict) -> None:
    """Called in the submission's own pid namespace (see serve_forever): add a mount and an IPC
    namespace, with a /proc that shows only the submission's processes and fresh tmpfs on the folders
    anyone may write to."""
    _check(LIBC.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare")
    _check(LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    _check(LIBC.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mounting /proc")
    options = f"size={config['tmp_bytes']},mode=1777".encode()
    for folder in config["private_dirs"]:
        # What the worker runs from (a virtual environment in a clone under /tmp, say) stays where it was: held
        # open before the fresh tmpfs covers it, then bound back in place from that handle.
        kept = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in config["keep"]
                if os.path.commonpath([path, folder]) == folder and os.path.isdir(path)]
        _check(LIBC.mount(b"tmpfs", folder.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options), f"mounting {folder}")
        for path, handle in kept:
            os.makedirs(path, exist_ok=True)
            _check(LIBC.mount(f"/proc/self/fd/{handle}".encode(), path.encode(), None, MS_BIND | MS_REC, None),
                   f"keeping {path}")
            os.close(handle)


def _home(config: dict, uid: int | None) -> str:
    """The submission's working folder, which nothing else can see: the fresh /tmp of its mount namespace,
    or a folder of its own (mode 700) that the fork server removes when the submission ends."""
    if config["namespaces"]:
        return "/tmp"
    if uid is None:
        return tempfile.mkdtemp(prefix="submission-")
    home = os.path.join(config["scratch"], str(uid))
    os.mkdir(home, 0o700)
    os.chown(home, uid, uid)
    return home


def _become(uid: int | None) -> None:
    """Drop every privilege: switch to the submission's user id (as root), then give up all capabilities
    (in bwrap the fork server holds CAP_SYS_ADMIN of its user namespace, to make the namespaces above)."""
    for capability in range(64):
        LIBC.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)  # fails without CAP_SETPCAP (bwrap): NoNewPrivs covers it
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    LIBC.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    _check(LIBC.capset(header, (ctypes.c_uint32 * 6)()), "dropping capabilities")


def _wall_off(request: dict, config: dict) -> str:
    """Everything between the fork and the first line of student code, in this order: namespaces and
    mounts (need capabilities), the working folder, then every privilege dropped, then limits."""
    limits, uid = request["limits"], request.get("uid")
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a fork server that dies takes us along
    if config["namespaces"]:
        _enter_namespaces(config)
    home = _home(config, uid)
    os.chdir(home)
    os.environ.update(HOME=home, TMPDIR=home)
    os.setsid()  # its own process group: the grader kills the whole group
    # Orphans of the submission become ours, so the grader counts their memory and CPU time.
    LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _become(uid)
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # changing user id cleared it
    if seccomp.supported():
        seccomp.install()
    seccomp.no_new_privs()
    _limit("RLIMIT_AS", limits["memory_bytes"])
    _limit("RLIMIT_FSIZE", limits["file_bytes"])
    _limit("RLIMIT_NPROC", limits["nprocs"])
    _limit("RLIMIT_CORE", 0)
    _limit("RLIMIT_CPU", limits["submission_cpu_s"])
    return home


def run_child(sock: socket.socket, request: dict, config: dict) -> None:
    """Forked by the fork server for one submission: wall it off, then serve its requests."""
    # Our pid as the fork server numbers it (the key of our exit status): the last of the pids /proc gives
    # us, one per namespace from that of /proc down, is our own namespace's, where we may be pid 1.
    nspids = next(line for line in open("/proc/self/status") if line.startswith("NSpid:")).split()[1:]
    server_pid = int(nspids[-2] if config["namespaces"] else nspids[-1])
    home = ""
    try:
        try:
            home = _wall_off(request, config)
        except OSError as error:
            sock.sendall(b"E" + f"walling off the submission failed: {error}".encode())
            return
        # The grader learns our pid as its pid namespace numbers it from this message's credentials.
        sock.sendall(b"H" + str(server_pid).encode())
        Child(sock, {str(label) for label, _ in request.get("watch") or []}).serve()
    finally:
        if home.startswith(tempfile.gettempdir() + "/submission-"):  # a folder of our own (the other homes
            shutil.rmtree(home, ignore_errors=True)                  # vanish with their namespace or server)
        os._exit(0)


def _children() -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            found += [int(c) for c in open(f"/proc/{os.getpid()}/task/{task}/children").read().split()]
        except OSError:
            pass
    return found


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` at once: kill(-1) from a process of that user id reaches all of them
    in one pass under the kernel's task list lock, so a process chain cannot re-grow around it."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _kill_leftovers(timeout_s: float = 10.0) -> bool:
    """Kill and reap every process the last submission left behind; whether none is left. This server is
    a child subreaper, so processes whose parents died were re-parented to it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap()
        children = _children()
        if not children:
            return True
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.001)
    return False


def _sweep(uid: int, folders: list[str]) -> None:
    """Remove what `uid` left in world-writable folders. Without namespaces of its own, a submission can
    write only there and in its home: in a folder it owns, or in one anyone may write to."""
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_uid == uid:
                if stat.S_ISDIR(info.st_mode):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            elif stat.S_ISDIR(info.st_mode) and info.st_mode & 0o002:
                _sweep(uid, [entry.path])


def cleanup(request: dict, config: dict) -> bool:
    """After a submission ended: no process of it left, nothing it wrote left. Whether that worked.

    In a pid namespace, killing its pid 1 makes the kernel kill every process in it at once. Without one,
    all processes of the submission's user id are killed at once. Either way, we then kill and reap every
    child we have left (the submission's first process, the namespace's pid 1, and, where there is no
    namespace, orphans re-parented to us) until there is none."""
    uid = request.get("uid")
    while NAMESPACE_INITS:
        os.kill(NAMESPACE_INITS.pop(), signal.SIGKILL)
    if uid is not None and not config["namespaces"]:
        _kill_uid(uid)
    clean = _kill_leftovers()
    if uid is not None and not config["namespaces"]:
        shutil.rmtree(os.path.join(config["scratch"], str(uid)), ignore_errors=True)
        _sweep(uid, config["sweep_dirs"])
    return clean


def serve_forever(control: socket.socket, config: dict) -> None:
    """The fork server: one child per 'fork' request, until the control socket closes.

    The control socket is SOCK_SEQPACKET: every message is one JSON record. A 'cleanup' request comes
    after every submission: by then its worker is dead, so every child left is a left-over."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY)  # where we return after each fork
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
            clean = cleanup(request, config)
            control.send(json.dumps({"op": "clean" if clean else "dirty", "statuses": EXIT_STATUSES}).encode())
            EXIT_STATUSES.clear()
            continue
        if not fds:
            continue
        watch(request.get("watch") or [])  # once per path in this server: every later child inherits the wrapper
        sock = socket.socket(fileno=fds[0])
        sock.set_inheritable(False)  # the namespace's pid 1 (an exec'd program) must not hold it open
        if config["namespaces"]:
            # The submission gets a pid namespace of its own, whose pid 1 only waits to be killed (pid 1 would
            # ignore the signals the student's code sends itself). setns lets the next one have its own too.
            _check(LIBC.unshare(CLONE_NEWPID), "unshare")
            NAMESPACE_INITS.append(os.posix_spawn(SLEEP, [SLEEP, "infinity"], {}))
        pid = os.fork()
        if pid == 0:
            control.close()
            run_child(sock, request, config)
        if config["namespaces"]:
            _check(LIBC.setns(own_pid_namespace, CLONE_NEWPID), "setns")
        sock.close()


EXIT_STATUSES: dict[int, int] = {}  # raw wait statuses of finished children, reported at the next cleanup
NAMESPACE_INITS: list[int] = []     # pid 1 of the running submission's pid namespace
SLEEP = shutil.which("sleep") or "/bin/sleep"


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


def _read_only_root() -> None:
    """Make every mount of this (private) mount namespace read-only, at once and recursively, so that no
    host folder anyone may write to is left writable; each submission then gets fresh tmpfs of its own."""
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)  # attr_set, attr_clr, propagation, userns_fd
    _check(LIBC.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, attr, ctypes.sizeof(attr)),
           "mount_setattr")


def _pid_1_of_our_own() -> None:
    """Continue as pid 1 of a new pid namespace, with a /proc that numbers processes as it does; the
    process we leave waits and exits as we do. Each submission's pid namespace is then made below ours,
    which our user namespace owns (bwrap's does not), so we may enter ours again after each fork."""
    _check(LIBC.unshare(CLONE_NEWPID), "unshare")
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _check(LIBC.unshare(CLONE_NEWNS), "unshare")
    _check(LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    _check(LIBC.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mounting /proc")


def main() -> None:
    """argv: the control socket's descriptor and the configuration (JSON) that isolation.py wrote."""
    control = socket.socket(fileno=int(sys.argv[1]))
    control.set_inheritable(False)
    config = json.loads(sys.argv[2])
    if not config["sandboxed"]:
        sys.meta_path.insert(0, _RefuseImports())
    if config["read_only_root"]:
        _read_only_root()
    if config["namespaces"]:
        _pid_1_of_our_own()
    seccomp.no_new_privs()
    # Children run student code as our uid: they must not be able to read or trace this process.
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    # Orphans of a submission become our children, so cleanup can find and kill them.
    LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    serve_forever(control, config)


if __name__ == "__main__":
    main()
