"""`make bench`: this engine against plain `nbgrader autograde` on the same batch, and what isolation costs.

Measured in one run, on one machine, so the ratios mean something even where
the absolute times do not (shared machines are noisy):

- throughput: a batch of attention submissions graded by this engine (with
  `--jobs 2`), and by nbgrader executing notebooks whose test cells run the
  very same rubric checks inside the kernel, next to the student's code;
- isolation overhead: the same checks on one submission through the sandbox
  and through an in-process session that calls the student's functions directly;
- the hostile corpus: an all-honest batch against one with hostile submissions;
- the students' check cells: seconds per visible check.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from .batch import discover, grade_batch
from .build import ROOT, source_path
from .grade import Assignment
from .release import nbgrader_env, release
from .samples import make_submission, variants

ASSIGNMENT = "attention"
KERNEL_TEST = """from autograder.bench import check_in_kernel
check_in_kernel({assignment!r}, {item!r}, globals())"""


def check_in_kernel(assignment: str, item_name: str, namespace: dict) -> None:
    """The nbgrader baseline's test cell: run the rubric's checks of one item against the kernel's own names."""
    from .grade import Assignment as Loaded
    from .inprocess import InProcessSession
    from .runner import run_check
    from .student import Student

    item = Loaded.load(assignment).rubric.item(item_name)
    outcomes = [run_check(check, Student(InProcessSession(namespace), item_name)) for check in item.checks]
    failed = [o for o in outcomes if not o.passed]
    assert not failed, "\n".join(o.message for o in failed)


def _batch(folder: Path, size: int) -> Path:
    """`size` submissions cycling through the samples, in nbgrader's layout."""
    kinds = variants(ASSIGNMENT)
    for index in range(size):
        path = folder / f"s{index:03d}" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(make_submission(ASSIGNMENT, kinds[index % len(kinds)]), path)
    return folder


def _nbgrader_course(folder: Path, submissions: Path) -> Path:
    """A course whose test cells run the rubric in the kernel, graded by nbgrader's own Execute."""
    course = folder / "nbgrader_course"
    shutil.rmtree(course, ignore_errors=True)
    nb = nbformat.read(source_path(ASSIGNMENT), as_version=4)
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        if grade_id.startswith("test_"):
            cell.source = KERNEL_TEST.format(assignment=ASSIGNMENT, item=grade_id.removeprefix("test_"))
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(nb, course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    shutil.copytree(ROOT / "assignments" / "source" / ASSIGNMENT / "course_checks",
                    course / "source" / ASSIGNMENT / "course_checks")
    (course / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.course_id = 'bench'\n"
                                               "c.Execute.timeout = 600\n")
    _nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    shutil.copytree(submissions, course / "submitted")
    return course


def _nbgrader(course: Path, *args: str) -> None:
    env = dict(nbgrader_env(), COURSE_FAST="1")
    subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=ERROR"], cwd=course, check=True, env=env,
                   stdout=subprocess.DEVNULL)


def _timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - start, value


def isolation_overhead() -> dict:
    """Seconds to run every check of the rubric on the reference submission, sandboxed and in-process."""
    from .inprocess import InProcessSession
    from .runner import run_check
    from .sandbox import WorkerPool
    from .student import Student
    from .submission import recover

    assignment = Assignment.load(ASSIGNMENT)
    path = ROOT / "build" / "bench" / "reference.ipynb"
    nbformat.write(make_submission(ASSIGNMENT, "reference"), path)
    cells = recover(path, list(assignment.setup_cells), assignment.item_names).cells
    local = InProcessSession()
    local.exec_cells(cells)
    checks = [(item.name, check) for item in assignment.rubric.items for check in item.checks]
    in_process, _ = _timed(lambda: [run_check(c, Student(local, n)) for n, c in checks])
    with WorkerPool() as pool, pool.session() as session:
        session.exec_cells(cells)
        sandboxed, _ = _timed(lambda: [run_check(c, Student(session, n)) for n, c in checks])
        calls, _ = _timed(lambda: [session.call("causal_mask", [4], {}) for _ in range(200)])
        level = pool.level
    return {"in_process_s": round(in_process, 3), "sandboxed_s": round(sandboxed, 3),
            "overhead_ratio": round(sandboxed / in_process, 2), "round_trip_ms": round(calls / 200 * 1000, 3),
            "isolation": level}


def self_check_seconds() -> dict[str, float]:
    """Seconds each visible check cell takes, run as a student would (reference code, bundled checks)."""
    sys.path.insert(0, str(ROOT / "assignments" / "release" / ASSIGNMENT))
    try:
        from course_checks import check  # noqa: PLC0415 - the released bundle, as a notebook loads it
        import solutions.attention as reference

        seconds = {}
        for name in Assignment.load(ASSIGNMENT).item_names:
            seconds[name] = round(_timed(check, name, getattr(reference, name))[0], 3)
        return seconds
    finally:
        sys.path.pop(0)


def run(out: Path, size: int = 50) -> dict:
    out = out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    release([ASSIGNMENT])
    submissions = _batch(out / "submitted", size)
    assignment = Assignment.load(ASSIGNMENT)
    engine_s, _ = _timed(grade_batch, assignment, discover([submissions], ASSIGNMENT), out / "engine",
                         jobs=2, progress=None)
    course = _nbgrader_course(out, submissions)
    nbgrader_s, _ = _timed(_nbgrader, course, "autograde", ASSIGNMENT, "--force")
    honest_s, _ = _timed(grade_batch, assignment, discover([_batch(out / "honest", 20)], ASSIGNMENT),
                         out / "honest_grades", jobs=2, progress=None)
    hostile = _hostile_batch(out / "hostile", submissions)
    hostile_s, _ = _timed(grade_batch, assignment, discover([hostile], ASSIGNMENT), out / "hostile_grades",
                          jobs=2, progress=None)
    results = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "batch_size": size,
        "engine": {"seconds": round(engine_s, 1), "per_submission_s": round(engine_s / size, 3), "jobs": 2},
        "nbgrader": {"seconds": round(nbgrader_s, 1), "per_submission_s": round(nbgrader_s / size, 3),
                     "note": "nbgrader autograde with its Execute preprocessor, COURSE_FAST=1, same rubric in-kernel"},
        "throughput_ratio": round(nbgrader_s / engine_s, 2),
        "isolation": isolation_overhead(),
        "hostile_batch": {"honest_20_s": round(honest_s, 1), "with_5_hostile_s": round(hostile_s, 1)},
        "self_check_cell_s": self_check_seconds(),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


HOSTILE_CELLS = {
    "infinite_loop": "def causal_mask(seq_len, *, device=None):\n    while True:\n        pass\n",
    "hard_exit": "import os\ndef causal_mask(seq_len, *, device=None):\n    os._exit(1)\n",
    "sleeper": "import time\ndef causal_mask(seq_len, *, device=None):\n    time.sleep(3600)\n",
    "memory_bomb": "def causal_mask(seq_len, *, device=None):\n    return bytearray(2**40)\n",
    "forks": "import os\nfor _ in range(20):\n    if os.fork() == 0:\n        import time; time.sleep(3600)\n",
}


def _hostile_batch(folder: Path, honest: Path) -> Path:
    """15 honest submissions and 5 hostile ones."""
    for index, source in enumerate(sorted(honest.iterdir())[:15]):
        shutil.copytree(source, folder / f"h{index:02d}")
    reference = make_submission(ASSIGNMENT, "reference")
    for name, code in HOSTILE_CELLS.items():
        nb = nbformat.from_dict(json.loads(json.dumps(reference)))
        for cell in nb.cells:
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "causal_mask":
                cell.source = code
        path = folder / f"x_{name}" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    return folder


def summary(results: dict) -> str:
    iso = results["isolation"]
    return "\n".join([
        f"batch of {results['batch_size']} attention submissions on {results['machine']['cpus']} CPUs:",
        f"  engine (--jobs 2): {results['engine']['seconds']} s ({results['engine']['per_submission_s']} s each)",
        f"  nbgrader autograde: {results['nbgrader']['seconds']} s ({results['nbgrader']['per_submission_s']} s each)",
        f"  throughput ratio: {results['throughput_ratio']}x",
        f"isolation ({iso['isolation']}): {iso['sandboxed_s']} s sandboxed vs {iso['in_process_s']} s in-process "
        f"({iso['overhead_ratio']}x); one call round trip {iso['round_trip_ms']} ms",
        f"hostile corpus: 20 honest {results['hostile_batch']['honest_20_s']} s, "
        f"15 honest + 5 hostile {results['hostile_batch']['with_5_hostile_s']} s",
        f"student check cells (s): {results['self_check_cell_s']}",
    ])
