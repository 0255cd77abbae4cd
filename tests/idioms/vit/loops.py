"""Correct: patches cut and pasted back with loops over the grid."""
import torch
import torch.nn as nn

EXPECTED = {}


def patchify(images, patch_size):
    b, c, height, width = images.shape
    p = patch_size
    if height % p != 0 or width % p != 0:
        raise ValueError("patch_size must divide both image sides")
    patches = []
    for row in range(height // p):
        for col in range(width // p):
            block = images[:, :, row * p:(row + 1) * p, col * p:(col + 1) * p]  # (B, C, P, P)
            patches.append(block.permute(0, 2, 3, 1).reshape(b, -1))
    return torch.stack(patches, dim=1)


def unpatchify(patches, patch_size, image_size, channels):
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    p = patch_size
    if height % p or width % p:
        raise ValueError("patch_size must divide the image")
    if patches.shape[1] != (height // p) * (width // p) or patches.shape[2] != p * p * channels:
        raise ValueError("wrong number or size of patches for this image")
    b = patches.shape[0]
    image = patches.new_zeros(b, channels, height, width)
    index = 0
    for row in range(height // p):
        for col in range(width // p):
            block = patches[:, index].reshape(b, p, p, channels).permute(0, 3, 1, 2)
            image[:, :, row * p:(row + 1) * p, col * p:(col + 1) * p] = block
            index += 1
    return image


class PatchEmbedding(nn.Module):
    def __init__(self, image_size, patch_size, in_channels, embed_dim):
        super().__init__()
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if any(side % patch_size for side in image_size):
            raise ValueError("patch_size must divide the image")
        self.patch_size = patch_size
        self.proj = nn.Linear(patch_size * patch_size * in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        count = (image_size[0] // patch_size) * (image_size[1] // patch_size)
        self.pos_embed = nn.Parameter(torch.randn(1, count + 1, embed_dim) / 50)

    def forward(self, images):
        tokens = [self.cls_token.expand(images.shape[0], 1, -1), self.proj(patchify(images, self.patch_size))]
        return torch.cat(tokens, dim=1) + self.pos_embed
