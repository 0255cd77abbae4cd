"""Correct: loops over columns for the sinusoid and the bias; rotary with float32 frequency tables, as most
model code computes them, whatever the dtype of x."""
import math

import torch

EXPECTED = {}


def sinusoidal_encoding(seq_len, d_model, base=10000.0, *, device=None, dtype=None):
    if d_model <= 0:
        raise ValueError("d_model must be positive")
    pe = torch.zeros(seq_len, d_model, dtype=torch.float64, device=device)
    positions = torch.arange(seq_len, dtype=torch.float64, device=device)
    for column in range(d_model):
        i = column // 2
        angle = positions / base ** (2 * i / d_model)
        pe[:, column] = torch.sin(angle) if column % 2 == 0 else torch.cos(angle)
    return pe.to(dtype or torch.float32)


def relative_position_bias(table, q_len, k_len):
    max_len = (table.shape[1] + 1) // 2
    if not (1 <= q_len <= max_len and 1 <= k_len <= max_len):
        raise ValueError(f"q_len and k_len must lie in [1, {max_len}]")
    rows = []
    for i in range(q_len):
        rows.append(torch.stack([table[:, i - j + max_len - 1] for j in range(k_len)], dim=-1))
    return torch.stack(rows, dim=1)


def apply_rotary(x, positions, base=10000.0):
    d = x.shape[-1]
    if d % 2 != 0:
        raise ValueError(f"the last dimension must be even, got {d}")
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d))
    theta = positions.to(torch.float32)[..., None] * inv_freq  # (..., D/2) in float32
    cos, sin = theta.cos(), theta.sin()
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)
