"""Reference: positional encodings (Discussion 10, Q1 a-c) and rotary embeddings (an extra)."""
from __future__ import annotations

import torch
from torch import Tensor


def sinusoidal_encoding(seq_len: int, d_model: int, base: float = 10000.0, *,
                        device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """(seq_len, d_model): PE[p, 2i] = sin(p / base**(2i/d)), PE[p, 2i+1] = cos(same angle); sin in even columns."""
    if seq_len < 0 or d_model <= 0:
        raise ValueError(f"need seq_len >= 0 and d_model > 0, got seq_len={seq_len}, d_model={d_model}")
    if base <= 0:
        raise ValueError(f"base must be positive, got {base}")
    # The angles are computed in float64 so every output dtype gets correctly rounded values.
    position = torch.arange(seq_len, dtype=torch.float64, device=device)[:, None]  # (T, 1)
    even = torch.arange(0, d_model, 2, dtype=torch.float64, device=device)  # (ceil(d/2),): the 2i of each pair
    angle = position / base ** (even / d_model)  # (T, ceil(d/2))
    encoding = torch.empty(seq_len, d_model, dtype=torch.float64, device=device)  # (T, d)
    encoding[:, 0::2] = torch.sin(angle)
    encoding[:, 1::2] = torch.cos(angle[:, : d_model // 2])  # odd d_model: the last column is a sine
    return encoding.to(dtype or torch.float32)


def relative_position_bias(table: Tensor, q_len: int, k_len: int) -> Tensor:
    """table (num_heads, 2*max_len - 1) -> (num_heads, q_len, k_len) with out[h, i, j] = table[h, i - j + max_len - 1]."""
    if table.dim() != 2 or table.shape[1] % 2 == 0:
        raise ValueError(f"table must have shape (num_heads, 2*max_len - 1), got {tuple(table.shape)}")
    max_len = (table.shape[1] + 1) // 2
    if not (0 < q_len <= max_len and 0 < k_len <= max_len):
        raise ValueError(f"q_len ({q_len}) and k_len ({k_len}) must be between 1 and max_len ({max_len})")
    i = torch.arange(q_len, device=table.device)[:, None]  # (Lq, 1)
    j = torch.arange(k_len, device=table.device)[None, :]  # (1, Lk)
    index = i - j + max_len - 1  # (Lq, Lk): one column of the table per offset i - j
    return table[:, index]  # (H, Lq, Lk)


def apply_rotary(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """x (..., D) with D even, positions broadcasting to x.shape[:-1] -> x with each pair (2i, 2i+1) rotated
    by the angle position * base**(-2i/D)."""
    dim = x.shape[-1]
    if dim % 2:
        raise ValueError(f"rotary embeddings rotate pairs of features: the last dimension must be even, got {dim}")
    if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
        raise ValueError(f"positions must be an integer tensor, got {positions.dtype}")
    frequency = base ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=x.device) / dim)  # (D/2,)
    theta = positions.to(torch.float64)[..., None] * frequency  # (..., D/2)
    cos, sin = torch.cos(theta), torch.sin(theta)
    even, odd = x[..., 0::2].to(torch.float64), x[..., 1::2].to(torch.float64)  # (..., D/2) each
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)  # (..., D/2, 2)
    return rotated.flatten(-2).to(x.dtype)  # (..., D): pairs interleaved back
