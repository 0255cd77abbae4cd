"""Gradescope: build the autograder zip for one assignment, and grade one submission inside it.

`python -m autograder gradescope ASSIGNMENT --out ASSIGNMENT.zip` writes a zip laid out as Gradescope
expects: `setup.sh` and `run_autograder` at its root (templates in `gradescope_files/`), beside a
self-contained copy of `autograder/`, `solutions/`, the assignment's source notebook, the grading
requirements derived here and `gradescope.json` (the staff's feedback settings). Gradescope extracts it in
`/autograder/source`; `run_autograder` runs `gradescope-run` (`run` below) for each submission with that
folder on PYTHONPATH, and writes a zero with the reason itself if this process dies without a result.

Every path below hangs off one root (`/autograder` on Gradescope, `GRADESCOPE_ROOT` in tests).
"""
from __future__ import annotations

import ast
import json
import re
import sys
import traceback
import zipfile
from importlib import metadata
from pathlib import Path

from . import report
from .build import ROOT, source_path

TEMPLATES = Path(__file__).resolve().parent / "gradescope_files"
SETTINGS = "gradescope.json"
REQUIREMENTS = "requirements-grading.txt"
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
OUTPUT_FORMATS = ("md", "simple_format", "text")
# What the grader itself imports (the worker needs torch and numpy; the grader adds hypothesis). The set-up
# cells of the assignment add theirs (`setup_imports`).
GRADER_PACKAGES = ("torch", "numpy", "hypothesis")
# Hypothesis 6.169 dropped Python 3.10: there the last release line for 3.10 draws the examples.
PYTHON310_LINES = {"hypothesis": 'hypothesis>=6.168,<6.169; python_version < "3.11"'}


# --- building the zip ---------------------------------------------------------------------------------------

def parse_visibility(specs: list[str], assignment: str) -> dict[str, str]:
    """`ITEM=LEVEL` or `ITEM/CHECK_ID=LEVEL` options as a mapping, checked against the assignment's rubric."""
    from .grade import Assignment

    rubric = Assignment.load(assignment).rubric
    known = {item.name for item in rubric.items}
    known |= {f"{item.name}/{check.id}" for item in rubric.items for check in item.checks}
    settings = {}
    for spec in specs:
        name, _, level = spec.partition("=")
        if level not in VISIBILITIES:
            raise SystemExit(f"--visibility {spec!r}: write NAME=LEVEL with LEVEL one of {', '.join(VISIBILITIES)}")
        if name not in known:
            raise SystemExit(f"--visibility {spec!r}: {assignment} has no item or check {name!r}; "
                             f"choose from {', '.join(sorted(known))}")
        settings[name] = level
    return settings


def setup_imports(notebook: dict) -> set[str]:
    """Top-level modules imported by the notebook's set-up cells (the cells the grader runs before student code)."""
    modules = set()
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code" or cell.get("metadata", {}).get("course", {}).get("role") != "setup":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def grading_requirements(assignment: str, requirements: Path = ROOT / "requirements.txt") -> str:
    """The requirements file of the zip: the grader's packages and those the set-up cells import, each as
    `requirements.txt` bounds it; torch pinned to the CPU build of the version installed here."""
    lines = {}
    for line in requirements.read_text().splitlines():
        name = re.match(r"[A-Za-z0-9_.-]+", line.strip())
        if name and not line.lstrip().startswith("#"):
            lines[_canonical(name.group())] = line.strip()
    distributions = metadata.packages_distributions()
    modules = set(GRADER_PACKAGES) | setup_imports(json.loads(source_path(assignment).read_text()))
    wanted = set()
    for module in sorted(modules):
        found = distributions.get(module)
        if not found:
            raise SystemExit(f"the set-up cells of {assignment} import {module!r}, which is not installed here: "
                             "add its package to requirements.txt and run `make install`")
        wanted |= {_canonical(name) for name in found}
    out = [f"# Grading {assignment} on Gradescope; written by `python -m autograder gradescope`.",
           "# torch is the CPU-only build: setup.sh adds torch's CPU wheel index."]
    for name in sorted(wanted):
        if name == "torch":
            out.append(f"torch=={metadata.version('torch').split('+')[0]}+cpu")
            continue
        if name not in lines:
            raise SystemExit(f"grading {assignment} needs {name!r}, which requirements.txt does not list")
        if name in PYTHON310_LINES:
            out += [f'{lines[name]}; python_version >= "3.11"', PYTHON310_LINES[name]]
        else:
            out.append(lines[name])
    return "\n".join(out) + "\n"


def package(assignment: str, out: Path, *, visibility: dict[str, str] | None = None,
            output_format: str = "md") -> Path:
    """Write the Gradescope autograder zip for `assignment` to `out`."""
    if not source_path(assignment).exists():
        raise SystemExit(f"{source_path(assignment)} is missing: run `make notebooks` first")
    if output_format not in OUTPUT_FORMATS:
        raise SystemExit(f"output format {output_format!r}: choose one of {', '.join(OUTPUT_FORMATS)}")
    settings = {"assignment": assignment, "visibility": visibility or {}, "output_format": output_format}
    files = [p for folder in ("autograder", "solutions") for p in sorted((ROOT / folder).rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts and TEMPLATES not in p.parents]
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_executable("setup.sh"), (TEMPLATES / "setup.sh").read_text())
        archive.writestr(_executable("run_autograder"),
                         (TEMPLATES / "run_autograder").read_text().replace("@ASSIGNMENT@", assignment))
        archive.writestr(REQUIREMENTS, grading_requirements(assignment))
        archive.writestr(SETTINGS, json.dumps(settings, indent=2, sort_keys=True) + "\n")
        for file in [*files, source_path(assignment)]:
            archive.write(file, file.relative_to(ROOT).as_posix())
    return out


def _executable(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


# --- grading one submission (inside the container) ----------------------------------------------------------

def run(assignment: str, root: Path) -> int:
    """Grade the submission under root/submission into root/results/results.json, whatever happens."""
    settings = _settings(Path(__file__).resolve().parent.parent / SETTINGS)
    submitter = read_metadata(root / "submission_metadata.json")
    folder = root / "submission"
    notebook, notes = choose_notebook(folder, assignment)
    level = None
    try:
        from . import sandbox

        level = sandbox.detect_level()
        result = finish(_located(_grade(assignment, notebook, level), notebook, folder, notes), settings, submitter)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any failure must still give the student a result
        traceback.print_exc(file=sys.stdout)  # stdout is for staff (stdout_visibility hidden)
        failed = failed_result(assignment, f"{type(error).__name__}: {error}", level)
        result = finish(_located(failed, notebook, folder, notes), settings, submitter)
    report.atomic_write(root / "results" / "results.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"graded {notebook.name}: {result['score']:g} (isolation {result['extra_data'].get('isolation')})")
    return 0


def _grade(assignment: str, notebook: Path, level: str) -> dict:
    import tempfile

    from .batch import Submission, grade_batch
    from .grade import Assignment

    print(f"grader: {Path(__file__).resolve().parent}; isolation: {level}")
    with tempfile.TemporaryDirectory() as tmp:
        [result] = grade_batch(Assignment.load(assignment), [Submission("submission", notebook)], Path(tmp),
                               force=True, level=level, progress=sys.stdout)
    return result


def _located(result: dict, notebook: Path, folder: Path, notes: list[str]) -> dict:
    """`result` with where the graded notebook was found and the notes about finding it."""
    if notebook.exists():  # relative to the submission: the container's paths mean nothing to the student
        result["extra_data"]["source_path"] = notebook.relative_to(folder).as_posix()
    result["extra_data"]["notes"] = notes + result["extra_data"].get("notes", [])
    return result


def choose_notebook(folder: Path, assignment: str) -> tuple[Path, list[str]]:
    """The notebook to grade (`<assignment>.ipynb` first, else the only or first notebook) and notes to show."""
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    named = [p for p in notebooks if p.name == f"{assignment}.ipynb"]
    if not notebooks:
        uploaded = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        return folder / f"{assignment}.ipynb", [
            f"No notebook was found in your submission (uploaded: {', '.join(uploaded) or 'nothing'}). "
            f"Upload your {assignment}.ipynb itself (in Jupyter: File > Download)."]
    chosen = (named or notebooks)[0]
    if len(notebooks) > 1:
        return chosen, [f"{len(notebooks)} notebooks were uploaded; graded {chosen.relative_to(folder).as_posix()}"]
    return chosen, []


def failed_result(assignment: str, reason: str, level: str | None = None) -> dict:
    """A zero for every item, saying in plain words that grading failed on our side."""
    message = ("The autograder failed while grading this submission, so nothing was graded and the score is 0. "
               "This is a failure on the grading side, not necessarily in your notebook: please tell the course "
               f"staff, who can rerun it. (Reason: {reason}; details in the autograder output.)")
    try:
        from .grade import Assignment

        items = [(item.name, item.points) for item in Assignment.load(assignment).rubric.items]
    except (Exception, SystemExit):  # noqa: BLE001 - the rubric itself may be what failed
        items = []
    tests = [{"name": name, "score": 0.0, "max_score": points, "status": "failed", "visibility": "visible",
              "output": f"✗ not graded: {message}"} for name, points in items]
    return {"score": 0.0, "output": message, "tests": tests,
            "extra_data": {"assignment": assignment, "grader_error": reason, "isolation": level, "notes": []}}


def read_metadata(path: Path) -> dict:
    """Who submitted, from Gradescope's submission_metadata.json; {} when it is absent or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    users = [{"name": str(u.get("name") or ""), "id": u.get("id")}
             for u in data.get("users") or [] if isinstance(u, dict)]
    return {"submission_id": data.get("id"), "created_at": data.get("created_at"), "users": users}


def _settings(path: Path) -> dict:
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError):
        settings = {}
    return {"visibility": settings.get("visibility", {}), "output_format": settings.get("output_format", "md")}


# --- the results file ---------------------------------------------------------------------------------------

def finish(result: dict, settings: dict, submitter: dict) -> dict:
    """The grader's result as Gradescope shows it: who submitted, staff visibility choices, readable output."""
    fmt = settings["output_format"]
    extra = dict(result.get("extra_data", {}))
    if submitter.get("users"):
        extra["submission"] = ", ".join(f"{u['name']} ({u['id']})" for u in submitter["users"])
    else:
        extra.setdefault("submission", "submission")
    extra["gradescope"] = submitter
    tests = []
    for test in result["tests"]:
        tests += _apply_visibility(test, settings["visibility"], fmt)
    return {
        "score": round(sum(t["score"] for t in tests), 4),
        "execution_time": result.get("execution_time", 0),
        "output": _top_output(result["output"], extra.get("notes", []), fmt),
        "output_format": fmt,
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": extra,
    }


def _apply_visibility(test: dict, visibility: dict[str, str], fmt: str) -> list[dict]:
    """The item's test with its visibility; each check given a visibility of its own becomes a test of its own
    (its points move with it), so a hidden check's name and counterexample stay out of the item's output."""
    item = test["name"]
    checks = test.get("extra_data", {}).get("checks")
    split_ids = {key.split("/", 1)[1] for key in visibility if key.startswith(f"{item}/")}
    if split_ids and not checks:
        # A grader without per-check results: the item inherits the most restrictive choice, hiding too much
        # rather than too little.
        level = min((visibility[f"{item}/{c}"] for c in split_ids), key=VISIBILITIES.index)
        print(f"note: no per-check results for {item}; the whole item gets visibility {level}")
        return [_shown(test, level, fmt)]
    kept = [c for c in checks or [] if c["id"] not in split_ids]
    tests = [_shown(test, visibility.get(item, "visible"), fmt, checks=kept if split_ids else None)]
    for check in checks or []:
        if check["id"] in split_ids:
            part = {"name": f"{item}: {check['title']}", "score": check["points"],
                    "max_score": check["max_points"], "extra_data": {"item": item, "checks": [check]}}
            tests.append(_shown(part, visibility[f"{item}/{check['id']}"], fmt, checks=[check]))
    return tests


def _shown(test: dict, level: str, fmt: str, checks: list[dict] | None = None) -> dict:
    """`test` with visibility, output format and status set; rebuilt from `checks` when given."""
    shown = dict(test, visibility=level, output_format=fmt)
    if checks is not None:
        shown["score"] = round(sum(c["points"] for c in checks), 4)
        shown["max_score"] = round(sum(c["max_points"] for c in checks), 4)
        shown["extra_data"] = dict(test.get("extra_data", {}), checks=checks)
    all_checks = shown.get("extra_data", {}).get("checks")
    if all_checks is not None and (checks is not None or fmt == "md"):
        shown["output"] = render_checks(all_checks, fmt)
    elif fmt == "md":
        shown["output"] = code_block(test.get("output", ""))
    shown["status"] = "passed" if shown["score"] >= shown["max_score"] else "failed"
    return shown


def render_checks(checks: list[dict], fmt: str) -> str:
    """Feedback of an item from its per-check results (SPEC's shared result contract)."""
    blocks = []
    for check in checks:
        mark = "✓" if check["passed"] else "✗"
        points = f"{check['points']:g}/{check['max_points']:g}"
        details = [] if check["passed"] else [t for t in (check.get("message"), check.get("example")) if t]
        hint = [] if check["passed"] or not check.get("hint") else [f"Hint: {check['hint']}"]
        if fmt == "md":
            blocks.append("\n\n".join([f"**{mark} {check['title']}** ({points})",
                                       *(code_block(d) for d in details), *hint]))
        else:
            lines = [f"{mark} {check['title']} ({points})", *hint, *details]
            blocks.append("\n".join([lines[0], *("  " + line for text in lines[1:] for line in text.splitlines())]))
    return "\n\n".join(blocks)


def _top_output(output: str, notes: list[str], fmt: str) -> str:
    summary = [line for line in output.splitlines() if not line.startswith("Note: ")]
    if fmt != "md":
        return "\n".join([*summary, *(f"Note: {note}" for note in notes)])
    parts = ["  \n".join(summary)]
    if notes:
        parts.append("**Notes**\n\n" + code_block("\n".join(notes)))
    return "\n\n".join(parts)


def code_block(text: str) -> str:
    """`text` as a fenced Markdown block that nothing inside it can close (student text is never markup)."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}text\n{text}\n{fence}"
