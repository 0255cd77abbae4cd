"""`make bench`: what grading costs, measured side by side in one run on one machine.

Shared machines are noisy, so every figure that matters is a ratio of two
numbers taken in the same run:

- cold: one correct submission graded by a fresh `python -m autograder grade`
  (as on Gradescope, where every submission starts cold), with the replay
  file in place and while recording it, the phases of that start timed
  separately in a fresh process; refusals of bad arguments;
- warm: batches of correct and of wrong submissions graded with `--jobs 2`,
  wall and machine CPU per submission, against the in-process floor (the same
  checks calling the same student functions with no isolation, searched
  afresh and replayed); a second, smaller correct batch separates what one
  more submission costs from what starting a batch costs;
- nbgrader's own way: the same correct batch executed in kernels whose test
  cells run the very same checks next to the student's code;
- the hostile corpus: an all-honest batch against one with hostile submissions;
- the students' check cells: seconds per visible check.

Nothing here asserts a time; the figures go to `results.json` and the README.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from . import replays
from .batch import discover, grade_batch
from .build import ROOT, source_path
from .grade import Assignment
from .release import nbgrader_env, release
from .samples import make_submission, variants

ASSIGNMENT = "attention"
PROJECTED_CLASS = 300
SMALL_BATCH = 10   # a second, smaller correct batch: the difference is what one more submission costs
KERNEL_TEST = """from autograder.bench import check_in_kernel
check_in_kernel({assignment!r}, {item!r}, globals())"""

# Run in a fresh interpreter: the phases of a cold start, each timed on its own.
COLD_PHASES = r"""
import json, sys, time
marks = [("start", time.perf_counter())]
from pathlib import Path
from autograder.grade import Assignment
from autograder.runner import run_check
from autograder.sandbox import WorkerPool
from autograder.student import Student
from autograder.submission import recover
from autograder import report
from autograder import replays
assignment = Assignment.load(sys.argv[1])
marks.append(("imports", time.perf_counter()))
pool = WorkerPool(); pool.start()
marks.append(("worker_start", time.perf_counter()))
kept = replays.load(assignment, replays.path(assignment.name))
marks.append(("replay_file", time.perf_counter()))
cells = recover(Path(sys.argv[2]), list(assignment.setup_cells), assignment.item_names).cells
session = pool.session(); session.exec_cells(cells)
marks.append(("student_cells", time.perf_counter()))
outcomes = [run_check(check, Student(session, item.name), kept)
            for item in assignment.rubric.items for check in item.checks]
marks.append(("checks", time.perf_counter()))
report.write_result(Path(sys.argv[3]), {"score": 0, "tests": [], "extra_data": {"submission": "cold"}})
marks.append(("write_results", time.perf_counter()))
session.close(); pool.close()
print(json.dumps({name: round(t - marks[i][1], 3) for i, (name, t) in enumerate(marks[1:])}))
"""


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


def _batch(folder: Path, kinds: list[str], size: int) -> Path:
    """`size` submissions cycling through the sample `kinds`, in nbgrader's layout."""
    for index in range(size):
        path = folder / f"s{index:03d}" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(make_submission(ASSIGNMENT, kinds[index % len(kinds)]), path)
    return folder


def _wrong_kinds() -> list[str]:
    return [kind for kind in variants(ASSIGNMENT) if kind != "reference"]


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


def _machine_cpu() -> float:
    """CPU seconds the whole machine has been busy, all cores together. The sandboxed workers are counted
    too, which resource usage of children misses (a worker's parents are killed, never waited for); on a
    shared machine, so is anything else that runs."""
    with open("/proc/stat") as handle:
        ticks = [int(value) for value in handle.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]   # idle and iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def _graded_batch(folder: Path, kinds: list[str], size: int, out: Path) -> dict:
    """Wall and machine CPU per submission for a batch graded with `--jobs 2`."""
    submissions = _batch(folder, kinds, size)
    cpu_before = _machine_cpu()
    seconds, _ = _timed(grade_batch, Assignment.load(ASSIGNMENT), discover([submissions], ASSIGNMENT), out,
                        jobs=2, progress=None)
    cpu = _machine_cpu() - cpu_before
    return {"size": size, "seconds": round(seconds, 1), "wall_per_submission_s": round(seconds / size, 3),
            "cpu_per_submission_s": round(cpu / size, 3)}


def _marginal(small: dict, large: dict) -> dict:
    """What one more submission costs a batch, from two batch sizes, and what starting a batch costs (the job
    slots' interpreters and worker pools, the class report): CPU a class pays once, not per submission."""
    size = large["size"] - small["size"]
    cpu = (large["cpu_per_submission_s"] * large["size"] - small["cpu_per_submission_s"] * small["size"]) / size
    wall = (large["seconds"] - small["seconds"]) / size
    return {"marginal_cpu_per_submission_s": round(cpu, 3), "marginal_wall_per_submission_s": round(wall, 3),
            "startup_cpu_s": round(large["cpu_per_submission_s"] * large["size"] - cpu * large["size"], 1),
            "small_batch": small}


def _cli(*args: str) -> float:
    """Wall seconds of one fresh `python -m autograder ...` (its output is not needed)."""
    seconds, _ = _timed(subprocess.run, [sys.executable, "-m", "autograder", *args], cwd=ROOT,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return seconds


def cold(folder: Path, repeats: int = 3) -> dict:
    """One correct submission graded by a fresh process, with the replay file in place (as on Gradescope, where
    setup.sh records it) and without (the first grading of a rubric version records it); the phases of that
    start; argument refusals."""
    notebook = folder / "one" / f"{ASSIGNMENT}.ipynb"
    notebook.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(make_submission(ASSIGNMENT, "reference"), notebook)
    (folder / "empty").mkdir(exist_ok=True)
    one = ["grade", ASSIGNMENT, str(notebook), "--out", str(folder / "out"), "--force"]
    replays.path(ASSIGNMENT).unlink(missing_ok=True)
    first = _cli(*one)
    grade = [_cli(*one) for _ in range(repeats)]
    interpreter = [_timed(subprocess.run, [sys.executable, "-c", "pass"])[0] for _ in range(repeats)]
    phases = [json.loads(subprocess.run([sys.executable, "-c", COLD_PHASES, ASSIGNMENT, str(notebook),
                                         str(folder / "phases")], cwd=ROOT, capture_output=True, text=True,
                                        check=True).stdout.splitlines()[-1]) for _ in range(repeats)]
    refusals = {
        "misspelt_assignment_s": _cli("grade", "attentoin", str(notebook), "--out", str(folder / "x")),
        "missing_path_s": _cli("grade", ASSIGNMENT, str(folder / "nowhere"), "--out", str(folder / "x")),
        "empty_folder_s": _cli("grade", ASSIGNMENT, str(folder / "empty"), "--out", str(folder / "x")),
    }
    return {
        "grade_one_correct_s": round(statistics.median(grade), 2),
        "grade_one_correct_recording_replays_s": round(first, 2),
        "phases_s": {"interpreter": round(statistics.median(interpreter), 3),
                     **{name: round(statistics.median(p[name] for p in phases), 3) for name in phases[0]}},
        "refusals": {name: round(seconds, 2) for name, seconds in refusals.items()},
    }


def in_process_floor() -> dict:
    """CPU seconds for every check on one correct submission calling its functions directly (no isolation):
    searching afresh, as for the first submission of a batch, and replaying those examples, as for every later
    one; and wall seconds for both through one sandboxed session."""
    from .inprocess import InProcessSession
    from .runner import Replays, run_check
    from .sandbox import WorkerPool
    from .student import Student
    from .submission import recover

    assignment = Assignment.load(ASSIGNMENT)
    path = ROOT / "build" / "bench" / "reference.ipynb"
    nbformat.write(make_submission(ASSIGNMENT, "reference"), path)
    cells = recover(path, list(assignment.setup_cells), assignment.item_names).cells
    checks = [(item.name, check) for item in assignment.rubric.items for check in item.checks]

    def all_checks(session, replays: Replays) -> tuple[float, float]:
        cpu_before = time.process_time()
        seconds, _ = _timed(lambda: [run_check(c, Student(session, n), replays) for n, c in checks])
        return seconds, time.process_time() - cpu_before

    local, replays = InProcessSession(), Replays()
    local.exec_cells(cells)
    searched, searched_cpu = all_checks(local, replays)
    replayed, replayed_cpu = all_checks(local, replays)
    with WorkerPool() as pool, pool.session() as session:
        session.exec_cells(cells)
        replays = Replays()
        sandboxed_searched, _ = all_checks(session, replays)
        sandboxed_replayed, _ = all_checks(session, replays)
        calls, _ = _timed(lambda: [session.call("causal_mask", [4], {}) for _ in range(200)])
        level = pool.level
    return {"searched_s": round(searched, 3), "searched_cpu_s": round(searched_cpu, 3),
            "replayed_s": round(replayed, 3), "replayed_cpu_s": round(replayed_cpu, 3),
            "sandboxed_searched_s": round(sandboxed_searched, 3), "sandboxed_replayed_s": round(sandboxed_replayed, 3),
            "overhead_ratio": round(sandboxed_replayed / replayed, 2),
            "round_trip_ms": round(calls / 200 * 1000, 3), "isolation": level}


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
    import torch

    torch.set_num_threads(1)   # as in every grading process, so the in-process floor is comparable
    out = out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    release([ASSIGNMENT])
    correct = _graded_batch(out / "correct", ["reference"], size, out / "correct_grades")
    small = _graded_batch(out / "correct_small", ["reference"], SMALL_BATCH, out / "correct_small_grades")
    correct.update(_marginal(small, correct))
    wrong = _graded_batch(out / "wrong", _wrong_kinds(), size, out / "wrong_grades")
    course = _nbgrader_course(out, out / "correct")
    nbgrader_s, _ = _timed(_nbgrader, course, "autograde", ASSIGNMENT, "--force")
    floor = in_process_floor()
    honest_s, _ = _timed(grade_batch, Assignment.load(ASSIGNMENT),
                         discover([_batch(out / "honest", ["reference"], 20)], ASSIGNMENT),
                         out / "honest_grades", jobs=2, progress=None)
    hostile = _hostile_batch(out / "hostile", out / "correct")
    hostile_s, _ = _timed(grade_batch, Assignment.load(ASSIGNMENT), discover([hostile], ASSIGNMENT),
                          out / "hostile_grades", jobs=2, progress=None)
    results = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "cold": cold(out / "cold"),
        "correct_batch": correct,
        "wrong_batch": wrong,
        "in_process_floor": floor,
        "cpu_ratio_correct_to_floor": round(correct["marginal_cpu_per_submission_s"] / floor["replayed_cpu_s"], 2),
        "cpu_ratio_correct_to_floor_with_startup": round(correct["cpu_per_submission_s"] / floor["replayed_cpu_s"], 2),
        "nbgrader": {"seconds": round(nbgrader_s, 1), "per_submission_s": round(nbgrader_s / size, 3),
                     "note": "nbgrader autograde with its Execute preprocessor, COURSE_FAST=1, same rubric "
                             "in-kernel, the same correct batch"},
        "throughput_ratio_correct": round(nbgrader_s / correct["seconds"], 2),
        f"projected_{PROJECTED_CLASS}_correct_min": round(correct["wall_per_submission_s"] * PROJECTED_CLASS / 60, 1),
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
    cold_run, floor = results["cold"], results["in_process_floor"]
    correct, wrong = results["correct_batch"], results["wrong_batch"]
    phases = ", ".join(f"{name} {seconds} s" for name, seconds in cold_run["phases_s"].items())
    refusals = ", ".join(f"{name.removesuffix('_s')} {seconds} s" for name, seconds in cold_run["refusals"].items())
    return "\n".join([
        f"{results['machine']['cpus']} CPUs, attention:",
        f"  cold: one correct submission {cold_run['grade_one_correct_s']} s wall ({phases}); "
        f"{cold_run['grade_one_correct_recording_replays_s']} s when it records the replay file first",
        f"  refused: {refusals}",
        f"  {correct['size']} correct (--jobs 2): {correct['seconds']} s, {correct['wall_per_submission_s']} s wall "
        f"and {correct['cpu_per_submission_s']} s CPU each with the batch's start-up; each one more costs "
        f"{correct['marginal_cpu_per_submission_s']} s CPU (start-up {correct['startup_cpu_s']} s CPU, from a "
        f"batch of {correct['small_batch']['size']}); in-process floor {floor['replayed_cpu_s']} s CPU replayed, "
        f"{floor['searched_cpu_s']} s searched afresh ({results['cpu_ratio_correct_to_floor']}x the replayed "
        f"floor, {results['cpu_ratio_correct_to_floor_with_startup']}x with the start-up)",
        f"  {wrong['size']} wrong (--jobs 2): {wrong['seconds']} s, {wrong['wall_per_submission_s']} s wall each",
        f"  nbgrader autograde, same correct batch: {results['nbgrader']['seconds']} s "
        f"({results['throughput_ratio_correct']}x slower)",
        f"  {PROJECTED_CLASS} correct submissions projected: {results[f'projected_{PROJECTED_CLASS}_correct_min']} min",
        f"isolation ({floor['isolation']}): replayed checks {floor['sandboxed_replayed_s']} s sandboxed vs "
        f"{floor['replayed_s']} s in-process ({floor['overhead_ratio']}x); one call round trip {floor['round_trip_ms']} ms",
        f"hostile corpus: 20 honest {results['hostile_batch']['honest_20_s']} s, "
        f"15 honest + 5 hostile {results['hostile_batch']['with_5_hostile_s']} s",
        f"student check cells (s): {results['self_check_cell_s']}",
    ])
