"""The finetuning references: pooling, the head, freezing and soft prompts, against their definitions."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import given

from autograder import strategies as s
from solutions.finetune import ClassificationHead, SoftPrompt, cls_pool, freeze_backbone, mean_pool

pytestmark = pytest.mark.finetune


@given(s.hidden_inputs())
def test_mean_pool_averages_real_tokens_only(inputs):
    pooled = mean_pool(inputs.hidden, inputs.attention_mask)
    for row, mask in enumerate(inputs.attention_mask):
        real = inputs.hidden[row, mask.bool()]
        expected = real.mean(0) if len(real) else torch.zeros(inputs.hidden.shape[2], dtype=inputs.hidden.dtype)
        assert torch.allclose(pooled[row], expected, atol=1e-6)


@given(s.hidden_inputs())
def test_mean_pool_ignores_the_values_at_padded_positions(inputs):
    poisoned = inputs.hidden.masked_fill(~inputs.attention_mask.bool()[..., None], float("nan"))
    assert torch.equal(mean_pool(poisoned, inputs.attention_mask), mean_pool(inputs.hidden, inputs.attention_mask))


def test_mean_pool_of_an_all_padding_row_is_zero():
    assert torch.equal(mean_pool(torch.ones(1, 3, 2), torch.zeros(1, 3, dtype=torch.long)), torch.zeros(1, 2))


def test_cls_pool_takes_the_first_token():
    hidden = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(cls_pool(hidden), hidden[:, 0])


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_head_in_eval_mode_is_classifier_of_pool(pooling):
    torch.manual_seed(0)
    head = ClassificationHead(4, 3, pooling=pooling).eval()
    hidden, mask = torch.randn(2, 5, 4), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = cls_pool(hidden) if pooling == "cls" else mean_pool(hidden, mask)
    assert torch.allclose(head(hidden, mask), head.classifier(pooled))
    assert {n for n, _ in head.named_parameters()} == {"classifier.weight", "classifier.bias"}
    assert isinstance(head.dropout, nn.Dropout)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        self.head = nn.Linear(4, 2)
        self.header = nn.Linear(4, 1)  # shares a prefix with "head" but is not it


def test_freeze_backbone_leaves_only_the_head_trainable():
    model = Model()
    model.head.bias.requires_grad_(False)
    count = freeze_backbone(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"} and count == 4 * 2 + 2


def test_freeze_backbone_accepts_several_names_and_exact_parameter_names():
    model = Model()
    count = freeze_backbone(model, ("head", "encoder.1.bias"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias", "encoder.1.bias"} and count == 10 + 4


def test_soft_prompt_prepends_and_extends_the_mask_in_its_dtype():
    torch.manual_seed(0)
    prompt = SoftPrompt(3, 4)
    embeds = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out, out_mask = prompt(embeds, mask)
    assert out.shape == (2, 8, 4) and torch.equal(out[:, 3:], embeds)
    assert torch.equal(out[0, :3], prompt.prompt) and torch.equal(out[1, :3], prompt.prompt)
    assert out_mask.dtype == mask.dtype and out_mask[:, :3].eq(1).all() and torch.equal(out_mask[:, 3:], mask)
    assert torch.equal(cls_pool(out[:, 3:]), embeds[:, 0])  # [CLS] now sits at position num_tokens
    assert {n: tuple(p.shape) for n, p in prompt.named_parameters()} == {"prompt": (3, 4)}


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError):
        ClassificationHead(4, 2, pooling="max")
    with pytest.raises(ValueError):
        mean_pool(torch.zeros(2, 3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError):
        freeze_backbone(Model(), "head")
