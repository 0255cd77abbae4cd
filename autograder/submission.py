"""Read a submitted notebook and recover the code to run, whatever state it is in.

The source notebook is the truth for everything but the student's answers:
set-up cells always come from it. From the submission we take, for each
graded name, the solution cell whose nbgrader `grade_id` is that name; when
metadata was edited, cells were duplicated, moved or deleted, or the JSON is
broken, we find the student's definition by its name instead and say so in a
note. Nothing here executes code.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

MAX_NOTEBOOK_BYTES = 256 * 1024 * 1024


@dataclass
class Recovered:
    """What will run in the worker, in order, and what we had to do to get it."""

    cells: list[dict] = field(default_factory=list)   # {"id": ..., "source": ...}
    notes: list[str] = field(default_factory=list)
    unreadable: str = ""                               # non-empty: nothing could be recovered, and why
    answered: set[str] = field(default_factory=set)    # graded names the student's code defines
    grade_ids: set[str] = field(default_factory=set)   # nbgrader grade ids of every code cell (which notebook is it?)


def _cell_source(cell: dict) -> str:
    source = cell.get("source", cell.get("input", ""))  # "input" is nbformat v3
    if isinstance(source, list):
        return "".join(str(part) for part in source)
    return source if isinstance(source, str) else ""


def _code_cells(nb: object) -> list[dict]:
    """Code cells of an nbformat v4 or v3 notebook, as plain dicts."""
    if not isinstance(nb, dict):
        return []
    cells = nb.get("cells")
    if cells is None:  # nbformat v3 keeps cells inside worksheets
        cells = [c for ws in nb.get("worksheets", []) if isinstance(ws, dict) for c in ws.get("cells", [])]
    return [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"] if isinstance(cells, list) else []


def _nbgrader(cell: dict) -> dict:
    meta = cell.get("metadata")
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nbg if isinstance(nbg, dict) else {}


def _grade_id(cell: dict) -> str | None:
    """The grade id of a solution cell."""
    nbg = _nbgrader(cell)
    return nbg.get("grade_id") if nbg.get("solution") else None


def _parse(source: str) -> ast.Module | None:
    """The cell's syntax tree, or None when it cannot be had: a syntax error, or code nested so deeply (10 kB
    of unary minus, say) that the parser runs out of memory or stack. The worker then reports the error."""
    try:
        return ast.parse(_without_magics(source))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


def top_level_names(source: str) -> set[str] | None:
    """Names a cell defines at top level (def/class/assignment); None if it does not parse."""
    tree = _parse(source)
    if tree is None:
        return None
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _only_definitions(source: str) -> bool:
    """True for a cell of imports, defs and classes only: safe and cheap to run, e.g. a student's helper."""
    tree = _parse(source)
    if tree is None:
        return False
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    return bool(tree.body) and all(isinstance(node, allowed) for node in tree.body)


def _without_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


_SOURCE_ARRAY = re.compile(r'"(?:source|input)"\s*:\s*(\[(?:[^\[\]"]|"(?:[^"\\]|\\.)*")*\]|"(?:[^"\\]|\\.)*")', re.S)


def _salvage_broken_json(text: str) -> list[dict]:
    """Cells whose "source" can still be read from a notebook whose JSON is broken."""
    cells = []
    for match in _SOURCE_ARRAY.finditer(text):
        try:
            source = json.loads(match.group(1))
        except ValueError:
            continue
        cells.append({"cell_type": "code", "source": source, "metadata": {}})
    return cells


def load_cells(path: Path) -> tuple[list[dict], list[str], str]:
    """(code cells, notes, reason unreadable) from a submitted file."""
    try:
        size = path.stat().st_size
    except OSError as error:
        return [], [], f"could not read the file: {error.strerror}"
    if size == 0:
        return [], [], "the file is empty"
    if size > MAX_NOTEBOOK_BYTES:
        return [], [], f"the file is {size / 2**20:.0f} MiB, over the {MAX_NOTEBOOK_BYTES // 2**20} MiB limit"
    text = path.read_bytes().decode("utf-8", errors="replace")
    try:
        nb = json.loads(text)
    except (ValueError, RecursionError) as error:
        why = (f"{error.msg} at line {error.lineno}" if isinstance(error, json.JSONDecodeError)
               else "nested too deeply to read")
        cells = _salvage_broken_json(text)
        if not cells:
            return [], [], f"not a notebook: the file is not valid JSON ({why})"
        return cells, [f"the notebook's JSON is broken ({why}); "
                       f"graded the {len(cells)} cells that could still be read"], ""
    cells = _code_cells(nb)
    notes = []
    if isinstance(nb, dict) and nb.get("nbformat") == 3:
        notes.append("the notebook is in the old nbformat 3; read it anyway")
    if not cells and not (isinstance(nb, dict) and ("cells" in nb or "worksheets" in nb)):
        return [], [], "not a notebook: valid JSON but no cells"
    return cells, notes, ""


def recover(path: Path, setup_cells: list[dict], graded_names: list[str]) -> Recovered:
    """The cells to run for `path`: the source's set-up cells, then the student's definitions."""
    cells, notes, unreadable = load_cells(path)
    result = Recovered(notes=notes, unreadable=unreadable)
    if unreadable:
        return result
    result.cells = [dict(c) for c in setup_cells]
    result.grade_ids = {str(_nbgrader(c).get("grade_id")) for c in cells if _nbgrader(c).get("grade_id")}
    for setup in setup_cells:
        copies = [c for c in cells if _nbgrader(c).get("grade_id") == setup["id"]]
        if any(_cell_source(c).strip() != setup["source"].strip() for c in copies):
            notes.append(f"set-up cell {setup['id']} was edited; the grader runs the original. Put your own imports "
                         "and helpers in your solution cells (or a new cell of definitions)")
    chosen: list[int] = []
    for name in graded_names:
        by_id = [i for i, c in enumerate(cells) if _grade_id(c) == name]
        defining = [i for i, c in enumerate(cells) if name in (top_level_names(_cell_source(c)) or set())]
        if by_id:
            index = by_id[-1]
            if len(by_id) > 1:
                notes.append(f"{name}: {len(by_id)} cells carry grade_id {name!r}; graded the last one")
            if defining and index not in defining:
                index = defining[-1]
                notes.append(f"{name}: its solution cell does not define it; used the cell that does")
        elif defining:
            index = defining[-1]
            notes.append(f"{name}: no solution cell with grade_id {name!r} (metadata edited or cell moved); "
                         "used the last cell that defines it")
        else:
            syntax_broken = [i for i, c in enumerate(cells) if re.search(rf"^(def|class)\s+{re.escape(name)}\b",
                                                                      _cell_source(c), re.M)]
            if syntax_broken:
                index = syntax_broken[-1]
            else:
                continue
        if index not in chosen:
            chosen.append(index)
    # Student helpers that live in their own cells: imports, defs and classes only, never top-level calls.
    helpers = [i for i, c in enumerate(cells)
               if i not in chosen and _grade_id(c) is None and _only_definitions(_cell_source(c))
               and not set(top_level_names(_cell_source(c)) or ()) & set(graded_names)]
    for index in sorted(chosen + helpers):
        result.cells.append({"id": f"cell_{index}", "source": _cell_source(cells[index])})
        result.answered |= (top_level_names(_cell_source(cells[index])) or set()) & set(graded_names)
    return result
