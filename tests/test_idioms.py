"""The idiom corpus (tests/idioms/<assignment>/*.py): implementations written from the notebooks' text alone.

Correct files (EXPECTED = {}) use genuinely different idioms and must score full marks; wrong files break one
concept per graded name and must fail exactly the checks listed in their EXPECTED, losing exactly those points
(every point of the item when the core check fails). Names a file does not define stay the reference's. Each
assignment's corpus is graded once, as one batch with two job slots.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest
import torch

from autograder import replays
from autograder.batch import discover, grade_batch
from autograder.grade import Assignment, Grader, known_assignments
from autograder.sandbox import Limits, WorkerPool
from autograder.sandbox.pool import Session
from autograder.samples import filled_notebook, implementation_code

pytestmark = [pytest.mark.grader, pytest.mark.slow, pytest.mark.xdist_group("release")]

IDIOMS = Path(__file__).parent / "idioms"


def expected(path: Path) -> dict[str, list[str]]:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["EXPECTED"]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} has no EXPECTED = {{item: [failing check ids]}}")


CORPUS = sorted(IDIOMS.glob("*/*.py"))


@pytest.fixture(scope="session")
def corpus_folders(released, tmp_path_factory) -> dict[str, Path]:
    """Per assignment, a folder with one student folder per corpus file (correct files sort first)."""
    folders = {}
    for name in known_assignments():
        folders[name] = folder = tmp_path_factory.mktemp(f"idioms-{name}")
        for path in sorted((IDIOMS / name).glob("*.py"), key=lambda p: (bool(expected(p)), p.stem)):
            notebook = folder / path.stem / name / f"{name}.ipynb"
            notebook.parent.mkdir(parents=True)
            nbformat.write(filled_notebook(name, implementation_code(path)), notebook)
    return folders


def graded(folders: dict[str, Path], out: Path, **options) -> dict[str, dict]:
    """Every file of the corpus graded, one batch per assignment: 'assignment/file' -> result."""
    grades = {}
    for name, folder in folders.items():
        results = grade_batch(Assignment.load(name), discover([folder], name), out / name, progress=None, **options)
        grades.update({f"{name}/{r['extra_data']['submission']}": r for r in results})
    return grades


@pytest.fixture(scope="session")
def corpus_grades(corpus_folders, tmp_path_factory) -> dict[str, dict]:
    return graded(corpus_folders, tmp_path_factory.mktemp("out"), jobs=2)


def test_every_graded_name_has_three_correct_idioms_and_three_wrong_ones():
    for name in known_assignments():
        items = [item.name for item in Assignment.load(name).rubric.items]
        files = sorted((IDIOMS / name).glob("*.py"))
        for item in items:
            defining = [p for p in files if item in implementation_code(p)]
            correct = [p.stem for p in defining if not expected(p)]
            wrong = [p.stem for p in defining if item in expected(p)]
            assert len(correct) >= 3 and len(wrong) >= 3, (name, item, correct, wrong)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_implementation_fails_exactly_its_concepts(path, corpus_grades):
    result = corpus_grades[f"{path.parent.name}/{path.stem}"]
    want = expected(path)
    rubric = Assignment.load(path.parent.name).rubric
    for test in result["tests"]:
        item = rubric.item(test["name"])
        failed = [c["id"] for c in test["extra_data"]["checks"] if not c["passed"]]
        assert failed == want.get(item.name, []), (item.name, failed, test["output"])
        lost = item.points if "core" in failed else sum(item.points_of(c) for c in item.checks if c.id in failed)
        assert test["score"] == pytest.approx(item.points - lost, abs=1e-3), (item.name, test["output"])


def without_timing(result: dict) -> str:
    return json.dumps({**result, "execution_time": None}, sort_keys=True)


def test_replayed_examples_and_two_jobs_give_the_json_of_one_job_drawing_afresh(corpus_folders, corpus_grades,
                                                                                tmp_path):
    """corpus_grades read every check's list from the replay file, with two job slots. Graded again with one
    job and every list drawn afresh for every submission, every result is byte-identical apart from its
    timing."""
    afresh = graded(corpus_folders, tmp_path, jobs=1, replay=False)
    assert afresh.keys() == corpus_grades.keys()
    for key, result in afresh.items():
        assert without_timing(corpus_grades[key]) == without_timing(result), key


def test_one_call_per_request_gives_the_json_of_batched_chunks(corpus_folders, corpus_grades, monkeypatch):
    """corpus_grades sent each chunk of one-call examples to the worker in one request. Graded again in this
    process with every call in a request of its own, every result is byte-identical apart from its timing."""
    monkeypatch.delattr(Session, "batch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as in a job slot: the reference's rounding must not change
    try:
        with WorkerPool() as pool:
            for name, folder in corpus_folders.items():
                assignment = Assignment.load(name)
                grader = Grader(assignment, pool, Limits(), replays=replays.prepared(assignment))
                for submission in discover([folder], name):
                    result = grader.grade(submission.path, submission.id)
                    assert without_timing(result) == without_timing(corpus_grades[f"{name}/{submission.id}"]), \
                        submission.id
    finally:
        torch.set_num_threads(threads)
