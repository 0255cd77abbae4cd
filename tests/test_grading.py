"""The grading engine end to end on the attention assignment: scores, feedback, determinism, resume."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder import report
from autograder.batch import OutputLock, SlotFailed, _Slots, discover, grade_batch
from autograder.build import source_path
from autograder.discovery import Submission, discover_all
from autograder.grade import Assignment, grading_files, rubric_version
from autograder.samples import variants

from .hostile import slots

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
    [finite] = signatures("finite_mask_value")
    assert finite.startswith("empty_rows|output|values:all|") and "attn_mask:" in finite
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


def test_cli_grades_one_student_in_its_own_process_as_a_batch_would(attention_samples, attention_grades, tmp_path):
    """One notebook is graded in the command's own process (no job slot): the same result as in a batch."""
    notebook = attention_samples / "mask_hides_diagonal" / "attention" / "attention.ipynb"
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", "attention", str(notebook),
                          "--out", str(tmp_path), "--force"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "isolation:" in run.stderr and "mask_hides_diagonal" in run.stdout
    result = json.loads((tmp_path / "mask_hides_diagonal.json").read_text())
    assert scores(result)["causal_mask"] == 0
    assert report.without_timing(result) == report.without_timing(attention_grades["mask_hides_diagonal"])


# --- the command line refuses bad arguments before loading anything heavy ----------------------------

HEAVY = ("torch", "hypothesis", "nbgrader")
IN_PROCESS = ("import sys\nfrom autograder.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
              "except SystemExit as exit:\n    code = exit.code\n"
              f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\nsys.exit(code)")


def cli_in_fresh_process(*args: str) -> subprocess.CompletedProcess:
    """`main(args)` called in a fresh interpreter, which then prints the heavy modules it had imported."""
    return subprocess.run([sys.executable, "-c", IN_PROCESS, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case, says", [
    ("misspelt_assignment", "no rubric for assignment 'atention'; graded assignments: attention"),
    ("missing_path", "no such file or folder"),
    ("empty_folder", "no submissions of 'attention' found"),
])
def test_cli_refuses_bad_arguments_before_importing_torch(tmp_path, case, says):
    folder = tmp_path / "submitted"
    folder.mkdir()
    name = "atention" if case == "misspelt_assignment" else "attention"
    path = tmp_path / "nowhere" if case == "missing_path" else folder
    run = cli_in_fresh_process("grade", name, str(path), "--out", str(tmp_path / "out"))
    assert run.returncode == 2 and says in run.stderr
    assert run.stdout.strip() == "[]"
    assert not (tmp_path / "out").exists()


def test_cli_help_imports_nothing_heavy():
    run = cli_in_fresh_process("grade", "--help")
    assert run.returncode == 0 and "--out" in run.stdout
    assert run.stdout.strip().splitlines()[-1] == "[]"


# --- discovery: every layout, ids that never collide, no link followed out of a submission -----------

def notebook_at(root: Path, relative: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"cells": [], "nbformat": 4}')
    return path


def ids(submissions: list[Submission]) -> dict[str, str]:
    return {s.id: s.path.name for s in submissions}


def test_discovery_reads_nbgrader_lms_flat_and_gradescope_layouts_in_one_folder(tmp_path):
    for relative in ("alice/attention/attention.ipynb", "bob/attention.ipynb", "carol/week 3/my attention.ipynb",
                     "dave_attention_1234.ipynb", "submission_42/attention.ipynb",
                     "bob/.ipynb_checkpoints/attention-checkpoint.ipynb", "erin/vit/vit.ipynb",
                     "alice/scratch.ipynb"):
        notebook_at(tmp_path, relative)
    (tmp_path / "submission_metadata.yml").write_text("submission_42: {}\n")
    found, skipped = discover_all([tmp_path], "attention")
    assert ids(found) == {"alice": "attention.ipynb", "bob": "attention.ipynb", "carol": "my attention.ipynb",
                          "dave_attention_1234": "dave_attention_1234.ipynb", "submission_42": "attention.ipynb"}
    assert [(s.path.name, s.reason) for s in skipped] == [("scratch.ipynb", "outside the student's 'attention' folder"),
                                                          ("vit.ipynb", "in a folder of the 'vit' assignment")]
    assert not any(s.refused for s in found)


def test_discovery_of_one_student_one_assignment_folder_or_one_notebook(tmp_path):
    notebook = notebook_at(tmp_path, "submitted/alice/attention/attention.ipynb")
    for path in (tmp_path / "submitted", tmp_path / "submitted/alice", notebook.parent, notebook):
        assert ids(discover_all([path], "attention")[0]) == {"alice": "attention.ipynb"}
    empty = tmp_path / "submitted/bob/attention"
    empty.mkdir(parents=True)
    assert discover_all([empty.parent], "attention")[0] == [Submission("bob", empty / "attention.ipynb")]


def test_ids_never_collide_and_stay_readable(tmp_path):
    for relative in ("a b/attention.ipynb", "a_b/attention/attention.ipynb", "a?b/attention.ipynb",
                     "twice/attention/attention.ipynb", "twice/attention/attention (1).ipynb", "a_b_2.ipynb"):
        notebook_at(tmp_path, relative)
    found = discover_all([tmp_path], "attention")[0]
    assert len({s.id for s in found}) == len(found) == 6
    assert {"a_b", "twice--attention"} <= {s.id for s in found}
    assert all(s.id[0].isalnum() and "/" not in s.id and "?" not in s.id and " " not in s.id for s in found)
    assert discover_all([tmp_path], "attention")[0] == found
    second_root = tmp_path / "later"
    notebook_at(second_root, "a_b/attention/attention.ipynb")
    both = discover_all([tmp_path, second_root], "attention")[0]
    assert len({s.id for s in both}) == len(both) == 7


def test_links_out_of_a_submission_are_refused_and_links_inside_it_are_read(tmp_path):
    classmate = notebook_at(tmp_path, "s2/attention/attention.ipynb")
    outside = notebook_at(tmp_path.parent / f"{tmp_path.name}-elsewhere", "attention.ipynb")
    own = notebook_at(tmp_path, "s4/attention/drafts/final.ipynb")
    for student, target in (("s1", source_path("attention")), ("s3", classmate), ("s5", outside), ("s4", own)):
        link = tmp_path / student / "attention" / "attention.ipynb"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    (tmp_path / "flat_link.ipynb").symlink_to(classmate)
    refused = {s.id: s.refused for s in discover_all([tmp_path], "attention")[0]}
    assert all("symbolic link" in refused[s] and "never followed" in refused[s]
               for s in ("s1", "s3", "s5", "flat_link"))
    assert refused["s2"] == "" and refused["s4"] == ""


def test_a_link_to_a_folder_is_skipped_with_the_reason(tmp_path):
    notebook_at(tmp_path / "elsewhere", "s9/attention/attention.ipynb")
    (tmp_path / "submitted").mkdir()
    (tmp_path / "submitted" / "s9").symlink_to(tmp_path / "elsewhere" / "s9")
    found, skipped = discover_all([tmp_path / "submitted"], "attention")
    assert found == [] and [s.reason for s in skipped] == ["a link to a folder; links are not followed"]


def test_a_missing_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        discover_all([tmp_path / "nowhere"], "attention")


# --- the rubric version, stale results, one assignment per output folder -----------------------------

def test_the_rubric_version_is_computed_from_what_decides_a_grade():
    files = {p.relative_to(source_path("attention").parents[3]).as_posix() for p in grading_files("attention")}
    assert {"autograder/rubrics/attention.py", "autograder/checks.py", "autograder/runner.py",
            "autograder/strategies.py", "autograder/common/tolerances.py", "autograder/common/compare.py",
            "autograder/selfcheck/attention.py", "solutions/attention.py", "autograder/grade.py"} <= files
    assert not any(name.startswith("solutions/") and name != "solutions/attention.py" and
                   name != "solutions/__init__.py" for name in files)
    assignment = Assignment.load("attention")
    assert assignment.version.startswith(assignment.rubric.version + "-")
    assert rubric_version("attention", assignment.rubric, assignment.setup_cells) == assignment.version
    edited = ({**assignment.setup_cells[0], "source": assignment.setup_cells[0]["source"] + "\n# edited"},)
    assert rubric_version("attention", assignment.rubric, edited) != assignment.version


def fake_result(out: Path, submission: str, assignment: str, version: str, source: str) -> None:
    tests = [{"name": "causal_mask", "score": 1.0, "max_score": 3.0, "output": "", "status": "failed",
              "visibility": "visible"}]
    report.write_result(out, {"score": 1.0, "execution_time": 0.0, "output": "", "tests": tests,
                              "extra_data": {"submission": submission, "assignment": assignment,
                                             "rubric_version": version, "notes": [], "source_path": source}})


def test_stale_results_are_regraded_and_grades_csv_never_mixes_versions(attention_samples, tmp_path, capsys):
    untouched = attention_samples / "untouched" / "attention" / "attention.ipynb"
    other = tmp_path / "submitted" / "other" / "attention" / "attention.ipynb"
    other.parent.mkdir(parents=True)
    other.write_bytes(untouched.read_bytes())
    out = tmp_path / "out"
    fake_result(out, "untouched", "attention", "1-older", str(untouched))
    fake_result(out, "ghost", "attention", "1-older", str(tmp_path / "gone.ipynb"))
    assignment = Assignment.load("attention")
    results = grade_batch(assignment, discover([tmp_path / "submitted"], "attention"), out, progress=sys.stderr)
    assert sorted(r["extra_data"]["submission"] for r in results) == ["other", "untouched"]
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert [(r["submission"], r["max_score"], r["rubric_version"]) for r in rows] == [
        ("other", "12", assignment.version), ("untouched", "12", assignment.version)]
    assert rows[1]["source_path"] == str(untouched)
    printed = capsys.readouterr().err
    assert "graded with an older rubric; grading them again" in printed and "left out of grades.csv: ghost" in printed


def test_one_output_folder_never_mixes_assignments(attention_samples, tmp_path):
    fake_result(tmp_path, "alice", "vit", "1-x", "vit.ipynb")
    with pytest.raises(SystemExit, match="holds results of 'vit', not 'attention'"):
        grade_batch(Assignment.load("attention"), discover([attention_samples / "untouched"], "attention"), tmp_path)


# --- a job slot that dies costs only its own submission; Ctrl-C keeps what is finished -----------------

def test_a_slot_that_dies_costs_only_the_submission_that_killed_it(tmp_path):
    todo = [Submission(name, tmp_path / f"{name}.ipynb") for name in ("a", slots.KILLER, "b", "c")]
    done = []
    batch = _Slots(tmp_path, 2, (), lambda *result: done.append(result[0]), initializer=slots.no_setup,
                   task=slots.grade_or_die)
    assert batch.grade(todo) == [todo[1]]
    assert sorted(done) == ["a", "b", "c"]


def test_slots_that_cannot_start_stop_the_batch_instead_of_zeroing_everyone(tmp_path):
    batch = _Slots(tmp_path, 1, (), lambda *result: None, initializer=slots.broken_setup, task=slots.grade_or_die)
    with pytest.raises(SlotFailed, match="stopped while starting"):
        batch.grade([Submission("a", tmp_path / "a.ipynb")])


def _as_from_a_terminal() -> None:
    """A shell starts commands with Ctrl-C deliverable; a test worker's own signal state is not inherited."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_keeps_finished_results_writes_grades_csv_and_says_how_to_resume(attention_samples, tmp_path):
    out = tmp_path / "grades"
    command = [sys.executable, "-m", "autograder", "grade", "attention", str(attention_samples), "--out", str(out),
               "--jobs", "2"]
    grader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True, preexec_fn=_as_from_a_terminal)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(out.glob("*.json")):
        time.sleep(0.2)
    os.killpg(grader.pid, signal.SIGINT)   # as a terminal's Ctrl-C: to the grader and its job slots
    _, stderr = grader.communicate(timeout=300)
    assert grader.returncode == 130, stderr
    assert "Run the same command again" in stderr and "Traceback" not in stderr
    finished = sorted(p.stem for p in out.glob("*.json"))
    assert 1 <= len(finished) < len(list(attention_samples.iterdir()))
    assert sorted(row["submission"] for row in csv.DictReader((out / "grades.csv").open())) == finished
    assert not list(out.glob(".*.tmp"))
