"""Forbidden shortcuts: the worker counts watched calls whatever name the student reaches them by;
the grader records them per item and deducts what the rubric says."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch

from autograder.grade import _with_forbidden
from autograder.rubric import Forbidden
from autograder.rubrics.attention import RUBRIC
from autograder.sandbox import Limits, WorkerPool

pytestmark = pytest.mark.grader

SDPA = "torch.nn.functional.scaled_dot_product_attention"
MHA = "torch.nn.MultiheadAttention"

ROUTES = {
    "alias": "from torch.nn.functional import scaled_dot_product_attention as attend\n"
             "def f(q, k, v):\n    return attend(q, k, v)",
    "getattr": "import torch.nn.functional as F\n"
               "def f(q, k, v):\n    return getattr(F, 'scaled_' + 'dot_product_attention')(q, k, v)",
    "C module": "import torch\ndef f(q, k, v):\n    return torch._C._nn.scaled_dot_product_attention(q, k, v)",
    "aten op": "import torch\ndef f(q, k, v):\n    return torch.ops.aten.scaled_dot_product_attention(q, k, v)",
    "aten math kernel": "import torch\n"
                        "def f(q, k, v):\n    return torch.ops.aten._scaled_dot_product_attention_math(q, k, v)[0]",
    "imported inside": "def f(q, k, v):\n    import importlib\n"
                       "    g = importlib.import_module('torch.nn.functional').__dict__['scaled_dot_product_attention']\n"
                       "    return g(q, k, v)",
}


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(limits=Limits(call_cpu_s=5.0)) as pool:
        yield pool


def counted(pool: WorkerPool, source: str, *args) -> dict[str, int]:
    with pool.session(watch=RUBRIC.watched_calls) as session:
        [cell] = session.exec_cells([{"id": "cell", "source": source}])
        assert cell.ok, cell.error
        result = session.call("f", list(args), {})
        assert result.ok, result.message
        return result.forbidden


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_to_torchs_attention_is_counted_as_the_forbidden_call(pool, route):
    x = torch.randn(1, 3, 4)
    assert counted(pool, ROUTES[route], x, x, x) == {SDPA: 1}


def test_torchs_module_is_counted_also_through_a_subclass(pool):
    source = ("import torch\nclass Mine(torch.nn.MultiheadAttention):\n    pass\n"
              "def f(x):\n    return Mine(4, 2, batch_first=True)(x, x, x)[0]")
    calls = counted(pool, source, torch.randn(1, 3, 4))
    assert calls[MHA] == 1 and calls["torch.nn.functional.multi_head_attention_forward"] == 1


def test_honest_code_and_calls_made_while_cells_run_count_nothing(pool):
    source = ("import math, torch\nimport torch.nn.functional as F\n"
              "F.scaled_dot_product_attention(torch.ones(1, 1, 2), torch.ones(1, 1, 2), torch.ones(1, 1, 2))\n"
              "def f(q, k, v):\n    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1) @ v")
    x = torch.randn(1, 3, 4)
    assert counted(pool, source, x, x, x) == {}


def test_nothing_is_watched_unless_the_grader_asks(pool):
    with pool.session() as session:
        session.exec_cells([{"id": "cell", "source": ROUTES["alias"]}])
        x = torch.randn(1, 2, 2)
        assert session.call("f", [x, x, x], {}).forbidden == {}


def test_the_rubric_watches_every_route_of_every_forbidden_call():
    watched = RUBRIC.watched_calls
    assert [SDPA, SDPA] in watched and [SDPA, "torch.ops.aten.scaled_dot_product_attention"] in watched
    assert [MHA, MHA] in watched


def item_result(score: float) -> dict:
    return {"name": "f", "score": score, "max_score": 5.0, "status": "passed" if score == 5 else "failed",
            "visibility": "visible", "output": "✓ matches"}


def test_a_deducting_rule_takes_points_off_and_says_so():
    item = replace(RUBRIC.item("scaled_dot_product_attention"), forbidden=(Forbidden(SDPA, deduct=3.0),))
    test = _with_forbidden(item_result(5.0), item, Counter({SDPA: 7}))
    assert test["score"] == 2.0 and test["status"] == "failed"
    assert test["extra_data"]["forbidden"] == [{"call": SDPA, "count": 7, "deducted": 3.0}]
    assert "3 points taken off" in test["output"]
    low = _with_forbidden(item_result(1.0), item, Counter({SDPA: 1}))
    assert low["score"] == 0.0, "never below zero"


def test_a_flagging_rule_records_the_use_and_keeps_the_points():
    item = replace(RUBRIC.item("scaled_dot_product_attention"), forbidden=(Forbidden(SDPA),))
    test = _with_forbidden(item_result(5.0), item, Counter({SDPA: 2, "something else": 4}))
    assert test["score"] == 5.0 and test["status"] == "passed"
    assert test["extra_data"]["forbidden"] == [{"call": SDPA, "count": 2, "deducted": 0.0}]
    assert "no points taken off" in test["output"]
    clean = _with_forbidden(item_result(5.0), item, Counter())
    assert clean["extra_data"]["forbidden"] == [] and clean["output"] == "✓ matches"


def task_text(cells: list[dict], item: str) -> str:
    """The markdown between the previous solution cell and the solution cell of `item`: that task's statement."""
    text: list[str] = []
    for cell in cells:
        grading = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "code" and grading.get("solution"):
            if grading.get("grade_id") == item:
                return "".join(text)
            text = []
        elif cell["cell_type"] == "markdown":
            text.append("".join(cell["source"]))
    raise AssertionError(f"no solution cell for {item}")


def test_every_forbidden_call_is_forbidden_in_its_tasks_text():
    import json

    from autograder.build import source_path
    from autograder.grade import Assignment, known_assignments

    for name in known_assignments():
        rubric = Assignment.load(name).rubric
        cells = json.loads(source_path(name).read_text())["cells"]
        for item in rubric.items:
            for rule in item.forbidden:
                statement = task_text(cells, item.name)
                assert "Not allowed in this task" in statement and f"`{rule.call}`" in statement, (name, rule.call)
