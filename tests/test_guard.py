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


TRIPWIRES = textwrap.dedent('''
    import json, os
    import torch
    from grading.sandbox import probe
    probe.arm_tripwires()
    from course_lib.optim import OptimizerTemplate

    class Honest(OptimizerTemplate):
        def update_param(self, p):
            p.add_(p.grad, alpha=-self.lr)

    class Delegating(OptimizerTemplate):
        def __init__(self, params, lr):
            super().__init__(params, lr)
            self.inner = getattr(torch, "".join(reversed("mitpo"))).SGD(self.params, lr=lr)

        def step(self):
            self.inner.step()

    outside = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)  # the grader's own use: not seen
    seen = {}
    for name, cls in (("honest", Honest), ("delegating", Delegating)):
        probe.record("sgd", cls)
        with open(os.path.join(os.environ[probe.RESULTS_ENV], "sgd.safetensors"), "rb") as f:
            header = f.read(8)
            meta = json.loads(f.read(int.from_bytes(header, "little")))["__metadata__"]
        seen[name] = json.loads(meta["oracles"])
    print(json.dumps(seen))
''')


def test_tripwires_see_delegation_by_any_spelling_and_nothing_else(tmp_path: Path):
    """Armed before student code, the tripwires record torch.optim reached through a computed name while the
    probe runs the student's class; an honest class, and torch used outside the probe, record nothing."""
    seen = _run_probed(TRIPWIRES, tmp_path / "io", make_challenge("optimization", 5))
    assert seen["honest"] == []
    assert "torch.optim.SGD" in seen["delegating"] and "torch.optim.sgd.sgd" in seen["delegating"]
