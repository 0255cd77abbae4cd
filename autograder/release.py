"""Release student versions with nbgrader, and render solutions for staff.

`release(names)`: builds the source notebooks, writes the visible checks
(`course_checks/`, with golden values computed from the references now)
beside each source notebook, runs `nbgrader generate_assignment`, then embeds
the checks in the released notebook so it also works opened alone (Colab)
and drops the stubs nbgrader leaves for worksheet demonstrations.

`render_solutions(names, out)`: executes each source notebook (answers
included) and writes a self-contained HTML file per name for staff to post.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from . import build

COURSE = build.ROOT / "assignments"
RELEASE = COURSE / "release"
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


def _finish_release(name: str) -> None:
    """Embed the checks in the released notebook; drop worksheet demonstration stubs."""
    from .selfcheck.bundle import bootstrap_source

    path = released_notebook(name)
    nb = nbformat.read(path, as_version=4)
    cells = []
    for cell in nb.cells:
        role = cell.get("metadata", {}).get("course", {}).get("role")
        if role == "selfcheck":
            cell.source = bootstrap_source(name, embed=True)
        if role == "answer" and cell.cell_type == "code":
            continue  # a demonstration is part of the answer: students get none of it
        cells.append(cell)
    nb.cells = cells
    nbformat.write(nb, path)


def release(names: list[str] | None = None) -> list[Path]:
    """Student versions of `names` (default: all) under assignments/release/<name>/."""
    names = names or build.assignment_names()
    build.build(names)
    paths = []
    for name in names:
        _write_checks(name)
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


def render_solutions(names: list[str] | None, out: Path) -> list[Path]:
    """Executed solution notebooks as self-contained HTML files in `out`."""
    from nbconvert import HTMLExporter

    names = names or build.assignment_names()
    build.build(names)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        _write_checks(name)
        nb = nbformat.read(build.source_path(name), as_version=4)
        execute(nb, build.SOURCE / name)
        html, _ = HTMLExporter(embed_images=True).from_notebook_node(nb)
        path = out / f"{name}.html"
        path.write_text(html)
        written.append(path)
        print(f"wrote {path}")
    return written
