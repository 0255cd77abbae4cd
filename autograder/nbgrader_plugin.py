"""nbgrader preprocessors: plain `nbgrader autograde` grades with this engine.

`assignments/nbgrader_config.py` puts `RepairFromSource` first among
Autograde's sanitising steps and `GradeWithEngine` in place of `Execute`:

- `RepairFromSource` rebuilds a damaged submission (edited or missing
  metadata, duplicated, deleted or reordered cells, solution code moved to
  another cell, test cells turned into markdown) from the source notebook,
  keeping the student's answers, so nbgrader's own checks accept it instead
  of dropping the submission.
- `GradeWithEngine` grades the notebook in the sandboxed worker and writes
  each test cell's feedback as stdout and its points as an `execute_result`,
  which nbgrader's `determine_grade` reads as partial credit. No student
  code runs in nbgrader's process or kernel.
"""
from __future__ import annotations

import atexit
import copy
import json
import tempfile
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor

from . import build
from .submission import recover

_graders: dict[str, object] = {}


def _grader(assignment: str):
    """One grader (and worker pool) per assignment for the life of the nbgrader process."""
    if assignment not in _graders:
        from .grade import Assignment, Grader
        from .sandbox import Limits, WorkerPool, detect_level

        limits = Limits()
        pool = WorkerPool(level=detect_level(), limits=limits)
        pool.start()
        atexit.register(pool.close)
        _graders[assignment] = Grader(Assignment.load(assignment), pool, limits)
    return _graders[assignment]


def _has_rubric(assignment: str) -> bool:
    return (Path(__file__).parent / "rubrics" / f"{assignment}.py").exists()


def _student_text(cells: list, grade_id: str) -> str | None:
    for cell in reversed(cells):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            return cell.get("source", "")
    return None


class RepairFromSource(NbGraderPreprocessor):
    """Rebuild the submission on the source notebook's skeleton, carrying over the student's answers."""

    def preprocess(self, nb, resources):
        assignment = resources["nbgrader"]["assignment"]
        source = build.source_path(assignment)
        if resources["nbgrader"]["notebook"] != assignment or not source.exists():
            return nb, resources
        skeleton = nbformat.read(source, as_version=4)
        graded = [c.metadata["nbgrader"]["grade_id"] for c in skeleton.cells
                  if c.get("metadata", {}).get("nbgrader", {}).get("solution") and c.cell_type == "code"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "submission.ipynb"
            path.write_text(json.dumps(nb))
            recovered = recover(path, [], graded)
        student_code = {cell["id"]: cell["source"] for cell in recovered.cells}
        by_name = _definitions_by_name(student_code, graded)
        repaired = copy.deepcopy(skeleton)
        for cell in repaired.cells:
            nbg = cell.get("metadata", {}).get("nbgrader", {})
            if not nbg.get("solution"):
                continue
            if cell.cell_type == "code":
                cell.source = by_name.get(nbg["grade_id"], cell.source)
            else:
                text = _student_text(nb.cells, nbg["grade_id"])
                cell.source = text if text is not None else cell.source
        for note in recovered.notes:
            self.log.warning("%s: %s", resources["nbgrader"]["student"], note)
        return repaired, resources


def _definitions_by_name(student_code: dict[str, str], graded: list[str]) -> dict[str, str]:
    from .submission import top_level_names

    found = {}
    for source in student_code.values():
        for name in (top_level_names(source) or set()) & set(graded):
            found[name] = source
    return found


class GradeWithEngine(NbGraderPreprocessor):
    """Grade with the sandboxed engine; write feedback and partial credit into each test cell."""

    def preprocess(self, nb, resources):
        assignment = resources["nbgrader"]["assignment"]
        if not _has_rubric(assignment):
            return nb, resources
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "submission.ipynb"
            nbformat.write(nb, path)
            result = _grader(assignment).grade(path, resources["nbgrader"]["student"])
        by_item = {test["name"]: test for test in result["tests"]}
        for cell in nb.cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
            if cell.cell_type != "code" or not grade_id.startswith("test_"):
                continue
            test = by_item.get(grade_id.removeprefix("test_"))
            if test is None:
                continue
            cell.outputs = [
                nbformat.v4.new_output("stream", name="stdout", text=test["output"] + "\n"),
                nbformat.v4.new_output("execute_result", data={"text/plain": repr(test["score"])},
                                       execution_count=None),
            ]
        self.log.info("%s: %s/%s (isolation: %s)", resources["nbgrader"]["student"], result["score"],
                      sum(t["max_score"] for t in result["tests"]), result["extra_data"]["isolation"])
        return nb, resources
