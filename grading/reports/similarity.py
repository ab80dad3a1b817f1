"""Similarity report: which students' exercise code is suspiciously alike, ranked pair by pair.

    python -m grading.reports.similarity ASSIGNMENT [--workspace W] [--top N]

Only what each student wrote is compared: the answer cells of the placed (repaired) submissions,
minus every line the release already has in that cell (signature, docstring, ``# YOUR CODE HERE``,
``raise NotImplementedError()``). Each exercise's code is tokenized and fingerprinted with copydetect
(MOSS-style winnowing over k-grams of the filtered token stream: names become ``V``/``F``/``O``,
strings ``S``, whitespace and comments vanish, so renaming, reformatting and comment changes do not
hide a copy; winnowing matches local runs, so reordered statements still match piece by piece).
Fingerprints of the release's code and of the reference solution are boilerplate: code that every
correct solution shares is not evidence.

Scores: for a pair (a, b), copydetect gives per exercise the fraction of a's fingerprinted tokens found
in b and the other way round. Summed over exercises, ``similarity_a`` = a's matched tokens / all of a's
fingerprinted tokens (the same for b), and the pair's ``similarity`` is the MEAN of the two directions
(a small snippet wholly contained in a large solution scores one half, not one). Per exercise, the
same mean of that exercise's two fractions. ``shared_tokens`` sums the smaller matched count of each
exercise. Since the reference is boilerplate, two students who both hand in the reference solution
score about zero against each other: the columns ``reference_a`` / ``reference_b`` give each student's
similarity to the reference (release code only as boilerplate) for that case.

Writes ``similarity_ASSIGNMENT.csv`` and a self-contained ``similarity_ASSIGNMENT.html`` (no script,
inline styles, student text escaped) into the workspace.
"""

from __future__ import annotations

import argparse
import html
import io
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import nbformat
import numpy as np
from nbformat import NotebookNode

from grading.course import (
    ASSIGNMENTS,
    EXERCISES,
    SOLUTION_BEGIN,
    SOLUTION_END,
    grade_id,
    is_solution,
    release_notebook,
    source_notebook,
)
from grading.reports import tables
from grading.running.workspace import Workspace

NOISE_T = 20  # copydetect k: shortest run of filtered characters that counts as a match
GUARANTEE_T = 24  # runs this long are always found (window = GUARANTEE_T - NOISE_T + 1)
MAX_CODE_CHARS = 20_000  # per student and exercise; longer code is cut (and said so)
DEFAULT_TOP = 50
MARK_STYLE = "background:#ffd27f;"


@dataclass
class StudentCode:
    """What one student wrote: exercise key -> code with the release's skeleton removed."""

    student_id: str
    name: str
    code: dict[str, str]
    notes: list[str] = field(default_factory=list)


@dataclass
class Pair:
    """Two students' similarity, overall and per exercise, with the matched slices for the report."""

    a: StudentCode
    b: StudentCode
    similarity: float
    similarity_a: float
    similarity_b: float
    shared_tokens: int
    per_exercise: dict[str, Optional[float]]
    slices: dict[str, tuple[np.ndarray, np.ndarray]]
    reference_a: float = 0.0
    reference_b: float = 0.0


def _cells_by_id(nb: NotebookNode) -> dict[str, str]:
    """grade_id -> source of the answer cells (the last one wins where metadata repair left two)."""
    return {grade_id(c): c.source for c in nb.cells if c.cell_type == "code" and is_solution(c) and grade_id(c)}


def strip_skeleton(source: str, skeleton: str) -> str:
    """The lines of ``source`` the student wrote: blank lines, solution markers and lines of ``skeleton``
    (compared stripped) removed."""
    given = {line.strip() for line in skeleton.splitlines() if line.strip()}
    kept = [line for line in source.splitlines()
            if line.strip() and line.strip() not in given
            and SOLUTION_BEGIN not in line and SOLUTION_END not in line]
    return "\n".join(kept)


def exercise_code(nb: NotebookNode, release: NotebookNode, assignment: str) -> dict[str, str]:
    """Exercise key -> what the notebook has in that answer cell beyond the release's skeleton."""
    mine, given = _cells_by_id(nb), _cells_by_id(release)
    return {e.key: strip_skeleton(mine.get(e.solution_cell, ""), given.get(e.solution_cell, ""))
            for e in EXERCISES[assignment]}


def student_code(student_id: str, name: str, nb: NotebookNode, release: NotebookNode,
                 assignment: str) -> StudentCode:
    """A student's exercise code, each exercise cut at MAX_CODE_CHARS (noted)."""
    code, notes = {}, []
    for key, text in exercise_code(nb, release, assignment).items():
        if len(text) > MAX_CODE_CHARS:
            notes.append(f"{key}: {len(text)} characters, compared the first {MAX_CODE_CHARS}")
            text = text[:MAX_CODE_CHARS]
        code[key] = text
    return StudentCode(student_id, name, code, notes)


def _fingerprint(code: str, boilerplate: np.ndarray, noise_t: int, guarantee_t: int, window: Optional[int] = None):
    """copydetect's CodeFingerprint of Python source held in memory."""
    from copydetect.detector import CodeFingerprint

    win = window if window is not None else guarantee_t - noise_t + 1
    return CodeFingerprint("code.py", noise_t, win, boilerplate, filter=True, language="python",
                           fp=io.StringIO(code))


def boilerplate_hashes(sources: Iterable[str], noise_t: int = NOISE_T) -> np.ndarray:
    """Every k-gram hash of the given code (copydetect's boilerplate: its matches are not evidence)."""
    hashes: set[int] = set()
    for text in sources:
        if text.strip():
            hashes |= set(_fingerprint(text, np.array([]), noise_t, noise_t, window=1).hashes)
    return np.unique(np.array(sorted(hashes), dtype=np.int64))


def release_code(release: NotebookNode) -> list[str]:
    """The source of every code cell of the release (given code, skeletons)."""
    return [c.source for c in release.cells if c.cell_type == "code"]


def reference_code(source: NotebookNode, release: NotebookNode, assignment: str) -> dict[str, str]:
    """Exercise key -> the reference solution's code beyond the release's skeleton."""
    return exercise_code(source, release, assignment)


class _Prints:
    """Fingerprints of every student's exercises under one boilerplate."""

    def __init__(self, students: Sequence[StudentCode], boilerplate: np.ndarray, noise_t: int, guarantee_t: int):
        self.prints = {s.student_id: {k: _fingerprint(c, boilerplate, noise_t, guarantee_t) if c else None
                                      for k, c in s.code.items()} for s in students}

    def coverage(self, student: str) -> float:
        """The student's fingerprinted tokens, all exercises together."""
        return float(sum(fp.token_coverage for fp in self.prints[student].values() if fp is not None))


def _compare(fa, fb) -> tuple[float, float, float, float, tuple]:
    """(matched tokens of a, of b, fraction of a, fraction of b, slices) of two fingerprints."""
    from copydetect.detector import compare_files

    if fa is None or fb is None or fa.token_coverage == 0 or fb.token_coverage == 0:
        return 0.0, 0.0, 0.0, 0.0, ()
    _, (sa, sb), slices = compare_files(fa, fb)
    return float(sa) * fa.token_coverage, float(sb) * fb.token_coverage, float(sa), float(sb), slices


def similarity_to_reference(students: Sequence[StudentCode], assignment: str, release: NotebookNode,
                            source: Optional[NotebookNode], noise_t: int = NOISE_T,
                            guarantee_t: int = GUARANTEE_T) -> dict[str, float]:
    """Each student's share of exercise code found in the reference solution (only the release as
    boilerplate); {} without a source notebook."""
    reference = reference_code(source, release, assignment) if source is not None else {}
    if not reference:
        return {}
    keys = [e.key for e in EXERCISES[assignment]]
    ref = StudentCode("(reference)", "reference solution", reference)
    raw = _Prints([*students, ref], boilerplate_hashes(release_code(release), noise_t), noise_t, guarantee_t)
    out = {}
    for s in students:
        matched = sum(_compare(raw.prints[s.student_id][k], raw.prints[ref.student_id][k])[0] for k in keys)
        total = raw.coverage(s.student_id)
        out[s.student_id] = matched / total if total else 0.0
    return out


def compare_students(students: Sequence[StudentCode], assignment: str, release: NotebookNode,
                     source: Optional[NotebookNode] = None, noise_t: int = NOISE_T,
                     guarantee_t: int = GUARANTEE_T, to_reference: Optional[Mapping[str, float]] = None) -> list[Pair]:
    """Every pair of students, most similar first (release and reference solution as boilerplate);
    ``to_reference``: ``similarity_to_reference`` when already computed."""
    if guarantee_t < noise_t:
        raise ValueError(f"guarantee_t ({guarantee_t}) must be at least noise_t ({noise_t})")
    keys = [e.key for e in EXERCISES[assignment]]
    reference = reference_code(source, release, assignment) if source is not None else {}
    given = release_code(release)
    prints = _Prints(students, boilerplate_hashes([*given, *reference.values()], noise_t), noise_t, guarantee_t)
    if to_reference is None:
        to_reference = similarity_to_reference(students, assignment, release, source, noise_t, guarantee_t)
    pairs = []
    for a, b in itertools.combinations(students, 2):
        matched_a = matched_b = shared = 0.0
        per_exercise, slices = {}, {}
        for key in keys:
            fa, fb = prints.prints[a.student_id][key], prints.prints[b.student_id][key]
            ma, mb, sa, sb, sl = _compare(fa, fb)
            both = fa is not None and fb is not None and fa.token_coverage > 0 and fb.token_coverage > 0
            per_exercise[key] = (sa + sb) / 2 if both else None
            matched_a, matched_b, shared = matched_a + ma, matched_b + mb, shared + min(ma, mb)
            if sl and len(sl[0]) and len(sl[0][0]):
                slices[key] = sl
        cov_a, cov_b = prints.coverage(a.student_id), prints.coverage(b.student_id)
        sim_a = matched_a / cov_a if cov_a else 0.0
        sim_b = matched_b / cov_b if cov_b else 0.0
        pairs.append(Pair(a, b, (sim_a + sim_b) / 2, sim_a, sim_b, int(round(shared)), per_exercise, slices,
                          to_reference.get(a.student_id, 0.0), to_reference.get(b.student_id, 0.0)))
    pairs.sort(key=lambda p: (-p.similarity, -p.shared_tokens, p.a.student_id, p.b.student_id))
    return pairs


# ----------------------------------------------------------------------------------------- output

def csv_rows(pairs: Sequence[Pair], keys: Sequence[str]) -> list[dict]:
    """The CSV's rows: rank, both students, the scores and one column per exercise."""
    rows = []
    for rank, p in enumerate(pairs, 1):
        rows.append({"rank": rank, "student_a": p.a.student_id, "student_b": p.b.student_id,
                     "name_a": p.a.name, "name_b": p.b.name, "similarity": round(p.similarity, 4),
                     "similarity_a": round(p.similarity_a, 4), "similarity_b": round(p.similarity_b, 4),
                     "shared_tokens": p.shared_tokens,
                     **{k: "" if p.per_exercise.get(k) is None else round(p.per_exercise[k], 4) for k in keys},
                     "reference_a": round(p.reference_a, 4), "reference_b": round(p.reference_b, 4)})
    return rows


def write_csv(path: Path, pairs: Sequence[Pair], keys: Sequence[str]) -> None:
    """The ranked pairs as CSV (UTF-8)."""
    fields = ["rank", "student_a", "student_b", "name_a", "name_b", "similarity", "similarity_a", "similarity_b",
              "shared_tokens", *keys, "reference_a", "reference_b"]
    tables.write_dicts(path, fields, csv_rows(pairs, keys))


def _word(char: str) -> bool:
    return char.isalnum() or char == "_"


def highlighted(code: str, slices: Optional[np.ndarray]) -> str:
    """The code as escaped HTML, the matched slices wrapped in <mark>."""
    if slices is None or not len(slices) or not len(slices[0]):
        return html.escape(code)
    from copydetect.utils import highlight_overlap

    bounds = np.clip(np.asarray(slices, dtype=np.int64), 0, len(code))
    for j in range(bounds.shape[1]):  # copydetect's offsets can land inside a name: widen to whole names
        start, end = int(bounds[0, j]), int(bounds[1, j])
        while 0 < start < len(code) and _word(code[start - 1]) and _word(code[start]):
            start -= 1
        while 0 < end < len(code) and _word(code[end - 1]) and _word(code[end]):
            end += 1
        bounds[0, j], bounds[1, j] = start, end
    marked, _ = highlight_overlap(code, bounds, f'<mark style="{MARK_STYLE}">', "</mark>", escape_html=True)
    return marked


def _percent(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


CELL = "border:1px solid #ccc;padding:4px 8px;vertical-align:top;"
PRE = "margin:0;white-space:pre-wrap;font-size:12px;font-family:monospace;"


def _pair_section(rank: int, p: Pair, keys: Sequence[str]) -> list[str]:
    """One pair: scores, then each exercise's code side by side with the matches marked."""
    a, b = html.escape(p.a.student_id), html.escape(p.b.student_id)
    na, nb_ = html.escape(p.a.name), html.escape(p.b.name)
    out = [f'<h2 id="pair-{rank}" style="font-size:18px;margin-top:28px;">{rank}. {a} ({na}) &amp; {b} ({nb_}): '
           f"{_percent(p.similarity)}</h2>",
           f"<p>{a}: {_percent(p.similarity_a)} of its code matched; {b}: {_percent(p.similarity_b)}; "
           f"{p.shared_tokens} shared tokens. Similarity to the reference solution: {a} "
           f"{_percent(p.reference_a)}, {b} {_percent(p.reference_b)}.</p>"]
    for note in p.a.notes + p.b.notes:
        out.append(f"<p><em>{html.escape(note)}</em></p>")
    out.append(f'<table style="border-collapse:collapse;width:100%;table-layout:fixed;">'
               f'<tr><th style="{CELL}width:12%;">exercise</th><th style="{CELL}">{a}</th>'
               f'<th style="{CELL}">{b}</th></tr>')
    for key in keys:
        sl = p.slices.get(key)
        left = highlighted(p.a.code.get(key, ""), sl[0] if sl else None)
        right = highlighted(p.b.code.get(key, ""), sl[1] if sl else None)
        out.append(f'<tr><td style="{CELL}">{html.escape(key)}<br>{_percent(p.per_exercise.get(key))}</td>'
                   f'<td style="{CELL}"><pre style="{PRE}">{left}</pre></td>'
                   f'<td style="{CELL}"><pre style="{PRE}">{right}</pre></td></tr>')
    out.append("</table>")
    return out


def render_html(assignment: str, pairs: Sequence[Pair], keys: Sequence[str], n_students: int,
                to_reference: Optional[Mapping[str, float]] = None) -> str:
    """The self-contained report page: the students closest to the reference solution, a ranked table of
    pairs, then each pair's code side by side."""
    title = f"Similarity report: {html.escape(assignment)}"
    body = [f"<h1 style=\"font-size:22px;\">{title}</h1>",
            f"<p>{n_students} students, {len(pairs)} most similar pairs shown. Similarity is the mean of the two "
            "directions (the share of each student's exercise code found in the other's), after removing the "
            "release's skeleton and the code the reference solution and the release share with it (copydetect "
            "winnowing on normalized tokens). A high score asks for a human look; it proves nothing.</p>",
            *_reference_table(to_reference or {}),
            '<table style="border-collapse:collapse;">',
            f'<tr><th style="{CELL}">rank</th><th style="{CELL}">student a</th><th style="{CELL}">student b</th>'
            f'<th style="{CELL}">similarity</th><th style="{CELL}">shared tokens</th>'
            + "".join(f'<th style="{CELL}">{html.escape(k)}</th>' for k in keys) + "</tr>"]
    for rank, p in enumerate(pairs, 1):
        body.append(f'<tr><td style="{CELL}"><a href="#pair-{rank}">{rank}</a></td>'
                    f'<td style="{CELL}">{html.escape(p.a.student_id)}<br>{html.escape(p.a.name)}</td>'
                    f'<td style="{CELL}">{html.escape(p.b.student_id)}<br>{html.escape(p.b.name)}</td>'
                    f'<td style="{CELL}">{_percent(p.similarity)}</td><td style="{CELL}">{p.shared_tokens}</td>'
                    + "".join(f'<td style="{CELL}">{_percent(p.per_exercise.get(k))}</td>' for k in keys)
                    + "</tr>")
    body.append("</table>")
    for rank, p in enumerate(pairs, 1):
        body += _pair_section(rank, p, keys)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title></head>\n<body style=\"font-family:sans-serif;margin:16px;\">\n"
            + "\n".join(body) + "\n</body></html>\n")


REFERENCE_SHOWN = 0.5  # students at least this similar to the reference solution are listed first


def _reference_table(to_reference: Mapping[str, float]) -> list[str]:
    close = sorted(((v, s) for s, v in to_reference.items() if v >= REFERENCE_SHOWN), key=lambda x: (-x[0], x[1]))
    head = (f"<h2 style=\"font-size:18px;\">Close to the reference solution</h2><p>Students whose exercise code is "
            f"at least {_percent(REFERENCE_SHOWN)} the reference solution's (only the release as boilerplate): "
            "two students who both hand in the published solution score about zero against each other below, "
            "so they show here.</p>")
    if not close:
        return [head, "<p>None.</p>"]
    rows = "".join(f'<tr><td style="{CELL}">{html.escape(s)}</td><td style="{CELL}">{_percent(v)}</td></tr>'
                   for v, s in close)
    return [head, f'<table style="border-collapse:collapse;"><tr><th style="{CELL}">student</th>'
                  f'<th style="{CELL}">similarity to the reference</th></tr>{rows}</table>',
            '<h2 style="font-size:18px;">Most similar pairs</h2>']


# ------------------------------------------------------------------------------------- workspace

def _names(ws: Workspace) -> dict[str, str]:
    """student_id -> original name, from the grade CSV when there is one."""
    try:
        return {row["student_id"]: row.get("student_name", "") for row in tables.read_dicts(ws.grades_csv())[1]}
    except (OSError, KeyError):
        return {}


def load_students(ws: Workspace, release: NotebookNode) -> list[StudentCode]:
    """Every placed submission of the workspace, as StudentCode (its notebooks were repaired on placing)."""
    names = _names(ws)
    folder = ws.root / "submitted"
    students = []
    for path in sorted(folder.glob(f"*/{ws.assignment}/{ws.notebook_name()}")):
        student = path.parent.parent.name
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception as exc:  # noqa: BLE001 - a placed notebook nbformat cannot read: leave it out, say so
            print(f"WARNING: {student}: unreadable placed notebook ({type(exc).__name__}), left out",
                  file=sys.stderr)
            continue
        students.append(student_code(student, names.get(student, "") or student, nb, release, ws.assignment))
    return students


def _notebook(first: Path, fallback: Path) -> NotebookNode:
    return nbformat.read(str(first if first.is_file() else fallback), as_version=4)


def reference_csv(ws: Workspace) -> Path:
    """Every student's similarity to the reference solution (written with the similarity report)."""
    return ws.root / f"similarity_{ws.assignment}_reference.csv"


def similarity_report(assignment: str, workspace: Path, top: int = DEFAULT_TOP, noise_t: int = NOISE_T,
                      guarantee_t: int = GUARANTEE_T) -> tuple[Path, Path, list[Pair]]:
    """Compare every placed submission of a workspace; write the CSV and HTML; return their paths and
    the pairs written (``top`` most similar; 0 for all)."""
    if assignment not in EXERCISES:
        raise ValueError(f"unknown assignment {assignment!r}; known: {', '.join(EXERCISES)}")
    ws = Workspace(workspace, assignment)
    release = _notebook(ws.release_notebook(), release_notebook(assignment))
    source = _notebook(ws.source_notebook(), source_notebook(assignment))
    students = load_students(ws, release)
    if len(students) < 2:
        raise ValueError(f"{len(students)} placed submission(s) in {ws.root / 'submitted'}: nothing to compare "
                         "(grade the assignment first)")
    to_reference = similarity_to_reference(students, assignment, release, source, noise_t, guarantee_t)
    pairs = compare_students(students, assignment, release, source, noise_t, guarantee_t, to_reference)
    shown = pairs[:top] if top > 0 else pairs
    keys = [e.key for e in EXERCISES[assignment]]
    csv_path, html_path = ws.root / f"similarity_{assignment}.csv", ws.root / f"similarity_{assignment}.html"
    write_csv(csv_path, shown, keys)
    tables.write_rows(reference_csv(ws), [["student_id", "similarity_to_reference"],
                                          *sorted(([s, round(v, 4)] for s, v in to_reference.items()),
                                                  key=lambda row: (-row[1], row[0]))])
    html_path.write_text(render_html(assignment, shown, keys, len(students), to_reference), encoding="utf-8")
    return csv_path, html_path, shown


def summary(pairs: Sequence[Pair], count: int = 5) -> Mapping[str, float]:
    """'a & b' -> similarity of the first ``count`` pairs (for printing)."""
    return {f"{p.a.student_id} & {p.b.student_id}": round(p.similarity, 3) for p in pairs[:count]}


def main(argv: Optional[list[str]] = None) -> int:
    """Write the similarity report of an already-graded workspace; 0 on success, 2 on error."""
    from grading.settings import defaults

    p = argparse.ArgumentParser(prog="python -m grading.reports.similarity", description=__doc__.split("\n")[0])
    p.add_argument("assignment", choices=ASSIGNMENTS)
    p.add_argument("--workspace", type=Path, default=defaults()["workspace"], help="the graded workspace")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, help="pairs in the report (0: all)")
    p.add_argument("--noise", type=int, default=NOISE_T, help="copydetect noise threshold k")
    p.add_argument("--guarantee", type=int, default=GUARANTEE_T, help="copydetect guarantee threshold")
    args = p.parse_args(argv)
    try:
        csv_path, html_path, pairs = similarity_report(args.assignment, args.workspace, args.top, args.noise,
                                                       args.guarantee)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for pair, score in summary(pairs).items():
        print(f"{score:.3f}  {pair}", file=sys.stderr)
    print(f"similarity report: {html_path}; table: {csv_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
