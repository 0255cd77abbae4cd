"""Rubric: a finetuning head on a pretrained encoder, one check per concept the notebook states."""
from __future__ import annotations

from functools import partial

import torch
from hypothesis import strategies as st

from solutions import finetune as ref

from .. import strategies as s
from ..checks import (BadCall, Call, ModuleCall, holds, matches_reference, module_matches_reference, raised,
                      rejects_bad_arguments)
from ..common.compare import Mismatch
from ..rubric import Check, Item, Rubric
from ..sandbox.wire import ModuleTree
from ..selfcheck.finetune import (CLS_HINT, DROPOUT_WIDTH, FREEZE_HINT, FREEZE_MODEL, FROZEN_START_MODEL, HEAD_HINT,
                                  MEAN_HINT, PROMPT_HINT, TRAINABLE, TRAINABLE_FROZEN, build_model, dropout_probe,
                                  ignores_padding_values, judge_dropout)
from ..student import Student, StudentRaised


@st.composite
def hidden_calls(draw, with_mask: bool, rows: str = "live") -> Call:
    inputs = draw(s.hidden_inputs(rows=rows))
    if with_mask:
        return Call((inputs.hidden, inputs.attention_mask), names=("hidden", "attention_mask"), grad_inputs=(0,))
    return Call((inputs.hidden,), names=("hidden",), grad_inputs=(0,))


@st.composite
def head_calls(draw) -> ModuleCall:
    inputs = draw(s.hidden_inputs(rows="live"))
    return ModuleCall((inputs.hidden.shape[2], draw(st.integers(1, 4)), draw(st.sampled_from(["cls", "mean"]))),
                      (inputs.hidden, inputs.attention_mask), grad_inputs=(0,), dtype=inputs.hidden.dtype,
                      seed=draw(s.seeds()), names=("hidden", "attention_mask"))


@st.composite
def prompt_calls(draw) -> ModuleCall:
    inputs = draw(s.hidden_inputs())
    return ModuleCall((draw(st.integers(1, 3)), inputs.hidden.shape[2]), (inputs.hidden, inputs.attention_mask),
                      grad_inputs=(0,), dtype=inputs.hidden.dtype, seed=draw(s.seeds()),
                      names=("input_embeds", "attention_mask"))


def drops_before_the_classifier() -> Check:
    """ClassificationHead in training mode on the dropout probe of `autograder.selfcheck.finetune`."""
    hidden, mask, state = dropout_probe()

    def run(case: tuple[float, int], _: None, student: Student) -> Mismatch | None:
        p, seed = case
        student.seed = seed
        try:
            got = student.module("ClassificationHead", (DROPOUT_WIDTH, 2 * DROPOUT_WIDTH),
                                 {"pooling": "cls", "dropout": p}, state, (hidden, mask), dtype=torch.float64,
                                 train=True)
        except StudentRaised as error:
            return raised("ClassificationHead", error)
        return judge_dropout(got.outputs[0] if got.outputs else None, p)

    return Check("dropout", "dropout with the given rate on the pooled vector, before the classifier, in training",
                 HEAD_HINT, st.tuples(st.sampled_from([0.25, 0.5]), s.seeds()), run, weight=0.6,
                 sentence="`dropout = nn.Dropout(dropout)`")


def freezes_like_the_reference(check_id: str, spec: dict, trainable: st.SearchStrategy, *, count: bool,
                               title: str, sentence: str, weight: float, core: bool = False) -> Check:
    """freeze_backbone on the model of `spec`, built in the worker: the same trainable set as the reference
    (or, with `count`, the same returned number of trainable elements)."""
    def expect(names: tuple[str, ...]) -> tuple[int, set[str]]:
        model = build_model(spec)
        count = ref.freeze_backbone(model, names)
        return count, {n for n, p in model.named_parameters() if p.requires_grad}

    def run(names: tuple[str, ...], reference: tuple[int, set[str]], student: Student) -> Mismatch | None:
        expected_count, expected = reference
        result = student.session.call("freeze_backbone", [ModuleTree(spec), names], {}, seed=0)
        if not result.ok:
            return raised("freeze_backbone", StudentRaised(result.error_type, result.message))
        if count:
            if type(result.value) is not int or result.value != expected_count:
                return Mismatch("freeze_backbone", f"returned {result.value!r}; {expected_count} elements are "
                                                   "trainable", kind="count")
            return None
        got = {n for n, (grad, _) in (result.models[0] if result.models else {}).items() if grad}
        if got != expected:
            wrong = "kept " + ", ".join(sorted(got - expected)) if got - expected else ""
            lost = "froze " + ", ".join(sorted(expected - got)) if expected - got else ""
            return Mismatch("freeze_backbone", f"left {sorted(got)} trainable; should be {sorted(expected)}",
                            kind="; ".join(filter(None, [wrong, lost])))
        return None

    return Check(check_id, title, FREEZE_HINT, trainable.map(tuple), run, weight=weight,
                 sentence=sentence, core=core, expect=expect)


pool_sentence = "Padding must never influence a sentence's embedding."
mean = partial(matches_reference, "mean_pool", ref.mean_pool, hint=MEAN_HINT)

RUBRIC = Rubric(
    assignment="finetune",
    version="2",
    items=(
        Item("cls_pool", 1.0, (
            matches_reference("cls_pool", ref.cls_pool, hidden_calls(False), check_id="core", core=True, weight=0.8,
                              title="the first token's vector",
                              sentence="the first token of `hidden: (B, T, D)`", hint=CLS_HINT),
            matches_reference("cls_pool", ref.cls_pool, hidden_calls(False), check_id="gradient", aspect="gradient",
                              weight=0.2, title="gradients reach hidden", hint=CLS_HINT,
                              sentence="Gradients of both must flow back to `hidden`."),
        )),
        Item("mean_pool", 3.0, (
            mean(hidden_calls(True), check_id="core", core=True, weight=2.0,
                 title="the mean over real tokens (every row has one)",
                 sentence="the mean over positions where `attention_mask` is 1"),
            mean(hidden_calls(True, rows="empty"), check_id="empty_rows", weight=0.3,
                 title="a row with no real token gives zeros", sentence="A row with no real token gives zeros, not NaN."),
            holds("padding_values", "values at padded positions (even NaN) never matter", ignores_padding_values,
                  "mean_pool", s.hidden_inputs(rows="live"), hint=MEAN_HINT, weight=0.3,
                  sentence=pool_sentence),
            mean(hidden_calls(True), check_id="gradient", aspect="gradient", weight=0.2,
                 title="gradients reach hidden", sentence="Gradients of both must flow back to `hidden`."),
            mean(hidden_calls(True), check_id="dtype_device", aspect="dtype_device", weight=0.2,
                 title="keeps the dtype of hidden", sentence="in the dtype of `hidden`"),
        )),
        Item("ClassificationHead", 3.0, (
            module_matches_reference("ClassificationHead", ref.ClassificationHead, head_calls(), check_id="core",
                                     core=True, weight=2.0, hint=HEAD_HINT,
                                     title="logits and gradients in eval mode, cls and mean pooling",
                                     sentence="returns logits `(B, num_labels)` = `classifier(dropout(pool(hidden)))`"),
            drops_before_the_classifier(),
            rejects_bad_arguments("ClassificationHead", [BadCall("pooling='max'", (4, 2), {"pooling": "max"})],
                                  weight=0.4, sentence="Any other `pooling` raises `ValueError`.",
                                  hint="pooling is 'cls' or 'mean'"),
        ), trusted={"cls_pool": ref.cls_pool, "mean_pool": ref.mean_pool}),
        Item("freeze_backbone", 2.0, (
            freezes_like_the_reference("core", FREEZE_MODEL, TRAINABLE, count=False, core=True, weight=1.4,
                                       title="exactly the named modules stay trainable",
                                       sentence="*starts with that name plus `.`*"),
            freezes_like_the_reference("count", FREEZE_MODEL, TRAINABLE, count=True, weight=0.4,
                                       title="returns the number of trainable elements",
                                       sentence="Return the number of trainable parameter **elements**"),
            freezes_like_the_reference("starts_frozen", FROZEN_START_MODEL, TRAINABLE_FROZEN, count=False,
                                       weight=0.2, title="listed parameters become trainable even if they were off",
                                       sentence="(`requires_grad=True`, also if it was off)"),
        )),
        Item("SoftPrompt", 3.0, (
            module_matches_reference("SoftPrompt", ref.SoftPrompt, prompt_calls(), check_id="core", core=True,
                                     weight=2.4, hint=PROMPT_HINT, parts=("embeds", "mask"),
                                     title="the prompt prepended to every sequence, the mask extended; gradients",
                                     sentence="the prompt prepended to every sequence"),
            module_matches_reference("SoftPrompt", ref.SoftPrompt, prompt_calls(), check_id="dtype_device",
                                     aspect="dtype_device", weight=0.6, hint=PROMPT_HINT,
                                     parts=("embeds", "mask"), title="the mask keeps its own dtype",
                                     sentence="the mask extended with ones **of the mask's own dtype**"),
        )),
    ),
)
