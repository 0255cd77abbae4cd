"""Correct: patchify with Tensor.unfold, unpatchify with F.fold, and the embedding as a strided convolution
whose kernel is the linear layer's weight reordered; an extra buffer in the module."""
import torch
import torch.nn as nn
import torch.nn.functional as F

EXPECTED = {}


def patchify(images, patch_size):
    p = patch_size
    if images.shape[-2] % p != 0 or images.shape[-1] % p != 0:
        raise ValueError("the patch size must divide H and W")
    b = images.shape[0]
    tiles = images.unfold(2, p, p).unfold(3, p, p)  # (B, C, h, w, P, P)
    return tiles.permute(0, 2, 3, 4, 5, 1).reshape(b, tiles.shape[2] * tiles.shape[3], -1)


def unpatchify(patches, patch_size, image_size, channels):
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    p = patch_size
    if size[0] % p or size[1] % p or patches.shape[1] != (size[0] // p) * (size[1] // p) \
            or patches.shape[2] != p * p * channels:
        raise ValueError("these patches cannot form the requested image")
    b, n, _ = patches.shape
    columns = patches.reshape(b, n, p, p, channels).permute(0, 4, 2, 3, 1).reshape(b, channels * p * p, n)
    return F.fold(columns, output_size=size, kernel_size=p, stride=p)


class PatchEmbedding(nn.Module):
    def __init__(self, image_size, patch_size, in_channels, embed_dim):
        super().__init__()
        size = (image_size, image_size) if isinstance(image_size, int) else image_size
        if size[0] % patch_size or size[1] % patch_size:
            raise ValueError("image size not divisible by patch size")
        self.p = patch_size
        self.c = in_channels
        self.register_buffer("grid", torch.tensor([size[0] // patch_size, size[1] // patch_size]))
        self.proj = nn.Linear(in_channels * patch_size ** 2, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, int(self.grid.prod()) + 1, embed_dim) * 0.02)

    def forward(self, images):
        d = self.proj.out_features
        kernel = self.proj.weight.reshape(d, self.p, self.p, self.c).permute(0, 3, 1, 2)
        tokens = F.conv2d(images, kernel, self.proj.bias, stride=self.p).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(len(images), -1, -1), tokens], 1) + self.pos_embed
