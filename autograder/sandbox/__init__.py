"""The isolated worker that runs student code (see worker.py), and the grader's handle on it."""
from .isolation import LEVELS, STRONGEST, IsolationError, detect_level, require_isolation
from .pool import (CallResult, CellResult, Limits, ModuleResult, ProtocolError, Session, WorkerCrashed,
                   WorkerError, WorkerPool, WorkerTimeout)
from .wire import Opaque

__all__ = ["LEVELS", "STRONGEST", "IsolationError", "detect_level", "require_isolation", "CallResult",
           "CellResult", "Limits", "ModuleResult", "ProtocolError", "Session", "WorkerCrashed", "WorkerError",
           "WorkerPool", "WorkerTimeout", "Opaque"]
