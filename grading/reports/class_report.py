"""The class at a glance: one static page per graded assignment, beside the grade CSV, with its numbers as
JSON and CSV.

    python -m grading.report WORKSPACE ASSIGNMENT   (every grading run also writes it)

Read from what a batch leaves in the workspace (the grade CSV, the JSON report, the similarity CSV when
there is one), it shows: the status counts; the distribution of the totals and of each exercise's points;
for every property, how many graded students passed it, and for each diagnosis the grader gave (the
sentence the students saw) how many students got it, most common first; the review flags by kind with
the students behind them; the points the instructor set by hand in the formgrader; the seconds and the
peak memory per submission, with the slowest and largest submissions; and the similarity
summary, with each student's similarity to the reference solution. The page has no script, no external
file and escapes every student-given text; each figure is a PNG with a text alternative.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from grading.course import EXERCISES
from grading.reports import similarity, tables
from grading.running.workspace import Workspace, test_cell_points

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
CELL_PREFIX = re.compile(r"^cell \d+: ")
SLOWEST = 5
REFERENCE_SIMILARITY = similarity.REFERENCE_SHOWN  # at or above it, a student is close to the reference solution


@dataclass
class ClassReport:
    """Where a class report was written."""

    html: Path
    json: Path
    csv: Path


# A measured number (not an exponent as in std^2 or std**2, not a numerator as in 1/fan_in, not part of a name).
MEASURED = re.compile(r"(?<![\^*\w.])-?\d+(\.\d+)?(e[-+]?\d+)?(?![\w/]|\.\d)")


def diagnosis(message: str) -> str:
    """A property's message without this student's numbers: students with one mistake share it."""
    return MEASURED.sub("#", " ".join(message.split())) or "(no message)"


def summarize(workspace: Path, assignment: str) -> dict[str, Any]:
    """The class's numbers from a graded workspace (see the module doc)."""
    ws = Workspace(workspace, assignment)
    _, rows = tables.read_dicts(ws.grades_csv())
    report = json.loads(ws.report_json().read_text()) if ws.report_json().is_file() else {}
    points = test_cell_points(ws.source_notebook())
    exercises = EXERCISES[assignment]
    graded = [r for r in rows if r.get("status") == "graded"]
    attention = [r["student_id"] for r in rows if r.get("status") != "graded"
                 or any(n.strip().startswith(("ERROR", "WARNING")) for n in r.get("notes", "").split(" | "))]
    summary: dict[str, Any] = {
        "assignment": assignment,
        "students": len(rows),
        "status": dict(Counter(r.get("status", "") for r in rows)),
        "needs_attention": sorted(attention),
        "max_total": sum(points[e.test_cell] for e in exercises),
        "totals": sorted(float(r["total"]) for r in graded if r.get("total") not in ("", None)),
        "exercises": {},
    }
    for e in exercises:
        scores = [float(r[e.test_cell]) for r in graded if r.get(e.test_cell) not in ("", None)]
        passed: dict[str, int] = {}
        mistakes: dict[str, dict[str, Any]] = {}
        for sid, entry in report.items():
            verdict = (entry.get("verdicts") or {}).get(e.key)
            if entry.get("status") != "graded" or not verdict:
                continue
            for prop in verdict.get("properties", []):
                passed.setdefault(prop["name"], 0)
                if prop.get("passed"):
                    passed[prop["name"]] += 1
                    continue
                key = f"{prop['name']}\0{diagnosis(prop.get('message', ''))}"
                found = mistakes.setdefault(key, {"property": prop["name"], "diagnosis": diagnosis(
                    prop.get("message", "")), "message": prop.get("message", ""), "students": []})
                found["students"].append(sid)
        summary["exercises"][e.key] = {
            "name": e.name, "points": points[e.test_cell], "scores": sorted(scores),
            "full_marks": sum(1 for s in scores if abs(s - points[e.test_cell]) < 1e-9),
            "properties": [{"name": n, "passed": c, "judged": len([1 for s in report.values()
                                                                  if s.get("status") == "graded"])}
                           for n, c in passed.items()],
            "mistakes": sorted(mistakes.values(), key=lambda m: (-len(m["students"]), m["property"])),
        }
    flags: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        for flag in filter(None, (f.strip() for f in r.get("review_flags", "").split(" | "))):
            kind = CELL_PREFIX.sub("", flag)
            if r["student_id"] not in flags[kind]:
                flags[kind].append(r["student_id"])
    summary["flags"] = dict(sorted(flags.items(), key=lambda item: (-len(item[1]), item[0])))
    summary["seconds"] = _spread({sid: (entry.get("seconds") or {}).get("nbgrader") for sid, entry in report.items()},
                                 "slowest", "seconds", 2)
    summary["memory_mb"] = _spread({sid: entry.get("memory_mb") for sid, entry in report.items()},
                                   "largest", "memory_mb", 1)
    names = {e.test_cell: e.name for e in exercises}
    summary["set_by_hand"] = [
        {"student_id": sid, "exercise": names.get(cell, cell), "grader": a.get("grader"),
         "instructor": a.get("instructor")}
        for sid, entry in sorted(report.items()) for cell, a in sorted((entry.get("adjustments") or {}).items())]
    summary["similarity"] = _similarity(ws)
    return summary


def _spread(values: dict[str, Any], top: str, unit: str, digits: int) -> dict[str, Any]:
    """Median, maximum and the SLOWEST largest of the numbers among ``values`` (student -> number or None)."""
    found = {sid: v for sid, v in values.items() if isinstance(v, (int, float))}
    return {"median": round(statistics.median(found.values()), digits) if found else None,
            "max": round(max(found.values()), digits) if found else None,
            top: [{"student_id": sid, unit: round(v, digits)}
                  for sid, v in sorted(found.items(), key=lambda item: -item[1])[:SLOWEST]]}


def _similarity(ws: Workspace) -> Optional[dict[str, Any]]:
    """The top pairs and the students close to the reference solution, from the similarity report if written."""
    path = ws.root / f"similarity_{ws.assignment}.csv"
    if not path.is_file():
        return None
    _, pairs = tables.read_dicts(path)
    reference: dict[str, float] = {}
    if similarity.reference_csv(ws).is_file():  # every student
        _, rows = tables.read_dicts(similarity.reference_csv(ws))
        reference = {r["student_id"]: float(r["similarity_to_reference"] or 0) for r in rows}
    return {"top_pairs": [{"student_a": p["student_a"], "student_b": p["student_b"],
                           "similarity": float(p["similarity"])} for p in pairs[:5]],
            "close_to_reference": sorted(([s, round(v, 3)] for s, v in reference.items()
                                          if v >= REFERENCE_SIMILARITY), key=lambda item: (-item[1], item[0]))}


# ------------------------------------------------------------------------------------------ page

def _histograms(summary: dict[str, Any]) -> tuple[str, str]:
    """One PNG (data URI) of small histograms: the totals, then each exercise's points; and its alt text."""
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    from course_lib.plotting import new_figure

    panels = [("total", summary["totals"], summary["max_total"])] + [
        (e["name"], e["scores"], e["points"]) for e in summary["exercises"].values()]
    columns = min(2, len(panels))  # two columns: still readable on a phone
    rows = -(-len(panels) // columns)
    fig = new_figure((3.0 * columns, 2.3 * rows))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    described = []
    for ax, (title, values, best) in zip(axes, panels):
        if values:
            ax.hist(values, bins=min(20, max(5, len(set(values)))), range=(0, best), color="C0", edgecolor="white")
            described.append(f"{title}: median {statistics.median(values):g} of {best:g}, lowest {min(values):g}, "
                             f"highest {max(values):g}, {sum(1 for v in values if abs(v - best) < 1e-9)} with "
                             "full marks")
        else:
            described.append(f"{title}: no student graded")
        ax.set(xlim=(0, best), xlabel=f"points (of {best:g})", ylabel="students", title=title)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    buffer = io.BytesIO()
    with matplotlib.rc_context({"savefig.dpi": 150}):
        fig.savefig(buffer, format="png")
    alt = (f"Histograms of the points of {len(summary['totals'])} graded students, total then per exercise. "
           + "; ".join(described) + ".")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(), alt


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th scope=\"col\">{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    label = html.escape("table: " + ", ".join(header), quote=True)
    # a region that may scroll sideways on a phone: focusable, so that a keyboard can scroll it too
    return (f'<div class="scroll" tabindex="0" role="region" aria-label="{label}"><table><thead><tr>{head}</tr>'
            f"</thead><tbody>{body}</tbody></table></div>")


def _students(ids: list[str], limit: int = 12) -> str:
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _grouped(mistakes: list[dict[str, Any]]) -> list[tuple[str, tuple[str, ...], list[str]]]:
    """(diagnosis, students, properties): one entry per diagnosis given to the same students, most common first."""
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for m in mistakes:
        groups.setdefault((m["diagnosis"], tuple(m["students"])), []).append(m["property"])
    return sorted(((d, ids, props) for (d, ids), props in groups.items()), key=lambda g: (-len(g[1]), g[0]))


def render(summary: dict[str, Any]) -> str:
    """The page: a static HTML document with no script."""
    a = summary["assignment"]
    parts = [f"<h1>Class report: {html.escape(a)}</h1>",
             f"<p>{summary['students']} student{'s' if summary['students'] != 1 else ''}; "
             + "; ".join(f"{html.escape(k)}: {v}" for k, v in sorted(summary["status"].items()))
             + f"; needing attention: {len(summary['needs_attention'])}"
             + (f" ({html.escape(_students(summary['needs_attention']))})" if summary["needs_attention"] else "")
             + ".</p>", "<h2>Points</h2>", '<div class="figures">']
    uri, alt = _histograms(summary)
    parts.append(f'<figure><img src="{uri}" alt="{html.escape(alt)}"><figcaption>Points of the graded students: '
                 "the total, then each exercise.</figcaption></figure>")
    parts.append("</div><h2>Properties and mistakes</h2>")
    parts.append("<p>For each exercise: how many graded students passed each property, then each diagnosis "
                 "the grader gave (numbers replaced by #), most common first, with the properties it failed "
                 "and the students who read it.</p>")
    for e in summary["exercises"].values():
        parts.append(f"<h3>{html.escape(e['name'])} ({e['points']:g} points; full marks: {e['full_marks']} of "
                     f"{len(e['scores'])})</h3>")
        parts.append(_table(["property", "passed", "of"], [[p["name"], p["passed"], p["judged"]]
                                                            for p in e["properties"]]))
        if e["mistakes"]:
            every = len(e["properties"])
            items = "".join(
                f"<li><strong>{len(ids)} student{'s' if len(ids) != 1 else ''}</strong>, "
                + ("every property" if len(props) == every > 1 else
                   f"{'one property' if len(props) == 1 else f'{len(props)} properties'} "
                   f"({html.escape(', '.join(props))})")
                + f": <q>{html.escape(diagnosis)}</q><br>"
                f"<span class=\"who\">{html.escape(_students(list(ids)))}</span></li>"
                for diagnosis, ids, props in _grouped(e["mistakes"]))
            parts.append(f'<ul class="mistakes">{items}</ul>')
    parts.append("<h2>Review flags</h2>")
    parts.append(_table(["students", "flag", "who"], [[len(ids), kind, _students(ids)]
                                                      for kind, ids in summary["flags"].items()])
                 if summary["flags"] else "<p>No review flag.</p>")
    parts.append("<h2>Points set by hand</h2>")
    parts.append(_table(["student", "exercise", "the grader's points", "the instructor's points"],
                        [[m["student_id"], m["exercise"], "" if m["grader"] is None else m["grader"], m["instructor"]]
                         for m in summary["set_by_hand"]])
                 if summary["set_by_hand"] else "<p>No score was changed by hand in the formgrader.</p>")
    sec, mem = summary["seconds"], summary["memory_mb"]
    parts.append("<h2>Time and memory</h2>")
    parts.append(f"<p>nbgrader's run per submission: median {sec['median']} s, longest {sec['max']} s.</p>"
                 if sec["median"] is not None else "<p>No timing recorded.</p>")
    if sec["slowest"]:
        parts.append(_table(["student", "seconds"], [[s["student_id"], s["seconds"]] for s in sec["slowest"]]))
    parts.append(f"<p>Peak memory of a student's kernel (its cgroup, children included): median {mem['median']} MB, "
                 f"largest {mem['max']} MB.</p>" if mem["median"] is not None else
                 "<p>No memory recorded (the kernels ran without a cgroup).</p>")
    if mem["largest"]:
        parts.append(_table(["student", "peak memory (MB)"], [[m["student_id"], m["memory_mb"]]
                                                               for m in mem["largest"]]))
    parts.append("<h2>Similarity</h2>")
    sim = summary["similarity"]
    if sim is None:
        parts.append("<p>No similarity report in this workspace (grade with <code>--similarity</code>).</p>")
    else:
        parts.append(_table(["student", "student", "similarity"],
                            [[p["student_a"], p["student_b"], p["similarity"]] for p in sim["top_pairs"]]))
        parts.append(f"<p>Students at least {REFERENCE_SIMILARITY:g} similar to the reference solution:</p>")
        parts.append(_table(["student", "similarity to the reference"], sim["close_to_reference"])
                     if sim["close_to_reference"] else "<p>None.</p>")
    return _document(f"Class report: {a}", parts)


def _document(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 64rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.6rem 0; }
td, th { border: 1px solid #bbb; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
.figures { display: flex; flex-wrap: wrap; gap: 0.8rem; }
figure { margin: 0; max-width: 100%; }
figure img { width: 100%; max-width: 44rem; height: auto; }
figcaption { font-size: 0.85rem; color: #444; }
.mistakes li { margin: 0.4rem 0; overflow-wrap: anywhere; }
.who { color: #444; font-size: 0.9rem; }
"""


def write_class_report(workspace: Path, assignment: str) -> ClassReport:
    """Write class_ASSIGNMENT.html, .json and .csv into the workspace; return their paths."""
    ws = Workspace(workspace, assignment)
    summary = summarize(workspace, assignment)
    out = ClassReport(ws.root / f"class_{assignment}.html", ws.root / f"class_{assignment}.json",
                      ws.root / f"class_{assignment}.csv")
    out.html.write_text(render(summary))
    out.json.write_text(json.dumps(summary, indent=1))
    rows = []  # per property: who passed it, then who got each diagnosis
    for key, e in summary["exercises"].items():
        for prop in e["properties"]:
            rows.append([key, prop["name"], "(passed)", prop["passed"], prop["judged"], ""])
            rows += [[key, m["property"], m["diagnosis"], len(m["students"]), prop["judged"], " ".join(m["students"])]
                     for m in e["mistakes"] if m["property"] == prop["name"]]
    tables.write_rows(out.csv, [["exercise", "property", "diagnosis", "students", "of", "who"], *rows])
    return out
