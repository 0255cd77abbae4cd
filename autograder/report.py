"""Results on disk: one Gradescope-schema JSON per submission, and grades.csv for the batch.

Every file is written to a temporary name in the same folder and renamed
into place, so a batch killed at any moment leaves only whole files behind,
and a resumed batch trusts every result file it finds.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path

TIMING_FIELDS = ("execution_time",)  # the only fields that may differ between two gradings


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def result_path(out: Path, submission_id: str) -> Path:
    return out / f"{submission_id}.json"


def write_result(out: Path, result: dict) -> Path:
    path = result_path(out, result["extra_data"]["submission"])
    atomic_write(path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path


def read_results(out: Path) -> list[dict]:
    """Every complete result in `out`, sorted by submission id; unreadable files are skipped (they get regraded)."""
    results = []
    for path in sorted(out.glob("*.json")):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and "extra_data" in result and "tests" in result:
            results.append(result)
    return results


def without_timing(result: dict) -> dict:
    """The result with timing fields removed: two gradings of one submission must agree on this."""
    return {k: v for k, v in result.items() if k not in TIMING_FIELDS}


def grades_csv(results: list[dict], item_names: list[str]) -> str:
    """One row per submission: its id, a column per graded item, the total, the rubric version that graded
    it, where its notebook was found, and notes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["submission", *item_names, "total", "max_score", "rubric_version", "source_path", "notes"])
    for result in results:
        scores = {t["name"]: t["score"] for t in result["tests"]}
        max_score = sum(t["max_score"] for t in result["tests"])
        extra = result["extra_data"]
        writer.writerow([extra["submission"], *(_fmt(scores.get(n, 0.0)) for n in item_names),
                         _fmt(result["score"]), _fmt(max_score), extra.get("rubric_version", ""),
                         extra.get("source_path", ""), "; ".join(extra.get("notes", []))])
    return buffer.getvalue()


def write_grades_csv(out: Path, item_names: list[str], rubric_version: str | None = None) -> Path:
    """grades.csv for the results in `out`, with the TA's overrides.csv applied; with `rubric_version`, only the
    results it graded, so that the file never mixes grades of two rubrics. A bad overrides.csv is reported
    and leaves the engine's scores in the file: it never stops a finished batch from being written."""
    from .overrides import OverrideError, apply_overrides  # it imports this module

    path = out / "grades.csv"
    results = [r for r in read_results(out)
               if rubric_version is None or r["extra_data"].get("rubric_version") == rubric_version]
    try:
        results = apply_overrides(results, out)
    except OverrideError as error:
        print(f"overrides not applied: {error}", file=sys.stderr)
    atomic_write(path, grades_csv(results, item_names))
    return path


def table(results: list[dict], item_names: list[str]) -> str:
    """A plain-text grade table for the terminal."""
    header = ["submission", *item_names, "total"]
    rows = [[r["extra_data"]["submission"],
             *(_fmt({t["name"]: t["score"] for t in r["tests"]}.get(n, 0.0)) for n in item_names),
             f"{_fmt(r['score'])}/{_fmt(sum(t['max_score'] for t in r['tests']))}"] for r in results]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")
