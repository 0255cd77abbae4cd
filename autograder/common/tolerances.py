"""The one place where comparison tolerances are stated.

References compute the mathematics in float64 and cast to the output dtype, so
a correct student result differs from the reference only by the rounding of
its own dtype. Each tolerance is a few units of that rounding (machine epsilon:
float64 2.2e-16, float32 1.2e-7, float16 9.8e-4, bfloat16 7.8e-3), widened for
the softmax and reductions the assignments contain. Gradients pass through one
more matmul chain, so they get `GRADIENT_FACTOR` times the room.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float

    def scaled(self, factor: float) -> "Tolerance":
        return Tolerance(self.rtol * factor, self.atol * factor)


TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(rtol=1e-7, atol=1e-9),
    torch.float32: Tolerance(rtol=1e-4, atol=1e-5),
    torch.float16: Tolerance(rtol=5e-3, atol=5e-3),
    torch.bfloat16: Tolerance(rtol=3e-2, atol=3e-2),
}
GRADIENT_FACTOR = 10.0


def tolerance_for(dtype: torch.dtype, *, gradient: bool = False) -> Tolerance:
    """Tolerance for comparing values of `dtype`; exact (0, 0) for bool and integer dtypes."""
    base = TOLERANCES.get(dtype, Tolerance(0.0, 0.0))
    return base.scaled(GRADIENT_FACTOR) if gradient else base
