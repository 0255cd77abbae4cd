"""Trusted stand-ins for graded names, so that one mistake is charged once.

When an item calls another graded name (MultiHeadAttention calls
scaled_dot_product_attention, PatchEmbedding calls patchify,
ClassificationHead calls the pooling functions), the grader grades it in a
fresh session in which those names are stand-ins: every call, and every
backward pass through one, is a callback message to the grader, which
computes it with the reference here, in its own process. The reference never
enters the worker, so nothing a submission can print or return holds it.
"""
from __future__ import annotations

from typing import Any, Callable

import torch


def answer(function: Callable, kind: str | None, args: list, kwargs: dict,
           grad_outputs: list) -> tuple[list, bool]:
    """(values, single): for kind "call", the outputs of `function(*args, **kwargs)` and whether it returns one
    tensor rather than a tuple; for kind "vjp", the gradient of every tensor argument (in order) of
    sum(output * grad_output), None where there is none."""
    if kind == "call":
        with torch.no_grad():
            result = function(*args, **kwargs)
        single = not isinstance(result, (tuple, list))
        return ([result] if single else list(result)), single
    if kind != "vjp":
        raise ValueError(f"unknown callback kind {kind!r}")
    args = [a.detach().requires_grad_(a.is_floating_point()) if isinstance(a, torch.Tensor) else a for a in args]
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    with torch.enable_grad():
        result = function(*args, **kwargs)
    outputs = [result] if not isinstance(result, (tuple, list)) else list(result)
    pairs = [(o, g.to(o.dtype)) for o, g in zip(outputs, grad_outputs)
             if isinstance(g, torch.Tensor) and o.requires_grad and g.shape == o.shape]
    inputs = [t for t in tensors if t.requires_grad]
    if not pairs or not inputs:
        return [None] * len(tensors), False
    grads = iter(torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True))
    return [next(grads) if t.requires_grad else None for t in tensors], False


def described(names: tuple[str, ...] | list[str]) -> str:
    """How the feedback names what an item was graded with."""
    return "a trusted " + " and a trusted ".join(names) + " in place of yours, so a mistake there is not charged twice"
