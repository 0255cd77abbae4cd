"""apply_rotary pairs feature i with feature i + D/2 (the 'rotate half' layout) instead of 2i with 2i+1."""
import torch


def apply_rotary(x, positions, base=10000.0):
    dim = x.shape[-1]
    if dim % 2:
        raise ValueError("D must be even")
    frequency = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    theta = positions.double()[..., None] * frequency
    first, second = x[..., : dim // 2].double(), x[..., dim // 2:].double()
    out = torch.cat([first * torch.cos(theta) - second * torch.sin(theta),
                     first * torch.sin(theta) + second * torch.cos(theta)], dim=-1)
    return out.to(x.dtype)
