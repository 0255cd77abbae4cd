"""Wrong: a sinusoid that ignores dtype, a bias that never checks its lengths, rotary that returns float32."""
import torch

EXPECTED = {"sinusoidal_encoding": ["dtype_device"],
            "relative_position_bias": ["bad_arguments"],
            "apply_rotary": ["dtype_device"]}


def sinusoidal_encoding(seq_len, d_model, base=10000.0, *, device=None, dtype=None):
    if d_model <= 0:
        raise ValueError("d_model must be positive")
    column = torch.arange(d_model, dtype=torch.float64, device=device)
    angle = torch.arange(seq_len, dtype=torch.float64, device=device)[:, None] / base ** ((column - column % 2) / d_model)
    return torch.where(column % 2 == 0, angle.sin(), angle.cos()).float()


def relative_position_bias(table, q_len, k_len):
    max_len = (table.shape[1] + 1) // 2
    index = torch.arange(q_len)[:, None] - torch.arange(k_len)[None, :] + max_len - 1
    return table[:, index]


def apply_rotary(x, positions, base=10000.0):
    d = x.shape[-1]
    if d % 2:
        raise ValueError("D must be even")
    theta = positions.float()[..., None] * base ** (-torch.arange(0, d, 2).float() / d)
    a, b = x[..., 0::2].float(), x[..., 1::2].float()
    return torch.stack([a * theta.cos() - b * theta.sin(), a * theta.sin() + b * theta.cos()], -1).flatten(-2)
