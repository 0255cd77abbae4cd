"""Visible checks for the positional assignment, and the reference-free properties the grader reuses."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from .. import strategies as s
from ..common.compare import Mismatch, compare_tensors, describe
from .core import VisibleCheck, golden_check, gradient_check, register, rejects

SINUSOID_HINT = ("column 2i holds sin(p / base**(2i/d_model)) and column 2i+1 the cosine of the same angle; "
                 "compute the angles in float64 and return float32 unless a dtype is given")
BIAS_HINT = "out[h, i, j] = table[h, (i - j) + max_len - 1]: one learned bias per head per offset i - j"
ROTARY_HINT = ("rotate each pair (x[2i], x[2i+1]) by the angle position * base**(-2i/D): "
               "(a, b) -> (a cos - b sin, a sin + b cos)")


def follows_sinusoid_formula(encode, sizes: tuple[int, int]) -> Mismatch | None:
    """sinusoidal_encoding(T, d) equals the interleaved sin/cos formula, computed here in float64."""
    seq_len, d_model = sizes
    expected = torch.empty(seq_len, d_model, dtype=torch.float64)
    for col in range(d_model):
        rate = 10000.0 ** ((col - col % 2) / d_model)
        angle = torch.arange(seq_len, dtype=torch.float64) / rate
        expected[:, col] = torch.sin(angle) if col % 2 == 0 else torch.cos(angle)
    return compare_tensors(expected.float(), encode(seq_len, d_model), f"sinusoidal_encoding({seq_len}, {d_model})")


def gram_depends_on_offset_only(encode, sizes: tuple[int, int]) -> Mismatch | None:
    """For even d_model, PE[p] . PE[q] is the same for every pair with the same p - q."""
    seq_len, half = sizes
    pe = encode(seq_len, 2 * half, dtype=torch.float64)
    gram = pe @ pe.T
    expected = torch.stack([gram.diagonal(p - q)[0] for p in range(seq_len) for q in range(seq_len)])
    return compare_tensors(expected.reshape(seq_len, seq_len), gram, "PE @ PE.T (should depend only on p - q)")


def indexes_by_offset(bias, inputs: s.RelativeBiasInputs) -> Mismatch | None:
    """relative_position_bias picks table column (i - j) + max_len - 1 for every (i, j)."""
    max_len = (inputs.table.shape[1] + 1) // 2
    i = torch.arange(inputs.q_len)[:, None]
    j = torch.arange(inputs.k_len)[None, :]
    expected = inputs.table[:, i - j + max_len - 1]
    return compare_tensors(expected, bias(inputs.table, inputs.q_len, inputs.k_len), "relative_position_bias")


def rotary_score_depends_on_offset(rotate, case: tuple[int, int, int, int]) -> Mismatch | None:
    """<rotate(q, m), rotate(k, n)> is unchanged when m and n shift together."""
    m, n, shift, seed = case
    q, k = s.values((8,), seed, torch.float64), s.values((8,), seed + 1, torch.float64)
    # Scores are compared relative to |q| |k|, the size of their terms, so float32 angles never read as a failure.
    scale = q.norm() * k.norm()
    score = rotate(q, torch.tensor(m)) @ rotate(k, torch.tensor(n)) / scale
    shifted = rotate(q, torch.tensor(m + shift)) @ rotate(k, torch.tensor(n + shift)) / scale
    return compare_tensors(score, shifted, f"score / (|q| |k|) at positions ({m + shift}, {n + shift}) vs ({m}, {n})")


def rotates_neighbouring_pairs(rotate, inputs: s.RotaryInputs) -> Mismatch | None:
    """The notebook's formula, computed here in float64: pair (x[2i], x[2i+1]) turns by position * base**(-2i/D)."""
    x = inputs.x.double()
    d = x.shape[-1]
    theta = inputs.positions.double()[..., None] * 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    a, b = x[..., 0::2], x[..., 1::2]
    expected = torch.stack([a * theta.cos() - b * theta.sin(), a * theta.sin() + b * theta.cos()], -1).flatten(-2)
    return compare_tensors(expected.to(inputs.x.dtype), rotate(inputs.x, inputs.positions), "apply_rotary")


def rotary_keeps_norms(rotate, inputs: s.RotaryInputs) -> Mismatch | None:
    """A rotation never changes the length of a vector."""
    out = rotate(inputs.x, inputs.positions)
    if type(out) is not torch.Tensor:
        return compare_tensors(inputs.x, out, "apply_rotary")
    expected = inputs.x.double().norm(dim=-1).expand(out.shape[:-1]).to(inputs.x.dtype)
    return compare_tensors(expected, out.norm(dim=-1), "norms of the rotated vectors")


GOLDEN_CALLS = {
    "sinusoidal_encoding": [((5, 6), {}), ((3, 5), {"base": 100.0, "dtype": torch.float64})],
    "relative_position_bias": [((s.values((2, 5), 3), 3, 2), {})],
    "apply_rotary": [((s.values((3, 4), 4), torch.tensor([0, 1, 7])), {})],
}

def keeps_the_asked_dtype(encode, dtype: torch.dtype) -> Mismatch | None:
    out = encode(3, 4, dtype=dtype)
    if type(out) is not torch.Tensor or out.dtype != dtype:
        return Mismatch("sinusoidal_encoding(3, 4, dtype=...)", f"returned {describe(out)}; asked for {dtype}")
    return None


register("sinusoidal_encoding",
         VisibleCheck("follows the interleaved sin/cos formula", SINUSOID_HINT,
                      st.tuples(st.integers(1, 8), st.integers(1, 9)), lambda n, f: follows_sinusoid_formula(f, n)),
         VisibleCheck("returns the dtype asked for", SINUSOID_HINT, st.sampled_from([torch.float64, torch.float32]),
                      lambda dtype, f: keeps_the_asked_dtype(f, dtype), max_examples=2, concepts=("dtype_device",)),
         rejects("sinusoidal_encoding", [("d_model=0", (3, 0), {})], SINUSOID_HINT),
         VisibleCheck("PE[p] . PE[q] depends only on p - q", SINUSOID_HINT,
                      st.tuples(st.integers(2, 10), st.integers(1, 6)), lambda n, f: gram_depends_on_offset_only(f, n),
                      max_examples=10),
         golden_check("sinusoidal_encoding", SINUSOID_HINT))
register("relative_position_bias",
         VisibleCheck("indexes the table by the offset i - j", BIAS_HINT, s.relative_bias_inputs(),
                      lambda inputs, f: indexes_by_offset(f, inputs)),
         gradient_check("relative_position_bias", BIAS_HINT, s.relative_bias_inputs(),
                        lambda inputs: ((inputs.table, inputs.q_len, inputs.k_len), {}, (0,))),
         rejects("relative_position_bias", [("q_len=4 for a table of max_len=2", (torch.zeros(1, 3), 4, 1), {})],
                 BIAS_HINT),
         golden_check("relative_position_bias", BIAS_HINT))
register("apply_rotary",
         VisibleCheck("scores depend only on the offset m - n", ROTARY_HINT,
                      st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 30), s.seeds()),
                      lambda case, f: rotary_score_depends_on_offset(f, case)),
         VisibleCheck("rotates each pair (x[2i], x[2i+1])", ROTARY_HINT, s.rotary_inputs(),
                      lambda inputs, f: rotates_neighbouring_pairs(f, inputs), concepts=("core", "dtype_device")),
         VisibleCheck("keeps vector lengths", ROTARY_HINT, s.rotary_inputs(), lambda inputs, f: rotary_keeps_norms(f, inputs),
                      concepts=("core", "dtype_device")),
         gradient_check("apply_rotary", ROTARY_HINT, s.rotary_inputs(),
                        lambda inputs: ((inputs.x, inputs.positions), {}, (0,))),
         rejects("apply_rotary", [("an odd last dimension D=3", (torch.zeros(2, 3), torch.tensor([0, 1])), {})],
                 ROTARY_HINT),
         golden_check("apply_rotary", ROTARY_HINT))
