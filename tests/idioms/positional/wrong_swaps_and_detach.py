"""Wrong: cosines in the even columns, a bias table detached from autograd, rotary that accepts an odd D."""
import torch

EXPECTED = {"sinusoidal_encoding": ["core"],
            "relative_position_bias": ["gradient"],
            "apply_rotary": ["bad_arguments"]}


def sinusoidal_encoding(seq_len, d_model, base=10000.0, *, device=None, dtype=None):
    if d_model <= 0:
        raise ValueError("d_model must be positive")
    column = torch.arange(d_model, dtype=torch.float64, device=device)
    angle = torch.arange(seq_len, dtype=torch.float64, device=device)[:, None] / base ** ((column - column % 2) / d_model)
    return torch.where(column % 2 == 0, angle.cos(), angle.sin()).to(dtype or torch.float32)


def relative_position_bias(table, q_len, k_len):
    max_len = (table.shape[1] + 1) // 2
    if not (1 <= q_len <= max_len and 1 <= k_len <= max_len):
        raise ValueError("lengths out of range")
    values = table.detach()
    return values[:, torch.arange(q_len)[:, None] - torch.arange(k_len)[None, :] + max_len - 1]


def apply_rotary(x, positions, base=10000.0):
    d = x.shape[-1]
    half = d // 2
    theta = positions.double()[..., None] * base ** (-2 * torch.arange(half, dtype=torch.float64) / d)
    a, b = x[..., 0:2 * half:2].double(), x[..., 1:2 * half:2].double()
    out = torch.stack([a * theta.cos() - b * theta.sin(), a * theta.sin() + b * theta.cos()], -1).flatten(-2)
    return torch.cat([out, x[..., 2 * half:].double()], -1).to(x.dtype)
