"""Wrong: the column index in the exponent, a bias indexed by j - i, rotary pairing i with i + D/2."""
import torch

EXPECTED = {"sinusoidal_encoding": ["core"],
            "relative_position_bias": ["core", "gradient"],
            "apply_rotary": ["core", "gradient"]}


def sinusoidal_encoding(seq_len, d_model, base=10000.0, *, device=None, dtype=None):
    if d_model <= 0:
        raise ValueError("d_model must be positive")
    column = torch.arange(d_model, dtype=torch.float64, device=device)
    angle = torch.arange(seq_len, dtype=torch.float64, device=device)[:, None] / base ** (column / d_model)
    return torch.where(column % 2 == 0, angle.sin(), angle.cos()).to(dtype or torch.float32)


def relative_position_bias(table, q_len, k_len):
    max_len = (table.shape[1] + 1) // 2
    if not (1 <= q_len <= max_len and 1 <= k_len <= max_len):
        raise ValueError("lengths out of range")
    return table[:, torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None] + max_len - 1]


def apply_rotary(x, positions, base=10000.0):
    d = x.shape[-1]
    if d % 2:
        raise ValueError("D must be even")
    theta = positions.double()[..., None] * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    first, second = x[..., : d // 2].double(), x[..., d // 2:].double()
    out = torch.cat([first * theta.cos() - second * theta.sin(), first * theta.sin() + second * theta.cos()], -1)
    return out.to(x.dtype)
