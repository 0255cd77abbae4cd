"""Builders for the kinds of check a rubric uses.

- `matches_reference`: the student's function agrees with the reference on
  hypothesis-drawn inputs, keeps dtype and device, and leaves its inputs alone.
- `module_matches_reference`: the student's module, loaded with the
  reference's `state_dict`, agrees in outputs and in gradients (inputs and
  parameters).
- `rejects_bad_arguments`: bad arguments raise `ValueError`.
- `holds`: a reference-free property from `autograder.selfcheck` holds.

Each returns a `Check`; the rubric only says what to check and with which inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from hypothesis import strategies as st

from .common.compare import Mismatch, compare_tensors, describe
from .rubric import Check
from .student import Student, StudentRaised


@dataclass(frozen=True)
class Call:
    """Arguments of one call, as drawn by a strategy (printed as the minimal failing input)."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    seed: int = 0
    names: tuple[str, ...] = ()   # parameter names of `args`, for the report

    def shown(self) -> dict:
        """What a report prints as the input."""
        names = self.names or tuple(f"arg{i}" for i in range(len(self.args)))
        return {**dict(zip(names, self.args)), **self.kwargs}


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def compare_values(expected: Any, received: Any, what: str, parts: tuple[str, ...] = ()) -> Mismatch | None:
    """Compare nested tuples of tensors and plain numbers; say where the first difference is.

    `parts` names the elements of a returned tuple (e.g. ("output", "weights")) in the report."""
    why_opaque = getattr(received, "why", None)
    if why_opaque is not None:
        return Mismatch(what, f"returned {why_opaque}, which cannot be compared with a torch.Tensor or number")
    if isinstance(expected, torch.Tensor):
        return compare_tensors(expected, received, what)
    if isinstance(expected, (tuple, list)):
        if not isinstance(received, (tuple, list)) or len(received) != len(expected):
            return Mismatch(what, f"should return {len(expected)} values as a tuple but returned {describe(received)}")
        for index, (e, r) in enumerate(zip(expected, received)):
            mismatch = compare_values(e, r, parts[index] if index < len(parts) else f"{what}[{index}]")
            if mismatch:
                return mismatch
        return None
    if type(expected) is int and (type(received) is not int or received != expected):
        return Mismatch(what, f"should be the int {expected} but is {describe(received)}")
    if expected != received:
        return Mismatch(what, f"should be {describe(expected)} but is {describe(received)}")
    return None


def _inputs_unchanged(target: str, names: tuple[str, ...], before: tuple, after: list) -> Mismatch | None:
    for index, (original, now) in enumerate(zip(before, after)):
        name = names[index] if index < len(names) else f"argument {index}"
        if isinstance(original, torch.Tensor) and not (
                type(now) is torch.Tensor and now.shape == original.shape
                and torch.equal(torch.nan_to_num(now), torch.nan_to_num(original.cpu()))):
            return Mismatch(target, f"modified {name} in place; "
                                    "compute new tensors instead of writing into the inputs")
    return None


def matches_reference(target: str, reference: Callable, strategy: st.SearchStrategy, *, hint: str,
                      title: str = "matches the reference on hypothesis-drawn inputs",
                      parts: tuple[str, ...] = (), max_examples: int = 100, weight: float = 1.0) -> Check:
    """`strategy` draws `Call`s; the student's `target` must return what `reference` returns
    (`parts` names the elements of a returned tuple)."""
    def run(call: Call, student: Student) -> Mismatch | None:
        expected = reference(*_clone(call.args), **_clone(call.kwargs))
        student.seed = call.seed
        try:
            received, args_after = student.call(target, call.args, call.kwargs)
        except StudentRaised as error:
            return Mismatch(target, f"raised {error}")
        return (compare_values(expected, received, target, parts)
                or _inputs_unchanged(target, call.names, call.args, args_after))

    return Check("matches_reference", title, hint, strategy, run, max_examples, weight)


@dataclass(frozen=True)
class ModuleCall:
    """A module built with `init_args`, then called with `args`; gradients flow into `grad_inputs`."""

    init_args: tuple
    args: tuple
    kwargs: dict = field(default_factory=dict)
    grad_inputs: tuple[int, ...] = ()
    dtype: torch.dtype = torch.float32   # parameters are cast to this before the state_dict is loaded
    seed: int = 0
    names: tuple[str, ...] = ()          # parameter names of `args`, for the report

    def shown(self) -> dict:
        """What a report prints as the input."""
        names = self.names or tuple(f"arg{i}" for i in range(len(self.args)))
        return {"constructor arguments": self.init_args, **dict(zip(names, self.args)), **self.kwargs}

    def arg_name(self, index: int) -> str:
        return self.names[index] if index < len(self.names) else f"argument {index}"


def _reference_run(reference_cls: type, call: ModuleCall) -> tuple[dict, tuple, list, list, dict]:
    """Build the reference module, run forward and backward; return what the student must reproduce."""
    torch.manual_seed(call.seed)
    module = reference_cls(*call.init_args).to(call.dtype).eval()
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    args = [_clone(a) for a in call.args]
    for index in call.grad_inputs:
        args[index].requires_grad_(True)
    outputs = module(*args, **_clone(call.kwargs))
    flat = [o for o in (outputs if isinstance(outputs, tuple) else (outputs,))]
    generator = torch.Generator().manual_seed(call.seed)
    grad_outputs = [torch.randn(o.shape, generator=generator, dtype=o.dtype) if o.is_floating_point() else None
                    for o in flat]
    loss = sum((o * g).sum() for o, g in zip(flat, grad_outputs) if g is not None)
    loss.backward()
    input_grads = [args[i].grad for i in call.grad_inputs]
    param_grads = {name: p.grad for name, p in module.named_parameters() if p.grad is not None}
    return state, tuple(o.detach() for o in flat), grad_outputs, input_grads, param_grads


def module_matches_reference(target: str, reference_cls: type, strategy: st.SearchStrategy, *, hint: str,
                             title: str = "outputs and gradients match the reference with its weights loaded",
                             parts: tuple[str, ...] = (), max_examples: int = 100, weight: float = 1.0) -> Check:
    """`strategy` draws `ModuleCall`s; outputs, input gradients and parameter gradients must all agree."""
    def run(call: ModuleCall, student: Student) -> Mismatch | None:
        state, outputs, grad_outputs, input_grads, param_grads = _reference_run(reference_cls, call)
        student.seed = call.seed
        try:
            got = student.module(target, call.init_args, {}, state, call.args, call.kwargs, dtype=call.dtype,
                                 grad_inputs=call.grad_inputs, grad_outputs=grad_outputs)
        except StudentRaised as error:
            return Mismatch(target, f"raised {error}")
        mismatch = compare_values(outputs, tuple(got.outputs), f"{target} outputs", parts)
        for position, (index, expected) in enumerate(zip(call.grad_inputs, input_grads)):
            mismatch = mismatch or compare_tensors(expected, got.input_grads[position],
                                                   f"gradient of {call.arg_name(index)}", gradient=True)
        for name, expected in param_grads.items():
            if mismatch:
                break
            if name not in got.param_grads:
                mismatch = Mismatch(f"gradient of {name}", "is missing: the parameter took no part in forward")
            else:
                mismatch = compare_tensors(expected, got.param_grads[name], f"gradient of {name}", gradient=True)
        return mismatch

    return Check("matches_reference", title, hint, strategy, run, max_examples, weight)


def holds(check_id: str, title: str, prop: Callable, target: str, strategy: st.SearchStrategy, *, hint: str,
          max_examples: int = 50, weight: float = 1.0) -> Check:
    """A reference-free property from `autograder.selfcheck` holds for the student's function `target`."""
    def run(example: Any, student: Student) -> Mismatch | None:
        student.seed = getattr(example, "seed", 0)
        try:
            return prop(student.function(target), example)
        except StudentRaised as error:
            return Mismatch(target, f"raised {error}")

    return Check(check_id, title, hint, strategy, run, max_examples, weight)


@dataclass(frozen=True)
class BadCall:
    """Arguments that must be refused, and why they are bad (shown to the student)."""

    why: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def shown(self) -> dict:
        """What a report prints as the input."""
        return {"bad because": self.why, **{f"arg{i}": a for i, a in enumerate(self.args)}, **self.kwargs}


def rejects_bad_arguments(target: str, cases: list[BadCall], *, hint: str, weight: float = 1.0) -> Check:
    """Every case must raise ValueError (not another error, not silence); all cases are tried, in order."""
    def run(all_cases: tuple[BadCall, ...], student: Student) -> Mismatch | None:
        for case in all_cases:
            try:
                student.call(target, case.args, case.kwargs)
            except StudentRaised as error:
                if error.error_type != "ValueError":
                    return Mismatch(target, f"raised {error.error_type} instead of ValueError for {case.why}")
                continue
            return Mismatch(target, f"accepted {case.why} without raising ValueError")
        return None

    return Check("rejects_bad_arguments", "raises ValueError for bad arguments", hint,
                 st.just(tuple(cases)), run, max_examples=1, weight=weight, show_example=False)
