"""Golden values: a few reference outputs computed when an assignment is released.

Staff-side only (it imports the references, so it is never bundled). Each
selfcheck module lists `GOLDEN_CALLS = {name: [(args, kwargs), ...]}`; this
module runs the reference on them and stores inputs and outputs in an .npz
of plain arrays, which the visible checks read with allow_pickle=False.
"""
from __future__ import annotations

import importlib
import io

import numpy as np
import torch


def _array(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, torch.dtype):
        return np.asarray(str(value))  # "torch.float64": a string array, which loads without pickle
    return np.asarray(value)


def build_golden(assignment: str) -> bytes:
    """The .npz bytes of every golden case of `assignment`."""
    checks = importlib.import_module(f"autograder.selfcheck.{assignment}")
    reference = importlib.import_module(f"solutions.{assignment}")
    arrays: dict[str, np.ndarray] = {}
    for name, calls in getattr(checks, "GOLDEN_CALLS", {}).items():
        for index, (args, kwargs) in enumerate(calls):
            out = getattr(reference, name)(*args, **kwargs)
            outputs = out if isinstance(out, tuple) else (out,)
            prefix = f"{name}/{index}"
            arrays.update({f"{prefix}/args/{j}": _array(a) for j, a in enumerate(args)})
            arrays.update({f"{prefix}/kwargs/{k}": _array(v) for k, v in kwargs.items() if v is not None})
            arrays.update({f"{prefix}/out/{j}": _array(o) for j, o in enumerate(outputs)})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
