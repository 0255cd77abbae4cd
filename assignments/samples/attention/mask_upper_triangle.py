"""causal_mask is transposed: queries see the future instead of the past."""
import torch


def causal_mask(seq_len, *, device=None):
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).triu()
