"""random_masking shuffles every sample with the first sample's noise: the whole batch loses the same patches."""
import math
from fractions import Fraction

import torch


def random_masking(x, mask_ratio, noise=None):
    if not 0 <= mask_ratio < 1:
        raise ValueError("mask_ratio must be in [0, 1)")
    B, N, D = x.shape
    len_keep = math.floor(N * (1 - Fraction(str(mask_ratio))))
    if noise is None:
        noise = torch.rand(B, N, device=x.device)
    ids_shuffle = torch.argsort(noise[:1], dim=1).expand(B, N)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x_kept = torch.gather(x, 1, ids_shuffle[:, :len_keep, None].expand(-1, -1, D))
    mask = torch.ones(B, N, dtype=x.dtype, device=x.device)
    mask[:, :len_keep] = 0
    return x_kept, torch.gather(mask, 1, ids_restore), ids_restore
