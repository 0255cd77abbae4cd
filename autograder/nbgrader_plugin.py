"""nbgrader preprocessors: plain `nbgrader autograde` grades with this engine.

`assignments/nbgrader_config.py` puts `RepairFromRelease` first among
Autograde's sanitising steps and `GradeWithEngine` in place of `Execute`:

- `RepairFromRelease` rebuilds a damaged submission (edited or missing
  metadata, duplicated, deleted or reordered cells, solution code moved to
  another cell, test cells turned into markdown) on the *student version* of
  the notebook, so nbgrader's own checks accept it instead of dropping it.
  Where the student's answer is missing, the stub or empty answer the student
  was given stays: no text from a solution region or a model answer can reach
  the autograded notebook, the feedback or the gradebook. Every other cell
  the student wrote is kept, in the student's order.
- `GradeWithEngine` grades the file the student submitted in the sandboxed
  worker, exactly as `python -m autograder grade` does (same score), and
  writes each test cell's feedback as stdout and its points as an
  `execute_result`, which nbgrader's `determine_grade` reads as partial
  credit. No student code runs in nbgrader's process or kernel.
"""
from __future__ import annotations

import atexit
import copy
import re
import tempfile
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

from . import build
from .release import student_version
from .submission import top_level_names

_graders: dict[str, object] = {}
_skeletons: dict[str, NotebookNode] = {}
# The submitted file of each notebook being autograded, keyed by (assignment, student, notebook): the sanitising
# pass sees it, the grading pass (which nbgrader runs on the sanitised copy) grades it.
_submitted: dict[tuple[str, str, str], Path] = {}
_CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


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


def _skeleton(assignment: str) -> NotebookNode:
    if assignment not in _skeletons:
        _skeletons[assignment] = student_version(assignment)
    return _skeletons[assignment]


def _has_rubric(assignment: str) -> bool:
    return (Path(__file__).parent / "rubrics" / f"{assignment}.py").exists()


def _key(resources: dict) -> tuple[str, str, str]:
    info = resources["nbgrader"]
    return info["assignment"], info["student"], info["notebook"]


def _nbgrader_meta(cell: dict) -> dict:
    meta = cell.get("metadata")
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nbg if isinstance(nbg, dict) else {}


def _is_answer(cell: dict) -> bool:
    """A cell whose content is the student's: a solution cell (code) or a written answer (markdown)."""
    return bool(_nbgrader_meta(cell).get("solution"))


def _defines(cell: dict, name: str) -> bool:
    return cell.get("cell_type") == "code" and name in (top_level_names(cell.get("source", "")) or set())


def _plain(cell: NotebookNode) -> NotebookNode:
    """A student's own cell as the repaired notebook keeps it: without nbgrader metadata, so it grades nothing."""
    kept = copy.deepcopy(cell)
    kept.get("metadata", {}).pop("nbgrader", None)
    return kept


def repair(submitted: NotebookNode, skeleton: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """`submitted` rebuilt on `skeleton` (the student version), and notes on what was repaired.

    Each submitted cell stands for the skeleton cell with its nbgrader `grade_id`, else for the one with its
    cell id, else for none (the student's own cell). In skeleton order:
    - a locked cell (set-up, test) is the skeleton's: edits, copies and deletions change nothing;
    - an answer cell (solution code, written answer) holds the last submitted cell standing for it; when none
      does, a solution cell takes the student's last own cell that defines its name, else it keeps the stub
      (written answers keep "YOUR ANSWER HERE");
    - any other cell (instructions, examples) is the student's copy if there is one, else the skeleton's.
    Every other submitted cell (helpers, experiments, earlier copies of an answer) is kept without nbgrader
    metadata, in the student's order, after the cell that came before it in the submission.
    """
    by_grade_id = {_nbgrader_meta(c)["grade_id"]: i for i, c in enumerate(skeleton.cells)
                   if _nbgrader_meta(c).get("grade_id")}
    by_cell_id = {c.get("id"): i for i, c in enumerate(skeleton.cells) if c.get("id")}
    stands_for: list[int | None] = []
    for cell in submitted.cells:
        grade_id = _nbgrader_meta(cell).get("grade_id")
        stands_for.append(by_grade_id.get(grade_id, by_cell_id.get(cell.get("id"))))

    notes: list[str] = []
    placed_at: dict[int, int] = {}  # submitted cell -> the skeleton cell it fills (or, if locked, is a copy of)
    cells = [copy.deepcopy(c) for c in skeleton.cells]
    for index, cell in enumerate(cells):
        mine = [j for j, target in enumerate(stands_for) if target == index]
        nbg = _nbgrader_meta(cell)
        if nbg.get("locked"):
            placed_at.update((j, index) for j in mine)
            continue
        if not mine and _is_answer(cell) and cell.cell_type == "code":
            name = nbg["grade_id"]
            mine = [j for j, c in enumerate(submitted.cells) if stands_for[j] is None and _defines(c, name)][-1:]
            if mine:
                notes.append(f"{name}: no solution cell; showed the student's cell that defines it in its place")
        if mine:
            cell.source = submitted.cells[mine[-1]].get("source", "")
            placed_at[mine[-1]] = index
        elif _is_answer(cell):
            notes.append(f"{nbg['grade_id']}: the answer cell is missing; showed the empty one from the release")

    own: dict[int, list[NotebookNode]] = {}  # skeleton index (-1: before the first) -> the student's cells after it
    anchor = -1
    for j, cell in enumerate(submitted.cells):
        if j in placed_at:
            anchor = placed_at[j]
        else:
            own.setdefault(anchor, []).append(_plain(cell))
    repaired = copy.deepcopy(skeleton)
    repaired.cells = own.get(-1, []) + [c for i, cell in enumerate(cells) for c in (cell, *own.get(i, []))]
    _unique_ids(repaired.cells)
    return repaired, notes


def _unique_ids(cells: list[NotebookNode]) -> None:
    """Give kept copies fresh cell ids where theirs repeat one already used (or are not valid ids)."""
    seen: set[str] = set()
    for number, cell in enumerate(cells):
        if cell.get("id") in seen or not _CELL_ID.match(str(cell.get("id", ""))):
            cell.id = f"kept-{number}"
        seen.add(cell.id)


class RepairFromRelease(NbGraderPreprocessor):
    """Rebuild the submission on the student version of its notebook, keeping every cell the student wrote."""

    def preprocess(self, nb, resources):
        assignment, student, notebook = _key(resources)
        metadata = resources.get("metadata", {})
        submitted = Path(metadata.get("path", "")) / f"{metadata.get('name', notebook)}.ipynb"
        if submitted.is_file():
            _submitted[_key(resources)] = submitted
        if notebook != assignment or not build.source_path(assignment).exists():
            return nb, resources
        repaired, notes = repair(nb, _skeleton(assignment))
        for note in notes:
            self.log.warning("%s: %s", student, note)
        return repaired, resources


class GradeWithEngine(NbGraderPreprocessor):
    """Grade with the sandboxed engine; write feedback and partial credit into each test cell."""

    def preprocess(self, nb, resources):
        assignment, student, _ = _key(resources)
        submitted = _submitted.pop(_key(resources), None)
        if not _has_rubric(assignment):
            return nb, resources
        with tempfile.TemporaryDirectory() as tmp:
            if submitted is None:  # run without RepairFromRelease: grade the notebook as nbgrader has it
                submitted = Path(tmp) / "submission.ipynb"
                nbformat.write(nb, submitted)
            result = _grader(assignment).grade(submitted, student)
        by_item = {test["name"]: test for test in result["tests"]}
        for cell in nb.cells:
            grade_id = _nbgrader_meta(cell).get("grade_id", "")
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
        for note in result["extra_data"]["notes"]:
            self.log.warning("%s: %s", student, note)
        self.log.info("%s: %s/%s (isolation: %s)", student, result["score"],
                      sum(t["max_score"] for t in result["tests"]), result["extra_data"]["isolation"])
        return nb, resources
