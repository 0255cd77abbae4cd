"""`python -m autograder COMMAND`: grade, package for Gradescope, build and release notebooks, demo, bench."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import sandbox   # names load on first use: LEVELS needs no torch
from .gradescope import OUTPUT_FORMATS


def _grade(args: argparse.Namespace) -> int:
    # Arguments are checked before anything imports torch, hypothesis or nbgrader, so a typo is refused at once.
    from .discovery import discover_all, known_assignments

    known = known_assignments()
    if args.assignment not in known:
        print(f"no rubric for assignment {args.assignment!r}; graded assignments: {', '.join(known) or 'none'}",
              file=sys.stderr)
        return 2
    try:
        submissions, skipped = discover_all([Path(p) for p in args.paths], args.assignment)
    except FileNotFoundError as error:
        print(f"{error}; give notebooks or folders of submissions", file=sys.stderr)
        return 2
    if not submissions:
        print(f"no submissions of {args.assignment!r} found under {' '.join(args.paths)} (looked for .ipynb "
              "files, in nbgrader's submitted/<student>/<assignment>/ layout or any other)", file=sys.stderr)
        return 2

    from .batch import BatchInterrupted, SlotFailed, print_skipped, grade_batch
    from .sandbox import WorkerPool

    print_skipped(skipped, sys.stderr)
    # One submission (a regrade, Gradescope) is graded in this process by a worker pool whose start finds the
    # isolation level and runs while the rubric loads. A batch finds the level once; each job slot has a pool.
    pool = WorkerPool(level=args.isolation, device=args.device) if len(submissions) == 1 else None
    try:
        if pool:
            pool.launch_server()
        from .grade import Assignment
        from .report import table

        assignment = Assignment.load(args.assignment)
        if pool:
            if not args.no_replay:
                from . import replays

                replays.prepared(assignment)   # read while the worker starts; grading finds it in memory
            pool.finish()
        level = pool.level if pool else sandbox.detect_level(args.isolation)
        print(f"isolation: {level}", file=sys.stderr)
        if level != sandbox.STRONGEST:
            print(f"WARNING: grading at isolation level {level!r}, weaker than {sandbox.STRONGEST!r}: "
                  "student code is less contained (see the README's security section)", file=sys.stderr)
        if args.require_isolation:
            sandbox.require_isolation(level, args.require_isolation)
        out = Path(args.out)
        results = grade_batch(assignment, submissions, out, jobs=args.jobs, force=args.force, level=level,
                              device=args.device, pool=pool, replay=not args.no_replay)
    except sandbox.IsolationError as error:
        print(error, file=sys.stderr)
        return 2
    except BatchInterrupted as stopped:
        print(stopped, file=sys.stderr)
        return 130
    except SlotFailed as error:
        print(f"{error}; nothing was graded wrongly: fix the grading host and run the same command again",
              file=sys.stderr)
        return 1
    finally:
        if pool:
            pool.close()
    wanted = {s.id for s in submissions}
    print(table([r for r in results if r["extra_data"]["submission"] in wanted], assignment.item_names))
    print(f"results: {out}/<submission>.json, {out}/grades.csv", file=sys.stderr)
    _class_report(args.assignment, out)
    return 0


def _class_report(assignment: str, out: Path, submissions: Path | None = None) -> None:
    """Write the class report beside the results; a report that cannot be written never undoes the grading."""
    from .class_report import write_class_report
    from .overrides import OverrideError

    try:
        path = write_class_report(assignment, out, submissions=submissions)
    except OverrideError as error:
        print(f"class report not written: {error}", file=sys.stderr)
        return
    print(f"class report: {path}")


def _build(args: argparse.Namespace) -> int:
    from . import build

    if args.check:
        stale = build.stale(args.names or None)
        if stale:
            print(f"out of date: {', '.join(stale)}; run `make notebooks`", file=sys.stderr)
            return 1
        return 0
    for path in build.build(args.names or None):
        print(f"built {path}")
    return 0


def _gradescope(args: argparse.Namespace) -> int:
    from .gradescope import package, parse_visibility

    visibility = parse_visibility(args.visibility, args.assignment)
    print(f"wrote {package(args.assignment, Path(args.out), visibility=visibility, output_format=args.output_format)}")
    return 0


def _gradescope_run(args: argparse.Namespace) -> int:
    from .gradescope import run

    return run(args.assignment, Path(args.root))


def _release(args: argparse.Namespace) -> int:
    from .release import release

    for path in release(args.names or None):
        print(f"released {path}")
    return 0


def _replays(args: argparse.Namespace) -> int:
    from . import replays
    from .build import source_path
    from .discovery import known_assignments
    from .grade import Assignment

    unknown = sorted(set(args.names) - set(known_assignments()))
    if unknown:
        raise SystemExit(f"no rubric for {', '.join(map(repr, unknown))}; graded assignments: "
                         f"{', '.join(known_assignments())}")
    for name in args.names or [n for n in known_assignments() if source_path(n).exists()]:
        assignment = Assignment.load(name)
        kept = replays.record(assignment)
        saved = replays.save(kept, assignment, replays.path(name))
        print(f"{name}: {saved} of {sum(len(i.checks) for i in assignment.rubric.items)} checks recorded in "
              f"{replays.path(name)}")
    return 0


def _solutions(args: argparse.Namespace) -> int:
    from .release import render_solutions

    render_solutions(args.names or None, Path(args.out))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .batch import discover, grade_batch
    from .build import ROOT
    from .grade import Assignment, known_assignments
    from .release import release
    from .report import table
    from .samples import concept_lines, description, write_samples

    names = args.names or known_assignments()
    release(names)
    level = sandbox.detect_level()
    print(f"isolation: {level}")
    for name in names:
        folder = ROOT / "build" / "demo" / name
        write_samples(name, folder / "submitted")
        assignment = Assignment.load(name)
        results = grade_batch(assignment, discover([folder / "submitted"], name), folder / "grades",
                              jobs=args.jobs, force=True, level=level, progress=None)
        print(f"\n{name}: sample submissions graded (results in {folder / 'grades'})")
        print(table(results, assignment.item_names))
        for result in results:
            submission = result["extra_data"]["submission"]
            print(f"  {submission}: {description(name, submission)}")
            for line in concept_lines(result):
                print(line)
        _class_report(name, folder / "grades", submissions=folder / "submitted")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .class_report import write_class_report
    from .overrides import OverrideError

    grades = Path(args.grades_dir)
    if not grades.is_dir() or not list(grades.glob("*.json")):
        print(f"{grades}: no results there; grade first with "
              f"`python -m autograder grade {args.assignment} PATH --out {grades}`", file=sys.stderr)
        return 2
    if not 0 <= args.similarity_threshold <= 1:
        print(f"--similarity-threshold must be between 0 and 1, got {args.similarity_threshold:g}", file=sys.stderr)
        return 2
    try:
        path = write_class_report(args.assignment, grades, submissions=Path(args.submissions) if args.submissions
                                  else None, similarity_threshold=args.similarity_threshold)
    except OverrideError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"class report: {path} (per-check table: {path.parent / 'concepts.csv'})")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import run, summary

    results = run(Path(args.out), size=args.size)
    print(summary(results))
    print(f"full results: {Path(args.out) / 'results.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    grade = commands.add_parser("grade", help="grade submissions into Gradescope-schema JSON and grades.csv")
    grade.add_argument("assignment")
    grade.add_argument("paths", nargs="+", metavar="PATH",
                       help="a notebook, or a folder in nbgrader's submitted/<student>/<assignment>/ layout")
    grade.add_argument("--out", required=True, help="folder for <submission>.json and grades.csv")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    grade.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    grade.add_argument("--force", action="store_true", help="regrade submissions that already have a result")
    grade.add_argument("--isolation", choices=sandbox.LEVELS, default=None,
                       help="use this isolation level instead of the strongest available")
    grade.add_argument("--require-isolation", choices=sandbox.LEVELS, default=None, metavar="LEVEL",
                       help="refuse to grade below LEVEL")
    grade.add_argument("--no-replay", action="store_true",
                       help="draw every check's examples and the reference's outputs afresh for every submission "
                            "instead of reading them from the replay file (slower; the same calls and grades)")
    grade.set_defaults(run=_grade)

    notebooks = commands.add_parser("build", help="build assignments/source/*.ipynb from the authoring files")
    notebooks.add_argument("names", nargs="*")
    notebooks.add_argument("--check", action="store_true", help="only report notebooks that are out of date")
    notebooks.set_defaults(run=_build)

    package = commands.add_parser("gradescope", help="write a Gradescope autograder zip for ASSIGNMENT")
    package.add_argument("assignment")
    package.add_argument("--out", required=True, help="path of the zip to write")
    package.add_argument("--visibility", action="append", default=[], metavar="NAME=LEVEL",
                         help="when students see an item (NAME) or one check of it (ITEM/CHECK_ID): visible "
                              "(default), after_due_date, after_published or hidden; repeatable")
    package.add_argument("--output-format", choices=OUTPUT_FORMATS, default="md",
                         help="how Gradescope renders the feedback (default md)")
    package.set_defaults(run=_gradescope)

    inside = commands.add_parser("gradescope-run", help="(used by run_autograder inside Gradescope)")
    inside.add_argument("assignment")
    inside.add_argument("--root", default="/autograder")
    inside.set_defaults(run=_gradescope_run)

    release = commands.add_parser("release", help="student versions into assignments/release/ (all, or NAMES)")
    release.add_argument("names", nargs="*")
    release.set_defaults(run=_release)

    recorded = commands.add_parser("replays", help="record the examples each check draws, against the reference, so "
                                                   "grading starts without searching (grading records them "
                                                   "itself when they are missing)")
    recorded.add_argument("names", nargs="*", help="assignments (default: every one whose source notebook exists)")
    recorded.set_defaults(run=_replays)

    solutions = commands.add_parser("solutions", help="executed solution notebooks as HTML for staff to post")
    solutions.add_argument("names", nargs="*")
    solutions.add_argument("--out", default="build/solutions")
    solutions.set_defaults(run=_solutions)

    demo = commands.add_parser("demo", help="release, grade the bundled sample submissions, print the table")
    demo.add_argument("names", nargs="*", help="assignments (default: every graded one)")
    demo.add_argument("--jobs", type=int, default=2)
    demo.set_defaults(run=_demo)

    from .similarity import DEFAULT_THRESHOLD

    class_report = commands.add_parser("report", help="class report (report.html, concepts.csv) from graded results")
    class_report.add_argument("assignment")
    class_report.add_argument("grades_dir", metavar="GRADES_DIR", help="the --out folder of `grade`")
    class_report.add_argument("--submissions", metavar="PATH", default=None,
                              help="the graded notebooks (for similarity) when the results do not say where they are")
    class_report.add_argument("--similarity-threshold", type=float, default=DEFAULT_THRESHOLD, metavar="X",
                              help=f"list pairs of submissions at least this similar, 0..1 (default {DEFAULT_THRESHOLD})")
    class_report.set_defaults(run=_report)

    bench = commands.add_parser("bench", help="this engine against nbgrader on one batch; isolation overhead")
    bench.add_argument("--out", default="build/bench")
    bench.add_argument("--size", type=int, default=50, help="submissions in the batch (default 50)")
    bench.set_defaults(run=_bench)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
