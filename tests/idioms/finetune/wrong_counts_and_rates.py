"""Wrong: the first sample instead of the first token, NaN for an all-padding row, a hard-coded dropout rate,
the number of parameter tensors instead of elements, and the prompt inserted after [CLS]."""
import torch
import torch.nn as nn

EXPECTED = {"cls_pool": ["core", "gradient"],
            "mean_pool": ["empty_rows"],
            "ClassificationHead": ["dropout"],
            "freeze_backbone": ["count"],
            "SoftPrompt": ["core"]}


def cls_pool(hidden):
    return hidden[0]


def mean_pool(hidden, attention_mask):
    real = attention_mask.bool()[..., None]
    return torch.where(real, hidden, torch.zeros_like(hidden)).sum(1) / real.sum(1).to(hidden.dtype)


class ClassificationHead(nn.Module):
    def __init__(self, hidden_size, num_labels, pooling="cls", dropout=0.1):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError("pooling must be cls or mean")
        self.pooling = pooling
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden, attention_mask):
        pooled = cls_pool(hidden) if self.pooling == "cls" else mean_pool(hidden, attention_mask)
        return self.classifier(self.dropout(pooled))


def freeze_backbone(model, trainable=("head",)):
    kept = 0
    for name, parameter in model.named_parameters():
        keep = any(name == prefix or name.startswith(prefix + ".") for prefix in trainable)
        parameter.requires_grad_(keep)
        kept += keep
    return kept


class SoftPrompt(nn.Module):
    def __init__(self, num_tokens, embed_dim):
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(num_tokens, embed_dim) * 0.02)

    def forward(self, input_embeds, attention_mask):
        b = input_embeds.shape[0]
        prompt = self.prompt.to(input_embeds.dtype).expand(b, -1, -1)
        ones = torch.ones(b, self.prompt.shape[0], dtype=attention_mask.dtype, device=attention_mask.device)
        embeds = torch.cat([input_embeds[:, :1], prompt, input_embeds[:, 1:]], 1)
        return embeds, torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], 1)
