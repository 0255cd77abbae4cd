"""SoftPrompt appends the prompt after the sequence instead of prepending it."""
import torch
import torch.nn as nn


class SoftPrompt(nn.Module):
    def __init__(self, num_tokens, embed_dim):
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(num_tokens, embed_dim) * 0.02)

    def forward(self, input_embeds, attention_mask):
        B = input_embeds.shape[0]
        ones = torch.ones(B, self.prompt.shape[0], dtype=attention_mask.dtype, device=attention_mask.device)
        return (torch.cat([input_embeds, self.prompt.expand(B, -1, -1)], 1), torch.cat([attention_mask, ones], 1))
