"""sinusoidal_encoding uses MAE's layout (all sines, then all cosines) instead of interleaving them."""
import torch


def sinusoidal_encoding(seq_len, d_model, base=10000.0, *, device=None, dtype=None):
    position = torch.arange(seq_len, dtype=torch.float64, device=device)[:, None]
    even = torch.arange(0, d_model, 2, dtype=torch.float64, device=device)
    angle = position / base ** (even / d_model)
    encoding = torch.cat([torch.sin(angle), torch.cos(angle[:, : d_model // 2])], dim=1)
    return encoding.to(dtype or torch.float32)
