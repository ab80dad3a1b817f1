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
    probe.WATCH_EVENT = "muted"  # tripwires never told: the probe may not even read the challenge (refused, logged)
    probe.record("backward_variance_ratio", ratio)
    probe.WATCH_EVENT = probe.tripwires.WATCH_EVENT
    probe._run_all = lambda obj, spec, seed: ({}, {})  # a probe made to write what the student chose
    probe.record("relu_variance_ratio", ratio)
    outcome["patched probe wrote"] = os.path.exists(target)
    print(json.dumps(outcome))
''')


# An exercise is recorded once per kernel: each record of these scripts runs in a child process of its own
RECORDED = textwrap.dedent('''
    def recorded(exercise, obj):
        """The oracles and errors of one record of ``exercise``, made in a forked child."""
        path = os.path.join(os.environ[probe.RESULTS_ENV], f"{exercise}.safetensors")
        if os.path.exists(path):
            os.remove(path)
        pid = os.fork()
        if pid == 0:
            try:
                probe.record(exercise, obj)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        with open(path, "rb") as f:
            header = f.read(8)
            meta = json.loads(f.read(int.from_bytes(header, "little")))["__metadata__"]
        return {"oracles": json.loads(meta["oracles"]), "errors": sorted(set(json.loads(meta["errors"]).values()))}
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
    reach them through a descriptor, nor make a patched probe or one that never disarms the ready
    implementations write; each refusal
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

    sgd_module = sys.modules["torch.optim.sgd"]

    class Closure(OptimizerTemplate):  # the ready step dug out of its decorator's closure, on a hand-made SGD
        def __init__(self, params, lr):
            super().__init__(params, lr)
            self.inner = torch.optim.SGD.__new__(torch.optim.SGD)
            torch.optim.Optimizer.__init__(self.inner, self.params, dict(
                lr=lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False, foreach=None,
                differentiable=False, fused=None))
            cells = [c.cell_contents for c in torch.optim.SGD.step.__closure__]
            self.ready = next(f for f in cells if getattr(f, "__qualname__", "") == "SGD.step")

        def step(self):
            self.ready(self.inner)

    class Aten(OptimizerTemplate):  # the fused kernel through the dispatcher's own namespace
        def update_param(self, p):
            torch.ops.aten._fused_sgd_([p], [p.grad], [], weight_decay=0.0, momentum=0.0, lr=self.lr, dampening=0.0,
                                       nesterov=False, maximize=False, is_first_step=True)

    import types
    ready_code = sgd_module._single_tensor_sgd.__code__  # read before the probe runs, run inside it

    class SavedCode(OptimizerTemplate):
        def update_param(self, p):
            fn = types.FunctionType(ready_code, vars(sgd_module))
            fn([p], [p.grad], [None], grad_scale=None, found_inf=None, weight_decay=0.0, momentum=0.0, lr=self.lr,
               dampening=0.0, nesterov=False, maximize=False, has_sparse_grad=False)

    class Walker(OptimizerTemplate):  # the ready __init__ found by walking the garbage collector
        def __init__(self, params, lr):
            super().__init__(params, lr)
            import gc
            gc.get_objects()

    class HookFrame(OptimizerTemplate):  # the hook's variables, from the traceback of something it refused
        def __init__(self, params, lr):
            super().__init__(params, lr)
            try:
                gc.get_objects()
            except Exception as error:
                tb = error.__traceback__
                while tb.tb_next:
                    tb = tb.tb_next
                if "state" in tb.tb_frame.f_locals:  # the dispatcher's overrides, undone
                    tb.tb_frame.f_locals["state"]["dispatch"].reset()

        def update_param(self, p):
            torch._fused_sgd_([p], [p.grad], [], weight_decay=0.0, momentum=0.0, lr=self.lr, dampening=0.0,
                              nesterov=False, maximize=False, is_first_step=True)

    outside = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)  # the grader's own use: allowed
    outside.step()
    import gc
    seen = {}

    def attempt(name, action):
        try:
            action()
            seen[name] = "allowed"
        except PermissionError as error:
            seen[name] = "refused"
            seen[name + " traceback"] = error.__traceback__

    attempt("gc outside the probe", gc.get_objects)  # what it finds could be kept for later
    attempt("read sgd.py", lambda: open(sgd_module.__file__).read())  # a fresh copy of the ready class
    attempt("reload sgd", lambda: __import__("importlib").reload(sgd_module))
    attempt("copy the code", lambda: ready_code.replace(co_name="mine"))
    attempt("marshal the code", lambda: __import__("marshal").dumps((1, [ready_code])))
    attempt("run the code", lambda: exec(ready_code))
    attempt("set the code", lambda: setattr(lambda *a, **k: 0, "__code__", ready_code))
    attempt("trace", lambda: sys.settrace(lambda *args: None))  # it would see the probe's frames
    attempt("profile", lambda: sys.setprofile(lambda *args: None))
    # another audit hook runs inside the tripwires' own work (their code swaps raise events) and could read its frame
    import _imp
    import importlib.util
    import signal
    attempt("signal handler", lambda: signal.signal(signal.SIGALRM, lambda *args: None))  # runs inside the hook too
    attempt("plain signal handlers", lambda: signal.signal(signal.SIGINT, signal.signal(signal.SIGINT, signal.SIG_IGN)))
    attempt("fresh _signal", lambda: _imp.create_builtin(importlib.util.find_spec("_signal")))  # its own signal()
    attempt("fresh builtin", lambda: importlib.util.module_from_spec(importlib.util.find_spec("_bisect")))
    try:  # a subinterpreter has no audit hook of its own (Python reports the refusal as a RuntimeError)
        __import__("_xxsubinterpreters").create()
        seen["subinterpreter"] = "allowed"
    except RuntimeError as error:
        seen["subinterpreter"] = "refused" if str(error) == "interpreter creation failed" else repr(error)
    import ctypes  # imported by torch before the tripwires were armed
    attempt("ctypes function", lambda: ctypes.pythonapi.PyFrame_LocalsToFast)  # would write a frame's variables
    attempt("ctypes memory", lambda: ctypes.c_char.from_address(id(attempt)))
    heard = []
    sys.addaudithook(lambda event, args: heard.append(event))  # refused silently (Python drops the exception)
    sys.audit("course.test.heard")
    seen["audit hook"] = "refused" if heard == [] else "allowed"
    # PEP 523: a callback before every frame, which may run other code in its place (torch.compile's machinery)
    attempt("frame evaluation", lambda: torch._C._dynamo.eval_frame.set_eval_frame(lambda *args: None))
    seen = {k: v for k, v in seen.items() if not k.endswith(" traceback")}
    from grading.sandbox import tripwires
    tripwires.WATCH_EVENT = tripwires.ORACLE_EVENT = "rewritten"  # the hook holds its own names
    tripwires.refusal = lambda name: "forged"
    for name, cls in (("honest", Honest), ("computed name", ComputedName), ("functional", Functional),
                      ("unwrapped", Unwrapped), ("fused", Fused), ("garbage collector", Walker),
                      ("closure", Closure), ("aten", Aten), ("saved code", SavedCode), ("hook frame", HookFrame)):
        seen[name] = recorded("sgd", cls)
    try:
        gc.get_objects()
    except PermissionError as error:  # the hook's variables, from the traceback of what it refused
        tb = error.__traceback__
        while tb.tb_next:
            tb = tb.tb_next
        seen["hook variables"] = sorted(tb.tb_frame.f_locals)
    late = []

    def late_oracle(phase, info):  # a collection while the probe holds the challenge, outside the student's runs
        stack, frame, record_frame = [], sys._getframe(1), None
        while frame is not None:
            stack.append(frame.f_code.co_name)
            record_frame = frame if frame.f_code.co_name == "record" else record_frame
            frame = frame.f_back
        holds_challenge = record_frame is not None and "challenge" in record_frame.f_locals
        if phase == "start" and holds_challenge and "_run_all" not in stack and len(late) < 3:
            try:
                torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
                late.append("allowed")
            except Exception as error:
                late.append(type(error).__name__)

    gc.callbacks.append(late_oracle)
    thresholds = gc.get_threshold()
    gc.set_threshold(1)
    probe.record("sgd", Honest)
    gc.set_threshold(*thresholds)
    gc.callbacks.remove(late_oracle)
    seen["late"] = late
    results = os.path.join(os.environ[probe.RESULTS_ENV], "sgd.safetensors")
    os.remove(results)
    probe.record("sgd", Honest)  # once per kernel: a second run would meet the same inputs
    seen["recorded twice"] = os.path.exists(results)
    seen["outside after the probe"] = bool(torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1).step() or 1)
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
        seen[name] = recorded("xavier_init", fn)
    print(json.dumps(seen))
''')


def test_tripwires_refuse_delegation_by_any_spelling_and_nothing_else(tmp_path: Path):
    """Armed before student code, torch.optim reached while the probe runs the student's class, by a computed
    name, sys.modules, the fused kernel (also through torch.ops.aten), a decorator's closure or the garbage
    collector, computes nothing and is recorded; its code, read before the probe, runs nowhere else; its source is
    not read again; rewriting the tripwires module's names changes nothing. No trace, profile, frame evaluation
    callback, other audit hook, Python signal handler or subinterpreter can be made (nor a fresh _signal), nor can
    ctypes look up a C function or read memory at an address; the
    hook's frame from a refusal's traceback shows no variables (its dispatcher overrides stay); a collection's
    callback while the probe holds the challenge finds torch.optim disarmed; an exercise is recorded once. An
    honest class, plain signal handlers, other builtin modules, and torch.optim used outside the probe (before
    and after), are left alone."""
    seen = _run_probed(RECORDED + TRIPWIRES, tmp_path / "io", make_challenge("optimization", 5))
    assert seen.pop("honest") == {"oracles": [], "errors": []}
    assert seen.pop("plain signal handlers") == seen.pop("fresh builtin") == "allowed"
    assert seen.pop("hook variables") == []
    assert seen.pop("recorded twice") is False
    assert seen.pop("late") == ["OracleRefused"] * 3
    assert seen.pop("outside after the probe") is True
    for attack in ("gc outside the probe", "read sgd.py", "reload sgd", "copy the code", "marshal the code",
                   "run the code", "set the code", "trace", "profile", "frame evaluation", "audit hook",
                   "signal handler", "fresh _signal", "subinterpreter", "ctypes function", "ctypes memory"):
        assert seen.pop(attack) == "refused", attack
    assert seen.pop("hook frame") == {"oracles": ["gc.get_objects", "torch._fused_sgd_"],
                                      "errors": [f"OracleRefused: {refusal('torch._fused_sgd_')}"]}
    saved = seen.pop("saved code")
    assert saved["oracles"] == [] and saved["errors"] == [
        "PermissionError: this code runs only as the function it belongs to"]
    expected = {"computed name": "torch.optim.SGD", "functional": "torch.optim.sgd.sgd", "unwrapped": "torch.optim.SGD",
                "fused": "torch._fused_sgd_", "garbage collector": "gc.get_objects",
                "closure": "torch.optim.SGD", "aten": "torch._fused_sgd_"}
    assert set(seen) == set(expected)
    for route, oracle in expected.items():
        assert seen[route]["oracles"] == [oracle], route
        assert seen[route]["errors"] == [f"OracleRefused: {refusal(oracle)}"], route


def test_initializer_tripwires_refuse_torch_and_the_course_library(tmp_path: Path):
    """While the probe runs an initializer, torch's named initializers and the course library's helpers are
    refused, also from a function compiled under torch's name and file name; nn.Linear's own constructor (which
    calls kaiming_uniform_) and the samplers are not."""
    seen = _run_probed(RECORDED + INIT_TRIPWIRES, tmp_path / "io", make_challenge("initialization", 5))
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

    engine = recorded("backward_variance_ratio", from_the_engine)
    held = derivation._backward_product  # a reference taken before the probe: the same function, disarmed

    def held_reference(weight, grad_output, product=held):
        return float(product(weight, grad_output).var() / grad_output.var())

    kept = recorded("backward_variance_ratio", held_reference)
    print(json.dumps({"wired": wired, "oracles": engine["oracles"], "kept": kept["oracles"],
                      "errors": engine["errors"]}))
''')


def test_the_property_engines_references_are_refused_while_probed(tmp_path: Path):
    """course_lib.checks ships with the student package (for the self-check): its references and simulated
    mistakes are disarmed like torch.optim, so an answer that calls them computes nothing while graded, also
    through a reference taken before the probe ran."""
    seen = _run_probed(RECORDED + ENGINE_TRIPWIRES, tmp_path / "io", make_challenge("initialization", 6))
    assert {"course_lib.checks.optimizers.simulate", "course_lib.checks.optimizers.oracle",
            "course_lib.checks.adamw.simulate", "course_lib.checks.deeper.schedule_value",
            "course_lib.checks.derivation._variants"} <= set(seen["wired"])
    name = "course_lib.checks.derivation._backward_product"
    assert seen["kept"] == [name]  # held in a default argument before the probe ran: disarmed all the same
    assert seen["oracles"] == [name] and seen["errors"] == [f"OracleRefused: {refusal(name)}"]
