"""The corpus of submissions the grader must survive, generated from the source and release notebooks.

Each case is a notebook plus the expected points of every graded test cell, so the corpus follows the
assignments as they change. ``build_corpus(assignment, source, release, secrets)`` returns {name: Case}.

The cases come in three families:
- the clumsy student: syntax errors, endless loops, deleted/duplicated/pasted cells, Colab round trips,
  warnings on stderr, ``os._exit`` at the end, megabytes of output;
- the hostile student: forged outputs, IPython hooks and transformers, frame and code tampering,
  forged probe results, a submission that takes full control of its process, attempts to read the
  hidden tests, the host's files or the network;
- the honest student with one mistake, who must lose only that mistake's share of the points.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field

import nbformat
from nbformat import NotebookNode
from test_verdicts import DELEGATING_ADAM  # the mistakes, and the properties each must fail
from test_verdicts import MISTAKES as BASE_MISTAKES
from test_verdicts_deeper import DELEGATING as DEEPER_DELEGATING
from test_verdicts_deeper import MISTAKES as DEEPER_MISTAKES

from grading.course import EXERCISES, grade_id, is_solution, is_test
from grading.judging import make_challenge, property_weights


@dataclass
class Case:
    """A submitted notebook and what grading it must give."""

    notebook: NotebookNode
    expected: dict[str, float]  # test cell -> points
    output_contains: list[str] = field(default_factory=list)  # text the autograded notebook shows
    notes_contain: list[str] = field(default_factory=list)  # text the CSV's notes show
    stopped_partway: bool = False  # ``expected`` is the full score; the run stops: a prefix keeps it, the rest 0
    flags_contain: list[str] = field(default_factory=list)  # text the CSV's review flags show
    flags_empty: bool = False
    properties: dict[str, dict[str, bool]] = field(default_factory=dict)  # exercise -> property -> passed
    folder: str = ""  # the submission's folder name, when it is not the case's name


# Rich outputs of 48 x 50 MB: the kernel cuts them after 16 MB of a cell.
DISPLAY_FLOOD = """from IPython.display import display
blob = "x" * 50_000_000
for _ in range(48):
    display({"text/plain": blob}, raw=True)"""

# appended to an answer cell: the exercise, run only where the notebook's own variables are there
NEEDS_THE_NOTEBOOK = """
notebook_variables = get_ipython().user_ns
mine = {name}


def {name}(*args, **kwargs):
    notebook_variables["__name__"]
    return mine(*args, **kwargs)"""

CLOSURE_DELEGATION = """
import torch

class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        kind = torch.optim.Adam
        self.inner = kind.__new__(kind)
        settings = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=0.0, amsgrad=False, maximize=False,
                        foreach=None, capturable=False, differentiable=False, fused=None,
                        decoupled_weight_decay=False)
        torch.optim.Optimizer.__init__(self.inner, self.params, settings)
        cells = [cell.cell_contents for cell in kind.step.__closure__]
        self.ready = next(f for f in cells if getattr(f, "__qualname__", "") == "Adam.step")

    def step(self):
        self.ready(self.inner)
"""


# Adam computed by torch's fused kernel, its name spelled at run time (no source check names it)
FUSED_DELEGATION = """
import torch

class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.settings = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps)
        self.kernel = getattr(torch, "_".join(["", "fused", "adam", ""]))
        self.moments = {p: (torch.zeros_like(p), torch.zeros_like(p), torch.zeros(())) for p in self.params}

    def update_param(self, p):
        m, v, t = self.moments[p]
        t += 1
        self.kernel([p], [p.grad], [m], [v], [], [t], weight_decay=0.0, amsgrad=False, maximize=False,
                    **self.settings)
"""

# SGD from the course library's optimizer builder (the training-practice chapter's)
COURSE_LIBRARY_DELEGATION = """
from course_lib import practice

class SGD(OptimizerTemplate):
    def __init__(self, params, lr):
        super().__init__(params, lr)
        self.inner = practice.make_optimizer("sgd", self.params, lr, momentum=0.0)

    def step(self):
        self.inner.step()
"""


# Adam that, graded, keeps the grader's inputs and moves nothing. Right after the probe, while the test cell
# prints (sys.stdout is the student's), torch.optim armed again computes torch's answers for those inputs and
# the exercise is recorded a second time with a class that replays them: the grader's gradients do not depend
# on the parameters. Recorded once per kernel, the second record writes nothing.
REPLAY_AFTER_THE_PROBE = """
import sys
import traceback

import torch
from grading.sandbox.probe import record

SEEN, ANSWERS = [], {}


def _key(params, settings):
    return tuple(p.detach().numpy().tobytes() for p in params) + tuple(sorted(settings.items()))


def _graded():
    return any(frame.name == "record" for frame in traceback.extract_stack())


def _replay():
    for run in SEEN:
        params = [torch.nn.Parameter(p.clone()) for p in run.start]
        s = run.settings
        ready = torch.optim.Adam(params, lr=s["lr"], betas=(s["beta1"], s["beta2"]), eps=s["eps"])
        paths = [[] for _ in params]
        for grads in run.grads:
            for p, g in zip(params, grads):
                p.grad = g
            ready.step()
            for path, p in zip(paths, params):
                path.append(p.detach().clone())
        ANSWERS[_key(run.start, s)] = paths
    record("adam", Replay)


class _Printed:
    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        if SEEN and not ANSWERS and not _graded():
            _replay()
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


sys.stdout = _Printed(sys.stdout)


class Replay(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        settings = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps)
        self.answer, self.t = ANSWERS.get(_key(self.params, settings)), 0

    def step(self):
        self.t += 1
        for p, path in zip(self.params, self.answer or []):
            p.data.copy_(path[self.t - 1])


class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.settings = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps)
        self.start, self.grads = [p.detach().clone() for p in self.params], []
        if _graded():
            SEEN.append(self)

    def step(self):
        self.grads.append([None if p.grad is None else p.grad.clone() for p in self.params])
"""


# every process environment the kernel can read, and its own (the grader plants a variable in its own)
READ_ENVIRONMENTS = """import os
for pid in sorted(p for p in os.listdir('/proc') if p.isdigit()):
    try:
        text = open(f'/proc/{pid}/environ', 'rb').read().replace(b'\\0', b' ').decode(errors='replace')
        print('environ of', pid, text)
    except OSError as error:
        print('environ of', pid, 'unreadable:', type(error).__name__)
print('my environ:', ' '.join(f'{k}={v}' for k, v in os.environ.items()))
"""


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


# Code that attacks the grader from inside the kernel (each is one cell).
DISPLAYHOOK = """import sys
sys.displayhook("ok")
get_ipython().events.register("post_run_cell", lambda result: sys.displayhook("ok"))"""

IPYTHON_MACHINERY = '''import ast
ip = get_ipython()

class DropAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.Pass()

ip.ast_transformers.append(DropAsserts())
ip.input_transformers_post.append(lambda lines: [l for l in lines if "assert" not in l and "record" not in l])
ip.events.register("pre_run_cell", lambda info: None)
_run_cell = ip.run_cell
def run_cell(raw_cell, *args, **kwargs):
    hidden = "HIDDEN" in raw_cell or "record(" in raw_cell
    return _run_cell("pass" if hidden else raw_cell, *args, **kwargs)
ip.run_cell = run_cell'''

TAMPERING = '''import gc, importlib, random, sys, types
import torch
name = "gra" + "ding" + ".pro" + "be"
try:
    probe = importlib.import_module(name)
    for obj in list(vars(probe).values()):
        if isinstance(obj, types.FunctionType):
            obj.__code__ = (lambda *a, **k: None).__code__
except Exception as error:
    print("no probe:", type(error).__name__)
frame = sys._getframe()
while frame is not None:
    frame.f_globals.setdefault("__tampered__", True)
    frame = frame.f_back
class NotRandom(random.Random):
    def random(self):
        return 0.0
random.Random = NotRandom
type.__setattr__(torch.optim.Adam, "step", lambda self, closure=None: None)
for obj in gc.get_objects():
    if isinstance(obj, types.FunctionType) and "verdict" in getattr(obj, "__module__", ""):
        obj.__code__ = (lambda *a, **k: True).__code__'''

FORGED_RESULTS = '''import json, os, pickle
results = os.environ.get("COURSE_GRADING_RESULTS", "/grading/results")
challenge = os.environ.get("COURSE_GRADING_CHALLENGE", "/grading/challenge.json")
try:
    keys = list(json.load(open(challenge))["exercises"])
except Exception:
    keys = {keys!r}
for key in keys:
    try:
        with open(os.path.join(results, key + ".safetensors"), "wb") as f:
            f.write(pickle.dumps({{"status": "ok", "fraction": 1.0}}))
        with open(os.path.join(results, key + ".json"), "w") as f:
            json.dump({{"fraction": 1.0, "passed": True}}, f)
    except OSError as error:
        print("forging failed:", error)'''

FULL_CONTROL = '''import builtins, gc, os, sys, types, random
ip = get_ipython()
for event in ("pre_execute", "pre_run_cell", "post_execute", "post_run_cell"):
    try:
        ip.events.register(event, lambda *a, **k: None)
    except Exception:
        pass
ip.ast_transformers.append(__import__("ast").NodeTransformer())
ip.input_transformers_post.append(lambda lines: ["pass\\n"])
for fd in range(3, 256):
    try:
        os.write(fd, os.urandom(512))
    except OSError:
        pass
for name, module in list(sys.modules.items()):
    if module is None or name in ("sys", "os", "builtins", "random", "types", "gc"):
        continue
    for attr, value in list(vars(module).items()):
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
            try:
                setattr(module, attr, lambda *a, **k: None)
            except Exception:
                pass
    sys.modules[name] = types.ModuleType(name)
os.write(1, b"{not json\\n")
os.write(2, b"x" * 100000)'''

LEAK_HIDDEN = '''import inspect, dis, sys
ip = get_ipython()
ip.events.register("pre_run_cell", lambda info: print("NEXT CELL:", info.raw_cell))
for name, module in list(sys.modules.items()):
    if "grading" in name or "probe" in name or "verdict" in name:
        try:
            print(inspect.getsource(module))
        except Exception as error:
            print("no source for", name, type(error).__name__)
        for value in list(vars(module).values()):
            if callable(value):
                print(getattr(value, "__doc__", ""))
                try:
                    dis.dis(value)
                except Exception:
                    pass'''

WARNINGS = '''import sys, warnings
print("a warning from my code", file=sys.stderr)
warnings.warn("this is only a warning")'''

EXIT_AT_END = "import os\nos._exit(0)"

SWALLOW_INTERRUPT = """import time
while True:
    try:
        time.sleep(0.5)
    except:  # noqa: E722  (a clumsy student's bare except swallows the interrupt too)
        pass"""

HUGE_PRINT = "print('x' * 400_000_000)"

# Overwrites an exercise's result file with one whose metadata nests too deep for Python's JSON reader
# (RecursionError, not ValueError): judging must score it 0 with a review flag, not crash the row.
CRASHING_RESULT = """import os
from safetensors.torch import save_file
def _crash(*args):  # safetensors writes natively: no audit event, so the kernel's guard cannot refuse it
    save_file({{}}, os.path.join(os.environ["COURSE_GRADING_RESULTS"], "{key}.safetensors"),
              metadata={{"exercise": "{key}", "status": "ok", "error": "", "errors": "[" * 200000 + "]" * 200000}})
get_ipython().events.register("post_run_cell", _crash)"""

TOUCH_EVIDENCE = """import os
def _touch(*args):
    try:
        with open(os.path.join(os.environ["COURSE_GRADING_RESULTS"], "{key}.safetensors"), "ab"):
            pass
    except OSError as error:
        print("refused:", error)
get_ipython().events.register("post_run_cell", _touch)"""

# Records the reference solutions' numbers for every exercise through the probe's own functions (the
# numbers are right: only where this code runs decides whether they count).
FORGED_EVIDENCE = """import json, os
_forged = dict(globals())
exec({source!r}, _forged)
try:
    from grading.sandbox import probe as _probe
    _challenge = json.load(open(os.environ["COURSE_GRADING_CHALLENGE"]))
    for _key, _name in {pairs!r}:
        _tensors, _errors = _probe._run_all(_forged[_name], _challenge["exercises"][_key], _challenge["seed"])
        _probe._write(os.path.join(os.environ["COURSE_GRADING_RESULTS"], _key + ".safetensors"), _tensors,
                      {{"exercise": _key, "status": "ok", "errors": "{{}}"}})
except (ImportError, KeyError, OSError) as _error:
    print("no grader here:", type(_error).__name__)"""


MONKEYPATCH = """import torch, numpy as np
torch.allclose = lambda *a, **k: True
torch.isclose = lambda *a, **k: torch.tensor(True)
torch.testing.assert_close = lambda *a, **k: None
np.testing.assert_allclose = lambda *a, **k: None
np.allclose = lambda *a, **k: True"""

# Correct answers in styles the grader must not mistake for cheating: numpy state keyed by id(p), the class
# defined twice, ``.data`` assignment, torch.nn.init's samplers inside an initializer.
UNUSUAL = {
    "optimization": {"adam": """import numpy as np

class Adam(OptimizerTemplate):  # a first draft, replaced below
    pass

class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.state = {}

    def update_param(self, p):
        g = p.grad.detach().cpu().numpy().astype(np.float64)
        t, m, v = self.state.get(id(p), (0, np.zeros_like(g), np.zeros_like(g)))
        t, m, v = t + 1, self.beta1 * m + (1 - self.beta1) * g, self.beta2 * v + (1 - self.beta2) * g * g
        self.state[id(p)] = (t, m, v)
        step = self.lr * (m / (1 - self.beta1 ** t)) / (np.sqrt(v / (1 - self.beta2 ** t)) + self.eps)
        p.data = p.data - torch.from_numpy(step).to(p.dtype)"""},
    "initialization": {
        "var_init": """def var_init(model, std=0.01):
    for name, param in model.named_parameters():
        if name.endswith(".weight"):
            param.data = torch.randn(param.shape) * std""",
        "xavier_init": """from torch import nn

def xavier_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            nn.init.zeros_(param)
        else:
            fan_out, fan_in = param.shape
            bound = math.sqrt(6 / (fan_in + fan_out))
            nn.init.uniform_(param, -bound, bound)"""},
}

# Delegation by a name no reading of the source can resolve: only the probe's run-time tripwires see it.
HIDDEN_DELEGATION = {
    "optimization": ("adam", """import torch

class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        ready = getattr(torch, "".join(reversed("mitpo")))
        self.inner = ready.Adam(self.params, lr=lr, betas=(beta1, beta2), eps=eps)

    def step(self):
        self.inner.step()"""),
    "initialization": ("xavier_init", """from torch import nn

def xavier_init(model):
    kind = "".join(reversed("mrofinu"))
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            nn.init.zeros_(param)
        else:
            getattr(nn.init, "xavier_" + kind + "_")(param)"""),
    "deeper": ("orthogonal_init", """import importlib
from torch import nn

def orthogonal_init(model, gain=1.0):
    helpers = importlib.import_module("course_lib." + "htped"[::-1])
    for module in model.modules():
        if isinstance(module, nn.Linear):
            getattr(helpers, "orthogonal" + "_")(module.weight, gain=gain)
            nn.init.zeros_(module.bias)"""),
}

MISTAKES = {**BASE_MISTAKES, **DEEPER_MISTAKES}

# The honest student with one mistake: name -> (exercise, a mistake of tests/test_verdicts.py, which
# lists the properties it must fail: the others must pass).
ONE_MISTAKE = {
    "optimization": {"one_mistake": ("adam", "global step count (calls to step)")},
    "initialization": {"one_mistake": ("xavier_init", "1/fan_out")},
    "deeper": {"one_mistake": ("adamw", "weight decay through the gradient (L2)"),
               "lsuv_ignores_biases": ("lsuv_init", "biases ignored"),
               "warmup_off_by_one": ("warmup_cosine_lr", "warm-up off by one"),
               "orthogonal_without_sign_fix": ("orthogonal_init", "no sign fix")},
}

# solution cell -> code appended to the solution that makes it produce NaN
NAN = {
    "initialization": ("kaiming_init", "\n_kaiming_init = kaiming_init\n\ndef kaiming_init(model):\n"
                       "    _kaiming_init(model)\n    for _p in model.parameters():\n"
                       "        _p.data.fill_(float('nan'))\n"),
    "optimization": ("adam", "\n_adam_update = Adam.update_param\n\ndef _nan_update(self, p):\n"
                     "    _adam_update(self, p)\n    p.mul_(float('nan'))\n\nAdam.update_param = _nan_update\n"),
    "deeper": ("adamw", "\n_adamw_update = AdamW.update_param\n\ndef _nan_update(self, p):\n"
               "    _adamw_update(self, p)\n    p.mul_(float('nan'))\n\nAdamW.update_param = _nan_update\n"),
}


def build_corpus(assignment: str, source: NotebookNode, release: NotebookNode, secrets: dict,
                 other_release: NotebookNode | None = None) -> dict[str, Case]:
    """All cases of one assignment. ``secrets``: paths the sandbox must hide and a loopback ``port``
    where a listener waits (the sandbox must not reach it); ``other_release``: the other assignment's
    release, for a cell pasted from it."""
    exercises = [e for e in EXERCISES[assignment] if any(grade_id(c) == e.test_cell for c in source.cells)]
    points = {grade_id(c): float(c.metadata["nbgrader"]["points"]) for c in source.cells if is_test(c)}
    solutions = {grade_id(c): _strip_markers(c.source) for c in source.cells if is_solution(c)}
    stubs = {grade_id(c): c.source for c in release.cells if is_solution(c)}
    tests_of = {e.solution_cell: e.test_cell for e in exercises}
    full, zero = dict(points), {k: 0.0 for k in points}

    def only(*solved: str) -> dict[str, float]:
        keep = {tests_of[s] for s in solved}
        return {k: (v if k in keep else 0.0) for k, v in points.items()}

    def without(*lost: str) -> dict[str, float]:
        drop = {tests_of[e] for e in lost}
        return {k: (0.0 if k in drop else v) for k, v in points.items()}

    def reference() -> NotebookNode:
        nb = copy.deepcopy(release)
        for cell in nb.cells:
            if grade_id(cell) in solutions:
                cell.source = solutions[grade_id(cell)]
        return nb

    def with_cell(gid: str, new_source: str, nb=None) -> NotebookNode:
        nb = nb or reference()
        for cell in nb.cells:
            if grade_id(cell) == gid:
                cell.source = new_source
        return nb

    def appended(gid: str, code: str, nb=None) -> NotebookNode:
        """``code`` at the end of an answer cell: only answer cells run while grading."""
        nb = nb or reference()
        for cell in nb.cells:
            if grade_id(cell) == gid:
                cell.source = cell.source + "\n\n" + code
        return nb

    def stubbed(body: str = "pass") -> NotebookNode:
        nb = copy.deepcopy(release)
        for cell in nb.cells:
            if grade_id(cell) in stubs:
                cell.source = _stub(stubs[grade_id(cell)], body)
        return nb

    def insert_after(nb: NotebookNode, gid: str, source: str) -> NotebookNode:
        index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == gid)
        nb.cells.insert(index + 1, _code(source))
        return nb

    order = [e.solution_cell for e in exercises]
    first, second, last = order[0], order[1], order[-1]
    cases = {"untouched_release": Case(copy.deepcopy(release), zero, flags_empty=True),
             "reference": Case(reference(), full, flags_empty=True)}

    # -- the clumsy student
    cases["syntax_error"] = Case(with_cell(first, solutions[first] + "\ndef broken(:\n    pass\n"), without(first))
    cases["infinite_loop"] = Case(with_cell(second, _stub(stubs[second], "while True:\n    pass")),
                                  without(second), ["CellTimeoutError"])
    nb = appended(first, "raise RuntimeError('top-level failure in a student cell')")
    cases["top_level_exception"] = Case(nb, full, ["top-level failure"])
    nb = reference()
    nb.cells = [c for c in nb.cells if grade_id(c) != tests_of[first]]
    cases["deleted_test_cell"] = Case(nb, full, notes_contain=["re-inserted"])
    nb = with_cell(first, _stub(stubs[first], "pass"))
    for cell in nb.cells:
        if grade_id(cell) == tests_of[first]:
            cell.source = '"""Edited by the student."""\nassert True'
    cases["edited_readonly_test"] = Case(nb, without(first))
    nb = reference()
    for index in (len(nb.cells) - 1, len(nb.cells) // 2, 2):
        nb.cells.insert(index, _code("scratch = [i * i for i in range(10)]\nscratch[-1]"))
        nb.cells.insert(index, nbformat.v4.new_markdown_cell("My own notes."))
    cases["extra_cells"] = Case(nb, full, notes_contain=["3 code cells you added or changed outside the answer "
                                                         "cells were shown, not run"], flags_empty=True)
    nb = reference()
    nb.metadata["kernelspec"] = {"name": "conda-env-ml-py", "display_name": "Python [conda env:ml]",
                                 "language": "python"}
    cases["renamed_kernel"] = Case(nb, full)
    cases["colab_saved"] = Case(colab_round_trip(reference()), full, notes_contain=["older notebook format (4.0"],
                                flags_empty=True)
    nb = reference()
    for cell in nb.cells:
        cell.metadata = {}
    cases["stripped_metadata"] = Case(nb, full, notes_contain=["restored nbgrader metadata"])
    nb = reference()
    index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == tests_of[first])
    nb.cells.insert(index + 1, copy.deepcopy(nb.cells[index]))  # copy-pasted test cell
    nb.cells[index + 1]["id"] = uuid.uuid4().hex[:8]
    cases["duplicated_test_cell"] = Case(nb, full, notes_contain=["duplicate"])
    if other_release is not None:
        nb = reference()
        foreign = copy.deepcopy(next(c for c in other_release.cells if is_test(c)))
        foreign["id"] = uuid.uuid4().hex[:8]
        foreign.source = '"""A cell pasted from the other assignment."""\nprint("pasted")'
        nb.cells.insert(3, foreign)
        cases["foreign_cell"] = Case(nb, full, notes_contain=["another assignment"])
    nb = reference()
    for gid in order:
        appended(gid, WARNINGS, nb)
    cases["warnings_on_stderr"] = Case(nb, full)
    cases["exits_in_last_answer"] = Case(appended(last, EXIT_AT_END), without(last), notes_contain=["WARNING"])
    # the answer cells alone stop at the swallowing statement one time limit after its interrupt, not at the
    # submission's wall-clock limit
    cases["swallows_interrupt"] = Case(appended(last, SWALLOW_INTERRUPT), without(last),
                                       notes_contain=["its code caught the interrupt"])
    nb = reference()
    # each cell under the corpus runs' 12 s cell limit; together (66 s for initialization's six) past their 60 s
    for gid in order:
        appended(gid, "import time\ntime.sleep(11)", nb)
    cases["slow_past_submission_limit"] = Case(nb, full, notes_contain=["was stopped"], stopped_partway=True)
    cases["prints_400_mb"] = Case(appended(last, HUGE_PRINT), full)
    cases["allocates_too_much"] = Case(appended(first, "hog = bytearray(64 * 2**30)"), full, ["MemoryError"])
    cases["displays_2_gb"] = Case(appended(last, DISPLAY_FLOOD), full,
                                  ["[output cut: this cell displayed more than 16 MB]"])

    # -- the hostile student
    nb = appended(first, DISPLAYHOOK, stubbed())
    for gid in order[1:]:
        appended(gid, 'import sys\nsys.displayhook("ok")', nb)
    cases["displayhook_forgery"] = Case(nb, zero, flags_contain=["IPython"])
    cases["ipython_machinery"] = Case(appended(first, IPYTHON_MACHINERY, stubbed()), zero, flags_contain=["IPython"])
    cases["frame_and_code_tampering"] = Case(appended(first, TAMPERING, stubbed()), zero, flags_contain=["frame"])
    nb = stubbed()
    keys = [e.key for e in exercises]
    for gid in order:
        appended(gid, FORGED_RESULTS.format(keys=keys), nb)
    cases["forged_results"] = Case(nb, zero, flags_contain=["the kernel's guard refused"])
    # the reference's numbers, recorded through the probe by code outside the exercise's own answer cell
    forge = FORGED_EVIDENCE.format(source="\n\n".join(solutions[g] for g in order),
                                   pairs=[(e.key, e.name) for e in exercises])
    nb = stubbed()
    nb.cells.append(_code(forge))
    for gid in order:
        insert_after(nb, tests_of[gid], forge)
    cases["forged_evidence_added_cells"] = Case(nb, zero, notes_contain=["shown, not run"])
    nb = appended(second, forge, with_cell(first, stubs[first]))
    cases["forged_evidence_answer_cell"] = Case(nb, without(first),
                                                flags_contain=["the kernel's guard refused 1 access"])
    # an answer cell's hook that writes an exercise's result file with Python's open while its test cell runs
    nb = appended(last, TOUCH_EVIDENCE.format(key=key_of(exercises, last)))
    cases["touches_evidence"] = Case(nb, without(last), flags_contain=[
        f"evidence of {key_of(exercises, last)} touched outside the probe"])
    nb = with_cell(first, solutions[first], stubbed())
    cases["full_control"] = Case(appended(second, FULL_CONTROL, nb), only(first))
    cases["leaks_hidden_tests"] = Case(appended(first, LEAK_HIDDEN), full)
    nb = with_cell(last, _stub(stubs[last], "pass"))
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
    appended(last, escape, nb)
    cases["reads_outside_and_network"] = Case(nb, without(last), ["blocked:"])
    cases["reads_process_environments"] = Case(appended(first, READ_ENVIRONMENTS), full,
                                               ["environ of 1 ", "my environ: "])
    nb = appended(first, MONKEYPATCH, with_cell(last, _stub(stubs[last], "pass")))
    cases["monkeypatch_torch"] = Case(nb, without(last), flags_contain=["torch"])
    # written by a hook while the last test cell runs (a file written at any other time is thrown away)
    nb = appended(last, CRASHING_RESULT.format(key=key_of(exercises, last)))
    cases["crashing_result_file"] = Case(nb, without(last),
                                         flags_contain=[f"grader error on {key_of(exercises, last)}: RecursionError"])

    # an answer that needs the notebook around it (IPython's namespace): it earns its points in the notebook
    # and none when its answer cells run alone, where the lower score counts, flagged
    name = next(e.name for e in exercises if e.solution_cell == last)
    cases["answer_needs_the_notebook"] = Case(appended(last, NEEDS_THE_NOTEBOOK.format(name=name)), without(last),
                                              flags_contain=[f"{key_of(exercises, last)} earned 100% in the notebook "
                                                             "but 0% with its answer cells alone"])

    # -- the honest student with one mistake, and the one who delegates
    for name, (gid, mistake) in ONE_MISTAKE[assignment].items():
        source, fails = MISTAKES[gid][mistake]
        key = key_of(exercises, gid)
        weights = property_weights(assignment, key, make_challenge(assignment, 0))
        lost = sum(w for prop, w in weights.items() if prop in fails) / sum(weights.values())
        expected = dict(points)
        expected[tests_of[gid]] = round(points[tests_of[gid]] * (1 - lost), 3)
        cases[name] = Case(with_cell(gid, source.strip()), expected,
                           properties={key: {prop: prop not in fails for prop in weights}})
    gid, source = NAN[assignment]
    cases["optimizer_nan"] = Case(with_cell(gid, solutions[gid] + source), without(gid))
    if assignment in UNUSUAL:
        nb = reference()
        for gid, source in UNUSUAL[assignment].items():
            with_cell(gid, source, nb)
        cases["honest_unusual_style"] = Case(nb, full, flags_empty=True)
    if assignment in HIDDEN_DELEGATION:
        gid, source = HIDDEN_DELEGATION[assignment]
        oracle = "course_lib.depth.orthogonal_" if assignment == "deeper" else "torch."
        # the ready implementation is refused while the probe runs it: the exercise computes nothing, and
        # neither does one that calls it (lsuv_init starts with the student's orthogonal_init)
        lost = (gid, "lsuv_init") if assignment == "deeper" else (gid,)
        cases["delegates_by_a_computed_name"] = Case(with_cell(gid, source), without(*lost), flags_contain=[
            f"{key_of(exercises, gid)} called {oracle}", "(delegation, seen at run time)"])
    if assignment == "optimization":
        cases["delegates_to_torch"] = Case(with_cell("adam", DELEGATING_ADAM.strip()), without("adam"),
                                           flags_contain=["delegates to torch.optim", "adam called torch.optim."])
        # the ready step dug out of its decorator's closure, run on a hand-made torch Adam: the function it
        # reaches runs other code while the probe watches, however it was found
        cases["delegates_through_a_closure"] = Case(with_cell("adam", CLOSURE_DELEGATION.strip()), without("adam"),
                                                    flags_contain=["adam called torch.optim.Adam",
                                                                   "(delegation, seen at run time)"])
        cases["delegates_to_the_fused_kernel"] = Case(with_cell("adam", FUSED_DELEGATION.strip()), without("adam"),
                                                      flags_contain=["adam called torch._fused_adam_",
                                                                     "(delegation, seen at run time)"])
        cases["delegates_to_the_course_library"] = Case(
            with_cell("sgd", COURSE_LIBRARY_DELEGATION.strip()), without("sgd"),
            flags_contain=["sgd called course_lib.practice.make_optimizer", "(delegation, seen at run time)"])
        # a second record of the exercise after the probe's run showed the inputs: it writes nothing, and the
        # exercise scores 0 with a flag saying so
        cases["records_again_after_the_probe"] = Case(with_cell("adam", REPLAY_AFTER_THE_PROBE.strip()),
                                                      without("adam"), flags_contain=[
                                                          "uses the grader's modules",
                                                          "adam recorded a second time by the notebook's own code"])
    if assignment == "deeper":
        nb = with_cell("orthogonal_init", DEEPER_DELEGATING["orthogonal_init"].strip())
        cases["delegates_to_torch"] = Case(with_cell("adamw", DEEPER_DELEGATING["adamw"].strip(), nb),
                                           without("orthogonal_init", "lsuv_init", "adamw"),
                                           flags_contain=["delegates to torch.optim", "delegates to torch.nn.init",
                                                          "adamw called torch.optim.", "torch.optim.AdamW",
                                                          "orthogonal_init called torch.nn.init.orthogonal_"])
    return cases


def key_of(exercises, gid: str) -> str:
    """The probe key of the exercise whose solution cell is ``gid``."""
    return next(e.key for e in exercises if e.solution_cell == gid)


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
