"""Package the visible checks of one assignment for its release.

The bundle is a small Python package, `course_checks/`, holding the shared
comparison code, the strategies, the assignment's checks and its golden
values: everything imports with only torch, numpy and hypothesis. A release
puts it beside the notebook and also embeds it in the notebook's first code
cell, so a notebook opened alone (on Colab, say) still has its checks.
"""
from __future__ import annotations

import base64
import io
import textwrap
import zipfile
from pathlib import Path

from .golden import build_golden

PACKAGE = "course_checks"
HERE = Path(__file__).resolve().parent
GRADER = HERE.parent
SHARED = {"common/__init__.py": GRADER / "common" / "__init__.py",
          "common/compare.py": GRADER / "common" / "compare.py",
          "common/tolerances.py": GRADER / "common" / "tolerances.py",
          "strategies.py": GRADER / "strategies.py",
          "selfcheck/core.py": HERE / "core.py"}


def has_checks(assignment: str) -> bool:
    return (HERE / f"{assignment}.py").exists()


def bundle_files(assignment: str) -> dict[str, bytes]:
    """Relative path -> content of every file of the bundle (empty for an assignment without checks)."""
    if not has_checks(assignment):
        return {}
    files = {f"{PACKAGE}/{name}": path.read_bytes() for name, path in SHARED.items()}
    files[f"{PACKAGE}/__init__.py"] = (
        f'"""Visible checks for the {assignment} assignment: `check(name, your_function_or_class)`."""\n'
        "from .selfcheck import check\n").encode()
    files[f"{PACKAGE}/selfcheck/__init__.py"] = (
        f"from .core import check\nfrom . import {assignment}  # registers the checks\n").encode()
    files[f"{PACKAGE}/selfcheck/{assignment}.py"] = (HERE / f"{assignment}.py").read_bytes()
    files[f"{PACKAGE}/golden.npz"] = build_golden(assignment)
    return files


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # same bytes for the same files
            archive.writestr(info, data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


LOADER = '''\
# Loads the visible checks (the course_checks folder beside this notebook, or the copy embedded
# at the bottom of this cell) and, on Colab, installs hypothesis. Run it once; then use check(...).
import base64, io, os, subprocess, sys, tempfile, zipfile

def _load_course_checks(embedded):
    if "google.colab" in sys.modules:
        try:
            import hypothesis  # noqa: F401
        except ImportError:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hypothesis==6.170.15"], check=True)
    if os.path.isdir("course_checks"):
        sys.path.insert(0, os.getcwd())
    elif embedded:
        folder = tempfile.mkdtemp(prefix="course-checks-")
        zipfile.ZipFile(io.BytesIO(base64.b64decode(embedded))).extractall(folder)
        sys.path.insert(0, folder)
    else:
        raise FileNotFoundError("course_checks/ is missing: build it with `python -m autograder release NAME`")
    from course_checks import check
    return check
'''


def bootstrap_source(assignment: str, *, embed: bool) -> str:
    """Source of the notebook cell that loads the checks; with `embed`, the bundle rides along in base64."""
    if not has_checks(assignment):
        return "# This notebook has no automatic checks."
    blob = base64.b64encode(_zip(bundle_files(assignment))).decode() if embed else ""
    lines = textwrap.wrap(blob, 100) or [""]
    body = "\n".join(f'    "{line}"' for line in lines)
    return f"{LOADER}\n_COURSE_CHECKS = (\n{body}\n)\ncheck = _load_course_checks(_COURSE_CHECKS)"
