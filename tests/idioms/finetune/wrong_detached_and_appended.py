"""Wrong: a detached [CLS] vector, a mean over every position, dropout after the classifier, frozen parameters
that are never switched back on, and the prompt appended after the sequence."""
import torch
import torch.nn as nn

EXPECTED = {"cls_pool": ["gradient"],
            "mean_pool": ["core", "empty_rows", "padding_values", "gradient"],
            "ClassificationHead": ["dropout"],
            "freeze_backbone": ["starts_frozen"],
            "SoftPrompt": ["core"]}


def cls_pool(hidden):
    return hidden[:, 0].detach()


def mean_pool(hidden, attention_mask):
    return (hidden * attention_mask[..., None].to(hidden.dtype)).sum(1) / hidden.shape[1]


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
        return self.dropout(self.classifier(pooled))


def freeze_backbone(model, trainable=("head",)):
    count = 0
    for name, parameter in model.named_parameters():
        if any(name == prefix or name.startswith(prefix + ".") for prefix in trainable):
            count += parameter.numel() if parameter.requires_grad else 0
        else:
            parameter.requires_grad_(False)
    return count


class SoftPrompt(nn.Module):
    def __init__(self, num_tokens, embed_dim):
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(num_tokens, embed_dim) * 0.02)

    def forward(self, input_embeds, attention_mask):
        b = input_embeds.shape[0]
        ones = torch.ones(b, self.prompt.shape[0], dtype=attention_mask.dtype, device=attention_mask.device)
        prompt = self.prompt.to(input_embeds.dtype).expand(b, -1, -1)
        return torch.cat([input_embeds, prompt], 1), torch.cat([attention_mask, ones], 1)
