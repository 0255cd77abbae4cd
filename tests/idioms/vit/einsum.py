"""Correct: patchify and unpatchify with einsum, as the MAE code writes them."""
import torch
import torch.nn as nn

EXPECTED = {}


def patchify(images, patch_size):
    b, c, height, width = images.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError(f"patch size {p} does not divide the image size {height}x{width}")
    h, w = height // p, width // p
    x = images.reshape(b, c, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(b, h * w, p * p * c)


def unpatchify(patches, patch_size, image_size, channels):
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    p = patch_size
    if height % p or width % p:
        raise ValueError("patch size must divide the image size")
    h, w = height // p, width // p
    b, n, size = patches.shape
    if n != h * w or size != p * p * channels:
        raise ValueError(f"{n} patches of {size} values cannot form a {channels}x{height}x{width} image")
    x = patches.reshape(b, h, w, p, p, channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(b, channels, height, width)


class PatchEmbedding(nn.Module):
    def __init__(self, image_size, patch_size, in_channels, embed_dim):
        super().__init__()
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if height % patch_size or width % patch_size:
            raise ValueError("patch_size must divide the image")
        self.patch_size = patch_size
        n = (height // patch_size) * (width // patch_size)
        self.proj = nn.Linear(patch_size * patch_size * in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, n + 1, embed_dim))

    def forward(self, images):
        tokens = self.proj(patchify(images, self.patch_size))
        cls = self.cls_token.expand(images.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed
