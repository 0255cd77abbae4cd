"""sinusoidal_encoding uses the column index in the exponent (base**(col/d)) instead of 2i/d for both of a pair."""
import torch


def sinusoidal_encoding(seq_len, d_model, base=10000.0, *, device=None, dtype=None):
    position = torch.arange(seq_len, dtype=torch.float64, device=device)[:, None]
    column = torch.arange(d_model, dtype=torch.float64, device=device)
    angle = position / base ** (column / d_model)
    encoding = torch.where(column % 2 == 0, torch.sin(angle), torch.cos(angle))
    return encoding.to(dtype or torch.float32)
