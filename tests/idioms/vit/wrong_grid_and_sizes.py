"""Wrong: the grid walked column by column, an unpatchify detached from autograd, and a patch embedding
that only understands square int image sizes."""
import torch
import torch.nn as nn

EXPECTED = {"patchify": ["core", "gradient"],
            "unpatchify": ["gradient"],
            "PatchEmbedding": ["image_size_pair"]}


def patchify(images, patch_size):
    b, c, height, width = images.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError("patch size must divide the image")
    x = images.reshape(b, c, height // p, p, width // p, p).permute(0, 4, 2, 3, 5, 1)
    return x.reshape(b, -1, p * p * c)


def unpatchify(patches, patch_size, image_size, channels):
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    p = patch_size
    if height % p or width % p or patches.shape[1] * p * p != height * width or patches.shape[2] != p * p * channels:
        raise ValueError("cannot form the image")
    x = patches.detach().reshape(patches.shape[0], height // p, width // p, p, p, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(patches.shape[0], channels, height, width)


class PatchEmbedding(nn.Module):
    def __init__(self, image_size, patch_size, in_channels, embed_dim):
        super().__init__()
        if image_size % patch_size:
            raise ValueError("patch size must divide the image")
        self.patch_size = patch_size
        self.proj = nn.Linear(patch_size * patch_size * in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch_size) ** 2 + 1, embed_dim))

    def forward(self, images):
        tokens = self.proj(patchify(images, self.patch_size))
        return torch.cat([self.cls_token.expand(len(images), -1, -1), tokens], 1) + self.pos_embed
