"""Builders for the kinds of concept check a rubric uses.

- `matches_reference`: the student's function agrees with the reference on
  hypothesis-drawn inputs in one *aspect*: the values (within the
  float32-accurate tolerance, whatever dtype came back), the dtype and device,
  the inputs left untouched, or the gradients.
- `module_matches_reference`: the student's module, loaded with the
  reference's parameters by their contract names, agrees in outputs and (for
  the values aspect) in gradients of inputs and parameters.
- `rejects_bad_arguments`: bad arguments raise `ValueError`.
- `holds`: a property that needs no reference holds.

Each returns a `Check`; the rubric says what is checked, on which inputs, and
which sentence of the notebook demands it. `signature` names a mismatch so
that the same mistake in two submissions reads the same.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import torch
from hypothesis import strategies as st

from .common.compare import Mismatch, compare_tensors, describe
from .rubric import EXAMPLES, Check
from .student import Student, StudentRaised

ASPECTS = ("values", "dtype_device", "inputs_untouched", "gradient")


@dataclass(frozen=True)
class Call:
    """Arguments of one call, as drawn by a strategy (printed as the minimal failing input)."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    seed: int = 0
    names: tuple[str, ...] = ()   # parameter names of `args`, for the report
    grad_inputs: tuple[int, ...] = ()  # positions of the arguments a gradient check differentiates

    def shown(self) -> dict:
        """What a report prints as the input."""
        names = self.names or tuple(f"arg{i}" for i in range(len(self.args)))
        return {**dict(zip(names, self.args)), **self.kwargs}

    def arg_name(self, index: int) -> str:
        return self.names[index] if index < len(self.names) else f"argument {index}"


def signature(check_id: str, mismatch: Mismatch, form: str = "") -> str:
    """A stable name for a mismatch: check, part that differed (numbers and parenthesised details dropped),
    kind of difference, and the form of the minimal input (`input_form`). Two submissions with the same mistake
    get the same string; an unscaled softmax and an inverted mask, both "values differ", do not."""
    what = re.sub(r"\([^)]*\)", "", mismatch.what)
    what = re.sub(r"\d+", "#", what).strip()
    return "|".join(part for part in (check_id, what, mismatch.kind, form) if part)


def raised(target: str, error: StudentRaised) -> Mismatch:
    return Mismatch(target, f"raised {error}", kind=f"raised:{error.error_type}")


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def _flat(value: Any) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def compare_values(expected: Any, received: Any, what: str, parts: tuple[str, ...] = (), *,
                   check_dtype: bool = False) -> Mismatch | None:
    """Compare nested tuples of tensors and plain numbers; say where the first difference is.

    `parts` names the elements of a returned tuple (e.g. ("output", "weights")) in the report. Without
    `check_dtype` only values count (the dtype is a concept of its own)."""
    why_opaque = getattr(received, "why", None)
    if why_opaque is not None:
        return Mismatch(what, f"returned {why_opaque}, which cannot be compared with a torch.Tensor or number",
                        kind="type")
    if isinstance(expected, torch.Tensor):
        return compare_tensors(expected, received, what, check_dtype=check_dtype)
    if isinstance(expected, (tuple, list)):
        if not isinstance(received, (tuple, list)) or len(received) != len(expected):
            return Mismatch(what, f"should return {len(expected)} values as a tuple but returned "
                                  f"{describe(received)}", kind="structure")
        for index, (e, r) in enumerate(zip(expected, received)):
            mismatch = compare_values(e, r, parts[index] if index < len(parts) else f"{what}[{index}]",
                                      check_dtype=check_dtype)
            if mismatch:
                return mismatch
        return None
    if type(expected) is int and (type(received) is not int or received != expected):
        return Mismatch(what, f"should be the int {expected} but is {describe(received)}", kind="values:all")
    if expected != received:
        return Mismatch(what, f"should be {describe(expected)} but is {describe(received)}", kind="values:all")
    return None


def compare_dtypes(expected: Any, received: Any, what: str, parts: tuple[str, ...] = ()) -> Mismatch | None:
    """Every returned tensor has the expected dtype and device (values are the core check's business)."""
    expected_flat, received_flat = _flat(expected), _flat(received)
    if len(expected_flat) != len(received_flat):
        return Mismatch(what, f"returned {describe(received)}", kind="structure")
    for index, (e, r) in enumerate(zip(expected_flat, received_flat)):
        name = parts[index] if index < len(parts) else (what if len(expected_flat) == 1 else f"{what}[{index}]")
        if not isinstance(e, torch.Tensor):
            continue
        if type(r) is not torch.Tensor:
            return compare_tensors(e, r, name)
        if r.dtype != e.dtype:
            return Mismatch(name, f"dtype is {str(r.dtype)[6:]} but should be {str(e.dtype)[6:]}", kind="dtype")
        if r.device.type != e.device.type:
            return Mismatch(name, f"is on {r.device} but the inputs were on {e.device}", kind="device")
    return None


def compare_gradient(expected: torch.Tensor, received: Any, what: str) -> Mismatch | None:
    """A gradient; `None` (no gradient reached it) counts as zeros, as autograd means it."""
    if received is None:
        if not bool(expected.detach().ne(0).any()):
            return None
        return Mismatch(what, "received no gradient: the result is cut off from it (.item(), .detach(), "
                              "torch.tensor(...) of a computed value, or a non-differentiable operation)",
                        kind="no_gradient")
    return compare_tensors(expected, received, what, gradient=True, check_dtype=False)


def _inputs_unchanged(target: str, call: Call, after: list) -> Mismatch | None:
    for index, (original, now) in enumerate(zip(call.args, after)):
        if isinstance(original, torch.Tensor) and not (
                type(now) is torch.Tensor and now.shape == original.shape
                and torch.equal(torch.nan_to_num(now), torch.nan_to_num(original.cpu()))):
            return Mismatch(target, f"modified {call.arg_name(index)} in place; "
                                    "compute new tensors instead of writing into the inputs", kind="modified_input")
    return None


def _grad_outputs(outputs: list, seed: int) -> list[torch.Tensor | None]:
    """Seeded random weights for each floating output: the backward pass computes a vector-Jacobian product."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(o.shape, generator=generator, dtype=torch.float64).to(o.dtype)
            if isinstance(o, torch.Tensor) and o.is_floating_point() else None for o in outputs]


def _reference_gradients(reference: Callable, call: Call) -> tuple[list, list, list]:
    """(outputs, grad_outputs, input gradients) of the reference; a missing gradient is zeros."""
    args = list(_clone(call.args))
    for index in call.grad_inputs:
        args[index].requires_grad_(True)
    outputs = _flat(reference(*args, **_clone(call.kwargs)))
    grad_outputs = _grad_outputs(outputs, call.seed)
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None and o.requires_grad]
    if pairs:
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
    grads = [args[i].grad if args[i].grad is not None else torch.zeros_like(args[i]) for i in call.grad_inputs]
    return [o.detach() if isinstance(o, torch.Tensor) else o for o in outputs], grad_outputs, grads


def matches_reference(target: str, reference: Callable, strategy: st.SearchStrategy, *, check_id: str,
                      title: str, sentence: str, hint: str, aspect: str = "values", core: bool = False,
                      parts: tuple[str, ...] = (), max_examples: int = EXAMPLES, weight: float = 1.0) -> Check:
    """`strategy` draws `Call`s; the student's `target` must agree with `reference` in `aspect`:
    "values", "dtype_device", "inputs_untouched" or "gradient" (of the arguments at `call.grad_inputs`)."""
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")

    def expect(call: Call) -> Any:
        if aspect == "gradient":
            return _reference_gradients(reference, call)
        if aspect == "inputs_untouched":
            return None
        return reference(*_clone(call.args), **_clone(call.kwargs))

    def run(call: Call, expected: Any, student: Student) -> Mismatch | None:
        student.seed = call.seed
        if aspect == "gradient":
            outputs, grad_outputs, expected_grads = expected
            try:
                received, _, got_grads = student.call_with_gradients(target, call.args, call.kwargs,
                                                                     call.grad_inputs, grad_outputs)
            except StudentRaised as error:
                return raised(target, error)
            mismatch = compare_values(tuple(outputs), tuple(_flat(received)), target, parts or (target,))
            for position, index in enumerate(call.grad_inputs):
                got = got_grads[position] if position < len(got_grads) else None
                mismatch = mismatch or compare_gradient(expected_grads[position], got,
                                                        f"gradient of {call.arg_name(index)}")
            return mismatch
        try:
            received, args_after = student.call(target, call.args, call.kwargs,
                                                args_after=aspect == "inputs_untouched")
        except StudentRaised as error:
            return raised(target, error)
        if aspect == "values":
            return compare_values(expected, received, target, parts)
        if aspect == "dtype_device":
            return compare_dtypes(expected, received, target, parts)
        return _inputs_unchanged(target, call, args_after)

    return Check(check_id, title, hint, strategy, run, max_examples, weight, sentence=sentence, core=core,
                 expect=expect, one_call=True)


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
    # Only parameters are fixed by the contract's names; buffers (a student's or the reference's) are not sent.
    state = {name: p.detach().clone() for name, p in module.named_parameters()}
    args = [_clone(a) for a in call.args]
    for index in call.grad_inputs:
        args[index].requires_grad_(True)
    flat = _flat(module(*args, **_clone(call.kwargs)))
    grad_outputs = _grad_outputs(flat, call.seed)
    loss = sum((o * g).sum() for o, g in zip(flat, grad_outputs) if g is not None)
    loss.backward()
    input_grads = [args[i].grad if args[i].grad is not None else torch.zeros_like(args[i]) for i in call.grad_inputs]
    param_grads = {name: p.grad if p.grad is not None else torch.zeros_like(p) for name, p in module.named_parameters()}
    return state, tuple(o.detach() for o in flat), grad_outputs, input_grads, param_grads


def module_matches_reference(target: str, reference_cls: type, strategy: st.SearchStrategy, *, check_id: str,
                             title: str, sentence: str, hint: str, aspect: str = "values", core: bool = False,
                             parts: tuple[str, ...] = (), max_examples: int = EXAMPLES, weight: float = 1.0) -> Check:
    """`strategy` draws `ModuleCall`s. Aspect "values": outputs, input gradients and parameter gradients agree
    (shapes are compared before any gradient, so a shape mistake is reported as one); "dtype_device": the
    outputs' dtypes and devices; "outputs": the outputs' values only (for inputs where the contract leaves
    gradients open)."""
    if aspect not in ("values", "dtype_device", "outputs"):
        raise ValueError(f"aspect must be values, dtype_device or outputs, got {aspect!r}")

    def run(call: ModuleCall, expected: tuple, student: Student) -> Mismatch | None:
        state, outputs, grad_outputs, input_grads, param_grads = expected
        student.seed = call.seed
        want_grads = aspect == "values"
        try:
            got = student.module(target, call.init_args, {}, state, call.args, call.kwargs, dtype=call.dtype,
                                 grad_inputs=call.grad_inputs if want_grads else (),
                                 grad_outputs=grad_outputs if want_grads else None)
        except StudentRaised as error:
            return raised(target, error)
        if aspect == "dtype_device":
            return compare_dtypes(outputs, tuple(got.outputs), f"{target} outputs", parts)
        mismatch = compare_values(outputs, tuple(got.outputs), f"{target} outputs", parts)
        if mismatch or not want_grads:
            return mismatch
        for position, (index, expected) in enumerate(zip(call.grad_inputs, input_grads)):
            received = got.input_grads[position] if position < len(got.input_grads) else None
            mismatch = mismatch or compare_gradient(expected, received, f"gradient of {call.arg_name(index)}")
        for name, expected in param_grads.items():
            mismatch = mismatch or compare_gradient(expected, got.param_grads.get(name), f"gradient of {name}")
        return mismatch

    return Check(check_id, title, hint, strategy, run, max_examples, weight, sentence=sentence, core=core,
                 expect=partial(_reference_run, reference_cls), one_call=True)


def holds(check_id: str, title: str, prop: Callable, target: str, strategy: st.SearchStrategy, *, sentence: str,
          hint: str, max_examples: int = EXAMPLES, weight: float = 1.0) -> Check:
    """A reference-free property `prop(student_callable, example) -> Mismatch | None` holds."""
    def run(example: Any, _: None, student: Student) -> Mismatch | None:
        student.seed = getattr(example, "seed", 0)
        try:
            return prop(student.function(target), example)
        except StudentRaised as error:
            return raised(target, error)

    return Check(check_id, title, hint, strategy, run, max_examples, weight, sentence=sentence)


@dataclass(frozen=True)
class BadCall:
    """Arguments that must be refused, and why they are bad (shown to the student)."""

    why: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def shown(self) -> dict:
        """What a report prints as the input."""
        return {"bad because": self.why, **{f"arg{i}": a for i, a in enumerate(self.args)}, **self.kwargs}


def rejects_bad_arguments(target: str, cases: list[BadCall], *, sentence: str, hint: str,
                          weight: float = 1.0) -> Check:
    """Every case must raise ValueError (not another error, not silence); all cases are tried, in order."""
    def run(all_cases: tuple[BadCall, ...], _: None, student: Student) -> Mismatch | None:
        for case in all_cases:
            try:
                student.call(target, case.args, case.kwargs)
            except StudentRaised as error:
                if not error.error_type.startswith("ValueError"):
                    return Mismatch(target, f"raised {error.error_type} instead of ValueError for {case.why}",
                                    kind=f"wrong_error:{error.error_type}")
                continue
            return Mismatch(target, f"accepted {case.why} without raising ValueError",
                            kind=f"accepted:{all_cases.index(case)}")
        return None

    return Check("bad_arguments", "raises ValueError for bad arguments", hint, st.just(tuple(cases)), run,
                 max_examples=1, weight=weight, show_example=False, sentence=sentence)
