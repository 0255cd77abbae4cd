"""Correct: select and masked_fill with einsum sums; freezing by comparing dotted name parts; the prompt
repeated with new_ones for the mask."""
import torch
import torch.nn as nn

EXPECTED = {}


def cls_pool(hidden):
    return hidden.select(1, 0)


def mean_pool(hidden, attention_mask):
    padded = attention_mask == 0  # (B, T)
    summed = torch.einsum("btd->bd", hidden.masked_fill(padded[..., None], 0.0))
    count = (~padded).sum(-1, keepdim=True)
    return summed / torch.maximum(count, torch.ones_like(count)).to(hidden.dtype)


class ClassificationHead(nn.Module):
    def __init__(self, hidden_size, num_labels, pooling="cls", dropout=0.1):
        super().__init__()
        poolers = {"cls": lambda hidden, mask: cls_pool(hidden), "mean": mean_pool}
        if pooling not in poolers:
            raise ValueError("pooling must be 'cls' or 'mean'")
        self.pool = poolers[pooling]
        self.dropout = nn.Dropout(p=dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden, attention_mask):
        return self.classifier(self.dropout(self.pool(hidden, attention_mask)))


def freeze_backbone(model, trainable=("head",)):
    wanted = [prefix.split(".") for prefix in trainable]
    count = 0
    for name, parameter in model.named_parameters():
        parts = name.split(".")
        keep = any(parts[:len(w)] == w for w in wanted)
        parameter.requires_grad_(keep)
        count += keep * parameter.numel()
    return int(count)


class SoftPrompt(nn.Module):
    def __init__(self, num_tokens, embed_dim):
        super().__init__()
        self.prompt = nn.Parameter(torch.empty(num_tokens, embed_dim).normal_(std=0.02))

    def forward(self, input_embeds, attention_mask):
        b = input_embeds.size(0)
        n = self.prompt.size(0)
        embeds = torch.cat([self.prompt.to(input_embeds.dtype).repeat(b, 1, 1), input_embeds], 1)
        return embeds, torch.cat([attention_mask.new_ones(b, n), attention_mask], 1)
