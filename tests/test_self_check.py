"""The notebooks' self-check (course_lib.self_check) and the grader judge alike: same properties, same messages.

Agreement on the same inputs: every known mistake, correct variant and do-nothing submission of
tests/test_verdicts*.py, run once through the grader's probe (a result file, judged by grading.judging) and
once through the self-check (in this process), gives the same pass/fail per property and the same messages.
On the self-check's own fresh inputs, each mistake fails exactly its listed properties.
"""

from __future__ import annotations

import pytest

from course_lib.checks import EXERCISE_NAMES
from course_lib.self_check import SelfCheckFailed, check_on, fresh_verdict, self_check
from grading.authoring.solutions import solution_namespace
from grading.judging import make_challenge
from tests import test_verdicts as v1
from tests import test_verdicts_deeper as v3

ASSIGNMENT = {key: assignment for assignment, names in EXERCISE_NAMES.items() for key in names}
NAME = {key: name for names in EXERCISE_NAMES.values() for key, name in names.items()}
# (exercise, label, source, the properties it must fail or None where not listed)
CASES = ([(e, m, src, expected) for e, table in v1.MISTAKES.items() for m, (src, expected) in table.items()]
         + [(e, m, src, expected) for e, table in v3.MISTAKES.items() for m, (src, expected) in table.items()]
         + [(e, "correct variant", src, set()) for e, src in v1.CORRECT_VARIANTS.items()]
         + [(e, "does nothing", src, None) for e, src in v1.TRIVIAL.items()]
         + [(key, "reference solution", "", set()) for key in ASSIGNMENT])


def implementation(exercise: str, source: str):
    """The student's object for ``exercise``: the reference solutions with ``source`` executed over them."""
    namespace = solution_namespace(ASSIGNMENT[exercise])
    exec(source, namespace)
    return namespace[NAME[exercise]]


def outcome(verdict) -> list:
    """What a student sees of a verdict: each property's name, pass/fail and message, and the fraction."""
    return [(p.name, p.passed, p.message) for p in verdict.properties] + [verdict.fraction]


@pytest.mark.parametrize("exercise, label, source, expected", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_self_check_and_grader_agree_on_the_same_inputs(tmp_path, exercise, label, source, expected):
    """Through the probe and a result file, or in-process: the same verdict, property by property."""
    assignment, seed = ASSIGNMENT[exercise], 5
    graded = v1.grade_in_process(tmp_path, assignment, seed, [source], only=exercise)[exercise]
    challenge = make_challenge(assignment, seed)
    checked = check_on(assignment, exercise, implementation(exercise, source), challenge["exercises"][exercise],
                       challenge["seed"])
    assert outcome(checked) == outcome(graded)
    if expected is not None:
        assert {p.name for p in checked.properties if not p.passed} == expected


@pytest.mark.parametrize("exercise, label, source, expected", [c for c in CASES if c[3] is not None],
                         ids=[f"{c[0]}-{c[1]}" for c in CASES if c[3] is not None])
def test_on_its_own_inputs_each_mistake_fails_its_properties(exercise, label, source, expected, capsys):
    """self_check draws its own inputs (here two fixed seeds): the listed properties fail, the others hold, and
    the printed table says so, with a message under each failure."""
    for seed in (101, 202):
        if expected:
            with pytest.raises(SelfCheckFailed, match=f"{len(expected)} of"):
                self_check(implementation(exercise, source), seed=seed)
        else:
            assert self_check(implementation(exercise, source), seed=seed) is None  # nothing for Jupyter to show
        verdict, _, _ = fresh_verdict(implementation(exercise, source), seed=seed)
        failed = {p.name for p in verdict.properties if not p.passed}
        assert failed == expected, (seed, [(p.name, p.passed, p.message) for p in verdict.properties])
        table = capsys.readouterr().out
        assert f"seed {seed}" in table and table.count("FAIL") == len(expected)
        assert ("All properties hold" in table) == (not expected)
        for prop in verdict.properties:
            assert prop.passed or prop.message in table


def test_an_exercise_not_started_prints_one_line(capsys):
    """The release's `raise NotImplementedError()`: one line naming what to fill in, no table, no traceback."""
    def xavier_init(model):
        raise NotImplementedError()

    self_check(xavier_init, seed=3)
    assert capsys.readouterr().out.strip() == "xavier_init: not implemented yet: fill in `xavier_init` above"
    assert fresh_verdict(xavier_init, seed=3)[0].fraction == 0


def test_the_exercise_is_found_by_name_or_given(capsys):
    """A class or function is looked up by its name; another name needs ``exercise=``; an unknown one is refused
    with the list of exercises."""
    def my_ratio(weight, grad_output):
        return float(((grad_output @ weight).var()) / grad_output.var())

    assert fresh_verdict(my_ratio, exercise="backward_variance_ratio", seed=1)[0].fraction == 1.0
    assert fresh_verdict(lambda w, g: 1.0, exercise="backward_variance_ratio", seed=1)[0].fraction < 1
    self_check(lambda w, g: 1.0, exercise="backward_variance_ratio", seed=1, raise_on_failure=False)
    assert "FAIL" in capsys.readouterr().out
    with pytest.raises(ValueError, match="SGDMomentum"):
        self_check(my_ratio, seed=1)


def test_the_self_check_does_nothing_in_the_graders_kernel(monkeypatch, capsys):
    """NBGRADER_EXECUTION set (the grader's kernels): no run, one line."""
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    ran = []
    self_check(lambda model: ran.append(model), exercise="var_init")
    assert ran == [] and "skipped while grading" in capsys.readouterr().out


def test_a_cell_that_needs_an_unfinished_exercise_says_so_in_one_line(tmp_path):
    """In a Jupyter kernel, after name_unfinished_exercises(): a cell stopping at an exercise's NotImplementedError
    (a function, or a method of an exercise's class, reached through other code) prints one line naming it and
    no traceback; the cell still stops there; any other error keeps its traceback."""
    import nbformat
    from nbclient import NotebookClient

    cells = ["from course_lib.self_check import name_unfinished_exercises\nname_unfinished_exercises()",
             "def xavier_init(model):\n    raise NotImplementedError()\n\n"
             "class SGD:\n    def update_param(self, p):\n        raise NotImplementedError()",
             "def train(init):\n    init(None)\n\ntrain(xavier_init)\nprint('after')",
             "[SGD().update_param(p) for p in range(2)]",
             "def helper():\n    raise NotImplementedError('a helper of mine')\n\nhelper()"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [cell.outputs for cell in notebook.cells]
    for index, name in ((2, "xavier_init"), (3, "SGD")):
        assert [(o.output_type, o.get("name"), o.get("text")) for o in outputs[index]] == [
            ("stream", "stderr", f"not implemented yet: fill in `{name}` above (this cell needs it)\n")]
    assert [o.output_type for o in outputs[4]] == ["error"] and outputs[4][0].evalue == "a helper of mine"


def test_instructor_page_lists_every_property_with_its_weight():
    """book/instructors.md's table: every exercise with its points from the source notebook, and every
    property with the grader's own share, nothing else."""
    import json
    import random
    import re
    from pathlib import Path

    from course_lib.checks.catalogue import KINDS, property_weights

    root = Path(__file__).resolve().parents[1]
    rows, exercise = [], None
    page = (root / "book" / "instructors.md").read_text()
    section = page[page.index("**What each property is worth.**"):page.index("**The students see the same properties")]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cells) == 3 and cells[1] not in ("Property", "---"):
            named = re.fullmatch(r"`(\w+)` \((\d+)\)", cells[0])
            if named:
                exercise = named.groups()
            rows.append((exercise[0], int(exercise[1]), cells[1], float(cells[2])))
    expected = []
    for assignment, names in EXERCISE_NAMES.items():
        notebook = json.loads((root / "solutions" / assignment / f"{assignment}.ipynb").read_text())
        points = {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"]["points"]
                  for c in notebook["cells"] if c["metadata"].get("nbgrader", {}).get("grade")}
        for key, name in names.items():
            weights = property_weights(assignment, key, KINDS[assignment][key].challenge(key, random.Random(1)))
            expected += [(name, points[f"{key}_tests"], prop, share) for prop, share in weights.items()]
    assert rows == expected
