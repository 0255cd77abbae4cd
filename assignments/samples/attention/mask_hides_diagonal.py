"""causal_mask hides the diagonal: a token may not attend to itself (j < i instead of j <= i)."""
import torch


def causal_mask(seq_len, *, device=None):
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril(diagonal=-1)
