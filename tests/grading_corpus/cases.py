"""The corpus of submissions the grader must survive, generated from the source and release notebooks.

Each case is a notebook plus the expected points of every graded cell, so the corpus follows the
assignments as they change. ``build_corpus(source, release, secrets)`` returns {name: Case}.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field

import nbformat
from nbformat import NotebookNode

# Per assignment: the exercise whose optimizer/initializer is made to produce NaN, and how.
NAN_PATCHES = {
    "kaiming_init": (
        "\n_kaiming_init = kaiming_init\n\ndef kaiming_init(model):\n    _kaiming_init(model)\n"
        "    for _p in model.parameters():\n        _p.data.fill_(float('nan'))\n"),
    "adam": (
        "\n_adam_update = Adam.update_param\n\ndef _nan_update(self, p):\n    _adam_update(self, p)\n"
        "    p.mul_(float('nan'))\n\nAdam.update_param = _nan_update\n"),
}


@dataclass
class Case:
    """A submitted notebook and the points each graded cell must get."""

    notebook: NotebookNode
    expected: dict[str, float]
    output_contains: list[str] = field(default_factory=list)  # text the autograded notebook shows


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _strip_markers(source: str) -> str:
    """Source without the BEGIN/END SOLUTION marker lines."""
    return "\n".join(line for line in source.splitlines() if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line)


def _stub(release_source: str, body: str) -> str:
    """A release stub whose NotImplementedError lines become ``pass``, the last one ``body``."""
    lines = release_source.splitlines()
    raises = [i for i, line in enumerate(lines) if "raise NotImplementedError()" in line]
    for i in raises:
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        text = body if i == raises[-1] else "pass"
        lines[i] = "\n".join(indent + part for part in text.splitlines())
    return "\n".join(lines)


def _code(source: str) -> NotebookNode:
    return nbformat.v4.new_code_cell(source)


def build_corpus(source: NotebookNode, release: NotebookNode, secrets: dict) -> dict[str, Case]:
    """All cases. ``secrets``: paths the sandbox must hide (checks, gradebook, other student) and a
    loopback ``port`` where a listener waits (the sandbox must not reach it)."""
    points = {_meta(c)["grade_id"]: float(_meta(c)["points"]) for c in source.cells if _meta(c).get("grade")}
    solutions = {_meta(c)["grade_id"]: _strip_markers(c.source) for c in source.cells if _meta(c).get("solution")}
    order = [gid for gid in solutions]
    tests_of = {}  # solution id -> test cell id (the next graded cell)
    ids = [_meta(c).get("grade_id") for c in source.cells]
    for gid in order:
        after = ids[ids.index(gid) + 1:]
        tests_of[gid] = next(t for t in after if t in points)
    full = dict(points)
    zero = {k: 0.0 for k in points}

    def without(*exercises: str) -> dict[str, float]:
        lost = {tests_of[e] for e in exercises}
        return {k: (0.0 if k in lost else v) for k, v in points.items()}

    def reference() -> NotebookNode:
        nb = copy.deepcopy(release)
        for cell in nb.cells:
            gid = _meta(cell).get("grade_id")
            if gid in solutions:
                cell.source = solutions[gid]
        return nb

    def with_cell(gid: str, new_source: str, nb=None) -> NotebookNode:
        nb = nb or reference()
        for cell in nb.cells:
            if _meta(cell).get("grade_id") == gid:
                cell.source = new_source
        return nb

    def release_source(gid: str) -> str:
        return next(c.source for c in release.cells if _meta(c).get("grade_id") == gid)

    first, second, last = order[0], order[1], order[-1]
    cases = {"untouched_release": Case(copy.deepcopy(release), zero), "reference": Case(reference(), full)}
    cases["syntax_error"] = Case(with_cell(first, solutions[first] + "\ndef broken(:\n    pass\n"), without(first))
    cases["infinite_loop"] = Case(with_cell(second, _stub(release_source(second), "while True:\n    pass")),
                                  without(second), ["CellTimeoutError"])
    nb = reference()
    nb.cells.insert(1, _code("raise RuntimeError('top-level failure in a student cell')"))
    cases["top_level_exception"] = Case(nb, full, ["top-level failure"])
    nan_target = next(g for g in order if g in NAN_PATCHES)
    cases["optimizer_nan"] = Case(with_cell(nan_target, solutions[nan_target] + NAN_PATCHES[nan_target]),
                                  without(nan_target))
    nb = reference()
    nb.cells = [c for c in nb.cells if _meta(c).get("grade_id") != tests_of[first]]
    cases["deleted_test_cell"] = Case(nb, full)
    nb = with_cell(first, _stub(release_source(first), "pass"))
    for cell in nb.cells:
        if _meta(cell).get("grade_id") == tests_of[first]:
            cell.source = '"""Edited by the student."""\nassert True'
    cases["edited_readonly_test"] = Case(nb, without(first))
    nb = reference()
    for index in (len(nb.cells) - 1, len(nb.cells) // 2, 2):
        nb.cells.insert(index, _code("scratch = [i * i for i in range(10)]\nscratch[-1]"))
        nb.cells.insert(index, nbformat.v4.new_markdown_cell("My own notes."))
    cases["extra_cells"] = Case(nb, full)
    nb = reference()
    nb.metadata["kernelspec"] = {"name": "conda-env-ml-py", "display_name": "Python [conda env:ml]",
                                 "language": "python"}
    cases["renamed_kernel"] = Case(nb, full)
    cases["colab_saved"] = Case(colab_round_trip(reference()), full)
    nb = reference()
    for cell in nb.cells:
        cell.metadata = {}
    cases["stripped_metadata"] = Case(nb, full)
    nb = with_cell(last, _stub(release_source(last), "pass"))
    nb.cells.insert(2, _code(
        "import torch, numpy as np\n"
        "torch.allclose = lambda *a, **k: True\ntorch.isclose = lambda *a, **k: torch.tensor(True)\n"
        "torch.testing.assert_close = lambda *a, **k: None\n"
        "np.testing.assert_allclose = lambda *a, **k: None\nnp.allclose = lambda *a, **k: True"))
    cases["monkeypatch_torch"] = Case(nb, without(last))
    nb = reference()
    nb.cells.insert(2, _code("print('x' * 5_000_000)\nfor i in range(100_000):\n    print(i)"))
    cases["prints_megabytes"] = Case(nb, full)
    nb = with_cell(last, _stub(release_source(last), "pass"))
    escape = (
        "import socket\nescaped = []\n"
        f"for path in {secrets['paths']!r}:\n"
        "    try:\n        print(open(path).read()[:300])\n        escaped.append(path)\n"
        "    except OSError as error:\n        print('blocked:', type(error).__name__)\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {secrets['port']}), timeout=3)\n"
        "    escaped.append('network')\n"
        "except OSError as error:\n    print('network blocked:', type(error).__name__)\n"
        f"if escaped:\n    exec({solutions[last]!r}, globals())\n")
    nb.cells.append(_code(escape))
    # the escape cell goes right after the stub, before its test cell
    index = next(i for i, c in enumerate(nb.cells) if _meta(c).get("grade_id") == last)
    nb.cells.insert(index + 1, nb.cells.pop())
    cases["reads_outside_and_network"] = Case(nb, without(last), ["blocked: FileNotFoundError"])
    nb = reference()
    nb.cells.insert(2, _code("hog = bytearray(64 * 2**30)\nhog[::4096] = b'x' * len(hog[::4096])"))
    cases["allocates_too_much"] = Case(nb, full, ["MemoryError"])
    return cases


def colab_round_trip(nb: NotebookNode) -> NotebookNode:
    """The notebook as Colab saves it: nbformat 4.0, Colab metadata and cell ids, outputs cleared."""
    nb = copy.deepcopy(nb)
    nb.nbformat_minor = 0
    nb.metadata = {"colab": {"provenance": [], "name": "Copy of the assignment"},
                   "kernelspec": {"name": "python3", "display_name": "Python 3"},
                   "language_info": {"name": "python"}, "accelerator": "GPU"}
    for cell in nb.cells:
        cell.pop("id", None)
        cell.metadata["id"] = re.sub("[^A-Za-z0-9]", "", uuid.uuid4().hex)[:12]
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata["colab"] = {"base_uri": "https://localhost:8080/"}
    return nb
