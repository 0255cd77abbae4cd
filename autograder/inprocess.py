"""An unsandboxed session that runs cells and calls in the grader's own process.

Never used for grading. It exists to measure what isolation costs (`make
bench`: the same checks against the same functions, called directly) and to
run the rubric inside a notebook kernel for the nbgrader baseline.
"""
from __future__ import annotations

import contextlib
import io
import traceback

import torch

from .sandbox.pool import CallResult, CellResult, ModuleResult
from .sandbox.wire import ModuleTree, build_module_tree


class InProcessSession:
    """Same interface as a sandbox session; the names live in `namespace`."""

    def __init__(self, namespace: dict | None = None):
        self.namespace = namespace if namespace is not None else {"__name__": "__main__"}

    def exec_cells(self, cells: list[dict]) -> list[CellResult]:
        results = []
        for cell in cells:
            out, err = io.StringIO(), io.StringIO()
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    exec(compile(cell["source"], f"<cell {cell['id']}>", "exec"), self.namespace)
                results.append(CellResult(cell["id"], True, stdout=out.getvalue(), stderr=err.getvalue()))
            except Exception:  # noqa: BLE001 - a failing cell is reported, not raised
                results.append(CellResult(cell["id"], False, traceback.format_exc(limit=-1)))
        return results

    def call(self, target: str, args: list, kwargs: dict, seed: int = 0, *, grad_inputs: list[int] | None = None,
             grad_outputs: list | None = None, args_after: bool = False) -> CallResult:
        torch.manual_seed(seed)
        args = [a.detach().clone() if isinstance(a, torch.Tensor) else build_module_tree(a.spec)
                if isinstance(a, ModuleTree) else a for a in args]
        for index in grad_inputs or []:
            args[index].requires_grad_(True)
        try:
            value = self.namespace[target](*args, **kwargs)
            if grad_inputs:
                _backward(value, grad_outputs)
        except Exception as exc:  # noqa: BLE001
            return CallResult(False, error_type=type(exc).__name__, message=str(exc))
        models = [{name: [p.requires_grad, p.numel()] for name, p in a.named_parameters()}
                  for a in args if isinstance(a, torch.nn.Module)]
        return CallResult(True, value, [a.detach() if isinstance(a, torch.Tensor) else a for a in args],
                          models=models, input_grads=[args[i].grad for i in grad_inputs or []])

    def call_module(self, target: str, init_args: list, init_kwargs: dict, state_dict: dict | None, *,
                    dtype: torch.dtype = torch.float32, train: bool = False, method: str = "forward", args: list,
                    kwargs: dict, grad_inputs: list[int], grad_outputs: list | None, seed: int = 0) -> ModuleResult:
        torch.manual_seed(seed)
        try:
            module = self.namespace[target](*init_args, **init_kwargs).to(dtype)
            if state_dict is not None:
                module.load_state_dict(state_dict, strict=False)
            module.train(train)
            args = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args]
            for index in grad_inputs:
                args[index].requires_grad_(True)
            out = getattr(module, method)(*args, **kwargs)
            flat = _backward(out, grad_outputs)
        except Exception as exc:  # noqa: BLE001
            return ModuleResult(False, error_type=type(exc).__name__, message=str(exc))
        return ModuleResult(True, [o.detach() if isinstance(o, torch.Tensor) else o for o in flat],
                            [args[i].grad for i in grad_inputs],
                            {n: p.grad for n, p in module.named_parameters() if p.grad is not None})

    def close(self) -> None:
        self.namespace.clear()


def _backward(output: object, grad_outputs: list | None) -> list:
    """Backward from every output whose shape matches its weights (as the worker does); return the outputs."""
    flat = list(output) if isinstance(output, (tuple, list)) else [output]
    pairs = [(o, g) for o, g in zip(flat, grad_outputs or []) if g is not None and isinstance(o, torch.Tensor)
             and o.requires_grad and o.shape == g.shape]
    if pairs:
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
    return flat
