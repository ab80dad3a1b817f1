"""The kernel's audit-hook guard on the grader's files, in a process of its own (an audit hook stays for
the life of its process): the probe records, everything else is refused and logged."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from grading.course import REPO_ROOT
from grading.judging import make_challenge, touched_exercises
from grading.running.evidence import RESULTS, refused_accesses
from grading.sandbox.kernel_bootstrap import GUARD_LOG
from grading.sandbox.probe import refusal

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    from grading.sandbox import probe
    from grading.sandbox.kernel_bootstrap import guard_grading_files

    challenge, results = os.environ[probe.CHALLENGE_ENV], os.environ[probe.RESULTS_ENV]
    guard_grading_files(probe, challenge, results)
    outcome = {}

    def attempt(name, action):
        try:
            action()
            outcome[name] = "allowed"
        except PermissionError:
            outcome[name] = "refused"

    ratio = lambda first, second: float(second.var() / first.var())
    probe.record("backward_variance_ratio", ratio)
    outcome["probe wrote"] = os.path.exists(os.path.join(results, "backward_variance_ratio.safetensors"))
    target = os.path.join(results, "relu_variance_ratio.safetensors")
    attempt("read the challenge", lambda: open(challenge).read())
    attempt("write a result", lambda: open(target, "wb").write(b"forged"))
    attempt("list the results", lambda: os.listdir(results))
    attempt("call _write", lambda: probe._write(target, {"value": torch.zeros(1)}, {"status": "ok"}))
    attempt("link the folder", lambda: os.symlink(results, "/tmp/guard-link-%d" % os.getpid()))
    root = os.open("/", os.O_RDONLY)
    relative = os.path.relpath(target, "/")
    attempt("open relative to a descriptor", lambda: os.close(os.open(relative, os.O_RDONLY, dir_fd=root)))
    attempt("open elsewhere", lambda: open(os.devnull).close())
    probe._WATCHING[0] = -1  # tripwires muted: the probe may not even read the challenge (refused, logged)
    probe.record("backward_variance_ratio", ratio)
    probe._WATCHING[0] = 0
    probe._run_all = lambda obj, spec, seed: ({}, {})  # a probe made to write what the student chose
    probe.record("relu_variance_ratio", ratio)
    outcome["patched probe wrote"] = os.path.exists(target)
    print(json.dumps(outcome))
''')


def _run_probed(script: str, io: Path, challenge: dict) -> dict:
    """Run ``script`` in a fresh Python with a challenge and a results folder as a grading kernel has them;
    return the JSON object its last line prints."""
    (io / RESULTS).mkdir(parents=True)
    (io / "challenge.json").write_text(json.dumps(challenge))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT),
           "COURSE_GRADING_CHALLENGE": str(io / "challenge.json"), "COURSE_GRADING_RESULTS": str(io / RESULTS)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_only_the_probe_reaches_the_graders_files(tmp_path: Path):
    """The probe reads the challenge and writes its result; student code cannot read, list, write, link or
    reach them through a descriptor, nor make a patched probe or one with muted tripwires write; each refusal
    is logged and names the exercise whose file it touched."""
    io = tmp_path / "io"
    outcome = _run_probed(SCRIPT, io, make_challenge("initialization", 3))
    assert outcome == {"probe wrote": True, "read the challenge": "refused", "write a result": "refused",
                       "list the results": "refused", "call _write": "refused", "link the folder": "refused",
                       "open relative to a descriptor": "refused", "open elsewhere": "allowed",
                       "patched probe wrote": False}
    refused = refused_accesses(io)
    assert len(refused) == 8 and (io / RESULTS / GUARD_LOG).is_file()
    assert touched_exercises("initialization", refused) == ["relu_variance_ratio"]
    # the challenge: read by the student, by the muted probe and by the patched probe
    assert sum(r["event"] == "open" and r["path"] == [str(io / "challenge.json")] for r in refused) == 3


PATCHED_RUNNER = textwrap.dedent('''
    import json, os
    import torch
    from course_lib.checks import runner
    from grading.sandbox import probe
    from grading.sandbox.kernel_bootstrap import guard_grading_files

    challenge, results = os.environ[probe.CHALLENGE_ENV], os.environ[probe.RESULTS_ENV]
    guard_grading_files(probe, challenge, results)
    ratio = lambda first, second: float(second.var() / first.var())
    forged = lambda function, run, guard: {"value": torch.tensor(0.5, dtype=torch.float64)}
    patches = {"a runner": ("RUNNERS", {**runner.RUNNERS, "ratio": forged}),
               "a runner function": ("run_ratio", forged),
               "the decoder": ("decode_tensor", lambda d: torch.ones(d["shape"], dtype=torch.float64)),
               "the metadata": ("run_metadata", lambda exercise, errors, oracles=(): {"exercise": exercise})}
    wrote = {}
    for label, (name, value) in patches.items():
        original = getattr(runner, name)
        setattr(runner, name, value)
        probe.record("relu_variance_ratio", ratio)
        setattr(runner, name, original)
        target = os.path.join(results, "relu_variance_ratio.safetensors")
        wrote[label] = os.path.exists(target)
    probe.record("relu_variance_ratio", ratio)  # all restored: the probe records again
    wrote["restored"] = os.path.exists(os.path.join(results, "relu_variance_ratio.safetensors"))
    print(json.dumps(wrote))
''')


def test_a_patched_runner_makes_the_probe_record_nothing(tmp_path: Path):
    """The probe runs exercises through course_lib.checks.runner (shared with the self-check): replacing any of its
    functions or its table of runners in the kernel stops the probe from reading the challenge, so nothing forged
    is recorded; restored, it records again."""
    wrote = _run_probed(PATCHED_RUNNER, tmp_path / "io", make_challenge("initialization", 4))
    assert wrote == {"a runner": False, "a runner function": False, "the decoder": False, "the metadata": False,
                     "restored": True}


TRIPWIRES = textwrap.dedent('''
    import json, os, sys
    import torch
    from grading.sandbox import probe
    probe.arm_tripwires()
    from course_lib.optim import OptimizerTemplate

    class Honest(OptimizerTemplate):
        def update_param(self, p):
            p.add_(p.grad, alpha=-self.lr)

    class ComputedName(OptimizerTemplate):
        def __init__(self, params, lr):
            super().__init__(params, lr)
            self.inner = getattr(torch, "".join(reversed("mitpo"))).SGD(self.params, lr=lr)

        def step(self):
            self.inner.step()

    class Functional(OptimizerTemplate):  # the functional API, found through sys.modules
        def update_param(self, p):
            sys.modules["torch.optim.sgd"].sgd([p], [p.grad], [None], weight_decay=0.0, momentum=0.0, lr=self.lr,
                                               dampening=0.0, nesterov=False, maximize=False)

    class Unwrapped(OptimizerTemplate):  # the ready __init__ behind the wrapper, if the wrapper showed it
        def __init__(self, params, lr):
            super().__init__(params, lr)
            inner = torch.optim.SGD.__new__(torch.optim.SGD)
            getattr(torch.optim.SGD.__init__, "__wrapped__", torch.optim.SGD.__init__)(inner, self.params, lr=lr)
            self.inner = inner

        def step(self):
            self.inner.step()

    class Fused(OptimizerTemplate):
        def update_param(self, p):
            torch._fused_sgd_([p], [p.grad], [], weight_decay=0.0, momentum=0.0, lr=self.lr, dampening=0.0,
                              nesterov=False, maximize=False, is_first_step=True)

    class Walker(OptimizerTemplate):  # the ready __init__ found by walking the garbage collector
        def __init__(self, params, lr):
            super().__init__(params, lr)
            import gc
            ready = next(o for o in gc.get_objects() if getattr(o, "__qualname__", "") == "SGD.__init__"
                         and not hasattr(o, "__tripwire__"))
            self.inner = torch.optim.SGD.__new__(torch.optim.SGD)
            ready(self.inner, self.params, lr=lr)

        def step(self):
            self.inner.step()

    outside = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)  # the grader's own use: allowed
    import gc
    seen = {"gc outside the probe": len(gc.get_objects()) > 0}
    for name, cls in (("honest", Honest), ("computed name", ComputedName), ("functional", Functional),
                      ("unwrapped", Unwrapped), ("fused", Fused), ("garbage collector", Walker)):
        probe.record("sgd", cls)
        with open(os.path.join(os.environ[probe.RESULTS_ENV], "sgd.safetensors"), "rb") as f:
            header = f.read(8)
            meta = json.loads(f.read(int.from_bytes(header, "little")))["__metadata__"]
        errors = set(json.loads(meta["errors"]).values())
        seen[name] = {"oracles": json.loads(meta["oracles"]), "errors": sorted(errors)}
    seen["wrapper shows the original"] = hasattr(torch.optim.SGD.__init__, "__wrapped__")
    print(json.dumps(seen))
''')

INIT_TRIPWIRES = textwrap.dedent('''
    import json, os
    import torch
    from torch import nn
    from grading.sandbox import probe
    probe.arm_tripwires()
    from course_lib import depth

    def own_layers(model):  # builds nn.Linear layers (their constructor calls kaiming_uniform_), then samples
        for module in model.modules():
            if isinstance(module, nn.Linear):
                fresh = nn.Linear(module.in_features, module.out_features)
                bound = (6 / (module.in_features + module.out_features)) ** 0.5
                with torch.no_grad():
                    module.weight.copy_(nn.init.uniform_(fresh.weight, -bound, bound))
                    module.bias.zero_()

    def course_helper(model):
        depth.init_weights(model, "xavier")

    def torch_ready(model):
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    forged = {"nn": nn}  # a function named like torch's, compiled under torch's file name
    exec(compile("def reset_parameters(w):\\n    nn.init.xavier_normal_(w)\\n",
                 nn.modules.linear.__file__, "exec"), forged)

    def forged_caller(model):
        for module in model.modules():
            if isinstance(module, nn.Linear):
                forged["reset_parameters"](module.weight)
                nn.init.zeros_(module.bias)

    seen = {}
    for name, fn in (("own layers", own_layers), ("course helper", course_helper), ("torch ready", torch_ready),
                     ("forged caller", forged_caller)):
        probe.record("xavier_init", fn)
        with open(os.path.join(os.environ[probe.RESULTS_ENV], "xavier_init.safetensors"), "rb") as f:
            header = f.read(8)
            meta = json.loads(f.read(int.from_bytes(header, "little")))["__metadata__"]
        errors = sorted(set(json.loads(meta["errors"]).values()))
        seen[name] = {"oracles": json.loads(meta["oracles"]), "errors": errors}
    print(json.dumps(seen))
''')


def test_tripwires_refuse_delegation_by_any_spelling_and_nothing_else(tmp_path: Path):
    """Armed before student code, torch.optim reached while the probe runs the student's class, by a computed
    name, sys.modules, the fused kernel, the wrapper's inside or the garbage collector, is recorded and refused
    (so nothing is computed); an honest class, and torch or gc used outside the probe, record and refuse
    nothing."""
    seen = _run_probed(TRIPWIRES, tmp_path / "io", make_challenge("optimization", 5))
    assert seen.pop("honest") == {"oracles": [], "errors": []}
    assert seen.pop("wrapper shows the original") is False
    assert seen.pop("gc outside the probe") is True
    expected = {"computed name": "torch.optim.SGD", "functional": "torch.optim.sgd.sgd", "unwrapped": "torch.optim.SGD",
                "fused": "torch._fused_sgd_", "garbage collector": "gc.get_objects"}
    for route, oracle in expected.items():
        assert seen[route]["oracles"] == [oracle], route
        assert seen[route]["errors"] == [f"OracleRefused: {refusal(oracle)}"], route


def test_initializer_tripwires_refuse_torch_and_the_course_library(tmp_path: Path):
    """While the probe runs an initializer, torch's named initializers and the course library's helpers are
    refused, also from a function compiled under torch's name and file name; nn.Linear's own constructor (which
    calls kaiming_uniform_) and the samplers are not."""
    seen = _run_probed(INIT_TRIPWIRES, tmp_path / "io", make_challenge("initialization", 5))
    assert seen["own layers"] == {"oracles": [], "errors": []}
    assert seen["course helper"] == {"oracles": ["course_lib.depth.init_weights"],
                                     "errors": [f"OracleRefused: {refusal('course_lib.depth.init_weights')}"]}
    assert seen["torch ready"] == {"oracles": ["torch.nn.init.xavier_normal_"],
                                   "errors": [f"OracleRefused: {refusal('torch.nn.init.xavier_normal_')}"]}
    assert seen["forged caller"] == seen["torch ready"]  # a forged name and file name do not pass as torch's


ENGINE_TRIPWIRES = textwrap.dedent('''
    import json, os
    import torch
    from grading.sandbox import probe
    wired = probe.arm_tripwires()
    from course_lib.checks import derivation

    def from_the_engine(weight, grad_output):  # the grader's own reference for the product
        return float(derivation._backward_product(weight, grad_output).var() / grad_output.var())

    probe.record("backward_variance_ratio", from_the_engine)
    with open(os.path.join(os.environ[probe.RESULTS_ENV], "backward_variance_ratio.safetensors"), "rb") as f:
        header = f.read(8)
        meta = json.loads(f.read(int.from_bytes(header, "little")))["__metadata__"]
    import inspect
    from course_lib import checks
    names = {label.rsplit(".", 1)[1] for label in wired if label.startswith("course_lib.checks.")}
    kept = []  # a default argument or closure cell of the engine still holding an unwired reference
    for module_name in ("adamw", "deeper", "derivation", "optimizers", "initializers", "catalogue"):
        module = __import__(f"course_lib.checks.{module_name}", fromlist=["_"])
        for fn_name, fn in vars(module).items():
            if not inspect.isfunction(fn) or hasattr(fn, "__tripwire__"):  # a wrapper's own cell: see instructors.md
                continue
            held = list(fn.__defaults__ or ()) + list((fn.__kwdefaults__ or {}).values())
            held += [c.cell_contents for c in (fn.__closure__ or ()) if c.cell_contents is not None]
            kept += [f"{module_name}.{fn_name}" for h in held
                     if inspect.isfunction(h) and h.__name__ in names and not hasattr(h, "__tripwire__")]
    print(json.dumps({"wired": wired, "oracles": json.loads(meta["oracles"]), "kept": sorted(set(kept)),
                      "errors": sorted(set(json.loads(meta["errors"]).values()))}))
''')


def test_the_property_engines_references_are_refused_while_probed(tmp_path: Path):
    """course_lib.checks ships with the student package (for the self-check): its references and simulated
    mistakes are wired like torch.optim, so an answer that calls them computes nothing while graded, and no
    default argument or closure of the engine keeps an unwired reference to one."""
    seen = _run_probed(ENGINE_TRIPWIRES, tmp_path / "io", make_challenge("initialization", 6))
    assert {"course_lib.checks.optimizers.simulate", "course_lib.checks.optimizers.oracle",
            "course_lib.checks.adamw.simulate", "course_lib.checks.deeper.schedule_value",
            "course_lib.checks.derivation._variants"} <= set(seen["wired"])
    assert seen["kept"] == []  # e.g. a default formula=schedule_value handed out the unwired schedule oracle
    name = "course_lib.checks.derivation._backward_product"
    assert seen["oracles"] == [name] and seen["errors"] == [f"OracleRefused: {refusal(name)}"]
