"""The isolated worker that runs student code (see worker.py), and the grader's handle on it.

Names are imported on first use: `isolation` needs only the standard library, so the command line can
read `LEVELS` and check its arguments before the pool and the wire format load torch.
"""
from __future__ import annotations

import importlib

_HOME = {
    "isolation": ("LEVELS", "STRONGEST", "IsolationError", "check_references", "detect_level",
                  "protect_references", "reference_paths", "require_isolation", "world_writable_dirs"),
    "pool": ("CallResult", "CellResult", "Limits", "ModuleResult", "ProtocolError", "Session", "WorkerCrashed",
             "WorkerError", "WorkerPool", "WorkerTimeout"),
    "wire": ("Opaque",),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> object:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
