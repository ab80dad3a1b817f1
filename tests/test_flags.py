"""grading.intake.flags: review flags for what the student changed, obfuscated access and delegation."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import nbformat
import pytest

from grading.course import grade_id, is_solution, release_notebook, source_notebook
from grading.intake.flags import DELEGATION, DELEGATION_DEPTH, DELEGATION_INIT, LABELS, delegation_label, review_flags

sys.path.insert(0, str(Path(__file__).parent))
from grading_corpus.cases import FUSED_DELEGATION, colab_round_trip  # noqa: E402
from test_metadata import reference_of  # noqa: E402

ASSIGNMENTS = ("initialization", "optimization", "deeper")


@pytest.fixture(scope="module")
def notebooks():
    """{assignment: (release, reference solution)}."""
    out = {}
    for assignment in ASSIGNMENTS:
        release = nbformat.read(str(release_notebook(assignment)), 4)
        out[assignment] = release, reference_of(nbformat.read(str(source_notebook(assignment)), 4), release)
    return out


@pytest.fixture
def optimization(notebooks):
    release, reference = notebooks["optimization"]
    return release, copy.deepcopy(reference)


def with_cell(nb, source: str, index: int = 2):
    nb.cells.insert(index, nbformat.v4.new_code_cell(source))
    return nb


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_reference_and_colab_copy_raise_no_flag(notebooks, assignment):
    """The untouched release, the reference solution and its Colab round trip: nothing to review."""
    release, reference = notebooks[assignment]
    assert review_flags(release, release) == []
    assert review_flags(reference, release) == []
    assert review_flags(colab_round_trip(reference), release) == []


def test_only_the_students_lines_count(optimization):
    """The Colab set-up cell with a line added, or copied elsewhere, raises no flag; a new sys.modules does."""
    release, nb = optimization
    setup = next(c for c in nb.cells if c.source.startswith("# Set-up for Google Colab"))
    copied = setup.source
    setup.source += "\nprint('my own line')"
    with_cell(nb, copied, 5)
    assert review_flags(nb, release) == []
    with_cell(nb, "import sys\nsys.modules['torch'] = None", 6)
    assert sorted(review_flags(nb, release)) == ["cell 6: monkeypatches sys (sys.modules)",
                                                 f"cell 6: {LABELS['modules']}"]


OBFUSCATIONS = {
    "grader": ["import grading.sandbox.probe", "from nbgrader.api import Gradebook",
               "open('/grading/results/adam.safetensors', 'wb')", "m = sys.modules.get('grading.sandbox.probe')",
               "os.environ['COURSE_GRADING_RESULTS'] = '/tmp'"],
    "builds the name 'grading'": ['name = "gra" + "ding"', "m = ''.join(['gr', 'ading'])",
                                  "n = 'gnidarg'[::-1]", "x = chr(103) + chr(114) + 'ading'",
                                  "y = '%s%s' % ('gra', 'ding')", "z = '{}{}'.format('gra', 'ding')",
                                  "import base64\nw = base64.b64decode('Z3JhZGluZw==').decode()",
                                  "v = bytes([103, 114, 97, 100, 105, 110, 103]).decode()"],
    "builds the name 'nbgrader'": ["n = 'nb' + 'grader'"],
    "builds the name 'probe'": ["p = 'pro' + 'be'"],
    "builds the name 'torch.optim'": ["t = 'torch.' + 'optim'"],
    "import": ["m = __import__(name)", "import importlib\nm = importlib.import_module(prefix + 'x')",
               "import importlib as il\nil.import_module(n)"],
    "attr": ["getattr(obj, name)", "setattr(obj, 'x' + y, 1)", "delattr(obj, name)"],
    "setattr": ["import torch\ntype.__setattr__(torch.optim.Adam, 'step', None)",
                "object.__setattr__(x, 'y', 1)", "x.__setattr__('y', 1)"],
    "frames": ["import sys\nf = sys._getframe(1)", "import inspect\ninspect.currentframe()",
               "from sys import _getframe as g\ng()", "frame.f_back.f_globals['x'] = 1", "tb.tb_frame.f_locals",
               "import inspect as i\ni.stack()"],
    "internals": ["f.__code__ = g.__code__", "object.__subclasses__()", "check.__globals__['ok'] = True"],
    "source": ["import inspect\ninspect.getsource(f)", "import dis\ndis.dis(f)", "from inspect import getsource"],
    "gc": ["import gc\ngc.get_objects()", "from gc import get_referrers\nget_referrers(x)"],
    "modules": ["import sys\nsys.modules['grading'] = None", "from sys import modules\nmodules.clear()",
                "import sys as s\nm = s.modules"],
    "builtins": ["import builtins\nbuiltins.print = None", "__builtins__['len'] = None",
                 "b = __import__('builtins')"],
    "ipython": ["get_ipython().events.register('pre_run_cell', f)",
                "ip = get_ipython()\nip.ast_transformers.append(t)",
                "from IPython import get_ipython as gi\ngi().input_transformers_post.append(f)",
                "get_ipython().run_cell = lambda *a, **k: None", "get_ipython().run_line_magic(m, '')"],
    "hooks": ["import sys\nsys.displayhook('ok')", "import sys\nsys.settrace(f)", "import sys\nsys.excepthook = h"],
    "exit": ["import os\nos._exit(0)", "from os import _exit\n_exit(0)", "import os, signal\nos.kill(os.getpid(), 9)"],
    "ctypes": ["import ctypes", "import ctypes.util", "c = __import__('ctypes')"],
    "fd": ["import os\nos.write(1, b'x')", "import os\nos.dup2(3, 1)", "open('/proc/self/fd/1', 'w')",
           "open(1, 'w').write('x')", "import os\nos.fdopen(2, 'w')"],
    "commands": ["import subprocess\nsubprocess.run(['ls'])", "import socket\nsocket.socket()",
                 "import os\nos.system('ls')", "!ls /", "%%bash\nls /", "files = !ls", "%pip install requests",
                 "from urllib.request import urlopen"],
    "exec": ["exec(code)", "eval('1 + 1')", "compile(src, 'x', 'exec')"],
    "monkeypatches torch": ["import torch\ntorch.allclose = lambda *a, **k: True",
                            "torch.testing.assert_close = None", "setattr(torch, 'allclose', f)",
                            "from torch import nn\nnn.Module.__call__ = f"],
    "monkeypatches numpy": ["import numpy as np\nnp.allclose = lambda *a, **k: True"],
    "monkeypatches course_lib": ["import course_lib.optim\ncourse_lib.optim.OptimizerTemplate.step = f",
                                 "OptimizerTemplate.zero_grad = f"],
    "monkeypatches random": ["import random\nrandom.Random = NotRandom"],
    "paths": ["open('/etc/passwd').read()", "open('../../secret.txt')"],
    "writefile": ["%%writefile helper.py\nimport sys"],
}


@pytest.mark.parametrize("label,source", [(label, source) for label, sources in OBFUSCATIONS.items()
                                          for source in sources])
def test_each_obfuscation_is_flagged(optimization, label, source):
    """Each way to reach the grader, the interpreter or the host raises its flag on the cell that does it."""
    release, nb = optimization
    flags = review_flags(with_cell(nb, source), release)
    expected = LABELS.get(label, label)
    assert any(flag.startswith("cell 2: ") and expected in flag for flag in flags), flags


def test_cell_magic_bodies_and_unparseable_cells_are_searched(optimization):
    """%%time runs its body (so it is parsed), and a cell that does not parse is searched line by line."""
    release, nb = optimization
    with_cell(nb, "%%time\nimport sys\nsys._getframe()")
    with_cell(nb, "def broken(:\n    sys.modules['x'] = 1", 3)
    flags = review_flags(nb, release)
    assert f"cell 2: {LABELS['frames']}" in flags and f"cell 3: {LABELS['modules']}" in flags


def test_ordinary_code_raises_no_flag(optimization):
    """What students ordinarily write (prints, plots, their own helpers, torch maths) is not flagged."""
    release, nb = optimization
    with_cell(nb, "import math\nimport torch\nimport numpy as np\nimport matplotlib.pyplot as plt\n"
                  "x = torch.randn(3, requires_grad=True)\nloss = (x ** 2).sum()\nloss.backward()\n"
                  "print(f'grad {x.grad}', np.mean([1, 2]), math.sqrt(2))\nplt.plot([1, 2])\n"
                  "%matplotlib inline\nhistory = {'loss': []}\nhistory['loss'].append(loss.item())\n"
                  "torch.backends.cudnn.deterministic = True\nimport gc\ngc.collect()\n"
                  "print('Ready for grading: my upgrading of the optimizer is done')\n"
                  "class Logger:\n    def __init__(self, **settings):\n        for key, value in settings.items():\n"
                  "            setattr(self, key, value)")
    assert review_flags(nb, release) == []


def _solution_cell(nb, gid: str):
    return next(c for c in nb.cells if grade_id(c) == gid)


DELEGATIONS = [
    "class Adam(OptimizerTemplate):\n    def __init__(self, params, lr=1e-3, **kw):\n"
    "        super().__init__(params, lr)\n        self.inner = torch.optim.Adam(self.params, lr=lr)\n"
    "    def update_param(self, p):\n        self.inner.step()",
    "from torch.optim import Adam as TorchAdam\nclass Adam(TorchAdam):\n    pass",
    "import torch.optim._functional as F\nclass Adam(OptimizerTemplate):\n    def update_param(self, p):\n"
    "        F.adam([p], [p.grad], [], [], [], [], foreach=False)",
    "from torch.optim.adam import adam\nclass Adam(OptimizerTemplate):\n    def update_param(self, p):\n"
    "        adam([p], [p.grad], [], [], [], [])",
    "import torch\nclass Adam(OptimizerTemplate):\n    def update_param(self, p):\n"
    "        getattr(torch, 'optim').Adam([p]).step()",
    "class Adam(OptimizerTemplate):\n    def update_param(self, p):\n"
    "        __import__('torch.optim').optim.Adam([p]).step()",
]


@pytest.mark.parametrize("source", DELEGATIONS)
def test_delegating_to_torch_optim_is_flagged(optimization, source):
    """An exercise that calls torch.optim or its functional API gets the delegation flag on its cell."""
    release, nb = optimization
    cell = _solution_cell(nb, "adam")
    cell.source = source
    index = nb.cells.index(cell)
    assert f"cell {index}: {DELEGATION}" in review_flags(nb, release)


def test_delegation_through_another_cell_is_flagged(optimization):
    """torch.optim imported in a cell of its own, then used by the exercise, or bound to its name."""
    release, nb = optimization
    with_cell(nb, "from torch.optim import Adam as Reference")
    cell = _solution_cell(nb, "adam")
    cell.source = "class Adam(Reference):\n    pass"
    assert f"cell {nb.cells.index(cell)}: {DELEGATION}" in review_flags(nb, release)
    release, nb = release, copy.deepcopy(release)
    index = nb.cells.index(_solution_cell(nb, "adam")) + 1
    with_cell(nb, "import torch\nAdam = torch.optim.Adam", index)
    assert f"cell {index}: {DELEGATION}" in review_flags(nb, release)


def test_torch_optim_outside_the_exercises_is_no_delegation(optimization):
    """Comparing with torch.optim in a cell of one's own is allowed."""
    release, nb = optimization
    with_cell(nb, "import torch\nreference = torch.optim.Adam([torch.zeros(1, requires_grad=True)])")
    assert review_flags(nb, release) == []


def test_corpus_attacks_are_flagged(optimization):
    """The corpus's tampering cell raises the flags a reviewer needs."""
    from grading_corpus import cases

    release, nb = optimization
    flags = review_flags(with_cell(nb, cases.TAMPERING), release)
    for key in ("frames", "internals", "gc", "setattr"):
        assert f"cell 2: {LABELS[key]}" in flags
    assert "cell 2: builds the name 'grading' from pieces" in flags
    assert "cell 2: monkeypatches random (random.Random)" in flags


def test_locked_and_answer_cells(optimization):
    """Edits inside a locked test cell are not flagged (nbgrader restores it); answer cells are checked."""
    release, nb = optimization
    test = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("locked"))
    test.source += "\nimport sys\nsys._getframe()"
    assert review_flags(nb, release) == []
    answer = next(c for c in nb.cells if is_solution(c))
    answer.source += "\nimport ctypes"
    assert review_flags(nb, release) == [f"cell {nb.cells.index(answer)}: {LABELS['ctypes']}"]


def test_pathological_cells_do_not_break_the_check(optimization):
    """A deeply nested expression and a huge cell are flagged as unchecked, not crashes."""
    release, nb = optimization
    with_cell(nb, "x = a" + ".b" * 2_000)
    with_cell(nb, "y = 1\n" * 300_000, 3)
    flags = review_flags(nb, release)
    assert "cell 2: code nested too deeply to check automatically" in flags
    assert any(f.startswith("cell 3: a code cell of") and "too large" in f for f in flags)


@pytest.mark.slow
def test_a_flood_of_cells_gives_a_bounded_list_of_flags(optimization):
    """300,000 changed cells (past the notebook's budget) and 500 flagged ones: at most MAX_FLAGS + 1 flags,
    the cells past the budget counted in one flag, the rest as "and N more"."""
    from grading.intake.flags import MAX_FLAGS

    release, nb = optimization
    code = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None}
    cells = [dict(code, source="import ctypes")] * 500 + [dict(code, source=f"x = {i:07d}") for i in range(300_000)]
    cells.append(dict(code, source="y = 0\n" * 400_000))  # past the budget, also too large
    nb = nbformat.from_dict({**nb, "cells": [*nb.cells, *cells]})
    flags = review_flags(nb, release)
    assert len(flags) == MAX_FLAGS + 1 and flags[-1].startswith("... and ")
    assert flags[0].endswith("ctypes") and int(flags[-1].split()[2]) >= 500 - MAX_FLAGS


DEEPER_DELEGATIONS = [
    ("adamw", "class AdamW(OptimizerTemplate):\n    def __init__(self, params, lr=1e-3, **kw):\n"
              "        super().__init__(params, lr)\n        self.inner = torch.optim.AdamW(self.params, lr=lr)\n"
              "    def step(self):\n        self.inner.step()", DELEGATION),
    ("warmup_cosine_lr", "from torch.optim.lr_scheduler import CosineAnnealingLR\n"
                         "def warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0):\n"
                         "    return CosineAnnealingLR", DELEGATION),
    ("orthogonal_init", "def orthogonal_init(model, gain=1.0):\n    for p in model.parameters():\n"
                        "        nn.init.orthogonal_(p) if p.dim() == 2 else p.data.zero_()", DELEGATION_INIT),
    ("lsuv_init", "from course_lib import depth\ndef lsuv_init(model, batch, tol=0.05, max_iter=10):\n"
                  "    depth.lsuv(model, batch)", DELEGATION_DEPTH),
]


@pytest.mark.parametrize("gid, source, label", DEEPER_DELEGATIONS)
def test_deeper_delegations_are_flagged(notebooks, gid, source, label):
    """torch.optim.AdamW, lr_scheduler, nn.init.orthogonal_ and course_lib.depth in an exercise are flagged."""
    release, reference = notebooks["deeper"]
    nb = copy.deepcopy(reference)
    cell = _solution_cell(nb, gid)
    cell.source = source
    assert f"cell {nb.cells.index(cell)}: {label}" in review_flags(nb, release)
    outside = with_cell(copy.deepcopy(reference), "import torch\nfrom torch import nn\n"
                        "w = nn.init.orthogonal_(torch.empty(3, 3))\nopt = torch.optim.AdamW([w])")
    assert review_flags(outside, release) == []


ROUTES = [  # (exercise, answer cell, the flag it must raise)
    ("adam", "import torch.nn.functional as F\nclass Adam(OptimizerTemplate):\n    def update_param(self, p):\n"
             "        F.torch.optim.Adam([p]).step()", DELEGATION),
    ("adam", "import torch\nclass Adam(OptimizerTemplate):\n    def update_param(self, p):\n"
             "        torch._fused_adam_([p], [p.grad], [], [], [], [], lr=0.1, beta1=0.9, beta2=0.99,\n"
             "                           weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)",
     delegation_label("torch._fused_adam_")),
    ("adam", "import torch\nclass Adam(OptimizerTemplate):\n    def update_param(self, p):\n"
             "        torch.ops.aten._fused_adamw_.default([p])", delegation_label("torch.ops.aten._fused_adamw_")),
    ("sgd", "from course_lib.practice import make_optimizer\nclass SGD(OptimizerTemplate):\n"
            "    def update_param(self, p):\n        make_optimizer('sgd', [p], self.lr).step()",
     delegation_label("course_lib.practice")),
    ("sgd_momentum", "from course_lib import explorer\nclass SGDMomentum(OptimizerTemplate):\n"
                     "    def update_param(self, p):\n        explorer.optimizer_factories()",
     delegation_label("course_lib.explorer")),
    ("adam", "from course_lib.checks import optimizers as engine\nclass Adam(OptimizerTemplate):\n"
             "    def update_param(self, p):\n        engine.simulate('adam', None, frozenset())",
     delegation_label("course_lib.checks")),
    ("backward_variance_ratio", "import course_lib.checks.derivation as d\ndef backward_variance_ratio(w, g):\n"
                                "    return float(d._backward_product(w, g).var() / g.var())",
     delegation_label("course_lib.checks")),
    ("xavier_init", "from torch import nn\ndef xavier_init(model):\n    for name, p in model.named_parameters():\n"
                    "        nn.init.xavier_uniform_(p) if 'weight' in name else p.data.zero_()",
     delegation_label("torch.nn.init.xavier_uniform_")),
    ("kaiming_init", "import torch\ndef kaiming_init(model):\n    for p in model.parameters():\n"
                     "        torch.nn.init.kaiming_normal_(p) if p.dim() == 2 else p.data.zero_()",
     delegation_label("torch.nn.init.kaiming_normal_")),
]


@pytest.mark.parametrize("gid, source, label", ROUTES, ids=[r[2] for r in ROUTES])
def test_every_route_to_a_ready_implementation_is_flagged(notebooks, gid, source, label):
    """torch.optim through another module, the fused kernels, nn.init's named initializers and the course
    library's optimizer and initializer helpers, each in an answer cell, raise their delegation flag."""
    assignment = next(a for a in ASSIGNMENTS if any(grade_id(c) == gid for c in notebooks[a][1].cells))
    release, reference = notebooks[assignment]
    nb = copy.deepcopy(reference)
    cell = _solution_cell(nb, gid)
    cell.source = source
    assert label and f"cell {nb.cells.index(cell)}: {label}" in review_flags(nb, release)


def test_a_fused_kernel_named_in_pieces_is_flagged_once(notebooks):
    """A kernel's name joined at run time gets one flag, naming the kernel as a direct call would."""
    release, reference = notebooks["optimization"]
    nb = copy.deepcopy(reference)
    cell = _solution_cell(nb, "adam")
    cell.source = FUSED_DELEGATION.strip()
    fused = [flag for flag in review_flags(nb, release) if "fused" in flag]
    assert fused == [f"cell {nb.cells.index(cell)}: {delegation_label('torch._fused_adam_')}"]


def test_samplers_in_an_initializer_are_no_delegation(notebooks):
    """nn.init.normal_ and uniform_ draw the numbers an initializer chooses: no flag."""
    release, reference = notebooks["initialization"]
    nb = copy.deepcopy(reference)
    _solution_cell(nb, "xavier_init").source = (
        "import math\nfrom torch import nn\ndef xavier_init(model):\n    for name, p in model.named_parameters():\n"
        "        if 'weight' in name:\n            bound = math.sqrt(6 / (p.shape[0] + p.shape[1]))\n"
        "            nn.init.uniform_(p, -bound, bound)\n        else:\n            nn.init.zeros_(p)")
    _solution_cell(nb, "var_init").source = (
        "import torch\ndef var_init(model, std=0.01):\n    for p in model.parameters():\n"
        "        torch.nn.init.normal_(p, 0.0, std)")
    assert review_flags(nb, release) == []
