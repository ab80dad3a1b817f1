"""Feedback pages: no active content, capped sizes, no hidden or grading line, verdicts per property."""

from __future__ import annotations

import base64
import html
from html.parser import HTMLParser
from types import SimpleNamespace

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from grading import course
from grading.reports.feedback import (
    ExerciseFeedback,
    LimitOutputChars,
    Limits,
    compose_feedback,
    find_leaks,
    grading_code_lines,
)

MB = 2**20
HIDDEN = 'from grading.sandbox.probe import record; record("adam", Adam)'
CHECK = "assert torch.allclose(p_student, p_oracle, atol=1e-6)"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
ATTACKS = [
    "<script>alert('x')</script>",
    '<img src="x" onerror="alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    '<a href=" JaVaScRiPt:alert(1)">click2</a>',
    '<iframe src="https://evil.example"></iframe>',
    '<svg onload="alert(1)"><script>alert(2)</script></svg>',
    "<style>body { display: none }</style>",
    '<div style="position:fixed;top:0">overlay</div>',
    '<object data="x.swf"></object><embed src="x.swf">',
    '<form action="https://evil.example"><input name="p"></form>',
    '<img src="https://tracker.example/pixel.png">',
    '<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=">',
    '<a href="data:text/html,<script>alert(1)</script>">data</a>',
    '<base href="https://evil.example/"><meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
]


def verdict(key: str, props: list[tuple[str, float, bool, str]], note: str = "") -> SimpleNamespace:
    """A verdict shaped like grading.judging.ExerciseVerdict."""
    properties = [SimpleNamespace(name=n, weight=w, passed=p, message=m) for n, w, p, m in props]
    total = sum(w for _, w, _, _ in props)
    return SimpleNamespace(exercise=key, note=note, properties=properties,
                           fraction=sum(w for _, w, p, _ in props if p) / total)


def graded_test_cell(grade_id: str, source: str, **kwargs) -> nbformat.NotebookNode:
    """A graded, locked test cell."""
    cell = new_code_cell(source, **kwargs)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "locked": True, "points": 5,
                                 "solution": False, "schema_version": 3}
    return cell


def answer_cell(grade_id: str, source: str, **kwargs) -> nbformat.NotebookNode:
    """A student's answer cell."""
    cell = new_code_cell(source, **kwargs)
    cell.metadata["nbgrader"] = {"grade": False, "grade_id": grade_id, "locked": False, "solution": True,
                                 "schema_version": 3}
    return cell


def stream(text: str, name: str = "stdout") -> nbformat.NotebookNode:
    return new_output("stream", name=name, text=text)


def code(source: str, outputs: list) -> nbformat.NotebookNode:
    """A code cell, unvalidated (validating 40 MB outputs takes seconds)."""
    return nbformat.from_dict({"cell_type": "code", "source": source, "outputs": outputs, "metadata": {},
                               "execution_count": None})


def display(data: dict) -> nbformat.NotebookNode:
    return nbformat.from_dict({"output_type": "display_data", "data": data, "metadata": {}})  # unvalidated: fast


def compose(cells, release_cells=(), exercises=(), scrub=(HIDDEN, CHECK), **kwargs) -> str:
    kwargs.setdefault("notes", [])
    notebook, release = (nbformat.from_dict({"cells": list(c), "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
                         for c in (cells, release_cells))
    return compose_feedback(list(exercises), notebook, release, scrub, student="Zoë <b>Ng</b>",
                            assignment="optimization", timestamp="2026-11-22 15:00", **kwargs)


class Tags(HTMLParser):
    """Every start tag with its attributes, where it is (head or body), and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict, bool]] = []
        self.in_body = False
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.in_body = self.in_body or tag == "body"
        self.tags.append((tag, dict(attrs), self.in_body))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Tags:
    parser = Tags()
    parser.feed(page)
    parser.close()
    return parser


def assert_inert(page: str) -> None:
    """No script, frame, plugin, form, style or link in the body; no handler, no javascript:, images data: only."""
    tags = parse(page).tags
    banned = {"script", "iframe", "frame", "object", "embed", "form", "input", "svg", "style", "link", "meta",
              "base", "math", "noscript", "template"}
    assert [t for t, _, body in tags if body and t in banned] == []
    assert [t for t, _, body in tags if not body] == ["html", "head", "meta", "meta", "meta", "title", "style"]
    csp = [a for t, a, _ in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert len(csp) == 1 and "default-src 'none'" in csp[0]["content"] and "script" not in csp[0]["content"]
    for tag, attrs, body in tags:
        assert not [a for a in attrs if a.lower().startswith("on")], (tag, attrs)
        if body:
            assert "style" not in attrs, (tag, attrs)
        for name in ("href", "src", "action", "data", "formaction"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("javascript:", "vbscript:", "data:text")), (tag, attrs)
        if tag == "img":
            assert attrs.get("src") is None or attrs["src"].startswith(("data:image/png;", "data:image/jpeg;"))
        if tag == "a" and attrs.get("href"):
            assert attrs["href"].startswith(("https://", "http://", "mailto:", "#")), attrs


def test_markdown_and_html_outputs_are_sanitized():
    """Attacks in markdown cells and in text/html outputs leave no active content; harmless markup stays."""
    attack = "\n\n".join(ATTACKS)
    cells = [new_markdown_cell("# My notes\n\nSome **bold** text and [a link](https://pytorch.org).\n\n" + attack),
             new_markdown_cell("[js](javascript:alert(1)) ![img](x.png) ![ok](data:image/png;base64,"
                               + base64.b64encode(PNG).decode() + ")"),
             new_code_cell("display(HTML(x))", outputs=[
                 display({"text/html": "<table><tr><td>cell 1</td></tr></table>" + attack, "text/plain": "table"}),
                 display({"text/html": "<b>html</b><script>document.write(1)</script>", "text/plain": "p",
                          "application/javascript": "alert(1)", "image/svg+xml": "<svg onload='alert(1)'/>"}),
                 display({"application/javascript": "alert(1)"}),
                 display({"image/svg+xml": "<svg><script>alert(1)</script></svg>"})])]
    page = compose(cells)
    assert_inert(page)
    text = "".join(parse(page).text)
    assert "alert" not in text.replace("javascript:alert(1)", "")  # scripts' content is dropped, not shown
    assert "<h1>My notes</h1>" in page and "<strong>bold</strong>" in page and "cell 1" in page
    assert 'href="https://pytorch.org"' in page and "overlay" in page
    assert page.count('src="data:image/png;base64,') == 1
    assert "Zoë &lt;b&gt;Ng&lt;/b&gt;" in page


def test_three_40_mb_images_make_a_small_page():
    """Each image over 1 MB is a placeholder; the page's images stop at 5 MB; the page stays under 10 MB."""
    big = base64.b64encode(PNG + b"\0" * (40 * MB)).decode()
    medium = base64.b64encode(PNG + b"\1" * (900 * 2**10)).decode()
    cells = [code(f"plot({i})", [display({"image/png": big, "text/plain": "<Figure>"})]) for i in range(3)]
    cells += [code("plot()", [display({"image/png": medium})]) for _ in range(8)]
    cells.append(code("bad()", [display({"image/png": base64.b64encode(b"GIF89a" * 9).decode()}),
                                                 display({"image/jpeg": "not base64 at all!"})]))
    page = compose(cells)
    assert len(page.encode()) < 10 * MB
    assert page.count("image left out: 40.0 MB") == 3
    assert page.count('src="data:image/png;base64,') == 5  # 5 x 0.9 MB within the page's 5 MB
    assert page.count("image limit was reached") == 3
    assert page.count("not a valid") == 2
    assert_inert(page)


def test_text_is_capped_per_output_and_per_page():
    """A 5 MB print is cut; many large outputs stop at the page's text limit."""
    cells = [new_code_cell("print(x)", outputs=[stream("y" * (5 * MB))])]
    cells += [new_code_cell("print(x)", outputs=[stream("🙂" * 15_000)]) for _ in range(80)]  # 4 bytes each
    cells += [new_code_cell("print(x)", outputs=[stream(("z" * 99 + "\n") * 190)]) for _ in range(80)]
    cells.append(new_code_cell("print(x) " * 100_000))
    page = compose(cells)
    assert len(page.encode()) < 1.5 * MB and "Your notebook is not shown" not in page
    assert "more characters left out" in page and "text limit was reached" in page


def test_hidden_lines_never_shown_however_printed():
    """Hidden lines printed plain, coloured, escaped, split over writes, in HTML, errors or sentences are gone."""
    coloured = HIDDEN.replace("probe", "\x1b[31mprobe\x1b[0m")
    escaped = html.escape(HIDDEN)
    cells = [
        new_code_cell(f"print({HIDDEN!r})\n{HIDDEN}\nx = 1", outputs=[
            stream("epoch 1 loss 0.5\n" + HIDDEN + "\nepoch 2 loss 0.4\n"),
            stream(coloured + "\n", "stderr"),
            stream("before " + escaped + " after\n"),
            stream(HIDDEN[:20]), stream(HIDDEN[20:] + "\n"),  # one line over two writes
            stream("progress 50%\r" + HIDDEN + "\rprogress 100%\n"),
            display({"text/html": f"<pre><b>{escaped[:10]}</b>{escaped[10:]}</pre>", "text/plain": "x"}),
            display({"text/html": f"<span\n>{escaped[:10]}</span\n><span>{escaped[10:]}</span>",
                     "text/plain": "the text/plain fallback"}),
            display({"text/html": f'<img alt="{escaped}">', "text/plain": "alt"}),
            display({"text/plain": f"'{CHECK}'"}),
            new_output("error", ename="ValueError", evalue=CHECK,
                       traceback=["\x1b[31mValueError\x1b[0m Traceback", f"----> 3 {CHECK}", f"ValueError: {CHECK}"]),
        ]),
        new_markdown_cell(f"Look:\n\n    {HIDDEN}\n\nand `{CHECK}`"),
    ]
    exercises = [ExerciseFeedback("Adam", 2, 5, verdict("adam", [
        ("first step", 1, True, ""), ("bias correction", 1, False, f"your code raised: {HIDDEN}")],
        note=f"error: {CHECK}"))]
    page = compose(cells, exercises=exercises, notes=[f"the kernel printed {HIDDEN}"])
    assert find_leaks(page, [HIDDEN, CHECK]) == []
    visible = html.unescape("".join(parse(page).text))
    assert "record(" not in visible and "atol=1e-6" not in visible
    assert "Your notebook is not shown" not in page  # removed line by line, not by withholding the page
    assert "epoch 1 loss 0.5" in page and "epoch 2 loss 0.4" in page and "x = 1" in page and "progress 100%" in page
    assert "the text/plain fallback" in page and "ValueError" in page
    assert "line(s) left out: they showed grading code" in page


def test_page_withheld_rather_than_leak(monkeypatch):
    """When a line survives every scrub (here: scrubbing switched off), the notebook part is withheld."""
    import grading.reports.feedback as feedback

    monkeypatch.setattr(feedback, "scrub_text", lambda text, scrub: (text, 0))
    page = compose([new_code_cell("x", outputs=[stream(HIDDEN + "\n")])],
                   exercises=[ExerciseFeedback("Adam", 5, 5, verdict("adam", [("first step", 1, True, "")]))])
    assert find_leaks(page, [HIDDEN]) == []
    assert "Your notebook is not shown" in page and "5 / 5" in page


def test_test_cells_show_the_release_source():
    """A test cell shows its release source (never the executed one with hidden tests) and only its error's name."""
    visible = "assert Adam is not None, 'define Adam first'"
    secret = "secret_check(Adam, seed=1234)"
    executed = f"{visible}\n### BEGIN HIDDEN TESTS\n{secret}\n### END HIDDEN TESTS"
    error = new_output("error", ename="AssertionError", evalue="the update is wrong",
                       traceback=[f"----> 3 {secret}", "AssertionError: the update is wrong"])
    cells = [answer_cell("adam", "class Adam:\n    pass  # my code"),
             graded_test_cell("adam_tests", executed, outputs=[error]),
             graded_test_cell("foreign_tests", f"{secret}\n")]
    release = [answer_cell("adam", "# YOUR CODE HERE\nraise NotImplementedError()"),
               graded_test_cell("adam_tests", visible)]
    page = compose(cells, release, scrub=[])
    assert html.escape(visible) in page and "pass  # my code" in page
    assert secret not in page and "BEGIN HIDDEN" not in page and "YOUR CODE HERE" not in page
    assert "AssertionError: the update is wrong" in page and "-----&gt;" not in page
    assert "test cell for Adam" in page and "its source is not shown" in page


def test_student_tracebacks_are_capped_and_plain():
    """A student cell's traceback keeps its end, without ANSI codes, within the output cap."""
    trace = ["\x1b[0;31mRuntimeError\x1b[0m Traceback"] + [f"frame {i}" for i in range(20_000)] + [
        "\x1b[0;31mRuntimeError\x1b[0m: shapes do not match"]
    cells = [answer_cell("sgd", "step()", outputs=[
        new_output("error", ename="RuntimeError", evalue="shapes do not match", traceback=trace)])]
    page = compose(cells, limits=Limits(output_chars=5000))
    assert "RuntimeError: shapes do not match" in page and "frame 19999" in page and "frame 10 " not in page
    assert "\x1b" not in page and len(page) < 20_000


def test_tracebacks_show_short_paths_and_the_students_source_as_written():
    """A traceback through torch and course_lib names site-packages/... and course_lib/..., not the folders the
    course lies in on the grading machine; the student's own source is shown as written."""
    import sys

    import torch.optim.adam  # noqa: F401  (its file, through sys.modules: torch.optim hides the name)

    import course_lib

    torch_file, course_file = sys.modules["torch.optim.adam"].__file__, course_lib.__file__
    trace = [f"File {torch_file}:248, in Adam.step", f"File {course_file}:1, in <module>", "ValueError: boom"]
    written = f"open('{course.REPO_ROOT}/grading/x')"
    cells = [answer_cell("sgd", written, outputs=[
        new_output("error", ename="ValueError", evalue="boom", traceback=trace)])]
    page = html.unescape(compose(cells))
    assert "File site-packages/torch/optim/adam.py:248" in page and "File course_lib/__init__.py:1" in page
    assert written in page  # the source cell
    outputs = page.replace(written, "")
    assert str(course.REPO_ROOT) not in outputs and sys.prefix not in outputs


def test_property_table_lists_each_property_and_failure_message():
    """Summary row per exercise, each property with passed/failed, the message of each failure."""
    exercises = [
        ExerciseFeedback("SGD", 2, 2, verdict("sgd", [("one step", 1, True, "fine")])),
        ExerciseFeedback("Adam", 3.5, 5, verdict("adam", [
            ("first step", 1, True, "not shown when passed"),
            ("bias correction per parameter", 2, False, "your update after step 3 differs from the expected one "
                                                        "by 0.02 for a parameter of shape (5, 3)"),
            ("eps after the square root", 1, True, "")], note="Adam was checked over 30 steps")),
        ExerciseFeedback("SGD with momentum", 0, 3, None)]
    page = compose([], exercises=exercises, notes=["the kernel died after exercise 2"])
    rows = [line for line in page.splitlines() if line.startswith("<tr><td>")]
    assert len(rows) == 3
    assert "2 / 2" in rows[0] and "1 of 1" in rows[0]
    assert "3.5 / 5" in rows[1] and "2 of 3" in rows[1]
    assert 'href="#cell-adam_tests"' in page and 'href="#cell-sgd_tests"' in page
    assert "0 / 3" in rows[2] and "0 of 0" in rows[2]
    assert "<th>5.5 / 10</th>" in page
    for name in ("one step", "first step", "bias correction per parameter", "eps after the square root"):
        assert name in page
    failed = next(line for line in page.splitlines() if "bias correction per parameter" in line)
    assert 'class="fail"' in failed and "(2.5 points)" in failed
    assert "by 0.02 for a parameter of shape (5, 3)" in page and "not shown when passed" not in page
    assert "Adam was checked over 30 steps" in page and "No result was recorded" in page
    assert "the kernel died after exercise 2" in page


def test_find_leaks_sees_markup_and_visible_text():
    """Highlighted, escaped, attribute-held and plain occurrences are found; absent lines are not."""
    line = "from grading.checks import check_x; check_x(A & B)"
    highlighted = '<span class="kn">from</span> grading.checks <span>import</span> check_x; check_x(A &amp; B)'
    assert find_leaks(highlighted, [line]) == [line]
    assert find_leaks(f'<img alt="{line}">', [line]) == [line]
    assert find_leaks(f"<p>{html.escape(line)}</p>", [line]) == [line]
    assert find_leaks(f"<pre>{line[:10]}\n{line[10:]}</pre>", [line]) == []
    assert find_leaks(highlighted, ["check_y(C)", ""]) == []
    assert find_leaks("<p>xxrecord(a, b)yy</p>", ["record(a, b)"]) == ["record(a, b)"]  # inside longer words
    assert find_leaks("<p>zzabcdefghijklmzz</p>", ["abcdefghijklm"]) == ["abcdefghijklm"]  # one word, no anchor
    assert find_leaks("<p>record(a,b)</p>", ["record(a, b)"]) == []
    payload = base64.b64encode(b"x" * 300).decode()
    assert find_leaks(f'<img src="data:image/png;base64,{payload}">', [payload[:40]]) == [payload[:40]]


def test_grading_code_lines_cover_the_grading_code_and_not_the_page():
    """Lines of grading/*.py are listed (not plain imports or public lines); a normal page shows none."""
    lines = grading_code_lines()
    assert "def grading_code_lines(public: Optional[Iterable[str]] = None, root: Path = GRADING_DIR) -> list[str]:" \
        in lines
    assert "import nh3" not in lines and "from grading import course" in lines
    assert all(len(line) >= 12 for line in lines)
    release = nbformat.read(str(course.release_notebook("optimization")), as_version=4)
    public = {line.strip() for cell in release.cells for line in cell.source.splitlines()}
    assert not public & set(lines)
    exercises = [ExerciseFeedback(e.name, 1, 2, verdict(e.key, [("first step", 1, True, ""),
                                                                ("many steps", 1, False, "try again")]))
                 for e in course.EXERCISES["optimization"]]
    page = compose_feedback(exercises, release, release, lines, student="a", assignment="optimization",
                            notes=["the kernel died after exercise 2"])
    assert find_leaks(page, lines) == []
    assert "Your notebook is not shown" not in page and "test cell for Adam" in page


@pytest.mark.parametrize("assignment", course.ASSIGNMENTS)
def test_release_notebook_page_with_real_scrub_lines(assignment):
    """The release as a submission, scrubbed of its source's hidden lines and the grading code: shown whole."""
    source = nbformat.read(str(course.source_notebook(assignment)), as_version=4)
    release = nbformat.read(str(course.release_notebook(assignment)), as_version=4)
    hidden = [line for cell in source.cells for line in course.hidden_lines(cell.source)]
    scrub = hidden + grading_code_lines()
    page = compose_feedback([], source, release, scrub, student="s", assignment=assignment)
    assert find_leaks(page, scrub) == [] and "Your notebook is not shown" not in page
    assert_inert(page)


def test_limit_outputs_keeps_the_autograded_notebook_small():
    """The nbgrader preprocessor cuts texts and replaces large images, in place."""
    png = base64.b64encode(PNG + b"\0" * (3 * MB)).decode()
    cell = new_code_cell("x", outputs=[
        stream("a" * MB), display({"image/png": png, "text/plain": "<Figure>"}),
        display({"text/html": "<p>" * MB}), display({"application/json": {"k": "v" * MB}}),
        new_output("error", ename="E", evalue="v" * MB, traceback=["t" * MB] * 500)])
    LimitOutputChars(max_output_chars=1000, max_image_bytes=MB).preprocess_cell(cell, {}, 0)
    out = cell.outputs
    assert len(out[0].text) < 1100
    assert "image/png" not in out[1].data and out[1].data["text/plain"] == "image left out: 3.0 MB"
    assert len(out[2].data["text/html"]) < 1100
    assert out[3].data == {"text/plain": "output left out: too large"}
    assert len(out[4].evalue) < 1100 and len(out[4].traceback) == 100
    assert len(nbformat.writes(new_notebook(cells=[cell]))) < 200_000


def test_malformed_cells_are_skipped():
    """Odd JSON in a notebook (a bad cell type, outputs that are not objects) costs only that cell."""
    bad = [nbformat.from_dict({"cell_type": '"><script>alert(1)</script>', "source": "x", "metadata": {}}),
           nbformat.from_dict({"cell_type": "code", "source": "y", "metadata": {"nbgrader": "not a dict"},
                               "outputs": ["not an output", 3]}),
           new_code_cell("print('still here')", outputs=[stream("still here\n")])]
    page = compose(bad)
    assert_inert(page)
    assert "still here" in page and "could not be shown: it is malformed" in page
