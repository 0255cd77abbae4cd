"""Correct: advanced indexing and scatter; the keep count with a small epsilon (exact for ratios with at most
six decimals); the loss with a Python branch when nothing is removed."""
import torch

EXPECTED = {}


def random_masking(x, mask_ratio, noise=None):
    if mask_ratio < 0 or mask_ratio >= 1:
        raise ValueError("mask_ratio must satisfy 0 <= mask_ratio < 1")
    batch, patches, _ = x.shape
    len_keep = int(patches * (1 - mask_ratio) + 1e-9)
    if noise is None:
        noise = torch.rand(batch, patches, device=x.device)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    rows = torch.arange(batch, device=x.device)[:, None]
    x_kept = x[rows, ids_shuffle[:, :len_keep]]
    mask = torch.ones(batch, patches, dtype=x.dtype, device=x.device)
    mask.scatter_(1, ids_shuffle[:, :len_keep], 0.0)
    return x_kept, mask, ids_restore


def insert_mask_tokens(x_kept, mask_token, ids_restore):
    batch, len_keep, dim = x_kept.shape
    patches = ids_restore.shape[1]
    out = mask_token.to(x_kept.dtype).expand(batch, patches, dim).clone()
    ids_keep = ids_restore.argsort(dim=1)[:, :len_keep]
    rows = torch.arange(batch, device=x_kept.device)[:, None]
    out[rows, ids_keep] = x_kept
    return out


def mae_loss(pred, target, mask, norm_pix_loss=False):
    if norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / torch.sqrt(target.var(-1, unbiased=True, keepdim=True) + 1e-6)
    per_patch = (pred - target).pow(2).mean(-1)
    count = mask.sum()
    if count == 0:
        return (pred * 0).sum()
    return (per_patch * mask).sum() / count
