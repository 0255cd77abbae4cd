"""Wrong: the keep count N - ceil(N * r) in floats (wrong at N=25, r=0.28), a detached mask token, and a loss
computed through .item()."""
import math

import torch

EXPECTED = {"random_masking": ["keep_count"],
            "insert_mask_tokens": ["gradient"],
            "mae_loss": ["gradient"]}


def random_masking(x, mask_ratio, noise=None):
    if not 0 <= mask_ratio < 1:
        raise ValueError("mask_ratio must be in [0, 1)")
    b, n, d = x.shape
    len_keep = n - math.ceil(n * mask_ratio)
    if noise is None:
        noise = torch.rand(b, n, device=x.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x_kept = torch.gather(x, 1, ids_shuffle[:, :len_keep, None].expand(-1, -1, d))
    mask = torch.ones(b, n, dtype=x.dtype, device=x.device)
    mask[:, :len_keep] = 0
    return x_kept, torch.gather(mask, 1, ids_restore), ids_restore


def insert_mask_tokens(x_kept, mask_token, ids_restore):
    b, kept, d = x_kept.shape
    tokens = mask_token.detach().expand(b, ids_restore.shape[1] - kept, d)
    full = torch.cat([x_kept, tokens], dim=1)
    return torch.gather(full, 1, ids_restore[..., None].expand(-1, -1, d))


def mae_loss(pred, target, mask, norm_pix_loss=False):
    if norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(-1)
    removed = mask.sum().item()
    value = (per_patch * mask).sum().item() / removed if removed else 0.0
    return torch.tensor(value, dtype=pred.dtype)
