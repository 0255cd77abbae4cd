"""Build nbgrader source notebooks from the authoring files and the references.

`assignments/authoring/<name>.py` (jupytext percent format) is what people
edit. Its cells carry a `role` that this module turns into nbgrader metadata:

    role="setup"                 locked code the grader runs before student code
    role="solution" name=N       graded solution cell, filled from solutions/<assignment>.py
    role="check" name=N          autograded test cell `test_N`, points from the rubric
    role="written" name=N points=P   hand-graded markdown answer (model answer stripped on release)
    role="answer"                worksheet answer or demonstration (stripped on release, never graded)
    role="selfcheck"             the cell that loads the visible checks (filled here)

The built notebook is committed at `assignments/source/<name>/<name>.ipynb`;
a test rebuilds it and compares, so a fix to a reference never leaves a stale
copy in a notebook.
"""
from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import nbformat

ROOT = Path(__file__).resolve().parent.parent
AUTHORING = ROOT / "assignments" / "authoring"
SOURCE = ROOT / "assignments" / "source"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def assignment_names() -> list[str]:
    """Every notebook with an authoring file, graded assignments and worksheets alike."""
    return sorted(p.stem for p in AUTHORING.glob("*.py"))


def source_path(name: str) -> Path:
    return SOURCE / name / f"{name}.ipynb"


def _nbgrader(grade_id: str, *, grade: bool = False, solution: bool = False,
              locked: bool = False, points: float | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked,
            "schema_version": 3, "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return meta


class SolutionSource:
    """Cuts the reference module's source into notebook-ready solution cells."""

    def __init__(self, assignment: str):
        self.path = ROOT / "solutions" / f"{assignment}.py"
        self.text = self.path.read_text()
        self.tree = ast.parse(self.text)
        self.lines = self.text.splitlines()
        self.defs = {node.name: node for node in self.tree.body
                     if isinstance(node, (ast.FunctionDef, ast.ClassDef))}

    def cell(self, name: str) -> str:
        """Source for the solution cell of `name`: its definition with every body inside a solution region,
        so only signatures and docstrings are released."""
        if name not in self.defs:
            raise KeyError(f"solutions/{self.path.name} defines no top-level {name!r}")
        node = self.defs[name]
        helpers = sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id.startswith("_")
                          and n.id in self.defs})
        if helpers:
            # A module-level helper would sit outside every solution region, so the released cell would
            # either leak it or fail when run: keep helpers inside the graded function or class.
            raise ValueError(f"solutions/{self.path.name}: {name} uses module-level helper(s) {helpers}; "
                             "define them inside it")
        return self._with_regions(node)

    def _segment(self, node: ast.AST) -> list[str]:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return self.lines[start - 1:node.end_lineno]

    def _with_regions(self, node: ast.AST) -> str:
        lines = self._segment(node)
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        functions = [node] if isinstance(node, ast.FunctionDef) else \
            [n for n in node.body if isinstance(n, ast.FunctionDef)]
        # Insert markers bottom-up so earlier line numbers stay valid.
        for fn in sorted(functions, key=lambda f: f.lineno, reverse=True):
            body = fn.body
            has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str)
            code = body[1:] if has_doc else body
            if not code:
                continue
            start = code[0].lineno - first
            stop = fn.end_lineno - first + 1
            indent = " " * code[0].col_offset
            lines[start:stop] = [indent + BEGIN, *lines[start:stop], indent + END]
        return "\n".join(lines)


def _rubric_points(assignment: str) -> dict[str, float]:
    try:
        module = importlib.import_module(f"autograder.rubrics.{assignment}")
    except ModuleNotFoundError:
        return {}
    return {item.name: item.points for item in module.RUBRIC.items}


def build_notebook(assignment: str) -> nbformat.NotebookNode:
    """The nbgrader source notebook for `assignment`, built in memory."""
    # Imported here: grading imports this module (for `source_path`) and must not need the authoring tools.
    import jupytext
    import nbformat

    from autograder.selfcheck.bundle import bootstrap_source

    authored = jupytext.read(AUTHORING / f"{assignment}.py", fmt="py:percent")
    solutions = None
    points = _rubric_points(assignment)
    setup_count = 0
    cells = []
    for cell in authored.cells:
        meta = dict(cell.metadata)
        role = meta.pop("role", None)
        name = meta.pop("name", None)
        cell_points = meta.pop("points", None)
        source = cell.source
        nbg = None
        if role is None:
            pass
        elif role == "setup":
            setup_count += 1
            nbg = _nbgrader(f"setup_{setup_count}", locked=True)
        elif role == "solution":
            solutions = solutions or SolutionSource(assignment)
            source = solutions.cell(name)
            nbg = _nbgrader(name, solution=True)
        elif role == "check":
            if name not in points:
                raise ValueError(f"{assignment}: check cell for {name!r} but the rubric has no such item")
            nbg = _nbgrader(f"test_{name}", grade=True, locked=True, points=points[name])
        elif role == "written":
            nbg = _nbgrader(name, grade=True, solution=True, points=float(cell_points))
        elif role == "answer":
            source = "\n".join([BEGIN, source, END])
        elif role == "selfcheck":
            source = bootstrap_source(assignment, embed=False)
            meta.update(editable=False, deletable=False)
        else:
            raise ValueError(f"{assignment}: unknown cell role {role!r}")
        if role:
            meta["course"] = {"role": role, **({"name": name} if name else {})}
        if nbg:
            meta["nbgrader"] = nbg
        new = (nbformat.v4.new_code_cell if cell.cell_type == "code" else nbformat.v4.new_markdown_cell)(source)
        new.metadata = meta
        new.id = f"{role or cell.cell_type}-{name or len(cells)}"  # stable ids keep rebuilt notebooks identical
        cells.append(new)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def build(names: list[str] | None = None) -> list[Path]:
    """Write assignments/source/<name>/<name>.ipynb for each name; return the paths."""
    written = []
    for name in names or assignment_names():
        path = source_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(build_notebook(name)))
        written.append(path)
    return written


def stale(names: list[str] | None = None) -> list[str]:
    """Names whose committed source notebook differs from a fresh build."""
    return [name for name in names or assignment_names()
            if not source_path(name).exists() or source_path(name).read_text() != render(build_notebook(name))]
