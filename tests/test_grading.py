"""The grading engine end to end on the attention assignment: scores, feedback, determinism, resume."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from autograder import report
from autograder.batch import OutputLock, discover, grade_batch
from autograder.grade import Assignment
from autograder.samples import variants

pytestmark = [pytest.mark.grader, pytest.mark.xdist_group("release")]

# Which item each wrong sample breaks (assignments/samples/attention/*.py).
BROKEN = {
    "mask_hides_diagonal": "causal_mask",
    "mask_upper_triangle": "causal_mask",
    "unscaled_scores": "scaled_dot_product_attention",
    "finite_mask_value": "scaled_dot_product_attention",
    "inverted_mask": "scaled_dot_product_attention",
    "heads_interleaved": "MultiHeadAttention",
    "padding_ignored": "MultiHeadAttention",
}


def scores(result: dict) -> dict[str, float]:
    return {t["name"]: t["score"] for t in result["tests"]}


def test_every_wrong_sample_is_listed_here():
    assert set(variants("attention")) == {"untouched", "reference", *BROKEN}


def test_reference_gets_full_marks(attention_grades):
    result = attention_grades["reference"]
    assert result["score"] == 12 and all(t["status"] == "passed" for t in result["tests"])
    assert result["extra_data"]["isolation"] in ("bwrap", "rlimits", "unprotected")
    assert result["extra_data"]["rubric_version"] and result["extra_data"]["versions"]["torch"]


def test_untouched_release_gets_zero(attention_grades):
    result = attention_grades["untouched"]
    assert result["score"] == 0
    assert all("NotImplementedError" in t["output"] for t in result["tests"])


@pytest.mark.parametrize("variant, item", sorted(BROKEN.items()))
def test_wrong_sample_loses_points_on_its_item_with_a_counterexample(attention_grades, variant, item):
    result = attention_grades[variant]
    test = next(t for t in result["tests"] if t["name"] == item)
    assert test["score"] < test["max_score"]
    assert "smallest failing input" in test["output"] and "hint:" in test["output"]
    others = [t for t in result["tests"] if t["name"] != item and t["name"] != "MultiHeadAttention"]
    assert all(t["score"] == t["max_score"] for t in others), "a bug in one item must not cost another"


def test_gradescope_schema(attention_grades):
    result = attention_grades["unscaled_scores"]
    assert set(result) >= {"score", "execution_time", "output", "tests"}
    for test in result["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output", "visibility", "status"}
        assert test["status"] in ("passed", "failed")


def test_regrading_with_one_job_gives_identical_results(attention_samples, attention_grades, tmp_path):
    again = grade_batch(Assignment.load("attention"), discover([attention_samples], "attention"), tmp_path,
                        jobs=1, progress=None)
    assert len(again) == len(attention_grades)
    for result in again:
        first = attention_grades[result["extra_data"]["submission"]]
        assert report.without_timing(result) == report.without_timing(first)


def test_grades_csv_has_one_row_per_submission(attention_samples, tmp_path):
    grade_batch(Assignment.load("attention"), discover([attention_samples / "reference"], "attention"), tmp_path,
                progress=None)
    lines = (tmp_path / "grades.csv").read_text().splitlines()
    assert lines[0].startswith("submission,causal_mask,scaled_dot_product_attention,MultiHeadAttention,total")
    assert lines[1].startswith("reference,2,5,5,12,12")


def test_a_finished_batch_is_not_regraded_unless_forced(attention_samples, tmp_path):
    paths = discover([attention_samples / "untouched"], "attention")
    grade_batch(Assignment.load("attention"), paths, tmp_path, progress=None)
    stamp = (tmp_path / "untouched.json").stat().st_mtime_ns
    grade_batch(Assignment.load("attention"), paths, tmp_path, progress=None)
    assert (tmp_path / "untouched.json").stat().st_mtime_ns == stamp
    grade_batch(Assignment.load("attention"), paths, tmp_path, force=True, progress=None)
    assert (tmp_path / "untouched.json").stat().st_mtime_ns != stamp


def test_two_runs_on_one_output_folder_are_refused(tmp_path):
    with OutputLock(tmp_path):
        with pytest.raises(SystemExit, match="another grading run"):
            with OutputLock(tmp_path):
                pass


def test_cli_grades_one_student_and_exits_zero(attention_samples, tmp_path):
    notebook = attention_samples / "mask_hides_diagonal" / "attention" / "attention.ipynb"
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", "attention", str(notebook),
                          "--out", str(tmp_path), "--force"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "isolation:" in run.stderr and "mask_hides_diagonal" in run.stdout
    result = json.loads((tmp_path / "mask_hides_diagonal.json").read_text())
    assert scores(result)["causal_mask"] == 0


def test_cli_rejects_an_unknown_assignment(tmp_path):
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", "nosuch", str(tmp_path), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "no rubric for assignment 'nosuch'" in run.stderr
