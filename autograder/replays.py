"""Replays: the examples a passing search draws, kept so that no submission pays for drawing them.

Examples are drawn with a fixed seed, so every submission that passes a
check draws exactly the same examples, in the same order (the search only
takes another path after a failure). `runner.run_check` runs every check on that list
first, each example with the reference's side of it (`Check.expect`), and
searches only when one of them fails. `record` draws the lists of every
check once, in this process.

A file of replays (`path`) holds them for one rubric version, Python and
machine, and is read with the wire format's validating decoder, never pickle.
Every grading run loads it, or records and writes it when it is missing or
stale, so neither a cold start (Gradescope) nor a batch slot's first
submission pays for drawing them or for the reference's outputs.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from .build import ROOT
from . import checks, strategies
from .rubric import Check
from .sandbox import wire

FORMAT = 2
# Dataclasses an example may be made of (those of the check builders and of the strategies); nothing else is
# rebuilt from a file.
EXAMPLE_CLASSES = {cls.__name__: cls for module in (checks, strategies) for cls in vars(module).values()
                   if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__}


class Replays:
    """Per check, the examples a passing search drew and the reference's side of each, in the order drawn.

    Held by one grader, whose rubric and code are fixed, so a check object is the whole key. Beyond
    `max_bytes` of tensors, further checks are simply not kept."""

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._kept: dict[int, tuple[Check, list[tuple[Any, Any]]]] = {}

    def get(self, check: Check) -> list[tuple[Any, Any]] | None:
        kept = self._kept.get(id(check))
        return kept[1] if kept is not None and kept[0] is check else None

    def keep(self, check: Check, drawn: list[tuple[Any, Any]]) -> None:
        size = _tensor_bytes(drawn)
        if self.bytes + size <= self.max_bytes:
            self._kept[id(check)] = (check, drawn)
            self.bytes += size

    def __len__(self) -> int:
        return len(self._kept)


def same_example(a: Any, b: Any) -> bool:
    """Whether two drawn examples are the same (tensors bit for bit, NaN included)."""
    if isinstance(a, torch.Tensor):
        if not (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape):
            return False
        if a.is_floating_point():
            nan = a.isnan()
            return torch.equal(nan, b.isnan()) and torch.equal(a[~nan], b[~nan])
        return torch.equal(a, b)
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(same_example(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a))
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same_example, a, b))
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(same_example(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(_tensor_bytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (tuple, list, set, frozenset)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


# --- recording ------------------------------------------------------------------------------------

def record(assignment: Any) -> Replays:
    """The listed examples of every check of `assignment` (a `grade.Assignment`), drawn in this process with the
    reference's side of each. Single-threaded, as every grading process is, so the reference's outputs carry the
    same rounding."""
    from .runner import draw

    torch.set_num_threads(1)
    replays = Replays()
    for item in assignment.rubric.items:
        for check in item.checks:
            replays.keep(check, draw(check))
    return replays


# --- the file -------------------------------------------------------------------------------------

def path(assignment_name: str) -> Path:
    return ROOT / "build" / "replays" / f"{assignment_name}.replays"


def _key(assignment: Any) -> dict:
    """What the examples and the reference's outputs depend on beyond the rubric version."""
    return {"format": FORMAT, "version": assignment.version, "python": platform.python_version(),
            "machine": platform.machine()}


def save(replays: Replays, assignment: Any, target: Path) -> int:
    """Write the replays of `assignment`'s checks that the wire format can carry; return how many."""
    payloads: list[bytes] = []
    checks = []
    for item in assignment.rubric.items:
        for check in item.checks:
            drawn = replays.get(check)
            if drawn is None:
                continue
            mark = len(payloads)
            tree = wire.encode(_plain(drawn), payloads)
            if _carried(tree):
                checks.append([item.name, check.id, tree])
            else:
                del payloads[mark:]
    header = json.dumps({"key": _key(assignment), "checks": checks, "sizes": [len(p) for p in payloads]}).encode()
    # Owner-only, folder and file: they hold the reference's outputs, which student code running as another user
    # (the uid isolation level, Gradescope) must not read (sandbox.isolation.reference_paths lists the folder).
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(struct.pack(">Q", len(header)) + header)
            for payload in payloads:
                handle.write(payload)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return len(checks)


def load(assignment: Any, source: Path) -> Replays | None:
    """The replays in `source` for `assignment`, or None when the file is missing, written for another rubric
    version, Python or machine, or damaged."""
    try:
        with open(source, "rb") as handle:
            (length,) = struct.unpack(">Q", handle.read(8))
            if length > wire.MAX_HEADER_BYTES:
                return None
            header = json.loads(handle.read(length))
            if header.get("key") != _key(assignment):
                return None
            payloads = [handle.read(size) for size in header["sizes"]]
        checks = {(item.name, check.id): check for item in assignment.rubric.items for check in item.checks}
        replays = Replays()
        for item_name, check_id, tree in header["checks"]:
            drawn = _rebuilt(wire.decode(tree, payloads))
            replays.keep(checks[item_name, check_id], [tuple(pair) for pair in drawn])
        return replays
    except (OSError, ValueError, KeyError, TypeError, struct.error, wire.ProtocolError) as error:
        if not isinstance(error, FileNotFoundError):
            print(f"note: ignoring the replay file {source} ({type(error).__name__}: {error}); the checks are "
                  "drawn afresh and the file is written again", file=sys.stderr)
        return None


_prepared: dict[tuple[Path, str], Replays] = {}


def prepared(assignment: Any) -> Replays:
    """The replays of `assignment` from its file; recorded and written first when the file is missing or stale
    (an install where it cannot be written records them without writing). Read once per process."""
    target = path(assignment.name)
    key = (target, assignment.version)
    if key not in _prepared:
        replays = load(assignment, target)
        if replays is None:
            replays = record(assignment)
            try:
                save(replays, assignment, target)
            except OSError:
                pass
        _prepared[key] = replays
    return _prepared[key]


def _plain(value: Any) -> Any:
    """`value` with example dataclasses and sets turned into what the wire format carries."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if EXAMPLE_CLASSES.get(type(value).__name__) is not type(value):
            return _Unsupported()
        return {"@": type(value).__name__, **{f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, (set, frozenset)):
        return {"@": "set", "items": [_plain(v) for v in sorted(value)]}
    if type(value) in (tuple, list):
        return type(value)(_plain(v) for v in value)
    if type(value) is dict:
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Unsupported:
    """Encoded by the wire format as opaque: the check is left out of the file."""


def _carried(tree: Any) -> bool:
    """Whether an encoded tree holds no opaque value (everything in it comes back as it went in)."""
    if isinstance(tree, dict):
        return tree.get("t") != "opaque" and all(_carried(v) for v in tree.values())
    if isinstance(tree, list):
        return all(_carried(v) for v in tree)
    return True


def _rebuilt(value: Any) -> Any:
    if type(value) is dict:
        kind = value.get("@")
        if kind == "set":
            return set(_rebuilt(v) for v in value["items"])
        if kind is not None:
            fields = {k: _rebuilt(v) for k, v in value.items() if k != "@"}
            return EXAMPLE_CLASSES[kind](**fields)
        return {k: _rebuilt(v) for k, v in value.items()}
    if type(value) in (tuple, list):
        return type(value)(_rebuilt(v) for v in value)
    return value
