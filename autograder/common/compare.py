"""Compare a received value with an expected one and say, in plain words, how they differ.

Used by the grader (on values rebuilt from the worker's bytes) and by the
students' self-checks, so a student sees the same wording in both places.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .tolerances import tolerance_for

SMALL = 24  # tensors with at most this many elements are printed in full


@dataclass(frozen=True)
class Mismatch:
    """Why `received` is not `expected`: a one-line reason plus the evidence."""

    what: str
    reason: str
    detail: str = ""
    kind: str = "other"   # what differed: type, dtype, device, shape, nan, values, raised, ...; part of a signature

    def __str__(self) -> str:
        text = f"{self.what}: {self.reason}"
        return f"{text}\n{self.detail}" if self.detail else text


def describe(value: object) -> str:
    """A short description: shape and dtype, and the values when small."""
    if type(value) is torch.Tensor:
        head = f"tensor of shape {tuple(value.shape)}, {str(value.dtype).removeprefix('torch.')}"
        if value.device.type != "cpu":
            head += f", on {value.device}"
        if value.numel() <= SMALL:
            return f"{head}: {_format_values(value)}"
        return head
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def describe_example(example: object) -> str:
    """An example as indented 'name = value' lines: from its `shown()` method, a dict, or its attributes."""
    if hasattr(example, "shown"):
        fields = example.shown()
    else:
        fields = example if isinstance(example, dict) else getattr(example, "__dict__", None)
    if not fields:
        return f"    {describe(example)}"
    return "\n".join(f"    {key} = {describe(value)}" for key, value in fields.items())


def input_form(example: object) -> str:
    """The form of an example without its values: each argument's dtype and shape, or its type (flags, sizes
    and None as they are). The minimal inputs of one mistake share a form; those of different mistakes rarely do."""
    fields = example.shown() if hasattr(example, "shown") else {"input": example}
    parts = []
    for name, value in fields.items():
        if isinstance(value, torch.Tensor):
            parts.append(f"{name}:{str(value.dtype).removeprefix('torch.')}{list(value.shape)}")
        elif value is None or isinstance(value, (bool, int, str)):
            parts.append(f"{name}={value!r}")
        else:
            parts.append(f"{name}:{type(value).__name__}")
    return ",".join(parts)


def _format_values(t: torch.Tensor) -> str:
    values = t.detach().cpu()
    if values.dtype in (torch.bfloat16, torch.float16):
        values = values.float()
    with torch.no_grad():
        return str(values.tolist())


def compare_tensors(expected: torch.Tensor, received: object, what: str = "output",
                    *, gradient: bool = False, check_dtype: bool = True) -> Mismatch | None:
    """None when `received` matches `expected` in type, dtype, shape, device and value (within the tolerance).

    With `check_dtype=False` only the values count: a float32 result for float64 inputs, or 0/1 integers for a
    bool mask, pass (keeping the dtype is then a check of its own)."""
    if type(received) is not torch.Tensor:
        kind = "a subclass of torch.Tensor" if isinstance(received, torch.Tensor) else f"a {type(received).__name__}"
        return Mismatch(what, f"expected a torch.Tensor but got {kind}", kind="type")
    if check_dtype and received.dtype != expected.dtype:
        return Mismatch(what, f"dtype is {_name(received.dtype)} but should be {_name(expected.dtype)}", kind="dtype")
    if received.device.type != expected.device.type:
        return Mismatch(what, f"is on {received.device} but the inputs were on {expected.device} "
                              "(create new tensors with device=x.device)", kind="device")
    if received.shape != expected.shape:
        return Mismatch(what, f"shape is {tuple(received.shape)} but should be {tuple(expected.shape)}",
                        kind=f"shape:{received.dim()}d-for-{expected.dim()}d")
    exp = expected.detach().cpu()
    got = received.detach().cpu()
    if not exp.is_floating_point():
        if got.is_complex():
            return Mismatch(what, f"holds {_name(got.dtype)} values but should hold {_name(exp.dtype)} values",
                            kind="dtype")
        wrong = exp.to(got.dtype) != got  # 0/1 floats for a bool mask have the right values (the dtype is checked apart)
        if not wrong.any():
            return None
        return Mismatch(what, "values differ", _first_difference(exp, got, wrong), kind=f"values:{_extent(wrong)}")
    exp64, got64 = exp.double(), got.double()
    nan_wrong = torch.isnan(got64) & ~torch.isnan(exp64)
    if nan_wrong.any():
        return Mismatch(what, "contains NaN where the expected value is a number "
                              "(a row with nothing to attend to? a division by zero?)",
                        _first_difference(exp64, got64, nan_wrong), kind="nan")
    tol = tolerance_for(expected.dtype, gradient=gradient)
    both_nan = torch.isnan(got64) & torch.isnan(exp64)
    same_inf = torch.isinf(exp64) & (exp64 == got64)
    close = (got64 - exp64).abs() <= tol.atol + tol.rtol * exp64.abs()
    wrong = ~(close | both_nan | same_inf)
    if not wrong.any():
        return None
    return Mismatch(what, f"values differ beyond the tolerance (rtol={tol.rtol:g}, atol={tol.atol:g})",
                    _first_difference(exp64, got64, wrong), kind=f"values:{_extent(wrong)}")


def _extent(wrong: torch.Tensor) -> str:
    """'all' or 'some' entries wrong: coarse enough that the same mistake reads the same on other inputs."""
    return "all" if bool(wrong.all()) else "some"


def format_pair(expected: float, received: float) -> tuple[str, str]:
    """Both numbers with the fewest significant digits (at least 6) that tell them apart."""
    for digits in range(6, 18):
        left, right = f"{expected:.{digits}g}", f"{received:.{digits}g}"
        if left != right:
            return left, right
    return left, right


def _first_difference(exp: torch.Tensor, got: torch.Tensor, wrong: torch.Tensor) -> str:
    index = tuple(int(i) for i in wrong.nonzero()[0])
    shown_exp, shown_got = format_pair(exp[index].item(), got[index].item())
    lines = [f"  first difference at index {list(index)}: expected {shown_exp}, got {shown_got}",
             f"  {int(wrong.sum())} of {wrong.numel()} entries differ"]
    if exp.is_floating_point():
        diff = (got - exp).abs()
        finite = torch.isfinite(diff)
        if finite.any():
            text = f"  max abs error {diff[finite].max().item():.3g}"
            nonzero = finite & (exp != 0)
            if nonzero.any():
                text += f", max rel error {(diff[nonzero] / exp[nonzero].abs()).max().item():.3g}"
            lines.append(text)
    if exp.numel() <= SMALL:
        lines.append(f"  expected {_format_values(exp)}")
        lines.append(f"  received {_format_values(got)}")
    return "\n".join(lines)


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
