"""Visible checks for the finetune assignment: pooling that ignores padding, the head, freezing, soft prompts."""
from __future__ import annotations

import torch
import torch.nn as nn
from hypothesis import strategies as st

from .. import strategies as s
from ..common.compare import Mismatch, compare_tensors, describe
from .core import VisibleCheck, golden_check, gradient_check, register, rejects

CLS_HINT = "the first token's vector: hidden[:, 0]"
MEAN_HINT = ("sum the vectors of real tokens only (attention_mask == 1) and divide by their count; a row with no real "
             "token gives zeros; select with torch.where so that padded values (even NaN) never enter the sum")
HEAD_HINT = "logits = classifier(dropout(pool(hidden))), pooling 'cls' or 'mean'; submodules dropout and classifier"
FREEZE_HINT = ("a parameter stays trainable when its name equals a listed name or starts with that name plus '.'; "
               "all others get requires_grad=False; return the number of trainable elements (sum of numel)")
PROMPT_HINT = ("cat the prompt (expanded over the batch) BEFORE the embeddings, and ones (in the mask's dtype) before "
               "the mask; the parameter is named prompt, shape (num_tokens, embed_dim)")


def ignores_padding_values(mean_pool, inputs: s.HiddenInputs) -> Mismatch | None:
    """Changing the vectors at padded positions (even to NaN) changes nothing."""
    poisoned = inputs.hidden.masked_fill(~inputs.attention_mask.bool()[..., None], float("nan"))
    return compare_tensors(mean_pool(inputs.hidden, inputs.attention_mask), mean_pool(poisoned, inputs.attention_mask),
                           "mean_pool after changing the padded positions")


def averages_real_tokens(mean_pool, inputs: s.HiddenInputs) -> Mismatch | None:
    real = inputs.attention_mask.to(inputs.hidden.dtype)[..., None]
    expected = (inputs.hidden * real).sum(1) / real.sum(1).clamp_min(1)
    return compare_tensors(expected, mean_pool(inputs.hidden, inputs.attention_mask), "mean_pool")


def takes_first_token(cls_pool, inputs: s.HiddenInputs) -> Mismatch | None:
    return compare_tensors(inputs.hidden[:, 0], cls_pool(inputs.hidden), "cls_pool")


def head_is_classifier_of_pool(head_class, case: tuple[s.HiddenInputs, str]) -> Mismatch | None:
    inputs, pooling = case
    torch.manual_seed(0)
    head = head_class(inputs.hidden.shape[2], 3, pooling=pooling).to(inputs.hidden.dtype).eval()
    real = inputs.attention_mask.to(inputs.hidden.dtype)[..., None]
    pooled = inputs.hidden[:, 0] if pooling == "cls" else (inputs.hidden * real).sum(1) / real.sum(1).clamp_min(1)
    with torch.no_grad():
        return compare_tensors(head.classifier(pooled), head(inputs.hidden, inputs.attention_mask),
                               f"ClassificationHead(pooling={pooling!r}) in eval mode")


# The models freeze_backbone is checked on, by the visible checks and the grader alike: nested dicts of module
# names; a leaf [in, out] is an nn.Linear, [in, out, False] one whose parameters start frozen. "header" shares a
# prefix with "head" without being it.
FREEZE_MODEL = {"encoder": {"layer0": [3, 3], "layer1": [3, 3]}, "head": [3, 2], "header": [3, 1]}
FROZEN_START_MODEL = {"encoder": {"layer0": [3, 3], "layer1": [3, 3]}, "head": [3, 2, False], "header": [3, 1],
                      "pooler": [3, 3, False]}
TRAINABLE = st.sampled_from([("head",), ("head", "encoder.layer1"), ("encoder.layer0.weight",), ("hea",), ()])
TRAINABLE_FROZEN = st.sampled_from([("head",), ("pooler",), ("head", "encoder.layer0")])


def build_model(spec: dict) -> nn.Module:
    """The model a spec such as FREEZE_MODEL describes."""
    model = nn.Module()
    for name, child in spec.items():
        layer = build_model(child) if isinstance(child, dict) else nn.Linear(*child[:2]).requires_grad_(len(child) == 2)
        model.add_module(name, layer)
    return model


def trainable_after(freeze, spec: dict, trainable: tuple[str, ...]) -> tuple[set[str], object]:
    """Which parameters `freeze(model, trainable)` leaves trainable on the model of `spec`, and what it returned."""
    model = build_model(spec)
    count = freeze(model, trainable)
    return {n for n, p in model.named_parameters() if p.requires_grad}, count


def freezes_all_but_trainable(freeze, case: tuple[dict, tuple[str, ...]]) -> Mismatch | None:
    spec, trainable = case
    got, count = trainable_after(freeze, spec, trainable)
    model = build_model(spec)
    expected = {n for n, _ in model.named_parameters() if any(n == t or n.startswith(t + ".") for t in trainable)}
    if got != expected:
        return Mismatch("freeze_backbone", f"left {sorted(got)} trainable; should be {sorted(expected)}",
                        f"  trainable={trainable}")
    size = sum(p.numel() for n, p in model.named_parameters() if n in expected)
    if count != size:
        return Mismatch("freeze_backbone", f"returned {count!r}, but {size} parameter elements are trainable")
    return None


def prepends_prompt(prompt_class, inputs: s.HiddenInputs) -> Mismatch | None:
    torch.manual_seed(0)
    module = prompt_class(2, inputs.hidden.shape[2]).to(inputs.hidden.dtype)
    embeds, mask = module(inputs.hidden, inputs.attention_mask)
    b = inputs.hidden.shape[0]
    expected = torch.cat([module.prompt.detach().expand(b, -1, -1), inputs.hidden], 1)
    ones = torch.ones(b, 2, dtype=inputs.attention_mask.dtype)
    return (compare_tensors(expected, embeds.detach() if type(embeds) is torch.Tensor else embeds, "embeddings")
            or compare_tensors(torch.cat([ones, inputs.attention_mask], 1), mask, "attention mask"))


DROPOUT_BATCH, DROPOUT_WIDTH = 64, 16


def dropout_probe() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(hidden, attention_mask, classifier weights) that make dropout visible in the logits: an all-ones pooled
    vector and a classifier [I; I] that copies each feature to two logits."""
    b, d = DROPOUT_BATCH, DROPOUT_WIDTH
    state = {"classifier.weight": torch.cat([torch.eye(d), torch.eye(d)]).double(),
             "classifier.bias": torch.zeros(2 * d, dtype=torch.float64)}
    return torch.ones(b, 2, d, dtype=torch.float64), torch.ones(b, 2, dtype=torch.int64), state


def judge_dropout(logits: object, p: float) -> Mismatch | None:
    """Logits of the dropout probe in training mode: each is 0 or 1/(1-p), both copies of a feature agree
    (dropout before the classifier), and about a share p of the features is dropped."""
    b, d = DROPOUT_BATCH, DROPOUT_WIDTH
    what = f"ClassificationHead(dropout={p}) logits in training mode"
    if type(logits) is not torch.Tensor or logits.shape != (b, 2 * d):
        return compare_tensors(torch.zeros(b, 2 * d, dtype=torch.float64), logits, what)
    logits = logits.detach().double()
    scaled = 1 / (1 - p)
    zero = logits.abs() < 1e-4
    if not bool(((logits - scaled).abs() < 1e-4).logical_or(zero).all()):
        return Mismatch(what, f"hold values other than 0 and 1/(1-p) = {scaled:g}: is dropout applied to the pooled "
                              "vector, and in training mode only?", kind="not_dropout")
    if not torch.equal(logits[:, :d], logits[:, d:]):
        return Mismatch(what, "drop the two logits of one feature independently: dropout acts after the classifier "
                              "instead of before it", kind="dropout_after_classifier")
    dropped = float(zero[:, :d].double().mean())
    if abs(dropped - p) > 0.08:  # 1024 draws: the standard deviation is at most 0.016
        return Mismatch(what, f"dropped {dropped:.0%} of the pooled features; dropout={p} drops about {p:.0%} "
                              "(is the rate taken from the constructor?)", kind="dropout_rate")
    return None


def drops_in_training(head_class, p: float) -> Mismatch | None:
    """Visible form of the dropout check: the head in training mode on the dropout probe."""
    hidden, mask, state = dropout_probe()
    head = head_class(DROPOUT_WIDTH, 2 * DROPOUT_WIDTH, pooling="cls", dropout=p).double()
    with torch.no_grad():
        head.classifier.weight.copy_(state["classifier.weight"])
        head.classifier.bias.copy_(state["classifier.bias"])
    head.train()
    with torch.no_grad():
        return judge_dropout(head(hidden, mask), p)


def keeps_hidden_dtype(mean_pool, inputs: s.HiddenInputs) -> Mismatch | None:
    out = mean_pool(inputs.hidden, inputs.attention_mask)
    if type(out) is not torch.Tensor or out.dtype != inputs.hidden.dtype:
        return Mismatch("mean_pool", f"returned {describe(out)} for hidden of dtype {inputs.hidden.dtype}")
    return None


GOLDEN_CALLS = {
    "mean_pool": [((s.values((2, 3, 2), 11), torch.tensor([[1, 1, 0], [0, 0, 0]])), {})],
}

register("cls_pool",
         VisibleCheck("takes the first token", CLS_HINT, s.hidden_inputs(), lambda i, f: takes_first_token(f, i)),
         gradient_check("cls_pool", CLS_HINT, s.hidden_inputs(), lambda i: ((i.hidden,), {}, (0,))))
register("mean_pool",
         VisibleCheck("averages the real tokens", MEAN_HINT, s.hidden_inputs(), lambda i, f: averages_real_tokens(f, i),
                      concepts=("core", "empty_rows")),
         VisibleCheck("ignores the values at padded positions", MEAN_HINT, s.hidden_inputs(),
                      lambda i, f: ignores_padding_values(f, i), concepts=("padding_values",)),
         VisibleCheck("keeps the dtype of hidden", MEAN_HINT, s.hidden_inputs(), lambda i, f: keeps_hidden_dtype(f, i),
                      max_examples=5, concepts=("dtype_device",)),
         gradient_check("mean_pool", MEAN_HINT, s.hidden_inputs(rows="live"),
                        lambda i: ((i.hidden, i.attention_mask), {}, (0,))),
         golden_check("mean_pool", MEAN_HINT))
register("ClassificationHead",
         VisibleCheck("is classifier(pool(hidden)) in eval mode", HEAD_HINT,
                      st.tuples(s.hidden_inputs(), st.sampled_from(["cls", "mean"])),
                      lambda case, cls: head_is_classifier_of_pool(cls, case)),
         VisibleCheck("drops pooled features at the given rate, before the classifier, in training", HEAD_HINT,
                      st.sampled_from([0.25, 0.5]), lambda p, cls: drops_in_training(cls, p), max_examples=2,
                      concepts=("dropout",)),
         rejects("ClassificationHead", [("pooling='max'", (4, 2), {"pooling": "max"})], HEAD_HINT))
register("freeze_backbone",
         VisibleCheck("leaves exactly the named modules trainable and counts them", FREEZE_HINT,
                      st.tuples(st.just(FREEZE_MODEL), TRAINABLE), lambda case, f: freezes_all_but_trainable(f, case),
                      max_examples=5, concepts=("core", "count")),
         VisibleCheck("makes listed parameters trainable even when they started frozen", FREEZE_HINT,
                      st.tuples(st.just(FROZEN_START_MODEL), TRAINABLE_FROZEN),
                      lambda case, f: freezes_all_but_trainable(f, case), max_examples=3, concepts=("starts_frozen",)))
register("SoftPrompt",
         VisibleCheck("prepends the prompt and extends the mask", PROMPT_HINT, s.hidden_inputs(),
                      lambda i, cls: prepends_prompt(cls, i), concepts=("core", "dtype_device")))
