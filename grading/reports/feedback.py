"""Feedback pages, composed by the grader: the verdicts, then the student's notebook, sanitized and capped.

``compose_feedback`` writes one self-contained HTML page (inline CSS, no script, a strict
Content-Security-Policy): a summary table, each exercise's properties with pass/fail and, for a
failure, the grader's sentence, then the notebook. Markdown and HTML outputs are sanitized with nh3
(Ammonia), code and text are escaped, test cells show their release source, images are data URIs
within a size budget, every text is capped, and every line holding a scrub line (a hidden-test line
or a line of grading/*.py) is removed. ``find_leaks`` is the last line of defence: a page that still
shows a scrub line falls back to the summary alone.

``LimitOutputChars`` is the nbgrader preprocessor that keeps the autograded notebook small.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import nbformat
import nh3
from markdown_it import MarkdownIt
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer

from grading import course

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
TAG = re.compile(r"<[^>]*>")
GRADING_DIR = course.GRADING_DIR
MB = 2**20
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
IMAGE_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}

# What student HTML (markdown cells, text/html outputs) may keep: text formatting, tables, links, images.
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
    "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p",
    "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "u", "ul", "var"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title", "width", "height"},
                      "td": {"colspan", "rowspan", "align"}, "th": {"colspan", "rowspan", "align", "scope"},
                      "ol": {"start"}}
SAFE_HREF = re.compile(r"(https?://|mailto:|#)", re.IGNORECASE)
DATA_IMAGE = re.compile(r"data:(image/(?:png|jpeg));base64,([A-Za-z0-9+/=\s]*)\Z")
WORD = re.compile(r"\w+")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/=]+")
DATA_PAYLOAD = re.compile(r"(data:image/[a-z]+;base64,)[A-Za-z0-9+/=]+")
MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table.summary { border-collapse: collapse; margin: 1rem 0; }
table.summary td, table.summary th { border: 1px solid #bbb; padding: 0.3rem 0.7rem; text-align: left; }
.pass { color: #1a7f37; font-weight: bold; }
.fail { color: #b42318; font-weight: bold; }
.cell { border-left: 3px solid #ddd; margin: 1rem 0; padding-left: 0.8rem; }
.cell.test { border-left-color: #8fb3e8; }
.label { color: #666; font-size: 0.85rem; }
pre { background: #f6f8fa; padding: 0.5rem; overflow-x: auto; white-space: pre-wrap; }
pre.stderr { background: #fff5f5; }
pre.error { background: #fde8e8; }
.left-out { color: #666; font-style: italic; }
img { max-width: 100%; }
"""


@dataclass(frozen=True)
class Limits:
    """Caps on what a page shows (characters of rendered text, decoded image bytes)."""

    output_chars: int = 20_000  # per output, per traceback
    source_chars: int = 50_000  # per cell's source
    html_chars: int = 200_000  # raw text/html or markdown read before sanitizing
    message_chars: int = 2_000  # per verdict message, note
    page_text_bytes: int = MB  # all text of the notebook part (UTF-8)
    image_bytes: int = MB  # per image
    page_image_bytes: int = 5 * MB  # all images
    page_bytes: int = 8 * MB  # the whole page


@dataclass(frozen=True)
class ExerciseFeedback:
    """One exercise on the page: its title, points and the grader's verdict (None when nothing was recorded).

    ``verdict`` is duck-typed: ``.exercise``, ``.fraction``, ``.note`` and ``.properties``, each with
    ``.name``, ``.weight``, ``.passed`` and ``.message``.
    """

    title: str
    points: float
    max_points: float
    verdict: Any = None
    grader_points: Optional[float] = None  # set when the instructor changed the points (``points``) by hand


# ---- scrubbing ------------------------------------------------------------------------------------------

def _machine_folders() -> list[tuple[str, str]]:
    """Folders of the grading machine that tracebacks name, longest first, with what a page shows instead:
    ``site-packages/torch/optim/adam.py``, ``course_lib/plotting.py``, ``python3.11/json/decoder.py``."""
    import site
    import sys
    import sysconfig

    import course_lib

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    pairs = [(folder, "site-packages") for folder in site.getsitepackages()]
    pairs += [(sysconfig.get_paths()["purelib"], "site-packages"), (sysconfig.get_paths()["platlib"], "site-packages"),
              (sysconfig.get_paths()["stdlib"], version),
              (str(Path(course_lib.__file__).resolve().parent), "course_lib"),
              (str(course.REPO_ROOT), "course"), (sys.prefix, "python"), (sys.base_prefix, "python")]
    unique = {}
    for folder, shown in pairs:
        for form in {folder, str(Path(folder).resolve())}:
            if len(form) > 1:
                unique.setdefault(form.rstrip("/"), shown)
    return sorted(unique.items(), key=lambda pair: -len(pair[0]))


MACHINE_FOLDERS = dict(_machine_folders())
MACHINE_PATH = re.compile("|".join(re.escape(folder) for folder in MACHINE_FOLDERS) + r"(?![\w.-])")


def shorten_machine_paths(text: str) -> str:
    """``text`` with the grading machine's folders replaced by short names (a student's page shows where a
    traceback passed, not where the course is installed)."""
    return MACHINE_PATH.sub(lambda match: MACHINE_FOLDERS[match.group(0)], text)


def _plain(text: str) -> str:
    """Text as a reader sees it: ANSI codes and control characters dropped, HTML entities resolved."""
    return html.unescape(CONTROL.sub("", ANSI.sub("", text)))


class Needles:
    """Lines to look for, each filed under an anchor: a whole word inside it that every occurrence shows.

    A word with a non-word character on each side within the line stays a whole word wherever the line
    appears (HTML escaping included), so only lines whose anchor is among a text's words need a search.
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = [h for h in dict.fromkeys(lines) if h]
        self.by_anchor: dict[str, list[tuple[str, frozenset[str]]]] = {}
        self.always: list[str] = []  # lines without an inner word
        for h in self.lines:
            inner = [m.group() for m in WORD.finditer(h) if m.start() > 0 and m.end() < len(h)]
            if inner:
                self.by_anchor.setdefault(max(inner, key=len), []).append((h, frozenset(inner)))
            else:
                self.always.append(h)

    def candidates(self, *texts: str) -> list[str]:
        """The lines that may occur in any of ``texts``: every inner word of theirs is a word there."""
        words: set[str] = set()
        for text in texts:
            words.update(WORD.findall(text))
        return self.always + [h for w in words.intersection(self.by_anchor) for h, inner in self.by_anchor[w]
                              if inner <= words]


def _needles(lines: Iterable[str] | Needles) -> Needles:
    return lines if isinstance(lines, Needles) else Needles(lines)


def scrub_text(text: str, scrub: Iterable[str] | Needles) -> tuple[str, int]:
    """``text`` without the lines that hold a scrub line (raw, ANSI-stripped or HTML-unescaped); lines dropped."""
    whole = (text, _plain(text), _plain(TAG.sub("", text)))
    found = [s for s in _needles(scrub).candidates(*whole) if any(s in form for form in whole)]
    if not found:
        return text, 0
    kept, dropped = [], 0
    for line in text.splitlines(keepends=True):
        forms = (line, _plain(line), _plain(TAG.sub("", line)))
        if any(s in form for s in found for form in forms):
            dropped += 1
        else:
            kept.append(line)
    return "".join(kept), dropped


def find_leaks(html_text: str, lines: Iterable[str] | Needles) -> list[str]:
    """The lines found in an HTML page, as markup (escaped or not) or as the text a reader sees."""
    needles = _needles(lines)
    if not any(BASE64_RUN.fullmatch(h) for h in needles.always):  # else a line could hide in an image's payload
        html_text = DATA_PAYLOAD.sub(r"\1", html_text)
    visible = html.unescape(TAG.sub("", html_text))
    leaks = []
    for h in needles.candidates(html_text, visible):
        escaped = html.escape(h)
        if h in visible or h in html_text or (escaped != h and escaped in html_text):
            leaks.append(h)
    found = set(leaks)
    return [h for h in needles.lines if h in found]


def _release_lines() -> set[str]:
    """Stripped lines of the released student notebooks (public, so no secret)."""
    lines: set[str] = set()
    for assignment in course.ASSIGNMENTS:
        path = course.release_notebook(assignment)
        if path.exists():
            for cell in nbformat.read(str(path), as_version=4).cells:
                lines.update(line.strip() for line in cell.source.splitlines())
    return lines


PLAIN_IMPORT = re.compile(  # an import of a module other than grading: public knowledge
    r"(import\s+(?!grading\b)[\w.]+(\s+as\s+\w+)?|from\s+(?!grading\b)[\w.]+\s+import\s+[\w\s,.()]+)\Z")


def grading_code_lines(public: Optional[Iterable[str]] = None, root: Path = GRADING_DIR) -> list[str]:
    """Lines of grading/**/*.py a feedback page must not show: stripped, >= 12 characters, not public.

    Left out, as no secret and common in students' code: lines of ``public`` (default: the release
    notebooks), imports of modules other than ``grading``, lines without a word, lines of fewer than 3
    words shorter than 24 characters (``return model``, ``inside = True``), and this page's own CSS.
    """
    skip = set(_release_lines() if public is None else public) | {line.strip() for line in _CSS.splitlines()}
    lines = []
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            words = len(WORD.findall(line))
            trivial = words < 1 or (words < 3 and len(line) < 24)
            if len(line) >= 12 and not trivial and line not in skip and not PLAIN_IMPORT.match(line):
                lines.append(line)
    return list(dict.fromkeys(lines))


# ---- the notebook part -----------------------------------------------------------------------------------

def _left_out(what: str) -> str:
    return f'<p class="left-out">{html.escape(what)}</p>'


def _cut(text: str, limit: int, keep_tail: bool = False) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    note = f"[... {len(text) - limit} more characters left out ...]"
    return note + "\n" + text[-limit:] if keep_tail else text[:limit] + "\n" + note + "\n"


def _text_of(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _overwrite_carriage_returns(text: str) -> str:
    """What a terminal shows of progress bars: each line's text after its last carriage return."""
    text = text.replace("\r\n", "\n")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


class _Page:
    """Renders the notebook part of one page within its text and image budgets."""

    def __init__(self, scrub: Iterable[str], limits: Limits) -> None:
        self.scrub, self.limits = Needles(scrub), limits
        self.text_left, self.images_left = limits.page_text_bytes, limits.page_image_bytes
        self.why = ""  # why the last image was left out

    # -- budgets
    def _spend_text(self, rendered: str) -> str:
        size = len(rendered.encode())
        if size > self.text_left:
            self.text_left = 0
            return _left_out("left out: this page's text limit was reached")
        self.text_left -= size
        return rendered

    def _image(self, mime: str, b64: str) -> Optional[str]:
        """A checked data URI for an image, or None with the reason in ``self.why``."""
        if len(b64) <= 2 * self.limits.image_bytes:  # longer: too large, whatever whitespace it holds
            b64 = "".join(b64.split())
        size = len(b64) * 3 // 4
        if size > self.limits.image_bytes or size > self.images_left:
            self.why = f"image left out: {size / MB:.1f} MB" + (
                "" if size > self.limits.image_bytes else " (this page's image limit was reached)")
            return None
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            data = b""
        if not data.startswith(IMAGE_MAGIC[mime]):
            self.why = f"image left out: not a valid {mime.split('/')[1].upper()}"
            return None
        self.images_left -= len(data)
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"

    # -- text
    def text_block(self, text: str, css: str, limit: int, keep_tail: bool = False, as_written: bool = False) -> str:
        """Escaped, scrubbed, capped text in a <pre>; the machine's folders shortened unless ``as_written``
        (the student's own source)."""
        text = _cut(text, 4 * limit, keep_tail)  # bound the work before scrubbing
        text = CONTROL.sub("", ANSI.sub("", _overwrite_carriage_returns(text)))
        text = text if as_written else shorten_machine_paths(text)
        text, dropped = scrub_text(text, self.scrub)
        text = _cut(text, limit, keep_tail)
        out = f'<pre class="{css}">{html.escape(text)}</pre>'
        if dropped:
            out += "\n" + _left_out(f"{dropped} line(s) left out: they showed grading code")
        return self._spend_text(out)

    # -- html
    def _attribute(self, tag: str, attribute: str, value: str) -> Optional[str]:
        if tag == "a" and attribute == "href":
            return value if SAFE_HREF.match(value.strip()) else None
        if tag == "img" and attribute == "src":
            match = DATA_IMAGE.match(value.strip())
            return self._image(match.group(1), match.group(2)) if match else None
        return value

    def sanitized(self, markup: str, fallback: Optional[str]) -> str:
        """Student HTML: scrubbed, sanitized with nh3, checked; else ``fallback`` as text, else a placeholder."""
        if len(markup) <= self.limits.html_chars:
            markup, dropped = scrub_text(markup, self.scrub)
            images_before = self.images_left
            clean = nh3.clean(markup, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                              clean_content_tags={"script", "style"}, url_schemes={"http", "https", "mailto", "data"},
                              attribute_filter=self._attribute, link_rel="noopener noreferrer nofollow",
                              strip_comments=True)
            text_size = len(clean.encode()) - (images_before - self.images_left) * 4 // 3  # less the images
            if (text_size <= min(self.limits.output_chars, self.text_left)
                    and not find_leaks(clean, self.scrub)):
                if dropped:
                    clean += "\n" + _left_out(f"{dropped} line(s) left out: they showed grading code")
                self.text_left -= text_size
                return f'<div class="html">\n{clean}\n</div>'
            self.images_left = images_before
        if fallback is not None:
            return self.text_block(fallback, "out", self.limits.output_chars)
        return _left_out(f"HTML output left out: {len(markup) / 1000:.0f} kB")

    # -- cells
    def output(self, output: Mapping, test_cell: bool) -> str:
        """One output of a code cell."""
        kind = output.get("output_type")
        limit = self.limits.output_chars
        if kind == "stream":
            name = "stderr" if output.get("name") == "stderr" else "stdout"
            return self.text_block(_text_of(output.get("text", "")), name, limit)
        if kind == "error":
            ename, evalue = str(output.get("ename", "")), str(output.get("evalue", ""))
            if test_cell:
                return self.text_block(f"{ename}: {_cut(evalue, self.limits.message_chars)}", "error", limit)
            trace = "\n".join(_text_of(t) for t in output.get("traceback", [])[-100:]) or f"{ename}: {evalue}"
            return self.text_block(trace, "error", limit, keep_tail=True)
        data = output.get("data", {}) or {}
        plain = _text_of(data["text/plain"]) if "text/plain" in data else None
        for mime in ("image/png", "image/jpeg"):
            if mime in data:
                uri = self._image(mime, _text_of(data[mime]))
                return f'<img src="{uri}" alt="figure">' if uri else _left_out(self.why)
        if "text/html" in data:
            return self.sanitized(_text_of(data["text/html"]), plain)
        if "text/markdown" in data:
            return self.markdown(_text_of(data["text/markdown"]))
        if plain is not None:
            return self.text_block(plain, "out", limit)
        if kind in ("display_data", "execute_result"):
            return _left_out("output left out: " + ", ".join(sorted(map(str, data))[:5]))
        return ""

    def markdown(self, source: str) -> str:
        """A markdown cell: scrubbed, rendered, sanitized; shown as text when too long."""
        if len(source) > self.limits.html_chars:
            return self.text_block(source, "source", self.limits.source_chars, as_written=True)
        source, _ = scrub_text(source, self.scrub)
        return self.sanitized(MARKDOWN.render(source), source)

    def source(self, source: str) -> str:
        """A code cell's source, escaped."""
        return self.text_block(source, "source", self.limits.source_chars, as_written=True)

    def cell(self, cell: Mapping, release: Mapping[str, Mapping], exercise_of: Mapping[str, str]) -> str:
        """One cell: test and read-only cells with their release source, student cells as written."""
        kind, gid = cell.get("cell_type"), course.grade_id(cell)
        kind = kind if kind in ("code", "markdown") else "raw"
        gid = gid if isinstance(gid, str) else None
        test = course.is_test(cell) or (gid in release and course.is_test(release[gid]))
        given = gid in release and (test or course.is_locked(cell) or course.is_locked(release[gid]))
        text = _text_of((release[gid] if given else cell).get("source", ""))
        if kind == "markdown":
            return f'<div class="cell markdown">\n{self.markdown(text)}\n</div>'
        source = _left_out("test cell (its source is not shown)") if test and not given else self.source(text)
        label = "given code" if given else "your code" if course.is_solution(cell) else "code"
        if test:
            label = "test cell" + (f" for {exercise_of[gid]}" if gid in exercise_of else "")
        parts = [f'<div class="cell {"test" if test else kind}"' + (f' id="cell-{_slug(gid)}"' if gid else "") + ">",
                 f'<p class="label">{html.escape(label)}</p>', source]
        if kind == "code":
            outputs = _merge_streams(cell.get("outputs", []))
            parts += [self.output(o, test) for o in outputs]
        parts.append("</div>")
        return "\n".join(p for p in parts if p)


    def safe_cell(self, cell: Mapping, release: Mapping[str, Mapping], exercise_of: Mapping[str, str]) -> str:
        """One cell, or a placeholder when it is malformed (a student may hand in any JSON)."""
        try:
            return self.cell(cell, release, exercise_of)
        except Exception:  # a malformed cell: show the rest of the notebook
            return '<div class="cell">\n' + _left_out("this cell could not be shown: it is malformed") + "\n</div>"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)[:80]


def _merge_streams(outputs: Sequence[Mapping]) -> list[Mapping]:
    """Outputs with consecutive writes to the same stream joined (as Jupyter shows them)."""
    merged: list[Mapping] = []
    for output in outputs:
        last = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and last is not None and last.get("output_type") == "stream"
                and last.get("name") == output.get("name")):
            merged[-1] = {**last, "text": _text_of(last.get("text", "")) + _text_of(output.get("text", ""))}
        else:
            merged.append(output)
    return merged


# ---- the page ------------------------------------------------------------------------------------------

def _num(x: float) -> str:
    return f"{round(float(x), 2):g}"


def _sentence(text: Any, page: _Page) -> str:
    """A grader's sentence (it may quote the student): scrubbed, capped, escaped."""
    text, _ = scrub_text(shorten_machine_paths(CONTROL.sub("", ANSI.sub("", str(text or "")))), page.scrub)
    return html.escape(_cut(text, page.limits.message_chars).strip())


def _summary(exercises: Sequence[ExerciseFeedback], notes: Sequence[str], page: _Page, assignment: str) -> list[str]:
    """The summary table, the notes, and each exercise's properties."""
    rows, details = [], []
    test_cells = {e.key: e.test_cell for e in course.EXERCISES.get(assignment, ())}
    for i, ex in enumerate(exercises):
        props = list(getattr(ex.verdict, "properties", None) or [])
        passed = sum(bool(p.passed) for p in props)
        title = html.escape(ex.title)
        by_hand = " (set by your instructor)" if ex.grader_points is not None else ""
        rows.append(f'<tr><td><a href="#exercise-{i}">{title}</a></td><td>{_num(ex.points)} / {_num(ex.max_points)}'
                    f"{by_hand}</td><td>{passed} of {len(props)}</td></tr>")
        details.append(f'<h3 id="exercise-{i}">{title}: {_num(ex.points)} / {_num(ex.max_points)} points</h3>')
        if ex.grader_points is not None:
            details.append(f'<p class="adjusted">Your instructor set these points to {_num(ex.points)} by hand; the '
                           f"grader's verdict below gave {_num(ex.grader_points)}.</p>")
        note = "No result was recorded for this exercise." if ex.verdict is None else getattr(ex.verdict, "note", "")
        if note:
            details.append(f"<p>{_sentence(note, page)}</p>")
        key = getattr(ex.verdict, "exercise", None)
        if key in test_cells:
            details.append(f'<p><a href="#cell-{_slug(test_cells[key])}">Its test cell in your notebook</a></p>')
        total = sum(float(p.weight) for p in props) or 1.0
        items = []
        for p in props:
            share = _num(ex.max_points * float(p.weight) / total)
            verdict = '<span class="pass">passed</span>' if p.passed else '<span class="fail">failed</span>'
            line = f"<li>{verdict}: {_sentence(p.name, page)} ({share} points)"
            message = getattr(p, "message", "")
            if not p.passed and message and message != note and not note.endswith(": " + message):  # said once
                line += f"<br>\n{_sentence(message, page)}"
            items.append(line + "</li>")
        if items:
            details.append("<ul>\n" + "\n".join(items) + "\n</ul>")
    points = sum(float(e.points) for e in exercises)
    most = sum(float(e.max_points) for e in exercises)
    out = ['<h2>Summary</h2>', '<table class="summary">',
           "<tr><th>Exercise</th><th>Points</th><th>Properties passed</th></tr>", *rows,
           f"<tr><th>Total</th><th>{_num(points)} / {_num(most)}</th><th></th></tr>", "</table>"]
    if notes:
        out += ["<h2>Notes</h2>", "<ul>", *(f"<li>{_sentence(n, page)}</li>" for n in notes), "</ul>"]
    return out + ["<h2>Exercises</h2>", *details]


def _document(title: str, body: list[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="referrer" content="no-referrer">', f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>", "</head>", "<body>", *body, "</body>", "</html>", ""])


def compose_feedback(exercises: Sequence[ExerciseFeedback], notebook: Optional[Mapping], release: Mapping,
                     scrub_lines: Iterable[str], *, student: str, assignment: str, timestamp: str = "",
                     notes: Sequence[str] = (), limits: Limits = Limits()) -> str:
    """One self-contained, sanitized HTML feedback page for one submission of one assignment.

    ``notebook``: the autograded notebook (with outputs; None when there is none); ``release``: the
    student version, whose source every test and read-only cell shows; ``scrub_lines``: lines never to show.
    """
    scrub = [s for s in dict.fromkeys(str(s).strip() for s in scrub_lines) if s]
    scrub += [course.HIDDEN_BEGIN, course.HIDDEN_END]
    page = _Page(scrub, limits)
    title = f"Feedback: {assignment}"
    head = [f"<h1>{html.escape(title)}</h1>",
            f"<p>{_sentence(student, page)}" + (f" · {_sentence(timestamp, page)}" if timestamp else "") + "</p>"]
    summary = _summary(exercises, notes, page, assignment)
    exercise_of = {e.test_cell: e.name for e in course.EXERCISES.get(assignment, ())}
    released = {course.grade_id(c): c for c in release.get("cells", []) if course.grade_id(c)}
    cells = ["<h2>Your notebook</h2>"]
    if notebook is None:
        cells.append(_left_out("Your notebook could not be shown."))
    else:
        cells += [page.safe_cell(c, released, exercise_of) for c in notebook.get("cells", [])]
    for body in (head + summary + cells, head + summary + ["<h2>Your notebook</h2>", _left_out(
            "Your notebook is not shown: it was too large or showed grading code.")]):
        text = _document(title, body)
        if len(text.encode()) <= limits.page_bytes and not find_leaks(text, page.scrub):
            return text
    return _document(title, [f"<h1>{html.escape(title)}</h1>", _left_out(
        "This feedback could not be shown; ask your instructor.")])


# ---- nbgrader preprocessors ------------------------------------------------------------------------------

def limit_outputs(cell: Mapping, max_chars: int, max_image_bytes: int) -> None:
    """Cut a code cell's text outputs to ``max_chars`` and replace images over ``max_image_bytes``, in place."""
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            output["text"] = _cut(_text_of(output.get("text", "")), max_chars)
        elif kind == "error":
            output["evalue"] = _cut(str(output.get("evalue", "")), max_chars)
            output["traceback"] = [_cut(_text_of(t), max_chars) for t in output.get("traceback", [])[-100:]]
        elif "data" in output:
            data = output["data"]
            for mime in list(data):
                value = data[mime]
                size = len(value) if isinstance(value, str) else len(json.dumps(value))
                if mime.startswith("image/") and size * 3 // 4 > max_image_bytes:
                    del data[mime]
                    data["text/plain"] = f"image left out: {size * 3 / 4 / MB:.1f} MB"
                elif not mime.startswith("image/") and size > max_chars:
                    if isinstance(value, (str, list)) and mime.startswith("text/"):
                        data[mime] = _cut(_text_of(value), max_chars)
                    else:
                        del data[mime]
            if not data:
                data["text/plain"] = "output left out: too large"


class LimitOutputChars(NbGraderPreprocessor):
    """Cut each output to a number of characters and drop large images (nbgrader's LimitOutput counts lines)."""

    max_output_chars = Integer(100_000, help="Longest text kept per output.").tag(config=True)
    max_image_bytes = Integer(2 * MB, help="Largest image kept per output (decoded bytes).").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        """Cut one cell's outputs."""
        if cell.cell_type == "code":
            limit_outputs(cell, self.max_output_chars, self.max_image_bytes)
        return cell, resources
