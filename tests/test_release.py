"""The student notebooks: in sync with solutions/, leak-free, runnable, and graded right by real nbgrader.

Slow tests (notebook executions, real `nbgrader autograde` against a real sqlite gradebook, nbval on
the source notebooks in quick mode, figures in a student's fresh kernel, printed numbers that repeat)
are marked ``slow``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from grading.authoring.release import (
    colab_url,
    filled_release,
    generate,
    release_path,
    repository_settings,
)
from grading.authoring.solutions import ASSIGNMENTS, EXERCISES, ROOT, source_notebook
from grading.course import marked_lines, nbgrader_meta

MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


@pytest.mark.slow
def test_release_is_in_sync(tmp_path):
    """Regenerating the student notebooks from solutions/ reproduces the committed ones byte for byte."""
    for fresh in generate(release_dir=tmp_path):
        committed = release_path(fresh.parent.name)
        assert committed.is_file(), f"{committed} is missing: run `python -m grading.authoring.release`"
        assert fresh.read_bytes() == committed.read_bytes(), (
            f"{committed} is out of date with solutions/: run `python -m grading.authoring.release`"
        )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_leaks_no_solution_or_hidden_test(assignment):
    """No marker, no solution line, no hidden-test line and no grading import in the student notebook."""
    released = release_path(assignment).read_text()
    for marker in MARKERS:
        assert marker not in released
    assert "grading" not in released.replace("graded", "")
    source = nbformat.read(source_notebook(assignment), as_version=4)
    student = nbformat.read(release_path(assignment), as_version=4)
    student_code = "\n".join(c.source for c in student.cells)
    solution_lines = {line for c in source.cells for line in marked_lines(c.source, "BEGIN SOLUTION", "END SOLUTION")}
    # lines that also stand outside the solutions (e.g. `with torch.no_grad():`) are public anyway
    public = {line.strip() for c in source.cells for line in re.sub(
        r"### BEGIN SOLUTION.*?### END SOLUTION", "", c.source, flags=re.S).splitlines()}
    assert len(solution_lines - public) > 10
    # a solution line quoted in the notebook's own text (e.g. a formula in the exercise statement) is public too
    stated = "\n".join(re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION", "", c.source, flags=re.S) for c in source.cells)
    for line in solution_lines - public:
        if line not in stated:
            assert line not in student_code, f"solution line leaked: {line!r}"
    for cell in source.cells:
        for line in marked_lines(cell.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert line not in student_code, f"hidden test leaked: {line!r}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_graded_cells_are_complete(assignment):
    """Every exercise has a solution cell and a test cell with points, a docstring and a hidden check."""
    cells = nbformat.read(source_notebook(assignment), as_version=4).cells
    tests = [c for c in cells if nbgrader_meta(c).get("grade")]
    solutions = [c for c in cells if nbgrader_meta(c).get("solution")]
    assert len(tests) == len(solutions) == len(EXERCISES[assignment])
    for cell in tests:
        first = cell.source.splitlines()[0]
        assert first.startswith('"""') and first.endswith('"""') and len(first) > 6, first
        assert nbgrader_meta(cell)["points"] > 0 and nbgrader_meta(cell)["locked"]
        assert "remove-cell" in cell.metadata.get("tags", [])
        hidden = marked_lines(cell.source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
        probe_line = r'from grading\.sandbox\.probe import record; record\("\w+", \w+\)'
        assert len(hidden) == 1 and re.fullmatch(probe_line, hidden[0])
    for cell in solutions:
        assert marked_lines(cell.source, "BEGIN SOLUTION", "END SOLUTION")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_opens_with_colab_badge_and_guarded_setup(assignment):
    """Badge and set-up cell come first, use _config.yml's repository, and act only inside Colab."""
    cells = nbformat.read(release_path(assignment), as_version=4).cells
    settings = repository_settings()
    url = colab_url(assignment)
    assert cells[0].cell_type == "markdown" and url in cells[0].source
    assert url.endswith(f"/blob/{settings['branch']}/book/exercises/{assignment}/{assignment}.ipynb")
    setup = cells[1].source
    assert f"git+{settings['url']}@{settings['branch']}" in setup
    assert 'if "google.colab" in sys.modules:' in setup
    guarded = setup.split('if "google.colab" in sys.modules:')[1]
    assert all(line.startswith("    ") or not line.strip() for line in guarded.splitlines()[1:])


def execute(notebook: nbformat.NotebookNode, workdir: Path, **env: str) -> nbformat.NotebookNode:
    """Execute a notebook in ``workdir`` with errors recorded (not raised); return it."""
    full_env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT), **env}
    NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(workdir)}}).execute(env=full_env)
    return notebook


def errors_of(cell) -> list[str]:
    """The names of the errors a code cell raised."""
    return [out.ename for out in cell.get("outputs", []) if out.output_type == "error"]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_untouched_student_notebook_fails_only_at_the_exercises(assignment, tmp_path):
    """Run top to bottom: each test cell (the self-check) prints one line naming the exercise to fill in and
    raises nothing; only cells calling an exercise stop, each with one line naming it (no traceback)."""
    notebook = execute(nbformat.read(release_path(assignment), as_version=4), tmp_path)
    uses_exercise = re.compile(r"\b(" + "|".join(e.name for e in EXERCISES[assignment]) + r")\b")
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert not code_cells[0].outputs, "the Colab set-up cell must do nothing outside Colab"
    names = iter(e.name for e in EXERCISES[assignment])
    stopped = []
    for cell in code_cells:
        errors = errors_of(cell)
        stderr = "".join(o.text for o in cell.get("outputs", []) if o.output_type == "stream" and o.name == "stderr")
        needs = re.findall(r"not implemented yet: fill in `(\w+)` above \(this cell needs it\)", stderr)
        assert not errors, (cell.source[:80], errors)  # an unfinished exercise stops a cell without a traceback
        if nbgrader_meta(cell).get("grade"):
            name = next(names)
            assert printed_text(nbformat.v4.new_notebook(cells=[cell])) == [
                f"{name}: not implemented yet: fill in `{name}` above\n"]
        elif needs:
            assert uses_exercise.search(cell.source), f"a cell without exercise code stopped: {cell.source[:200]}"
            assert set(needs) <= {e.name for e in EXERCISES[assignment]}, needs
            stopped.append(cell)
        if nbgrader_meta(cell).get("solution"):
            assert not needs, "an answer cell left blank must still run (it only defines the exercise)"
    assert stopped, "the cells that use the exercises should have stopped, naming them"
    assert not list(tmp_path.glob("checkpoints/*")), "nothing may be trained or written without RETRAIN"


@pytest.mark.slow
def test_source_notebooks_run_under_nbval_in_quick_mode(tmp_path):
    """`pytest --nbval-lax` executes both source notebooks; quick mode retrains each optimizer 1 epoch."""
    env = {
        **os.environ, "COURSE_QUICK": "1", "COURSE_CHECKPOINTS": str(tmp_path / "checkpoints"),
        "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT),
    }
    notebooks = [str(source_notebook(a)) for a in ASSIGNMENTS]
    beside_notebook = source_notebook("optimization").parent / "checkpoints"
    before = {p: p.stat().st_mtime_ns for p in beside_notebook.glob("*")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-q", *notebooks],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    trained = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.results.json"))
    runs = [f"FashionMNIST_{n}{suffix}" for n in ("SGD", "SGDMomentum", "Adam")
            for suffix in ("", "_seed43", "_seed44", "_poor_init")]
    assert trained == sorted(f"{run}.results.json" for run in runs)
    assert {p: p.stat().st_mtime_ns for p in beside_notebook.glob("*")} == before, "wrote beside the notebook"


def figure_outputs(cell) -> list:
    """The outputs of a code cell that display a matplotlib figure (whatever its class)."""
    return [out for out in cell.get("outputs", []) if out.output_type in ("display_data", "execute_result")
            and re.match(r"<\w*Figure size \d+x\d+", out.get("data", {}).get("text/plain", ""))]


def student_kernel_env(**extra: str) -> dict:
    """A student's environment: no MPLBACKEND (Jupyter's default inline backend), the repository importable."""
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), *extra.pop("extra_path", "").split(os.pathsep)]),
            **extra}


@pytest.mark.slow
@pytest.mark.parametrize("colab", [False, True], ids=["jupyter", "colab"])
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_figure_of_the_solved_release_is_an_image(assignment, colab, tmp_path):
    """The released notebook, filled with the solutions, in a fresh kernel without MPLBACKEND: every figure
    output carries an image/png. The Colab variant imports a stub ``google.colab`` first (instead of the
    set-up cell, which would pip-install from GitHub). nbgrader's NBGRADER_EXECUTION skips the short
    training of the student's optimizers, which draws no figure."""
    notebook = filled_release(assignment)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    extra_path = ""
    if colab:
        stub = tmp_path / "stub" / "google"
        stub.mkdir(parents=True)
        (stub / "__init__.py").write_text("")
        (stub / "colab.py").write_text('"""A stand-in for Colab\'s module: its presence is what notebooks test."""\n')
        extra_path = str(tmp_path / "stub")
        assert "google.colab" in code_cells[0].source, "the first code cell should be the Colab set-up"
        code_cells[0].source = "import google.colab  # as in Colab, imported before the notebook runs"
    env = student_kernel_env(extra_path=extra_path, NBGRADER_EXECUTION="autograde",
                             COURSE_CHECKPOINTS=str(tmp_path / "checkpoints"))
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    figures = [out for cell in notebook.cells if cell.cell_type == "code" for out in figure_outputs(cell)]
    least = {"initialization": 12, "optimization": 5}.get(assignment, 1)  # deeper: the 20-layer one is skipped
    assert len(figures) >= least, f"only {len(figures)} figures"
    not_images = [out["data"]["text/plain"] for out in figures if "image/png" not in out["data"]]
    assert not not_images, f"{len(not_images)} of {len(figures)} figures shown as text: {not_images[:3]}"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_self_check_passes_in_a_colab_like_kernel_with_only_the_student_package(assignment, tmp_path):
    """The released notebook filled with the solutions, in a fresh kernel that sees only ``course_lib`` (no
    ``grading``, no nbgrader variables) and a stub ``google.colab``, as a student's Colab does after the set-up
    cell: every test cell prints the self-check's table with every property holding, and no cell fails."""
    notebook = filled_release(assignment)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    packages = tmp_path / "site"
    (packages / "google").mkdir(parents=True)
    (packages / "google" / "__init__.py").write_text("")
    (packages / "google" / "colab.py").write_text('"""A stand-in for Colab\'s module."""\n')
    (packages / "course_lib").symlink_to(ROOT / "course_lib")  # the student package alone, as pip installs it
    code_cells[0].source = "import google.colab  # as in Colab, imported before the notebook runs"
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "MPLBACKEND") and not key.startswith(("NBGRADER", "COURSE_"))}
    env.update(PYTHONPATH=str(packages), COURSE_QUICK="1", COURSE_CHECKPOINTS=str(tmp_path / "checkpoints"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(workdir)}}).execute(env=env)
    failed = [(c.source[:60], errors_of(c)) for c in code_cells if errors_of(c)]
    assert not failed, failed
    tests = [c for c in code_cells if nbgrader_meta(c).get("grade")]
    tables = printed_text(nbformat.v4.new_notebook(cells=tests))
    assert len(tables) == len(EXERCISES[assignment])
    for exercise, table in zip(EXERCISES[assignment], tables):
        assert table.startswith(f"{exercise.name}: ") and "All properties hold" in table, table
        assert "FAIL" not in table and "grading" not in table, table


def printed_text(notebook: nbformat.NotebookNode) -> list[str]:
    """Every text a notebook's code cells printed or returned (figure reprs included), one string per cell.

    A cell's printed text is joined first: the kernel may split the same text into stream chunks differently.
    """
    texts = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        printed = "".join(out.text for out in cell.get("outputs", [])
                          if out.output_type == "stream" and out.name == "stdout")
        shown = [out.get("data", {}).get("text/plain", "") for out in cell.get("outputs", [])
                 if out.output_type in ("display_data", "execute_result")]
        texts.append(printed + "\n".join(shown))
    return texts


def site_notebooks() -> list[Path]:
    """Every page of the site that runs code: the book's notebooks and MyST pages, and the solutions."""
    pages = [p for p in sorted((ROOT / "book").glob("*.md")) if "code-cell" in p.read_text()]
    return pages + [ROOT / "book" / "explorer.ipynb"] + [source_notebook(a) for a in ASSIGNMENTS]


def read_page(path: Path) -> nbformat.NotebookNode:
    """A page as a notebook: MyST markdown pages are read the way myst-nb reads them for the build."""
    if path.suffix == ".md":
        from myst_nb.core.read import read_myst_markdown_notebook

        return read_myst_markdown_notebook(path.read_text())
    return nbformat.read(path, as_version=4)


@pytest.mark.slow
@pytest.mark.parametrize("page", site_notebooks(), ids=lambda p: p.stem)
def test_a_page_prints_the_same_numbers_every_time(page):
    """Two executions of a page in fresh kernels, as two site builds would run it, print identical text.

    Each experiment seeds itself and hidden checks draw from no global generator, so nothing printed may
    depend on what ran before. The two kernels run at the same time (one thread each: one per core). The
    self-check draws fresh inputs on purpose: only the seed it prints may differ, never its verdict."""

    def run() -> list[str]:
        notebook = read_page(page)
        with tempfile.TemporaryDirectory() as scratch:
            env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT), "COURSE_CHECKPOINTS": scratch,
                   "OMP_NUM_THREADS": "1"}
            for name in ("COURSE_QUICK", "COURSE_RETRAIN", "NBGRADER_EXECUTION"):
                env.pop(name, None)
            NotebookClient(notebook, timeout=900, kernel_name="python3",
                           resources={"metadata": {"path": str(page.parent)}}).execute(env=env)
        return [re.sub(r"on inputs drawn with seed \d+", "on inputs drawn with seed N", text)
                for text in printed_text(notebook)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [future.result() for future in [pool.submit(run) for _ in range(2)]]
    assert runs[0], f"{page.name} printed nothing"
    for first, second in zip(*runs):
        assert first == second, f"{page.name} printed different text in two runs:\n{first[:500]}\n---\n{second[:500]}"
    assert len(runs[0]) == len(runs[1])
