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

from collections import OrderedDict
from typing import Any, Callable

import torch

KEPT_BYTES = 64 * 2**20   # the most tensor bytes of forward passes kept for their backward passes


class TrustedCalls:
    """The grader's side of one session's stand-ins. A call that will be differentiated ("keep") is computed
    with autograd and its graph kept, so its backward pass needs only the output gradients. Kept graphs are
    dropped oldest first beyond KEPT_BYTES, and all of them when the request that made them is answered
    (`forget`); a backward pass for a dropped one gets the call's arguments again."""

    def __init__(self, functions: dict[str, Callable]):
        self.functions = dict(functions)
        self._kept: OrderedDict[int, tuple[list, list, int]] = OrderedDict()  # id -> (inputs, outputs, bytes)
        self._kept_bytes = 0
        self._next_id = 0

    def __contains__(self, name: object) -> bool:
        return name in self.functions

    def answer(self, name: str, kind: str | None, args: list, kwargs: dict, grad_outputs: list, *,
               keep: bool = False, call: object = None) -> dict[str, Any]:
        """The reply to one callback, values still to encode: for kind "call", {"values": the outputs of the
        function, "single": whether it returns one tensor, "call": the id of the kept graph when `keep`}; for kind
        "vjp", {"values": the gradient of every tensor argument of sum(output * grad_output), None where there
        is none}, from the graph kept for `call` if it still is (else {"forgotten": True}), or recomputed from
        `args` when no `call` is named."""
        function = self.functions[name]
        if kind == "call" and not keep:
            with torch.no_grad():
                values, single = _listed(function(*args, **kwargs))
            return {"values": values, "single": single}
        if kind == "call":
            inputs, outputs = _with_graph(function, args, kwargs)
            single = not isinstance(outputs, (tuple, list))
            outputs, _ = _listed(outputs)
            self._keep(inputs, outputs, sum(t.element_size() * t.nelement() for t in [*inputs, *outputs]
                                            if isinstance(t, torch.Tensor)))
            return {"values": [o.detach() if isinstance(o, torch.Tensor) else o for o in outputs],
                    "single": single, "call": self._next_id - 1}
        if kind != "vjp":
            raise ValueError(f"unknown callback kind {kind!r}")
        if call is not None:
            kept = self._kept.get(call) if type(call) is int else None
            if kept is None:
                return {"forgotten": True}
            inputs, outputs, _ = kept
        else:
            inputs, outputs = _with_graph(function, args, kwargs)
            outputs, _ = _listed(outputs)
        return {"values": _vjp(inputs, outputs, grad_outputs)}

    def forget(self) -> None:
        """Drop every kept graph: the request whose forward passes they were is answered."""
        self._kept.clear()
        self._kept_bytes = 0

    def _keep(self, inputs: list, outputs: list, size: int) -> None:
        self._kept[self._next_id] = (inputs, outputs, size)
        self._next_id += 1
        self._kept_bytes += size
        while self._kept_bytes > KEPT_BYTES and len(self._kept) > 1:
            self._kept_bytes -= self._kept.popitem(last=False)[1][2]


def _listed(result: object) -> tuple[list, bool]:
    """(the outputs as a list, whether the function returned one value rather than a tuple)."""
    single = not isinstance(result, (tuple, list))
    return ([result] if single else list(result)), single


def _with_graph(function: Callable, args: list, kwargs: dict) -> tuple[list, object]:
    """(every tensor argument as a fresh leaf, in order; the function's result computed from them with autograd)."""
    args = [a.detach().requires_grad_(a.is_floating_point()) if isinstance(a, torch.Tensor) else a for a in args]
    with torch.enable_grad():
        result = function(*args, **kwargs)
    return [a for a in args if isinstance(a, torch.Tensor)], result


def _vjp(inputs: list, outputs: list, grad_outputs: list) -> list:
    """Gradients of sum(output * grad_output) for every input (None where it has none)."""
    pairs = [(o, g.to(o.dtype)) for o, g in zip(outputs, grad_outputs)
             if isinstance(o, torch.Tensor) and isinstance(g, torch.Tensor) and o.requires_grad and g.shape == o.shape]
    wanted = [t for t in inputs if t.requires_grad]
    if not pairs or not wanted:
        return [None] * len(inputs)
    grads = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True,
                                     retain_graph=True))
    return [next(grads) if t.requires_grad else None for t in inputs]


def described(names: tuple[str, ...] | list[str]) -> str:
    """How the feedback names what an item was graded with."""
    return "a trusted " + " and a trusted ".join(names) + " in place of yours, so a mistake there is not charged twice"
