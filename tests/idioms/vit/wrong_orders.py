"""Wrong: patches flattened channel first, an unpatchify that never checks its arguments, and a patch
embedding that never checks the patch size."""
import torch
import torch.nn as nn

EXPECTED = {"patchify": ["core", "gradient"],
            "unpatchify": ["bad_arguments"],
            "PatchEmbedding": ["bad_arguments"]}


def patchify(images, patch_size):
    b, c, height, width = images.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError("patch size must divide the image")
    x = images.reshape(b, c, height // p, p, width // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, -1, c * p * p)


def unpatchify(patches, patch_size, image_size, channels):
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    p = patch_size
    x = patches.reshape(patches.shape[0], height // p, width // p, p, p, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(patches.shape[0], channels, height, width)


class PatchEmbedding(nn.Module):
    def __init__(self, image_size, patch_size, in_channels, embed_dim):
        super().__init__()
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.patch_size = patch_size
        self.proj = nn.Linear(patch_size * patch_size * in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (height // patch_size) * (width // patch_size) + 1, embed_dim))

    def forward(self, images):
        tokens = self.proj(patchify(images, self.patch_size))
        return torch.cat([self.cls_token.expand(len(images), -1, -1), tokens], 1) + self.pos_embed
