"""Concept checks: every check is demanded by a sentence of the released notebook, the core check carries the
item, and per-check points, signatures and trusted stand-ins behave as the README says."""
from __future__ import annotations

import importlib
import re

import nbformat
import pytest
import torch

from autograder.build import assignment_names
from autograder.checks import signature
from autograder.common.compare import Mismatch, compare_tensors, format_pair
from autograder.grade import Assignment, _item_result, known_assignments
from autograder.rubric import CORE_SHARE, Check, Item
from autograder.runner import Outcome
from autograder.samples import implementation_code
from autograder.selfcheck.core import REGISTRY, run_visible
from autograder import trusted as trusted_module
from autograder.trusted import TrustedCalls

from .test_idioms import CORPUS, expected

pytestmark = pytest.mark.grader

GRADED = known_assignments()


def task_text(notebook) -> str:
    """The released notebook's markdown, whitespace collapsed (a sentence may wrap across lines)."""
    text = " ".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("name", GRADED)
def test_every_check_quotes_a_sentence_of_the_released_notebook(name, released):
    text = task_text(nbformat.read(released[name], as_version=4))
    missing = [f"{item.name}/{check.id}: {check.sentence!r}" for item in Assignment.load(name).rubric.items
               for check in item.checks if re.sub(r"\s+", " ", check.sentence) not in text]
    assert not missing, "sentences the notebook does not contain:\n" + "\n".join(missing)


@pytest.mark.parametrize("name", GRADED)
def test_every_item_has_one_core_check_carrying_most_of_its_points(name):
    for item in Assignment.load(name).rubric.items:
        (core,) = [c for c in item.checks if c.core]
        assert core.id == "core" and item.points_of(core) >= CORE_SHARE * item.points - 1e-9


def _check(check_id: str, weight: float, core: bool = False) -> Check:
    return Check(check_id, check_id, "hint", None, lambda e, x, s: None, weight=weight, sentence="said", core=core)


def test_convention_checks_earn_nothing_while_the_core_check_fails():
    item = Item("f", 5.0, (_check("core", 3.0, core=True), _check("empty_rows", 1.0), _check("bad_arguments", 1.0)))
    wrong = Mismatch("f", "values differ", kind="values:all")
    outcomes = [Outcome(item.checks[0], False, "values differ", mismatch=wrong, example="    x = 1"),
                Outcome(item.checks[1], True), Outcome(item.checks[2], True)]
    result = _item_result(item, outcomes)
    assert result["score"] == 0 and "(0/1, no credit until the core check passes)" in result["output"]
    checks = result["extra_data"]["checks"]
    assert [c["points"] for c in checks] == [0, 0, 0] and [c["max_points"] for c in checks] == [3, 1, 1]
    assert checks[0]["signature"] == "core|f|values:all" and checks[0]["example"] == "    x = 1"


def test_each_failing_convention_costs_its_own_points_and_is_listed():
    item = Item("f", 5.0, (_check("core", 3.0, core=True), _check("empty_rows", 1.0), _check("dtype_device", 1.0)))
    outcomes = [Outcome(item.checks[0], True),
                Outcome(item.checks[1], False, "NaN", mismatch=Mismatch("output", "NaN", kind="nan")),
                Outcome(item.checks[2], False, "dtype", mismatch=Mismatch("weights", "dtype", kind="dtype"))]
    result = _item_result(item, outcomes, dependency="a trusted g")
    assert result["score"] == 3.0 and result["status"] == "failed"
    assert "[empty_rows]" in result["output"] and "[dtype_device]" in result["output"]
    assert result["output"].count('the notebook says: "said"') == 2
    assert result["extra_data"]["dependency"] == "a trusted g"


def test_signatures_ignore_sizes_and_values_but_not_the_part_or_kind():
    first = Mismatch("x_kept (ratio 0.9, N=10: keep 1)", "shape is (1, 0, 2)", kind="shape:3d-for-3d")
    second = Mismatch("x_kept (ratio 0.28, N=25: keep 18)", "shape is (2, 17, 4)", kind="shape:3d-for-3d")
    assert signature("keep_count", first) == signature("keep_count", second)
    assert signature("keep_count", first) != signature("core", first)
    assert signature("core", Mismatch("weights", "", kind="nan")) != signature("core", Mismatch("output", "", kind="nan"))


def test_a_float32_computation_passes_for_float64_inputs_and_the_dtype_is_its_own_concept():
    exact = torch.linspace(0, 50, 101, dtype=torch.float64).sin()
    float32 = torch.linspace(0, 50, 101, dtype=torch.float32).sin()
    assert compare_tensors(exact, float32, check_dtype=False) is None
    assert compare_tensors(exact, float32).kind == "dtype"
    assert compare_tensors(exact, exact + 1e-3, check_dtype=False).kind == "values:all"


def test_floats_print_with_the_digits_that_tell_them_apart():
    assert format_pair(0.008617634, 0.008617631) == ("0.008617634", "0.008617631")
    assert format_pair(1.5, 2.5) == ("1.5", "2.5")


def test_trusted_answer_gives_outputs_and_vector_jacobian_products():
    def f(x, y, scale=1.0):
        return x * y * scale, (x + y).sum()
    trusted = TrustedCalls({"f": f})
    x, y = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    grad_outputs = [torch.ones(3, dtype=torch.float64), torch.tensor(1.0).double()]
    plain = trusted.answer("f", "call", [x, y], {"scale": 2.0}, [])
    assert not plain["single"] and torch.equal(plain["values"][0], x * y * 2.0) and "call" not in plain
    recomputed = trusted.answer("f", "vjp", [x, y], {"scale": 2.0}, grad_outputs)["values"]
    assert torch.allclose(recomputed[0], y * 2.0 + 1) and torch.allclose(recomputed[1], x * 2.0 + 1)
    # A call that will be differentiated keeps its graph: its backward needs only the output gradients, twice if
    # asked, and gives exactly what recomputing gives.
    kept = trusted.answer("f", "call", [x, y], {"scale": 2.0}, [], keep=True)
    assert torch.equal(kept["values"][0], plain["values"][0]) and not kept["values"][0].requires_grad
    for _ in range(2):
        from_graph = trusted.answer("f", "vjp", [], {}, grad_outputs, call=kept["call"])["values"]
        assert all(torch.equal(a, b) for a, b in zip(from_graph, recomputed))
    trusted.forget()
    assert trusted.answer("f", "vjp", [], {}, grad_outputs, call=kept["call"]) == {"forgotten": True}
    assert trusted.answer("f", "vjp", [], {}, grad_outputs, call="0") == {"forgotten": True}
    with pytest.raises(ValueError):
        trusted.answer("f", "exec", [x, y], {}, [])


def test_kept_graphs_are_dropped_oldest_first_beyond_their_byte_budget(monkeypatch):
    monkeypatch.setattr(trusted_module, "KEPT_BYTES", 2 * 16)  # two calls of one float64 in and one out
    trusted = TrustedCalls({"double": lambda x: 2 * x})
    ids = [trusted.answer("double", "call", [torch.ones(1, dtype=torch.float64)], {}, [], keep=True)["call"]
           for _ in range(3)]
    one = [torch.ones(1, dtype=torch.float64)]
    assert trusted.answer("double", "vjp", [], {}, one, call=ids[0]) == {"forgotten": True}
    assert torch.equal(trusted.answer("double", "vjp", [], {}, one, call=ids[2])["values"][0], 2 * one[0])


def test_items_that_call_graded_names_name_their_trusted_stand_ins():
    assert set(Assignment.load("attention").rubric.item("MultiHeadAttention").trusted) == {"scaled_dot_product_attention"}
    assert set(Assignment.load("vit").rubric.item("PatchEmbedding").trusted) == {"patchify"}
    assert set(Assignment.load("finetune").rubric.item("ClassificationHead").trusted) == {"cls_pool", "mean_pool"}


def test_every_graded_assignment_has_a_notebook():
    assert set(GRADED) <= set(assignment_names())


@pytest.mark.parametrize("name", GRADED)
def test_every_hidden_concept_has_a_visible_example(name):
    importlib.import_module(f"autograder.selfcheck.{name}")
    for item in Assignment.load(name).rubric.items:
        shown = {concept for visible in REGISTRY[item.name] for concept in visible.concepts}
        missing = {check.id for check in item.checks} - shown
        assert not missing, f"{item.name}: concepts graded but never shown in a visible check: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_visible_checks_pass_correct_idioms_and_catch_the_wrong_concepts(path):
    """Run in-process on the idiom corpus (our own code): a correct idiom passes every visible check, and a wrong
    one fails a visible check of one of the concepts it breaks, so passing the visible checks means no concept
    fails unannounced. (Golden-value checks need a release and are left to the notebook tests.)"""
    name = path.parent.name
    importlib.import_module(f"autograder.selfcheck.{name}")
    namespace = dict(vars(importlib.import_module(f"solutions.{name}")))
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - the corpus is ours
    want = expected(path)
    for graded in implementation_code(path):
        failing = {concept for visible in REGISTRY[graded] if not visible.title.startswith("matches golden")
                   if run_visible(visible, namespace[graded]) is not None for concept in visible.concepts}
        if graded in want:
            assert failing & set(want[graded]), (graded, failing, want[graded])
        else:
            assert not failing, (graded, failing)
