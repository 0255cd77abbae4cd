"""PatchEmbedding adds the position embeddings to the patches only, then appends [CLS] at the end."""
import torch
import torch.nn as nn


class PatchEmbedding(nn.Module):
    def __init__(self, image_size, patch_size, in_channels, embed_dim):
        super().__init__()
        H, W = (image_size, image_size) if isinstance(image_size, int) else image_size
        if H % patch_size or W % patch_size:
            raise ValueError("patch_size must divide the image size")
        self.patch_size = patch_size
        n = (H // patch_size) * (W // patch_size)
        self.proj = nn.Linear(patch_size * patch_size * in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, embed_dim) * 0.02)

    def forward(self, images):
        tokens = self.proj(patchify(images, self.patch_size)) + self.pos_embed[:, 1:]
        return torch.cat([tokens, self.cls_token.expand(tokens.shape[0], -1, -1) + self.pos_embed[:, :1]], 1)
