"""Plain nbgrader commands grade with the engine: autograde, generate_feedback and export, end to end."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import build
from autograder.release import nbgrader_env

pytestmark = [pytest.mark.grader, pytest.mark.xdist_group("release")]


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                         timeout=900, env=nbgrader_env())
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def damaged(notebook: Path) -> dict:
    """The reference submission with its metadata stripped, a solution cell duplicated and a test cell deleted."""
    nb = json.loads(notebook.read_text())
    cells = nb["cells"]
    for cell in cells:
        cell.get("metadata", {}).pop("nbgrader", None)
    cells.insert(3, json.loads(json.dumps(cells[3])))
    del cells[-2]
    return nb


@pytest.fixture(scope="module")
def course(attention_samples, tmp_path_factory) -> Path:
    """A course folder with the attention assignment released and four submissions, autograded by nbgrader."""
    root = tmp_path_factory.mktemp("course")
    shutil.copy(build.ROOT / "assignments" / "nbgrader_config.py", root)
    shutil.copytree(build.SOURCE / "attention", root / "source" / "attention")
    nbgrader(root, "generate_assignment", "attention", "--force")
    students = {"ada": "reference", "bob": "untouched", "cy": "unscaled_scores"}
    for student, variant in students.items():
        target = root / "submitted" / student / "attention"
        target.mkdir(parents=True)
        shutil.copy(attention_samples / variant / "attention" / "attention.ipynb", target)
    broken = root / "submitted" / "dee" / "attention"
    broken.mkdir(parents=True)
    (broken / "attention.ipynb").write_text(json.dumps(
        damaged(attention_samples / "reference" / "attention" / "attention.ipynb")))
    nbgrader(root, "autograde", "attention", "--force")
    return root


def autograded_scores(course: Path) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        result = {}
        for student in ("ada", "bob", "cy", "dee"):
            notebook = gradebook.find_submission_notebook("attention", "attention", student)
            result[student] = {g.name: g.auto_score for g in notebook.grades if g.name.startswith("test_")}
            assert not notebook.needs_manual_grade or all(
                g.name in ("attention_complexity", "mask_conventions") for g in notebook.grades if g.needs_manual_grade)
    return result


def test_autograde_writes_per_cell_partial_credit(course):
    scores = autograded_scores(course)
    assert scores["ada"] == {"test_causal_mask": 2, "test_scaled_dot_product_attention": 5,
                             "test_MultiHeadAttention": 5}
    assert sum(scores["bob"].values()) == 0
    assert scores["cy"]["test_causal_mask"] == 2
    assert 0 < scores["cy"]["test_scaled_dot_product_attention"] < 5


def test_damaged_submission_is_repaired_and_graded(course):
    assert autograded_scores(course)["dee"] == autograded_scores(course)["ada"]


def test_feedback_shows_the_counterexample_and_no_hidden_source(course):
    nbgrader(course, "generate_feedback", "attention", "--force")
    html = (course / "feedback" / "cy" / "attention" / "attention.html").read_text()
    assert "smallest failing input" in html and "hint:" in html
    assert "matches_reference" not in html and "rubrics" not in html


def test_export_writes_a_csv_with_every_student(course):
    nbgrader(course, "export", "--to", "grades.csv")
    rows = list(csv.DictReader((course / "grades.csv").open()))
    assert {row["student_id"] for row in rows} == {"ada", "bob", "cy", "dee"}
