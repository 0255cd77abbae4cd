"""mae_loss averages each sample's removed patches, then averages the samples (not MAE's batch-wide mean)."""
import torch


def mae_loss(pred, target, mask, norm_pix_loss=False):
    if norm_pix_loss:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(-1)
    per_sample = (per_patch * mask).sum(1) / mask.sum(1).clamp_min(1)
    return per_sample.mean()
