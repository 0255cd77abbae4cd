"""Package the grader as a Gradescope autograder, and the entry point it runs there.

`python -m autograder gradescope ASSIGNMENT --out autograder.zip` writes a zip
with `setup.sh` (installs Python, bubblewrap and the project) and
`run_autograder` (grades /autograder/submission into
/autograder/results/results.json). Upload the zip as the assignment's
autograder; the README's security section says how to get the strongest
isolation there.
"""
from __future__ import annotations

import json
import sys
import tempfile
import zipfile
from pathlib import Path

from .build import ROOT, source_path

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once when the autograder image is built.
set -euo pipefail
cd /autograder/source
apt-get update -qq
apt-get install -y -qq software-properties-common bubblewrap >/dev/null
if ! command -v python3.11 >/dev/null; then
  add-apt-repository -y ppa:deadsnakes/ppa >/dev/null && apt-get update -qq
  apt-get install -y -qq python3.11 python3.11-venv >/dev/null
fi
python3.11 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r requirements.txt
.venv/bin/pip install -q --no-deps -e .
# Student code runs as an unprivileged user: keep the references and rubrics out of its reach.
chmod -R go-rwx solutions autograder/rubrics
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission.
root="${GRADESCOPE_ROOT:-/autograder}"
python="${AUTOGRADER_PYTHON:-$root/source/.venv/bin/python}"
cd "$root/source" && exec "$python" -m autograder gradescope-run {assignment} --root "$root"
"""

PACKAGED = ("autograder", "solutions", "requirements.txt", "pyproject.toml")


def package(assignment: str, out: Path) -> Path:
    """Write the Gradescope autograder zip for `assignment` to `out`."""
    if not source_path(assignment).exists():
        raise SystemExit(f"{source_path(assignment)} is missing: run `make notebooks` first")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_executable("setup.sh"), SETUP_SH)
        archive.writestr(_executable("run_autograder"), RUN_AUTOGRADER.replace("{assignment}", assignment))
        for name in PACKAGED:
            path = ROOT / name
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                         and "__pycache__" not in p.parts)
            for file in files:
                archive.write(file, f"source/{file.relative_to(ROOT)}")
        notebook = source_path(assignment)
        archive.write(notebook, f"source/{notebook.relative_to(ROOT)}")
    return out


def _executable(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o755 << 16
    return info


def run(assignment: str, root: Path) -> int:
    """Grade the one submission under root/submission and write root/results/results.json."""
    from .batch import Submission, grade_batch
    from .grade import Assignment

    notebooks = sorted((root / "submission").rglob("*.ipynb"))
    preferred = [p for p in notebooks if p.name == f"{assignment}.ipynb"]
    chosen = (preferred or notebooks or [root / "submission" / f"{assignment}.ipynb"])[0]
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        results = grade_batch(Assignment.load(assignment), [Submission("submission", chosen)], Path(tmp),
                              force=True, progress=None)
        result = results[0]
        if len(notebooks) > 1:
            result["output"] += f"\nNote: {len(notebooks)} notebooks were uploaded; graded {chosen.name}"
        (results_dir / "results.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    print(f"graded {chosen.name}: {result['score']:g}", file=sys.stderr)
    return 0
