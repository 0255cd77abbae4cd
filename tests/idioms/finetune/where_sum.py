"""Correct: indexing and torch.where; freezing by the name rule; the prompt expanded and concatenated."""
import torch
import torch.nn as nn

EXPECTED = {}


def cls_pool(hidden):
    return hidden[:, 0]


def mean_pool(hidden, attention_mask):
    real = attention_mask.bool().unsqueeze(-1)  # (B, T, 1)
    total = torch.where(real, hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device)).sum(dim=1)
    count = real.sum(dim=1).clamp(min=1).to(hidden.dtype)
    return total / count


class ClassificationHead(nn.Module):
    def __init__(self, hidden_size, num_labels, pooling="cls", dropout=0.1):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling {pooling!r}")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden, attention_mask):
        pooled = cls_pool(hidden) if self.pooling == "cls" else mean_pool(hidden, attention_mask)
        return self.classifier(self.dropout(pooled))


def freeze_backbone(model, trainable=("head",)):
    total = 0
    for name, parameter in model.named_parameters():
        keep = any(name == prefix or name.startswith(prefix + ".") for prefix in trainable)
        parameter.requires_grad = keep
        if keep:
            total += parameter.numel()
    return total


class SoftPrompt(nn.Module):
    def __init__(self, num_tokens, embed_dim):
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(num_tokens, embed_dim) * 0.02)

    def forward(self, input_embeds, attention_mask):
        b = input_embeds.shape[0]
        prompt = self.prompt.unsqueeze(0).expand(b, -1, -1).to(input_embeds.dtype)
        ones = torch.ones(b, self.prompt.shape[0], dtype=attention_mask.dtype, device=attention_mask.device)
        return torch.cat([prompt, input_embeds], dim=1), torch.cat([ones, attention_mask], dim=1)
