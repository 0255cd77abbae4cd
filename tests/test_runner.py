"""The search itself: the examples a check draws depend on the check alone."""
from __future__ import annotations

import importlib
import sys

import pytest
from hypothesis import strategies as st

from autograder.rubric import Check
from autograder.runner import run_check

pytestmark = pytest.mark.grader


def drawn_examples() -> list[int]:
    """Every example one passing search draws, in order."""
    seen: list[int] = []
    check = Check(id="core", title="records its inputs", hint="", strategy=st.integers(0, 2**20),
                  run=lambda example, student: seen.append(example), max_examples=300)
    assert run_check(check, student=None).passed
    return seen


def test_examples_do_not_depend_on_the_directory_or_on_modules_imported_before(tmp_path, monkeypatch):
    before = drawn_examples()
    # A module under the working directory full of numbers in the strategy's range: hypothesis would mine
    # them as "local constants" and draw some of them.
    constants = ", ".join(str(100_003 + 7919 * i) for i in range(200))
    (tmp_path / "grader_neighbour.py").write_text(f"NUMBERS = [{constants}]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("grader_neighbour")
    try:
        assert drawn_examples() == before
    finally:
        sys.modules.pop("grader_neighbour", None)
