"""Find the submissions of one assignment under the paths a TA gives, whatever layout they came in.

A folder given on the command line is read as one of:

- nbgrader's `submitted/<student>/<assignment>/*.ipynb` (the folder given may be
  `submitted/`, one student's folder, or one student's assignment folder, which
  nbgrader names after the assignment and fills with `<assignment>.ipynb`);
- one folder per student, notebooks anywhere inside (LMS downloads, a
  Gradescope export of `submission_<id>/` folders);
- a flat folder of `<student>_<anything>.ipynb` (one submission per notebook);

and a notebook given directly is one submission. The layouts may be mixed in
one folder. Every notebook found becomes a `Submission` or a `Skipped` with
the reason; nothing is dropped silently.

Ids name the result files and the rows of grades.csv: readable (the student's
folder or file name), deterministic, and never equal for two notebooks.

Links: a notebook is read only if it lies inside its submission's own folder
once every symbolic link is resolved (for a notebook of a flat folder, the
file itself). A link to the source notebook or to a classmate's submission is
a `Submission` with `refused` set: it is graded zero with that reason.

This module imports only the standard library, so that the command line can
check its arguments before loading torch.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

RUBRICS = Path(__file__).resolve().parent / "rubrics"
SAFE = re.compile(r"[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]{0,99}")
SKIP_FOLDERS = (".ipynb_checkpoints", "__MACOSX")


@dataclass(frozen=True)
class Submission:
    id: str
    path: Path
    refused: str = ""     # non-empty: not read at all; graded zero with this reason


@dataclass(frozen=True)
class Skipped:
    """Something found that is not a submission of this assignment, and why (printed for the TA)."""

    path: Path
    reason: str


def known_assignments() -> list[str]:
    """Assignments that have a rubric."""
    return sorted(p.stem for p in RUBRICS.glob("*.py") if not p.stem.startswith("_"))


def readable_id(text: str) -> str:
    """`text` itself when it is a safe file name; otherwise a cleaned-up form plus a short hash of the original,
    so that `a b`, `a_b` and `a?b` stay three different ids."""
    if SAFE.fullmatch(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.@+-]+", "_", text).strip("._")[:80] or "submission"
    return f"{cleaned}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def _stays_home(notebook: Path, home: Path) -> bool:
    """Whether `notebook`, with every link resolved, lies under `home` (or is `home` and no link at all)."""
    resolved = notebook.resolve()
    if home == notebook:
        return resolved == notebook.parent.resolve() / notebook.name
    return resolved.is_relative_to(home.resolve())


def _link_refusal(notebook: Path, home: Path) -> str:
    if _stays_home(notebook, home):
        return ""
    target = notebook.resolve()
    where = "the folder being graded" if home == notebook else f"the submission's folder {home}"
    return (f"{notebook} is a symbolic link to {target}, outside {where}; links are never "
            "followed out of a submission (submit the notebook file itself)")


def _notebooks(folder: Path, assignment: str, skipped: list[Skipped]) -> list[Path]:
    """Notebooks under `folder`, not following links to folders; notebooks in a folder named after another
    assignment are skipped with the reason."""
    found = []
    others = set(known_assignments()) - {assignment}
    for top, dirs, files in os.walk(folder):
        here = Path(top)
        for name in sorted(dirs):
            if name in SKIP_FOLDERS:
                dirs.remove(name)
            elif (here / name).is_symlink():
                dirs.remove(name)
                skipped.append(Skipped(here / name, "a link to a folder; links are not followed"))
            elif name in others:
                dirs.remove(name)
                skipped.extend(Skipped(p, f"in a folder of the {name!r} assignment")
                               for p in sorted((here / name).rglob("*.ipynb")))
        dirs.sort()
        found += [here / name for name in sorted(files) if name.endswith(".ipynb")]
    return found


class _Found:
    """Submissions collected so far; gives every notebook its own id."""

    def __init__(self) -> None:
        self.by_path: dict[Path, Submission] = {}

    def add(self, raw_id: str, notebook: Path, home: Path) -> None:
        key = Path(os.path.abspath(notebook))
        if key not in self.by_path:
            self.by_path[key] = Submission(readable_id(raw_id), notebook, _link_refusal(notebook, home))

    def add_student(self, student: str, folder: Path, notebooks: list[Path], home: Path) -> None:
        """One student's notebooks: the id is the student's name, plus the notebook's path when there are several."""
        if len(notebooks) == 1:
            self.add(student, notebooks[0], home)
        for notebook in notebooks if len(notebooks) > 1 else ():
            inner = notebook.relative_to(folder).with_suffix("").as_posix().replace("/", "--")
            self.add(f"{student}--{inner}", notebook, home)

    def submissions(self) -> list[Submission]:
        """Sorted by id; two notebooks whose ids would still be equal (two roots given) get their path's hash."""
        counts: dict[str, int] = {}
        for submission in self.by_path.values():
            counts[submission.id] = counts.get(submission.id, 0) + 1
        unique = [s if counts[s.id] == 1 else Submission(
            f"{s.id}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}", s.path, s.refused)
            for path, s in self.by_path.items()]
        return sorted(unique, key=lambda s: s.id)


def _add_folder(found: _Found, folder: Path, assignment: str, skipped: list[Skipped]) -> None:
    own = folder / assignment
    if folder.name == assignment and (folder / f"{assignment}.ipynb").exists():     # submitted/<student>/<assignment>
        _add_assignment_folder(found, folder.parent.name, folder, folder.parent)
        return
    if own.is_dir() and not own.is_symlink():                                       # submitted/<student>
        _add_assignment_folder(found, folder.name, own, folder)
        return
    for child in sorted(folder.iterdir()):                                          # a folder of submissions
        if child.name in SKIP_FOLDERS:
            continue
        if child.is_symlink() and child.is_dir():
            skipped.append(Skipped(child, "a link to a folder; links are not followed"))
        elif child.is_dir():
            nested = child / assignment
            if nested.is_dir() and not nested.is_symlink():
                _add_assignment_folder(found, child.name, nested, child)
                skipped.extend(Skipped(p, f"outside the student's {assignment!r} folder")
                               for p in _notebooks(child, assignment, skipped) if not p.is_relative_to(nested))
            else:
                found.add_student(child.name, child, _notebooks(child, assignment, skipped), child)
        elif child.suffix == ".ipynb":                                              # flat: <student>_<x>.ipynb
            found.add(child.stem, child, child)


def _add_assignment_folder(found: _Found, student: str, folder: Path, home: Path) -> None:
    """nbgrader's folder of one student's assignment. With no notebook in it, the expected one is still
    listed, so the student gets a zero with the reason rather than no row."""
    notebooks = sorted(p for p in folder.iterdir() if p.suffix == ".ipynb" and not p.is_dir())
    found.add_student(student, folder, notebooks or [folder / f"{folder.name}.ipynb"], home)


def discover_all(paths: list[Path], assignment: str) -> tuple[list[Submission], list[Skipped]]:
    """Submissions of `assignment` under `paths`, and what was found but is not one. Raises FileNotFoundError
    for a path that does not exist."""
    found, skipped = _Found(), []
    for path in paths:
        if not os.path.lexists(path):
            raise FileNotFoundError(f"{path}: no such file or folder")
        if path.is_dir():
            _add_folder(found, path, assignment, skipped)
        elif path.parent.name == assignment:                        # .../<student>/<assignment>/<file>
            found.add(path.parent.parent.name, path, path.parent.parent)
        else:
            found.add(path.stem, path, path)
    return found.submissions(), skipped
