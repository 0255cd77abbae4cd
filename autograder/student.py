"""The student's code as the grader sees it: callables whose every call goes to the sandboxed worker.

Checks and the reference-free properties of `autograder.selfcheck` take plain
callables; here those callables are proxies. What comes back is data the
grader rebuilt itself from bytes (see `autograder.sandbox.wire`), never an
object the student made.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import torch


class StudentRaised(Exception):
    """The student's code raised an exception in the worker (their error, reported in their words)."""

    def __init__(self, error_type: str, message: str):
        super().__init__(f"{error_type}: {message}" if message else error_type)
        self.error_type = error_type
        self.message = message


class Student:
    """Proxies for the names one submission defines, bound to one worker session."""

    def __init__(self, session: Any, item: str):
        self.session = session
        self.item = item
        self.seed = 0
        self.forbidden: Counter[str] = Counter()  # watched calls the worker counted during our calls

    def call(self, target: str, args: tuple = (), kwargs: dict | None = None, *,
             args_after: bool = False) -> tuple[Any, list]:
        """Call `target(*args, **kwargs)` in the worker; return (value, the arguments as the call left them,
        when `args_after` asks for them, else [])."""
        result = self.session.call(target, list(args), dict(kwargs or {}), seed=self.seed, args_after=args_after)
        self.forbidden.update(result.forbidden)
        if not result.ok:
            raise StudentRaised(result.error_type, result.message)
        return result.value, result.args_after

    def call_with_gradients(self, target: str, args: tuple, kwargs: dict | None, grad_inputs: tuple[int, ...],
                            grad_outputs: list[torch.Tensor | None]) -> tuple[Any, list, list]:
        """Call `target` with the arguments at `grad_inputs` requiring gradients, backward from the outputs
        weighted by `grad_outputs`; return (value, args after the call, gradients of those arguments)."""
        result = self.session.call(target, list(args), dict(kwargs or {}), seed=self.seed,
                                   grad_inputs=list(grad_inputs), grad_outputs=grad_outputs)
        if not result.ok:
            raise StudentRaised(result.error_type, result.message)
        return result.value, result.args_after, result.input_grads

    def function(self, target: str):
        """A callable standing for the student's function `target`."""
        def proxy(*args: Any, **kwargs: Any) -> Any:
            return self.call(target, args, kwargs)[0]
        proxy.__name__ = target
        return proxy

    def module(self, target: str, init_args: tuple, init_kwargs: dict | None, state_dict: dict[str, torch.Tensor],
               args: tuple, kwargs: dict | None = None, *, dtype: torch.dtype, grad_inputs: tuple[int, ...] = (),
               grad_outputs: list[torch.Tensor | None] | None = None, train: bool = False) -> Any:
        """Build the student's module `target`, load `state_dict`, run forward (and backward); return the result."""
        result = self.session.call_module(target, list(init_args), dict(init_kwargs or {}), state_dict, dtype=dtype, train=train,
                                          method="forward", args=list(args), kwargs=dict(kwargs or {}),
                                          grad_inputs=list(grad_inputs), grad_outputs=grad_outputs, seed=self.seed)
        self.forbidden.update(result.forbidden)
        if not result.ok:
            raise StudentRaised(result.error_type, result.message)
        return result
