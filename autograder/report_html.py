"""Draw the class report as one self-contained HTML file: inline CSS and inline SVG plots, no script,
no external URL, so it opens from disk in any browser and shows the same everywhere.

Every string that comes from a result, a notebook or overrides.csv is student- or TA-controlled and goes
through `esc` (html.escape with quotes) before it reaches the page; nothing here builds markup from data
any other way.
"""
from __future__ import annotations

import html
import statistics

from .class_report import ClassData, summary_numbers
from .similarity import Pair, normalise

SIDE_BY_SIDE = 100  # pairs drawn side by side; a class of near-identical notebooks would otherwise make a huge page
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:75em;color:#222}
h1,h2{border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap;margin:0}
.same{background:#fff1b8}
.muted{color:#666}
.plots{display:flex;flex-wrap:wrap;gap:1em}
details{margin:.5em 0}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


# --- plots ----------------------------------------------------------------------------------------

def histogram(values: list[float], top: float, title: str, bins: int = 10) -> str:
    """An SVG histogram of `values` on [0, top] (the last bin includes `top`)."""
    width, height, pad, top_margin = 320, 160, 24, 34  # top_margin keeps the tallest count clear of the title
    counts = [0] * bins
    for value in values:
        index = min(bins - 1, int(bins * value / top)) if top > 0 else 0
        counts[max(0, index)] += 1
    tallest = max(counts) or 1
    bar = (width - 2 * pad) / bins
    rects = []
    for index, count in enumerate(counts):
        h = (height - pad - top_margin) * count / tallest
        x, y = pad + index * bar, height - pad - h
        low, high = top * index / bins, top * (index + 1) / bins
        rects.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" fill="#4a7ab5">'
                     f'<title>{esc(_num(low))}–{esc(_num(high))}: {count}</title></rect>')
        if count:
            rects.append(f'<text x="{x + bar / 2 - 1:.1f}" y="{y - 3:.1f}" font-size="10" '
                         f'text-anchor="middle">{count}</text>')
    axis = (f'<text x="{pad}" y="{height - 6}" font-size="10">0</text>'
            f'<text x="{width - pad}" y="{height - 6}" font-size="10" text-anchor="end">{esc(_num(top))}</text>')
    return (f'<svg role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><title>{esc(title)}</title>'
            f'<text x="{pad}" y="14" font-size="12">{esc(title)}</text>{"".join(rects)}{axis}</svg>')


def bar_chart(bars: list[tuple[str, float]], title: str) -> str:
    """Horizontal SVG bars for (label, fraction in [0, 1]), drawn in the given order."""
    label_width, bar_width, row = 330, 260, 18
    height = 24 + row * len(bars)
    parts = [f'<text x="0" y="14" font-size="12">{esc(title)}</text>']
    for index, (label, fraction) in enumerate(bars):
        y = 22 + index * row
        short = label if len(label) <= 52 else label[:51] + "…"  # the full label is in the bar's tooltip
        parts.append(f'<text x="{label_width - 6}" y="{y + 12}" font-size="11" text-anchor="end">{esc(short)}</text>'
                     f'<rect x="{label_width}" y="{y}" width="{bar_width * fraction:.1f}" height="{row - 4}" '
                     f'fill="#c0504d"><title>{esc(label)}: {fraction:.0%}</title></rect>'
                     f'<text x="{label_width + bar_width * fraction + 4:.1f}" y="{y + 12}" font-size="11">'
                     f'{fraction:.0%}</text>')
    width = label_width + bar_width + 50
    return (f'<svg role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><title>{esc(title)}</title>{"".join(parts)}</svg>')


# --- sections -------------------------------------------------------------------------------------

def _table(header: list[str], rows: list[list[str]]) -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _scores(data: ClassData) -> str:
    totals = [r["score"] for r in data.results]
    numbers = summary_numbers(totals)
    plots = [histogram(totals, data.total, f"total score (out of {_num(data.total)})")]
    for name in data.item_names:
        scores = [next((t["score"] for t in r["tests"] if t["name"] == name), 0.0) for r in data.results]
        plots.append(histogram(scores, data.max_scores[name], f"{name} (out of {_num(data.max_scores[name])})"))
    zeros = (_table(["student", "reason"], [[esc(s), esc(why)] for s, why in data.zeros]) if data.zeros
             else "<p>No submission scored zero.</p>")
    return (f"<h2>Scores</h2><p>{len(totals)} submissions; mean {_num(numbers['mean'])}, "
            f"median {_num(numbers['median'])} out of {_num(data.total)}.</p>"
            f'<div class="plots">{"".join(plots)}</div><h3>Zeros and their reasons</h3>{zeros}')


def _failure_rates(data: ClassData) -> str:
    counts: dict[str, list[int]] = {concept: [0, 0] for concept, _ in data.concepts}
    for checks in data.checks.values():
        for check in checks:
            if check.concept in counts:
                counts[check.concept][0] += not check.passed
                counts[check.concept][1] += 1
    rates = sorted(((concept, failed / seen) for concept, (failed, seen) in counts.items() if seen),
                   key=lambda pair: (-pair[1], pair[0]))
    titles = dict(data.concepts)
    rows = [[esc(concept), esc(titles[concept]), f"{rate:.0%}"] for concept, rate in rates]
    return ("<h2>Failure rate per concept check</h2>" + bar_chart(rates, "share of students failing each check")
            + _table(["check", "what it checks", "failed"], rows))


def _clusters(data: ClassData) -> str:
    if not data.clusters:
        return "<h2>Mistake clusters</h2><p>No check failed.</p>"
    parts = ["<h2>Mistake clusters</h2><p>Students who failed the same check with the same mismatch "
             "(one announcement per cluster), largest first.</p>"]
    for number, cluster in enumerate(data.clusters, 1):
        example = f"<p>Smallest failing input:</p><pre>{esc(cluster.example)}</pre>" if cluster.example else ""
        parts.append(
            f"<details{' open' if number <= 5 else ''}><summary><b>{len(cluster.students)}</b> × "
            f"{esc(cluster.concept)}: {esc(cluster.title)} <span class=\"muted\">[{esc(cluster.signature)}]</span>"
            f"</summary><p>Students: {esc(', '.join(cluster.students))}</p>{example}"
            f"<p>Feedback they received:</p><pre>{esc(cluster.message)}</pre>"
            f"<p>Hint: {esc(cluster.hint)}</p></details>")
    return "".join(parts)


def _forbidden(data: ClassData) -> str:
    rules = [[esc(item), esc(call), esc(f"{_num(deduct)} points" if deduct else "flag only")]
             for item, calls in data.forbidden_rules.items() for call, deduct in calls]
    listed = (_table(["item", "forbidden call", "if used"], rules) if rules
              else "<p>The rubric forbids no call in this assignment.</p>")
    uses = (_table(["student", "item", "call", "times called while graded"],
                   [[esc(s), esc(i), esc(c), esc(n)] for s, i, c, n in data.forbidden_uses]) if data.forbidden_uses
            else "<p>No submission used a forbidden call.</p>")
    return f"<h2>Forbidden shortcuts</h2>{listed}<h3>Uses found while grading</h3>{uses}"


def _marked(source: str, other: str) -> str:
    """`source` escaped, its lines that also occur in `other` (after normalisation) highlighted."""
    theirs = {tuple(normalise(line.strip())) for line in other.splitlines()} - {()}
    lines = []
    for line in source.splitlines():
        text = esc(line)
        lines.append(f'<span class="same">{text}</span>' if tuple(normalise(line.strip())) in theirs else text)
    return "\n".join(lines)


def _pair(pair: Pair) -> str:
    label = "identical after normalisation" if pair.identical else f"similarity {pair.score:.2f}"
    labels = list(dict.fromkeys([name for name, _ in pair.a.cells] + [name for name, _ in pair.b.cells]))
    rows = []
    for name in labels:
        left = "\n\n".join(src for n, src in pair.a.cells if n == name)
        right = "\n\n".join(src for n, src in pair.b.cells if n == name)
        rows.append([esc(name), f"<pre>{_marked(left, right)}</pre>", f"<pre>{_marked(right, left)}</pre>"])
    return (f"<details><summary>{esc(pair.a.student)} and {esc(pair.b.student)}: {esc(label)}</summary>"
            + _table(["cell", esc(pair.a.student), esc(pair.b.student)], rows) + "</details>")


def _similarity(data: ClassData) -> str:
    intro = ("<h2>Similar solution code</h2><p>Pairs whose solution cells are alike once comments, layout, "
             "names and the released starter code are set aside (winnowed token fingerprints, Jaccard index, "
             f"threshold {_num(data.similarity_threshold)}). This is evidence to read, not a finding: short "
             "tasks and the one natural solution make honest work look alike. Highlighted lines occur in both.</p>"
             f"<p class=\"muted\">{esc(data.similarity_note)}</p>")
    if not data.pairs:
        return intro + "<p>No pair reaches the threshold.</p>"
    summary = _table(["pair", "similarity"], [[esc(f"{p.a.student} – {p.b.student}"),
                                               "identical" if p.identical else f"{p.score:.2f}"] for p in data.pairs])
    more = len(data.pairs) - SIDE_BY_SIDE
    cut = (f"<p>The first {SIDE_BY_SIDE} pairs are shown side by side; {more} more are only listed above "
           "(raise --similarity-threshold to narrow the list).</p>" if more > 0 else "")
    return intro + summary + cut + "".join(_pair(p) for p in data.pairs[:SIDE_BY_SIDE])


def _overrides(data: ClassData) -> str:
    applied = (_table(["student", "item", "engine score", "override", "comment"],
                      [[esc(s), esc(i), _num(o), _num(p), esc(c)] for s, i, o, p, c in data.applied_overrides])
               if data.applied_overrides else "<p>No override in overrides.csv.</p>")
    changed = [c for c in data.changes if c.items or c.before_total != c.after_total or c.rubric[0] != c.rubric[1]]
    history = (_table(["student", "total before", "total now", "items changed", "rubric version"],
                      [[esc(c.student), _num(c.before_total), _num(c.after_total),
                        esc("; ".join(f"{i}: {_num(b)} → {_num(a)}" for i, b, a in c.items)) or "none",
                        esc(c.rubric[0] if c.rubric[0] == c.rubric[1] else f"{c.rubric[0]} → {c.rubric[1]}")]
                       for c in changed])
               if changed else f"<p>{len(data.changes)} regraded submission(s); no score changed.</p>"
               if data.changes else "<p>No submission has been regraded.</p>")
    return f"<h2>Overrides</h2>{applied}<h3>Changes since the previous grading</h3>{history}"


def _facts(data: ClassData) -> str:
    def tally(key: str) -> str:
        counts: dict[str, int] = {}
        for result in data.results:
            value = str(result["extra_data"].get(key, "unknown"))
            counts[value] = counts.get(value, 0) + 1
        return ", ".join(f"{value} ({count})" for value, count in sorted(counts.items()))

    times = [(r.get("execution_time", 0.0), r["extra_data"]["submission"]) for r in data.results]
    seconds = [t for t, _ in times]
    slowest = sorted(times, reverse=True)[:5]
    rows = [["rubric version", esc(tally("rubric_version"))], ["isolation level", esc(tally("isolation"))]]
    if seconds:
        rows.append(["seconds per submission", f"mean {statistics.fmean(seconds):.1f}, "
                                               f"median {statistics.median(seconds):.1f}, max {max(seconds):.1f}"])
        rows.append(["slowest", esc(", ".join(f"{s} ({t:.1f} s)" for t, s in slowest))])
    return "<h2>Grading facts</h2>" + _table(["fact", "value"], rows)


def render(data: ClassData) -> str:
    """The whole report as one HTML document."""
    body = "".join([
        f"<h1>Class report: {esc(data.assignment)}</h1>",
        "<p>Contents: scores, failure rates, mistake clusters, forbidden shortcuts, similar code, overrides, "
        "grading facts. A per-student, per-check table is in concepts.csv beside this file.</p>",
        _scores(data), _failure_rates(data), _clusters(data), _forbidden(data), _similarity(data),
        _overrides(data), _facts(data)])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Class report: '
            f'{esc(data.assignment)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n')
