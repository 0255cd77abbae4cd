"""Rubric: a finetuning head on a pretrained encoder."""
from __future__ import annotations

from hypothesis import strategies as st

from solutions import finetune as ref

from .. import strategies as s
from ..checks import BadCall, Call, ModuleCall, holds, matches_reference, module_matches_reference, rejects_bad_arguments
from ..common.compare import Mismatch
from ..rubric import Check, Item, Rubric
from ..sandbox.wire import ModuleTree, build_module_tree
from ..selfcheck.finetune import (CLS_HINT, FREEZE_HINT, HEAD_HINT, MEAN_HINT, PROMPT_HINT, TRAINABLE,
                                  ignores_padding_values)
from ..student import StudentRaised

# A backbone with an embedding-like layer, two encoder layers, a pooler, and the head.
MODEL = {"embeddings": {"word": [4, 4]}, "encoder": {"layer0": [4, 4], "layer1": [4, 4]},
         "pooler": [4, 4], "head": [4, 2], "header": [4, 1]}


@st.composite
def hidden_calls(draw, with_mask: bool) -> Call:
    inputs = draw(s.hidden_inputs())
    if with_mask:
        return Call((inputs.hidden, inputs.attention_mask), names=("hidden", "attention_mask"))
    return Call((inputs.hidden,), names=("hidden",))


@st.composite
def head_calls(draw) -> ModuleCall:
    inputs = draw(s.hidden_inputs())
    return ModuleCall((inputs.hidden.shape[2], draw(st.integers(1, 4)), draw(st.sampled_from(["cls", "mean"]))),
                      (inputs.hidden, inputs.attention_mask), grad_inputs=(0,), dtype=inputs.hidden.dtype,
                      seed=draw(s.seeds()), names=("hidden", "attention_mask"))


@st.composite
def prompt_calls(draw) -> ModuleCall:
    inputs = draw(s.hidden_inputs())
    return ModuleCall((draw(st.integers(1, 3)), inputs.hidden.shape[2]), (inputs.hidden, inputs.attention_mask),
                      grad_inputs=(0,), dtype=inputs.hidden.dtype, seed=draw(s.seeds()),
                      names=("input_embeds", "attention_mask"))


def freezes_like_the_reference() -> Check:
    """freeze_backbone on a model built in the worker: same trainable set and the same count as the reference."""
    def run(trainable: tuple[str, ...], student) -> Mismatch | None:
        model = build_module_tree(MODEL)
        expected_count = ref.freeze_backbone(model, trainable)
        expected = {n for n, p in model.named_parameters() if p.requires_grad}
        try:
            result = student.session.call("freeze_backbone", [ModuleTree(MODEL), trainable], {}, seed=0)
        except StudentRaised as error:
            return Mismatch("freeze_backbone", f"raised {error}")
        if not result.ok:
            return Mismatch("freeze_backbone", f"raised {result.error_type}: {result.message}")
        got = {n for n, (grad, _) in (result.models[0] if result.models else {}).items() if grad}
        if got != expected:
            return Mismatch("freeze_backbone", f"left {sorted(got)} trainable; should be {sorted(expected)}")
        if type(result.value) is not int or result.value != expected_count:
            return Mismatch("freeze_backbone", f"returned {result.value!r}; {expected_count} elements are trainable")
        return None

    return Check("matches_reference", "freezes exactly what the reference freezes and counts the same", FREEZE_HINT,
                 TRAINABLE.map(tuple), run, max_examples=10)


RUBRIC = Rubric(
    assignment="finetune",
    version="1",
    items=(
        Item("cls_pool", 1.0, (matches_reference("cls_pool", ref.cls_pool, hidden_calls(False), hint=CLS_HINT),)),
        Item("mean_pool", 3.0, (
            matches_reference("mean_pool", ref.mean_pool, hidden_calls(True), hint=MEAN_HINT, weight=3.0),
            holds("ignores_padding_values", "values at padded positions never matter", ignores_padding_values,
                  "mean_pool", s.hidden_inputs(), hint=MEAN_HINT, max_examples=30),
        )),
        Item("ClassificationHead", 3.0, (
            module_matches_reference("ClassificationHead", ref.ClassificationHead, head_calls(), hint=HEAD_HINT,
                                     weight=4.0),
            rejects_bad_arguments("ClassificationHead", [BadCall("pooling='max'", (4, 2), {"pooling": "max"})],
                                  hint="pooling is 'cls' or 'mean'"),
        )),
        Item("freeze_backbone", 2.0, (freezes_like_the_reference(),)),
        Item("SoftPrompt", 3.0, (
            module_matches_reference("SoftPrompt", ref.SoftPrompt, prompt_calls(), hint=PROMPT_HINT,
                                     parts=("embeds", "mask")),
        )),
    ),
)
