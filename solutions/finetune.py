"""Reference: a finetuning head on a pretrained encoder (Lecture 18; Discussion 11 Q1; review Q1(c), Q2(a)).

attention_mask follows Hugging Face: 1 (or True) = real token, 0 = padding.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


def cls_pool(hidden: Tensor) -> Tensor:
    """hidden (B, T, D) -> (B, D): the first token's vector ([CLS] in BERT-style encoders)."""
    if hidden.dim() != 3:
        raise ValueError(f"hidden must have shape (B, T, D), got {tuple(hidden.shape)}")
    return hidden[:, 0]  # (B, D)


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """hidden (B, T, D), attention_mask (B, T) with 1 = real token -> (B, D): mean over real tokens only.

    A row without any real token gives zeros, not NaN."""
    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"hidden must be (B, T, D) and attention_mask (B, T); got {tuple(hidden.shape)} and "
                         f"{tuple(attention_mask.shape)}")
    real = attention_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    # where(), not a product: a padded position holding inf or NaN must not leak into the sum.
    total = torch.where(real > 0, hidden, torch.zeros_like(hidden)).sum(dim=1)  # (B, D)
    count = real.sum(dim=1)  # (B, 1)
    return total / count.clamp_min(1)  # (B, D)


class ClassificationHead(nn.Module):
    """hidden (B, T, D), attention_mask (B, T) -> logits (B, num_labels) = classifier(dropout(pool(hidden)))."""

    def __init__(self, hidden_size: int, num_labels: int, pooling: str = "cls", dropout: float = 0.1):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        pooled = cls_pool(hidden) if self.pooling == "cls" else mean_pool(hidden, attention_mask)  # (B, D)
        return self.classifier(self.dropout(pooled))  # (B, num_labels)


def freeze_backbone(model: nn.Module, trainable: tuple[str, ...] = ("head",)) -> int:
    """Keep only parameters under the `trainable` module names trainable (linear probing); return their element count.

    A parameter is trainable when its name equals a listed name or starts with that name plus '.'."""
    if isinstance(trainable, str):
        raise ValueError("trainable must be a tuple of module names, e.g. ('head',), not a single string")
    count = 0
    for name, parameter in model.named_parameters():
        keep = any(name == prefix or name.startswith(prefix + ".") for prefix in trainable)
        parameter.requires_grad_(keep)
        count += parameter.numel() if keep else 0
    return count


class SoftPrompt(nn.Module):
    """input_embeds (B, T, D), attention_mask (B, T) -> (B, n + T, D), (B, n + T): n learned vectors prepended."""

    def __init__(self, num_tokens: int, embed_dim: int):
        super().__init__()
        if num_tokens <= 0 or embed_dim <= 0:
            raise ValueError(f"num_tokens and embed_dim must be positive, got {num_tokens} and {embed_dim}")
        # Small random start, as prompt-tuning implementations use when not initialising from vocabulary.
        self.prompt = nn.Parameter(torch.randn(num_tokens, embed_dim) * 0.02)

    def forward(self, input_embeds: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        B = input_embeds.shape[0]
        prompt = self.prompt.to(input_embeds.dtype).expand(B, -1, -1)  # (B, n, D)
        ones = torch.ones(B, self.prompt.shape[0], dtype=attention_mask.dtype, device=attention_mask.device)
        return torch.cat([prompt, input_embeds], dim=1), torch.cat([ones, attention_mask], dim=1)  # (B, n+T, D), (B, n+T)
