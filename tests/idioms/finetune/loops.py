"""Correct: pooling row by row (an all-padding row is a fresh zero vector, so its gradient is None where it is
zero), the trainable modules found with named_modules, the prompt prepended sample by sample."""
import torch
import torch.nn as nn
import torch.nn.functional as F

EXPECTED = {}


def cls_pool(hidden):
    return hidden[:, :1, :].squeeze(1)


def mean_pool(hidden, attention_mask):
    rows = []
    for row in range(hidden.shape[0]):
        real = hidden[row][attention_mask[row].bool()]  # (T_real, D)
        rows.append(real.mean(dim=0) if real.shape[0] else hidden.new_zeros(hidden.shape[-1]))
    return torch.stack(rows)


class ClassificationHead(nn.Module):
    def __init__(self, hidden_size, num_labels, pooling="cls", dropout=0.1):
        super().__init__()
        if pooling == "cls":
            self.use_mean = False
        elif pooling == "mean":
            self.use_mean = True
        else:
            raise ValueError("pooling has to be cls or mean")
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden, attention_mask):
        pooled = mean_pool(hidden, attention_mask) if self.use_mean else cls_pool(hidden)
        return F.linear(self.dropout(pooled), self.classifier.weight, self.classifier.bias)


def freeze_backbone(model, trainable=("head",)):
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    chosen = {}
    for name in trainable:
        if name in params:
            chosen[name] = params[name]
        if name in modules:
            for inner, parameter in modules[name].named_parameters():
                chosen[f"{name}.{inner}"] = parameter
    for parameter in chosen.values():
        parameter.requires_grad_(True)
    return sum(p.numel() for p in chosen.values())


class SoftPrompt(nn.Module):
    def __init__(self, num_tokens, embed_dim):
        super().__init__()
        self.prompt = nn.Parameter(0.02 * torch.randn(num_tokens, embed_dim))

    def forward(self, input_embeds, attention_mask):
        embeds = [torch.cat([self.prompt.to(x.dtype), x]) for x in input_embeds]
        masks = [torch.cat([torch.ones(len(self.prompt), dtype=m.dtype, device=m.device), m]) for m in attention_mask]
        return torch.stack(embeds), torch.stack(masks)
