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

# Which item each wrong sample breaks, and the concept checks of that item it fails.
BROKEN = {
    "mask_hides_diagonal": ("causal_mask", ["core"]),
    "mask_upper_triangle": ("causal_mask", ["core"]),
    "unscaled_scores": ("scaled_dot_product_attention",
                        ["core", "float_mask", "causal", "causal_with_mask", "empty_rows", "gradient", "bad_arguments"]),
    "finite_mask_value": ("scaled_dot_product_attention", ["empty_rows"]),
    "inverted_mask": ("scaled_dot_product_attention",
                      ["core", "causal_with_mask", "empty_rows", "gradient", "bad_arguments"]),
    "heads_interleaved": ("MultiHeadAttention", ["core", "key_padding_mask", "masks_together", "empty_rows"]),
    "padding_ignored": ("MultiHeadAttention", ["key_padding_mask", "masks_together", "empty_rows"]),
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


@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_wrong_sample_fails_exactly_its_concepts_with_counterexamples(attention_grades, variant):
    item, failing = BROKEN[variant]
    result = attention_grades[variant]
    test = next(t for t in result["tests"] if t["name"] == item)
    checks = test["extra_data"]["checks"]
    assert [c["id"] for c in checks if not c["passed"]] == failing
    assert test["score"] == (0 if "core" in failing else
                             pytest.approx(test["max_score"] - sum(c["max_points"] for c in checks if not c["passed"])))
    assert "smallest failing input" in test["output"] and "hint:" in test["output"]
    assert all(c["signature"] and c["message"] for c in checks if not c["passed"])
    others = [t for t in result["tests"] if t["name"] != item]
    assert all(t["score"] == t["max_score"] for t in others), "a bug in one item must not cost another"


def test_multi_head_attention_is_graded_with_a_trusted_sdpa(attention_grades):
    test = next(t for t in attention_grades["unscaled_scores"]["tests"] if t["name"] == "MultiHeadAttention")
    assert test["score"] == test["max_score"]
    assert "trusted scaled_dot_product_attention" in test["extra_data"]["dependency"]
    assert "trusted scaled_dot_product_attention" in test["output"]


def test_different_mistakes_get_different_signatures(attention_grades):
    def signatures(variant):
        return {c["signature"] for t in attention_grades[variant]["tests"] for c in t["extra_data"]["checks"]
                if not c["passed"]}
    assert signatures("finite_mask_value") == {"empty_rows|output|values:all"}
    assert signatures("finite_mask_value") != signatures("unscaled_scores")
    assert signatures("mask_hides_diagonal") != signatures("mask_upper_triangle")


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
