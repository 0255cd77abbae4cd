"""Recovering the student's code from damaged notebooks, without running anything."""
from __future__ import annotations

import json

import pytest

from autograder.submission import recover

pytestmark = pytest.mark.grader

SETUP = [{"id": "setup_1", "source": "import torch"}]
NAMES = ["causal_mask", "scaled_dot_product_attention"]


def solution_cell(grade_id: str, source: str) -> dict:
    return {"cell_type": "code", "source": source, "outputs": [], "execution_count": None,
            "metadata": {"nbgrader": {"grade_id": grade_id, "solution": True, "grade": False, "locked": False,
                                      "schema_version": 3}}}


def plain_cell(source: str, cell_type: str = "code") -> dict:
    return {"cell_type": cell_type, "source": source, "metadata": {}, "outputs": [], "execution_count": None}


def notebook(cells: list[dict]) -> dict:
    return {"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": cells}


MASK = "def causal_mask(seq_len, *, device=None):\n    return 1\n"
SDPA = "def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):\n    return 2\n"


def write(tmp_path, content) -> object:
    path = tmp_path / "sub.ipynb"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def sources(recovered) -> list[str]:
    return [cell["source"] for cell in recovered.cells]


def test_intact_notebook_runs_setup_then_solution_cells(tmp_path):
    nb = notebook([plain_cell("print('training loop')"), solution_cell("causal_mask", MASK),
                   solution_cell("scaled_dot_product_attention", SDPA)])
    got = recover(write(tmp_path, nb), SETUP, NAMES)
    assert sources(got) == ["import torch", MASK, SDPA]
    assert got.notes == [] and got.answered == set(NAMES)


def test_edited_metadata_is_recovered_by_name_with_a_note(tmp_path):
    nb = notebook([plain_cell(MASK), solution_cell("scaled_dot_product_attention", SDPA)])
    got = recover(write(tmp_path, nb), SETUP, NAMES)
    assert MASK in sources(got)
    assert any("causal_mask" in note and "grade_id" in note for note in got.notes)


def test_duplicated_solution_cells_grade_the_last_one(tmp_path):
    first = MASK.replace("1", "0")
    nb = notebook([solution_cell("causal_mask", first), solution_cell("causal_mask", MASK)])
    got = recover(write(tmp_path, nb), SETUP, NAMES)
    assert MASK in sources(got) and first not in sources(got)
    assert any("2 cells" in note for note in got.notes)


def test_solution_moved_to_another_cell(tmp_path):
    nb = notebook([solution_cell("causal_mask", "# moved below"), plain_cell(MASK)])
    got = recover(write(tmp_path, nb), SETUP, NAMES)
    assert MASK in sources(got)


def test_top_level_calls_in_other_cells_never_run(tmp_path):
    helper = "import math\ndef helper(x):\n    return x\n"
    nb = notebook([plain_cell(helper), plain_cell("train(model)  # slow"), solution_cell("causal_mask", MASK)])
    got = recover(write(tmp_path, nb), SETUP, NAMES)
    assert helper in sources(got) and "train(model)  # slow" not in sources(got)


def test_syntax_error_cell_is_still_taken_so_the_error_is_reported(tmp_path):
    broken = "def causal_mask(seq_len:\n    return 1\n"
    nb = notebook([solution_cell("causal_mask", broken)])
    assert broken in sources(recover(write(tmp_path, nb), SETUP, NAMES))


def test_nbformat_3_notebook(tmp_path):
    nb = {"nbformat": 3, "worksheets": [{"cells": [{"cell_type": "code", "input": MASK, "metadata": {}}]}]}
    got = recover(write(tmp_path, nb), SETUP, NAMES)
    assert MASK in sources(got) and any("nbformat 3" in note for note in got.notes)


def test_broken_json_salvages_readable_cells(tmp_path):
    text = json.dumps(notebook([solution_cell("causal_mask", MASK)]))[:-40]
    got = recover(write(tmp_path, text), SETUP, NAMES)
    assert not got.unreadable and MASK in sources(got)
    assert any("JSON is broken" in note for note in got.notes)


@pytest.mark.parametrize("content, reason", [
    ("", "empty"),
    ("this is my essay, not a notebook", "not valid JSON"),
    ("[1, 2, 3]", "no cells"),
])
def test_unreadable_files_get_a_reason(tmp_path, content, reason):
    got = recover(write(tmp_path, content), SETUP, NAMES)
    assert reason in got.unreadable and got.cells == []


def test_test_cells_turned_into_markdown_do_not_matter(tmp_path):
    nb = notebook([solution_cell("causal_mask", MASK), plain_cell("check('causal_mask', causal_mask)", "markdown")])
    assert sources(recover(write(tmp_path, nb), SETUP, NAMES)) == ["import torch", MASK]


def test_a_cell_nested_past_the_parser_is_not_run_and_costs_nothing_else(tmp_path):
    unary = "x = " + "-" * 10_000 + "1"
    nb = notebook([plain_cell(unary), solution_cell("causal_mask", MASK)])
    got = recover(write(tmp_path, nb), SETUP, NAMES)
    assert sources(got) == ["import torch", MASK] and not got.unreadable


def test_a_solution_cell_nested_past_the_parser_is_still_sent_so_its_error_is_reported(tmp_path):
    unary = "def causal_mask(seq_len, *, device=None):\n    return " + "-" * 10_000 + "1\n"
    got = recover(write(tmp_path, notebook([solution_cell("causal_mask", unary)])), SETUP, NAMES)
    assert unary in sources(got)


def test_json_nested_too_deeply_salvages_the_cells(tmp_path):
    text = json.dumps({**notebook([solution_cell("causal_mask", MASK)]), "metadata": {"deep": "@"}})
    got = recover(write(tmp_path, text.replace('"@"', "[" * 100_000 + "]" * 100_000)), SETUP, NAMES)
    assert MASK in sources(got) and any("nested too deeply" in note for note in got.notes)


def test_grade_ids_of_every_code_cell_are_recorded(tmp_path):
    test_cell = {**plain_cell("check()"), "metadata": {"nbgrader": {"grade_id": "test_patchify", "grade": True}}}
    got = recover(write(tmp_path, notebook([solution_cell("patchify", "def patchify(x, p):\n    pass\n"), test_cell])),
                  SETUP, NAMES)
    assert got.grade_ids == {"patchify", "test_patchify"}


def test_an_edited_setup_cell_is_replaced_by_the_original_with_a_note(tmp_path):
    edited = solution_cell("setup_1", "import torch\ndef helper():\n    return 3\n")
    nb = notebook([edited, solution_cell("causal_mask", MASK), solution_cell("scaled_dot_product_attention", SDPA)])
    got = recover(write(tmp_path, nb), SETUP, NAMES)
    assert sources(got) == ["import torch", MASK, SDPA]
    assert any("set-up cell setup_1 was edited" in note and "solution cells" in note for note in got.notes)


def test_an_untouched_setup_cell_gives_no_note(tmp_path):
    nb = notebook([solution_cell("setup_1", "import torch\n"), solution_cell("causal_mask", MASK)])
    assert recover(write(tmp_path, nb), SETUP, NAMES).notes == []
