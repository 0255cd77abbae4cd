"""Wrong: a patchify that detaches the images first, an unpatchify with the grid transposed, and a patch
embedding that adds the positions before appending [CLS] at the end."""
import torch
import torch.nn as nn

EXPECTED = {"patchify": ["gradient"],
            "unpatchify": ["core", "gradient"],
            "PatchEmbedding": ["core", "image_size_pair"]}


def patchify(images, patch_size):
    images = images.detach()
    b, c, height, width = images.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError("patch size must divide the image")
    x = images.reshape(b, c, height // p, p, width // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, -1, p * p * c)


def unpatchify(patches, patch_size, image_size, channels):
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    p = patch_size
    if height % p or width % p or patches.shape[1] * p * p != height * width or patches.shape[2] != p * p * channels:
        raise ValueError("cannot form the image")
    x = patches.reshape(patches.shape[0], width // p, height // p, p, p, channels)
    return x.permute(0, 5, 2, 3, 1, 4).reshape(patches.shape[0], channels, height, width)


class PatchEmbedding(nn.Module):
    def __init__(self, image_size, patch_size, in_channels, embed_dim):
        super().__init__()
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        if height % patch_size or width % patch_size:
            raise ValueError("patch size must divide the image")
        self.patch_size = patch_size
        self.proj = nn.Linear(patch_size * patch_size * in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (height // patch_size) * (width // patch_size) + 1, embed_dim))

    def forward(self, images):
        tokens = self.proj(patchify(images, self.patch_size)) + self.pos_embed[:, 1:]
        return torch.cat([tokens, self.cls_token.expand(len(images), -1, -1) + self.pos_embed[:, :1]], 1)
