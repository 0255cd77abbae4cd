"""The one place where comparison tolerances are stated.

Grades judge the mathematics, not the rounding. References compute in float64
and cast to the output dtype; a student result passes a value comparison when
it is as accurate as a float32 computation, whatever the input dtype: float32
frequency tables on float64 input, a different summation order, or a float32
softmax inside a float64 function all pass. Keeping the dtype of the inputs is
a separate, stated concept check (`dtype_device`), so a cast costs only that.

- float32 and float64 values: rtol 1e-4, atol 1e-5, i.e. about a thousand
  units of float32 roundoff (1.2e-7), room for the softmax, a matmul chain and
  angles up to a few hundred radians computed in float32.
- float16 and bfloat16 (GPU grading): a few units of their own roundoff
  (9.8e-4, 7.8e-3), widened for reductions.
- Gradients pass through one more matmul chain: `GRADIENT_FACTOR` times the room.
- bool and integer values compare exactly.

The students' visible checks use the same function, so a property never
blames rounding on the concept it checks.
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


FLOAT32_ACCURATE = Tolerance(rtol=1e-4, atol=1e-5)
TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: FLOAT32_ACCURATE,
    torch.float32: FLOAT32_ACCURATE,
    torch.float16: Tolerance(rtol=5e-3, atol=5e-3),
    torch.bfloat16: Tolerance(rtol=3e-2, atol=3e-2),
}
GRADIENT_FACTOR = 10.0


def tolerance_for(dtype: torch.dtype, *, gradient: bool = False) -> Tolerance:
    """Tolerance for comparing values of `dtype`; exact (0, 0) for bool and integer dtypes."""
    base = TOLERANCES.get(dtype, Tolerance(0.0, 0.0))
    return base.scaled(GRADIENT_FACTOR) if gradient else base
