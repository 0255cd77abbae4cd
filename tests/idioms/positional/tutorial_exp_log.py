"""Correct: the PyTorch-tutorial sinusoid (exp of -log(base) * 2i/d, in float32, slice assignment), the bias by
gather on a flipped index, rotary by rotating pairs with a 2x2 matrix written out."""
import math

import torch

EXPECTED = {}


def sinusoidal_encoding(seq_len, d_model, base=10000.0, *, device=None, dtype=None):
    if d_model <= 0:
        raise ValueError("d_model must be positive")
    position = torch.arange(seq_len, device=device).unsqueeze(1).float()
    div_term = torch.exp(torch.arange(0, d_model, 2, device=device).float() * (-math.log(base) / d_model))
    pe = torch.zeros(seq_len, d_model, device=device)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
    return pe.to(dtype) if dtype is not None else pe


def relative_position_bias(table, q_len, k_len):
    heads, width = table.shape
    max_len = (width + 1) // 2
    if max(q_len, k_len) > max_len or min(q_len, k_len) < 1:
        raise ValueError("q_len and k_len must not exceed max_len")
    i = torch.arange(q_len).view(q_len, 1)
    j = torch.arange(k_len).view(1, k_len)
    index = (max_len - 1 + i - j).reshape(1, -1).expand(heads, -1)
    return torch.gather(table, 1, index.to(table.device)).view(heads, q_len, k_len)


def apply_rotary(x, positions, base=10000.0):
    d = x.size(-1)
    if d % 2 == 1:
        raise ValueError("D must be even")
    i = torch.arange(d // 2, dtype=torch.float64, device=x.device)
    theta = positions.double().unsqueeze(-1) * base ** (-2 * i / d)
    c, s = torch.cos(theta).to(x.dtype), torch.sin(theta).to(x.dtype)
    a, b = x[..., ::2], x[..., 1::2]
    rotated = torch.empty(*torch.broadcast_shapes(a.shape, c.shape)[:-1], d, dtype=x.dtype, device=x.device)
    rotated[..., ::2] = a * c - b * s
    rotated[..., 1::2] = a * s + b * c
    return rotated
