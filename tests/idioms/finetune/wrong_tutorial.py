"""Wrong: the last token as [CLS], a mean that multiplies by the mask (NaN at a padded position poisons it),
a head without dropout, a prefix test without the dot, and a prompt mask of floats."""
import torch
import torch.nn as nn

EXPECTED = {"cls_pool": ["core", "gradient"],
            "mean_pool": ["padding_values"],
            "ClassificationHead": ["dropout"],
            "freeze_backbone": ["core", "count", "starts_frozen"],
            "SoftPrompt": ["dtype_device"]}


def cls_pool(hidden):
    return hidden[:, -1]


def mean_pool(hidden, attention_mask):
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


class ClassificationHead(nn.Module):
    def __init__(self, hidden_size, num_labels, pooling="cls", dropout=0.1):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError("pooling must be cls or mean")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden, attention_mask):
        pooled = cls_pool(hidden) if self.pooling == "cls" else mean_pool(hidden, attention_mask)
        return self.classifier(pooled)


def freeze_backbone(model, trainable=("head",)):
    count = 0
    for name, parameter in model.named_parameters():
        keep = any(name.startswith(prefix) for prefix in trainable)
        parameter.requires_grad_(keep)
        count += parameter.numel() if keep else 0
    return count


class SoftPrompt(nn.Module):
    def __init__(self, num_tokens, embed_dim):
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(num_tokens, embed_dim) * 0.02)

    def forward(self, input_embeds, attention_mask):
        b = input_embeds.shape[0]
        prompt = self.prompt.to(input_embeds.dtype).expand(b, -1, -1)
        ones = torch.ones(b, self.prompt.shape[0], device=attention_mask.device)
        return torch.cat([prompt, input_embeds], 1), torch.cat([ones, attention_mask.float()], 1)
