"""The isolated worker that runs student code (see worker.py), and the grader's handle on it."""
from .isolation import (LEVELS, STRONGEST, IsolationError, check_references, detect_level, protect_references,
                        reference_paths, require_isolation, world_writable_dirs)
from .pool import (CallResult, CellResult, Limits, ModuleResult, ProtocolError, Session, WorkerCrashed,
                   WorkerError, WorkerPool, WorkerTimeout)
from .wire import Opaque

__all__ = ["LEVELS", "STRONGEST", "IsolationError", "check_references", "detect_level", "protect_references",
           "reference_paths", "require_isolation", "world_writable_dirs", "CallResult", "CellResult", "Limits",
           "ModuleResult", "ProtocolError", "Session", "WorkerCrashed", "WorkerError", "WorkerPool",
           "WorkerTimeout", "Opaque"]
