"""Run the visible checks of one graded name and print what a student needs to fix.

A `VisibleCheck` pairs a hypothesis strategy with a function that runs the
student's object on one example and returns a `Mismatch` or None. On failure
hypothesis shrinks to the smallest example, which is printed with the
expected and received values and a hint. Student exceptions are shown as
the student's own error, never as a traceback from these checks.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ..common.compare import Mismatch, compare_tensors, describe, describe_example

REGISTRY: dict[str, list["VisibleCheck"]] = {}


@dataclass(frozen=True)
class VisibleCheck:
    title: str
    hint: str
    strategy: st.SearchStrategy
    run: Callable[[Any, Any], "Mismatch | None"]
    max_examples: int = 25
    concepts: tuple[str, ...] = ("core",)  # the grader's concept checks this one shows an example of


def register(name: str, *checks: VisibleCheck) -> None:
    REGISTRY.setdefault(name, []).extend(checks)


class _Failed(Exception):
    def __init__(self, mismatch: Mismatch, example: object):
        super().__init__(str(mismatch))
        self.mismatch = mismatch
        self.example = example


_OURS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _raised_in_student_code(error: BaseException) -> bool:
    """Whether a frame of the traceback belongs to the student (not to these checks or an installed library)."""
    for frame in traceback.extract_tb(error.__traceback__):
        name = frame.filename
        if not (name.startswith(_OURS) or "site-packages" in name or name.startswith(sys.prefix)
                or name.startswith(sys.base_prefix) or name.startswith("<frozen")):
            return True
    return False


def run_visible(check: VisibleCheck, obj: object) -> str | None:
    """None if `check` holds for `obj`; else the report of the smallest failing example."""
    @settings(derandomize=True, database=None, deadline=None, max_examples=check.max_examples,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False,
              phases=(Phase.explicit, Phase.generate, Phase.shrink))
    @given(check.strategy)
    def search(example: object) -> None:
        try:
            mismatch = check.run(example, obj)
        except Exception as error:  # noqa: BLE001
            if not _raised_in_student_code(error):
                raise  # a bug in the checks themselves: show it whole
            if isinstance(error, NotImplementedError):
                raise
            mismatch = Mismatch("your code", f"raised {type(error).__name__}: {error}")
        if mismatch is not None:
            raise _Failed(mismatch, example)

    try:
        search()
    except _Failed as failure:
        return (f"{failure.mismatch}\n  smallest failing input:\n{describe_example(failure.example)}\n"
                f"  hint: {check.hint}")
    return None


GOLDEN_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden.npz")


def golden_cases(name: str, path: str = GOLDEN_FILE) -> list[tuple[tuple, dict, tuple]]:
    """(args, kwargs, expected outputs) of every golden case of `name`, read without pickle."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"the golden values ({path}) are missing: release the assignment again")
    with np.load(path, allow_pickle=False) as data:
        keys = [k for k in data.files if k.startswith(f"{name}/")]
        cases = []
        for index in sorted({int(k.split("/")[1]) for k in keys}):
            def part(kind: str) -> dict[str, object]:
                prefix = f"{name}/{index}/{kind}/"
                return {k[len(prefix):]: _value(data[k], tensor=kind == "out") for k in keys if k.startswith(prefix)}
            args, kwargs, out = part("args"), part("kwargs"), part("out")
            cases.append((tuple(args[str(j)] for j in range(len(args))), kwargs,
                          tuple(out[str(j)] for j in range(len(out)))))
    return cases


def _value(array: np.ndarray, tensor: bool) -> object:
    """Outputs are always tensors; a 0-d argument is a plain number, a string argument a dtype or text."""
    if array.dtype.kind == "U":
        text = str(array)
        return getattr(torch, text.removeprefix("torch.")) if text.startswith("torch.") else text
    if array.ndim == 0 and not tensor and array.dtype != np.bool_:
        return array.item()
    return torch.from_numpy(array.copy())


def golden_check(name: str, hint: str, concepts: tuple[str, ...] = ("core",)) -> VisibleCheck:
    """The student's `name` reproduces the reference's outputs on the stored golden inputs."""
    def run(_: object, f) -> Mismatch | None:
        for args, kwargs, expected in golden_cases(name):
            out = f(*args, **kwargs)
            received = out if isinstance(out, tuple) else (out,)
            for index, (e, r) in enumerate(zip(expected, received)):
                mismatch = compare_tensors(e, r, f"output {index} on a golden case")
                if mismatch:
                    return Mismatch(mismatch.what, mismatch.reason,
                                    mismatch.detail + "\n  golden input: " + ", ".join(describe(a) for a in args))
        return None
    return VisibleCheck("matches golden values computed from the reference", hint, st.just(None), run,
                        max_examples=1, concepts=concepts)


def rejects(name: str, cases: list[tuple[str, tuple, dict]], hint: str) -> VisibleCheck:
    """`name(*args, **kwargs)` raises ValueError for every (why, args, kwargs) case."""
    def run(_: object, f) -> Mismatch | None:
        for why, args, kwargs in cases:
            try:
                f(*args, **kwargs)
            except ValueError:
                continue
            return Mismatch(name, f"accepted {why} without raising ValueError")
        return None
    return VisibleCheck("raises ValueError for bad arguments", hint, st.just(None), run, max_examples=1,
                        concepts=("bad_arguments",))


def gradient_check(name: str, hint: str, strategy: st.SearchStrategy,
                   make: Callable[[Any], tuple[tuple, dict, tuple[int, ...]]]) -> VisibleCheck:
    """Gradients of `name` with respect to the arguments at the returned positions agree with finite
    differences (float64 copies of the inputs): a detached or `.item()`-built result fails."""
    def run(example: object, f) -> Mismatch | None:
        args, kwargs, positions = make(example)
        args = [a.detach().double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]

        def of(*inputs):
            full = list(args)
            for position, value in zip(positions, inputs):
                full[position] = value
            out = f(*full, **kwargs)
            return tuple(o for o in (out if isinstance(out, tuple) else (out,))
                         if isinstance(o, torch.Tensor) and o.is_floating_point())

        inputs = tuple(args[i].clone().requires_grad_(True) for i in positions)
        try:
            # A wide step and float32-level tolerances: a correct float32 computation inside passes.
            ok = torch.autograd.gradcheck(of, inputs, eps=1e-3, atol=1e-3, rtol=1e-2, raise_exception=False)
        except RuntimeError as error:
            return Mismatch(f"gradient of {name}", f"could not be computed: {error}")
        if not ok:
            return Mismatch(f"gradient of {name}", "differs from finite differences: is part of the result cut "
                                                   "off from autograd (.item(), .detach(), torch.tensor(...))?")
        return None
    return VisibleCheck("gradients flow back to the inputs", hint, strategy, run, max_examples=5,
                        concepts=("gradient",))


def check(name: str, obj: object) -> None:
    """Run every visible check of `name` against `obj` (your function or class); print the outcome.

    Returns nothing, so that a check cell shows only the report."""
    passed(name, obj)


def passed(name: str, obj: object) -> bool:
    """`check`, returning whether every check passed."""
    if name not in REGISTRY:
        raise KeyError(f"no checks for {name!r}; checks exist for: {', '.join(sorted(REGISTRY))}")
    start = time.perf_counter()
    for index, visible in enumerate(REGISTRY[name]):
        try:
            report = run_visible(visible, obj)
        except NotImplementedError:
            print(f"✗ {name}: not implemented yet (the cell still raises NotImplementedError)")
            return False
        if report is not None:
            passed = f" ({index} of {len(REGISTRY[name])} checks passed before it)" if index else ""
            print(f"✗ {name} — {visible.title}{passed}\n{report}")
            return False
    titles = "; ".join(v.title for v in REGISTRY[name])
    print(f"✓ {name} — {len(REGISTRY[name])} checks passed in {time.perf_counter() - start:.1f} s: {titles}")
    return True
