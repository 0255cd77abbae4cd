"""Correct: an outer product interleaved with stack, the bias by one index matrix, rotary as complex
multiplication."""
import torch

EXPECTED = {}


def sinusoidal_encoding(seq_len, d_model, base=10000.0, *, device=None, dtype=None):
    if d_model < 1:
        raise ValueError("d_model must be at least 1")
    pairs = (d_model + 1) // 2
    rates = base ** (torch.arange(pairs, dtype=torch.float64, device=device) * 2 / d_model)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64, device=device), 1 / rates)
    both = torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(seq_len, 2 * pairs)
    return both[:, :d_model].to(torch.float32 if dtype is None else dtype)


def relative_position_bias(table, q_len, k_len):
    max_len = (table.size(1) + 1) // 2
    if q_len > max_len or k_len > max_len or q_len < 1 or k_len < 1:
        raise ValueError("lengths must be between 1 and max_len")
    offsets = torch.arange(q_len, device=table.device)[:, None] - torch.arange(k_len, device=table.device)[None, :]
    return table[:, offsets + max_len - 1]


def apply_rotary(x, positions, base=10000.0):
    if x.shape[-1] % 2:
        raise ValueError("rotary needs an even feature size")
    d = x.shape[-1]
    complex_dtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    real_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    theta = positions.to(real_dtype)[..., None] * base ** (-torch.arange(0, d, 2, dtype=real_dtype) / d)
    rotation = torch.polar(torch.ones_like(theta), theta).to(complex_dtype)
    pairs = torch.view_as_complex(x.to(real_dtype).reshape(*x.shape[:-1], d // 2, 2).contiguous())
    rotated = pairs * rotation  # (..., D/2), broadcast over x and positions
    return torch.view_as_real(rotated).reshape(*rotated.shape[:-1], d).to(x.dtype)
