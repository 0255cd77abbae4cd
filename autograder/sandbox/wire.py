"""The wire format between grader and worker: JSON headers and raw tensor bytes, never pickle.

A message is an 8-byte big-endian length, a UTF-8 JSON header of that length,
then the payloads whose sizes the header lists. Values are JSON trees:

    {"t": "none"} {"t": "bool", "v": true} {"t": "int", "v": 3} {"t": "float", "v": 0.5 | "nan" | "inf" | "-inf"}
    {"t": "str", "v": "..."} {"t": "dtype", "v": "float32"}
    {"t": "tuple" | "list", "items": [...]} {"t": "dict", "items": [[key, value], ...]}
    {"t": "tensor", "payload": 0, "dtype": "float32", "shape": [2, 3], "device": "cpu", "requires_grad": false}
    {"t": "opaque", "type": "numpy.ndarray", "why": "a numpy.ndarray"}

The worker side is untrusted: `decode` treats every byte as hostile (known
dtypes only, byte counts that match the shape, size caps) and rebuilds each
tensor itself from bytes. This file imports only the standard library and
torch, so the sandbox can mount it alone, next to worker.py.
"""
from __future__ import annotations

import json
import math
import socket
import struct
from dataclasses import dataclass

import torch

MAX_HEADER_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
MAX_DEPTH = 32
# A reply may carry at most REPLY_FLOOR_BYTES, or REPLY_FACTOR times the tensor bytes of the request when
# that is more: far above what any graded function returns for its inputs, far below what would strain the grader.
REPLY_FLOOR_BYTES = 16 * 1024 * 1024
REPLY_FACTOR = 64

DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool, "complex64": torch.complex64, "complex128": torch.complex128,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed message."""


class TooLarge(ProtocolError):
    """A well-formed message carrying more bytes than the receiver accepts."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"{_mib(size)} of tensor data, over the {_mib(limit)} the grader accepts here")
        self.size = size
        self.limit = limit


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def reply_limit(request_payloads: list[bytes]) -> int:
    """The most payload bytes the grader reads back in answer to a request carrying `request_payloads`."""
    return min(MAX_MESSAGE_BYTES, max(REPLY_FLOOR_BYTES, REPLY_FACTOR * sum(len(p) for p in request_payloads)))


@dataclass(frozen=True)
class ModuleTree:
    """A small model the worker builds for a call: nested dicts of sub-module names, leaves are
    [in_features, out_features] of an nn.Linear, or [in_features, out_features, False] for one whose
    parameters start frozen. Only the grader sends these; the worker never returns one."""

    spec: dict


def build_module_tree(spec: dict) -> torch.nn.Module:
    module = torch.nn.Module()
    for name, child in spec.items():
        leaf = (isinstance(child, list) and len(child) in (2, 3) and all(type(n) is int and 0 < n <= 4096
                                                                        for n in child[:2])
                and child[2:] in ([], [False]))
        if not (leaf or isinstance(child, dict)) or not name.isidentifier():
            raise ProtocolError(f"malformed module tree at {name!r}")
        module.add_module(name, torch.nn.Linear(*child[:2]).requires_grad_(len(child) == 2) if leaf
                          else build_module_tree(child))
    return module


@dataclass(frozen=True)
class Opaque:
    """A returned value that is not data we accept (a tensor subclass, an array, an arbitrary object)."""

    type: str
    why: str


# --- encoding (both sides) ---------------------------------------------------------------------

def _type_name(value: object) -> str:
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def encode(value: object, payloads: list[bytes], depth: int = 0) -> dict:
    """The JSON tree for `value`; tensor bytes are appended to `payloads`."""
    if depth > MAX_DEPTH:
        return {"t": "opaque", "type": "nested", "why": f"a structure nested deeper than {MAX_DEPTH} levels"}
    if isinstance(value, ModuleTree):
        return {"t": "module_tree", "spec": value.spec}
    if type(value) is torch.Tensor:
        name = DTYPE_NAMES.get(value.dtype)
        if name is None:
            return {"t": "opaque", "type": "torch.Tensor", "why": f"a tensor of unsupported dtype {value.dtype}"}
        data = value.detach()
        if data.device.type != "cpu":
            data = data.cpu()
        if data.dtype is torch.bfloat16:  # numpy has no bfloat16: the same bytes, read as int16
            data = data.contiguous().view(torch.int16)
        elif data.is_complex():
            data = data.resolve_conj()
        payloads.append(data.numpy().tobytes())  # in C order, whatever the tensor's strides
        return {"t": "tensor", "payload": len(payloads) - 1, "dtype": name, "shape": list(data.shape),
                "device": str(value.device), "requires_grad": value.requires_grad}
    if isinstance(value, torch.Tensor):
        return {"t": "opaque", "type": _type_name(value),
                "why": f"a subclass of torch.Tensor ({_type_name(value)}) instead of a plain torch.Tensor"}
    if isinstance(value, torch.dtype):
        return {"t": "dtype", "v": DTYPE_NAMES.get(value, str(value))}
    if value is None:
        return {"t": "none"}
    if type(value) is bool:
        return {"t": "bool", "v": value}
    if type(value) is int:
        return {"t": "int", "v": value}
    if type(value) is float:
        return {"t": "float", "v": value if math.isfinite(value) else repr(value)}
    if type(value) is str:
        return {"t": "str", "v": value[:10_000]}
    if type(value) in (tuple, list):
        return {"t": type(value).__name__, "items": [encode(v, payloads, depth + 1) for v in value]}
    if type(value) is dict:
        return {"t": "dict", "items": [[str(k), encode(v, payloads, depth + 1)] for k, v in value.items()]}
    return {"t": "opaque", "type": _type_name(value), "why": f"an object of type {_type_name(value)}"}


# --- decoding (untrusted input) ----------------------------------------------------------------

def _int(tree: dict, key: str) -> int:
    value = tree.get(key)
    if type(value) is not int:
        raise ProtocolError(f"{key!r} must be an integer")
    return value


def decode(tree: object, payloads: list[bytes], depth: int = 0, *, modules: bool = False) -> object:
    """Rebuild a value from its tree and payloads, validating everything; tensors come back on the CPU.

    `modules` lets module trees through (the worker's side only: the grader never builds what a worker sends).
    Each payload backs one tensor: decoding takes it out of `payloads` (leaves None), so one message cannot
    turn a payload into a thousand copies."""
    if depth > MAX_DEPTH or not isinstance(tree, dict):
        raise ProtocolError("malformed value")
    kind = tree.get("t")
    if kind == "none":
        return None
    if kind in ("bool", "int", "str"):
        value = tree.get("v")
        if type(value) is not {"bool": bool, "int": int, "str": str}[kind]:
            raise ProtocolError(f"malformed {kind}")
        return value
    if kind == "float":
        value = tree.get("v")
        if value in ("nan", "inf", "-inf"):
            return float(value)
        if type(value) not in (int, float):
            raise ProtocolError("malformed float")
        return float(value)
    if kind in ("tuple", "list"):
        items = tree.get("items")
        if not isinstance(items, list):
            raise ProtocolError(f"malformed {kind}")
        decoded = [decode(item, payloads, depth + 1, modules=modules) for item in items]
        return tuple(decoded) if kind == "tuple" else decoded
    if kind == "dict":
        items = tree.get("items")
        if not isinstance(items, list) or not all(isinstance(p, list) and len(p) == 2 and type(p[0]) is str
                                                  for p in items):
            raise ProtocolError("malformed dict")
        return {key: decode(value, payloads, depth + 1, modules=modules) for key, value in items}
    if kind == "dtype":
        if tree.get("v") not in DTYPES:
            raise ProtocolError(f"unknown dtype {tree.get('v')!r}")
        return DTYPES[tree["v"]]
    if kind == "opaque":
        return Opaque(str(tree.get("type", "?"))[:200], str(tree.get("why", "an unsupported object"))[:500])
    if kind == "tensor":
        return _decode_tensor(tree, payloads)
    if kind == "module_tree" and modules and isinstance(tree.get("spec"), dict):
        return build_module_tree(tree["spec"])
    raise ProtocolError(f"unknown value kind {kind!r}")


def _decode_tensor(tree: dict, payloads: list[bytes]) -> torch.Tensor:
    dtype = DTYPES.get(tree.get("dtype"))
    if dtype is None:
        raise ProtocolError(f"unknown dtype {tree.get('dtype')!r}")
    shape = tree.get("shape")
    if not isinstance(shape, list) or len(shape) > 16 or not all(type(d) is int and 0 <= d < 2**31 for d in shape):
        raise ProtocolError("malformed shape")
    index = _int(tree, "payload")
    if not 0 <= index < len(payloads):
        raise ProtocolError("payload index out of range")
    data = payloads[index]
    if data is None:
        raise ProtocolError("one payload is claimed by two tensors")
    numel = math.prod(shape)
    itemsize = dtype.itemsize
    if numel * itemsize != len(data):
        raise ProtocolError(f"tensor of shape {shape} and dtype {tree['dtype']} needs {numel * itemsize} bytes, "
                            f"got {len(data)}")
    payloads[index] = None
    if not numel:
        return torch.empty(shape, dtype=dtype)
    buffer = data if isinstance(data, bytearray) else bytearray(data)   # the tensor owns its bytes: no aliasing
    if dtype is torch.bool:   # a byte other than 0 or 1 is not a valid bool: read the bytes as uint8 instead
        return torch.frombuffer(buffer, dtype=torch.uint8).ne(0).reshape(shape)
    return torch.frombuffer(buffer, dtype=dtype).reshape(shape)


def tensor_device(tree: object) -> str | None:
    """The device a tensor was on in the worker (as it reported it)."""
    return tree.get("device") if isinstance(tree, dict) and isinstance(tree.get("device"), str) else None


# --- framing ------------------------------------------------------------------------------------

JOINED_BYTES = 1 << 20  # a message up to this size is sent with one system call
FIRST_READ = 1 << 16    # and one up to this size is read with one or two


def send(sock: socket.socket, header: dict, payloads: list[bytes] = ()) -> None:
    header = dict(header, sizes=[len(p) for p in payloads])
    body = json.dumps(header, allow_nan=False).encode()
    parts = [struct.pack(">Q", len(body)), body, *payloads]
    if len(body) + sum(len(p) for p in payloads) <= JOINED_BYTES:
        sock.sendall(b"".join(parts))
    else:
        for part in parts:
            sock.sendall(part)


def _recv_exact(sock: socket.socket, size: int) -> bytearray:
    """Exactly `size` bytes, read into one buffer (no chunks to join: the bytes are held once)."""
    buffer = bytearray(size)
    view, received = memoryview(buffer), 0
    while received < size:
        count = sock.recv_into(view[received:], min(size - received, 1 << 20))
        if not count:
            raise EOFError("connection closed")
        received += count
    return buffer


class Receiver:
    """Reads messages from one socket. Bytes that arrive past a message are kept for the next one: the worker
    answers a batch of calls (see worker.Child.serve) with one reply per call, sent as each call finishes."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.early = bytearray()   # bytes read past the last message

    def receive(self, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[dict, list[bytearray]]:
        """One message: (header, payloads). Raises EOFError on a closed connection, ProtocolError on garbage
        (TooLarge when its payloads are over `max_bytes`: then at most FIRST_READ bytes past the header were
        read)."""
        self._fill(8)
        (length,) = struct.unpack(">Q", self.early[:8])
        if length > MAX_HEADER_BYTES:
            raise ProtocolError(f"header of {length} bytes is over the {MAX_HEADER_BYTES} byte limit")
        self._fill(8 + length)
        header_bytes = bytes(self.early[8:8 + length])
        del self.early[:8 + length]
        try:
            header = json.loads(header_bytes)
        except (UnicodeDecodeError, ValueError) as error:
            raise ProtocolError(f"header is not JSON: {error}") from None
        except RecursionError:   # json.loads recurses once per level of nesting
            raise ProtocolError("header is nested too deeply to be a message") from None
        sizes = header.get("sizes") if isinstance(header, dict) else None
        if not isinstance(sizes, list) or not all(type(s) is int and s >= 0 for s in sizes):
            raise ProtocolError("header lacks a valid list of payload sizes")
        if sum(sizes) > max_bytes:
            raise TooLarge(sum(sizes), max_bytes)
        payloads = []
        for size in sizes:
            payload = self.early[:size]
            del self.early[:size]
            if len(payload) < size:
                payload += _recv_exact(self.sock, size - len(payload))
            payloads.append(payload)
        return header, payloads

    def _fill(self, size: int) -> None:
        """Read until at least `size` bytes are held: whatever has arrived, FIRST_READ bytes or more at a time."""
        while len(self.early) < size:
            chunk = self.sock.recv(max(FIRST_READ, size - len(self.early)))
            if not chunk:
                raise EOFError("connection closed")
            self.early += chunk


def receive(sock: socket.socket, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[dict, list[bytearray]]:
    """One message on a socket where the two sides take turns (a request, then its reply; a callback, then its
    answer), so nothing may follow it before it is answered: bytes that arrived past it are refused."""
    receiver = Receiver(sock)
    message = receiver.receive(max_bytes)
    if receiver.early:
        raise ProtocolError("more bytes arrived than the message holds")
    return message
