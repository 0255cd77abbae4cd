"""Release student versions with nbgrader, and render solutions for staff.

`release(names)`: builds the source notebooks, writes the visible checks
(`course_checks/`, with golden values computed from the references now)
beside each source notebook, runs `nbgrader generate_assignment`, then embeds
the checks in the released notebook so it also works opened alone (Colab)
and drops the stubs nbgrader leaves for worksheet demonstrations.

`render_solutions(names, out)`: executes each source notebook (answers
included, solution markers removed, a staff banner on top) and writes a
self-contained HTML file per name for staff to post.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from . import build

COURSE = build.ROOT / "assignments"
COURSE_ID = "transformers"  # nbgrader's course id (assignments/nbgrader_config.py reads it from here)
RELEASE = COURSE / "release"
GRADEBOOK = COURSE / "gradebook.db"
CHECKS_DIR = "course_checks"


def nbgrader_env() -> dict[str, str]:
    """The environment for nbgrader commands: it runs `alembic` from PATH when it creates a gradebook, and its
    database layer's deprecation warnings would bury the output TAs need to read."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                PYTHONWARNINGS="ignore")


def released_notebook(name: str) -> Path:
    return RELEASE / name / f"{name}.ipynb"


def _write_checks(name: str) -> None:
    from .selfcheck.bundle import bundle_files

    folder = build.SOURCE / name / CHECKS_DIR
    shutil.rmtree(folder, ignore_errors=True)
    for relative, data in bundle_files(name).items():
        path = build.SOURCE / name / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


QUESTION_HEADING = re.compile(r"^### ", re.M)
MARKER_LINE = re.compile(rf"^[ \t]*(?:{re.escape(build.BEGIN)}|{re.escape(build.END)})[ \t]*\n?", re.M)


def _role(cell: nbformat.NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("course", {}).get("role")


def _student_cells(cells: list) -> list:
    """The worksheet cells students get: no demonstrations (code answers), and an answer box only in a section
    that asks something, i.e. after a plain markdown cell with a `### ` question heading. Background the
    solutions explain under a heading that asks nothing has no box to leave empty."""
    kept, asks = [], False
    for cell in cells:
        role = _role(cell)
        if cell.cell_type == "markdown" and role is None:
            asks = bool(QUESTION_HEADING.search(cell.source))
        if role == "answer" and (cell.cell_type == "code" or not asks):
            continue
        kept.append(cell)
    return kept


def _finish_release(name: str) -> None:
    """Embed the checks in the released notebook; drop worksheet demonstrations and boxes under no question."""
    from .selfcheck.bundle import bootstrap_source

    path = released_notebook(name)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if _role(cell) == "selfcheck":
            cell.source = bootstrap_source(name, embed=True)
    nb.cells = _student_cells(nb.cells)
    nbformat.write(nb, path)


def student_version(name: str) -> nbformat.NotebookNode:
    """The student version of `name` made in memory from its source notebook, cell for cell what `release`
    hands out (stubs for solution regions, "YOUR ANSWER HERE" for written answers, no demonstrations) except
    that the visible-checks cell loads them from disk instead of embedding them.

    nbgrader's own preprocessors do the stripping, as `generate_assignment` does; raises RuntimeError if a
    solution marker survives, so nothing built on this can carry a reference solution or a model answer.
    """
    from nbgrader.preprocessors import (ClearHiddenTests, ClearMarkScheme, ClearOutput, ClearSolutions,
                                        ComputeChecksums, LockCells)

    nb = nbformat.read(build.source_path(name), as_version=4)
    resources: dict = {}
    # enforce_metadata=False as in assignments/nbgrader_config.py: worksheet answers sit in ungraded cells.
    for step in (LockCells(), ClearSolutions(enforce_metadata=False), ClearOutput(), ClearHiddenTests(),
                 ClearMarkScheme(), ComputeChecksums()):
        nb, resources = step.preprocess(nb, resources)
    nb.cells = _student_cells(nb.cells)
    left = [cell.get("id") for cell in nb.cells if build.BEGIN in cell.source or build.END in cell.source]
    if left:
        raise RuntimeError(f"{name}: solution markers survive nbgrader's stripping in cells {left}; "
                           "check that every BEGIN SOLUTION has its END SOLUTION in the authoring file")
    return nb


def forget_unsubmitted(gradebook: Path, name: str) -> bool:
    """Remove the notebooks of assignment `name` from `gradebook` if nobody has submitted it; True if removed.

    Run before `generate_assignment`: asked to release a notebook the gradebook already holds, nbgrader deletes
    its rows and re-creates them under the same ids in one database session, and whether SQLAlchemy still holds
    the deleted objects at that moment depends on garbage collection, so a release over an earlier one fails
    now and then (ObjectDeletedError, "MissingEntry: No such notebook"). With the rows gone, nbgrader makes them
    afresh. Nothing a TA entered lives in these rows; the assignment itself (its due date) stays. An assignment
    with submissions is left alone: nbgrader updates its rows in place, and removing them would lose grades.
    """
    from nbgrader.api import Gradebook, MissingEntry

    if not gradebook.exists():
        return False
    with Gradebook(f"sqlite:///{gradebook}", COURSE_ID) as book:
        try:
            assignment = book.find_assignment(name)
        except MissingEntry:
            return False
        if assignment.submissions:
            return False
        for notebook in [notebook.name for notebook in assignment.notebooks]:
            book.remove_notebook(notebook, name)
    return True


def release(names: list[str] | None = None) -> list[Path]:
    """Student versions of `names` (default: all) under assignments/release/<name>/."""
    names = names or build.assignment_names()
    build.build(names)
    paths = []
    for name in names:
        _write_checks(name)
        forget_unsubmitted(GRADEBOOK, name)
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force",
                        "--log-level=WARN"], cwd=COURSE, check=True, env=nbgrader_env())
        _finish_release(name)
        paths.append(released_notebook(name))
    return paths


def execute(nb: nbformat.NotebookNode, cwd: Path, *, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run every cell of `nb` in a fresh kernel with cwd `cwd`; raise on the first error."""
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


SOLUTIONS_BANNER = ("*Solutions — for staff. Worked answers and demonstrations, computed with the course's "
                    "reference implementations; students receive only the questions.*")


def solution_notebook(name: str) -> nbformat.NotebookNode:
    """The source notebook as staff post it: a banner under the title, no nbgrader solution markers."""
    nb = nbformat.read(build.source_path(name), as_version=4)
    for cell in nb.cells:
        cell.source = MARKER_LINE.sub("", cell.source)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(SOLUTIONS_BANNER))
    return nb


def render_solutions(names: list[str] | None, out: Path) -> list[Path]:
    """Executed solution notebooks as self-contained HTML files in `out`."""
    from nbconvert import HTMLExporter

    names = names or build.assignment_names()
    build.build(names)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        _write_checks(name)
        nb = solution_notebook(name)
        execute(nb, build.SOURCE / name)
        html, _ = HTMLExporter(embed_images=True).from_notebook_node(nb)
        path = out / f"{name}.html"
        path.write_text(html)
        written.append(path)
        print(f"wrote {path}")
    return written
