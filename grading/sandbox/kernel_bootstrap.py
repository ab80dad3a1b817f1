"""First code of a sandboxed kernel: load the grading modules from memory, then start IPython's kernel (or, for
the answer cells alone, ``grading.running.alone``, run them with ``probe.run_answer_cells`` and exit).

The launcher (``grading.sandbox.launcher``) never lets the sandbox see this file or the repository. It writes a
JSON payload into an inherited memfd: this module's source, the sources of ``preload_modules`` (e.g.
``grading`` and ``grading.sandbox.probe``) and the kernel's connection info. Inside, ``STUB`` (run with
``python -c STUB FD``) reads the memfd, closes it, executes this source as a module and calls ``main``.
Nothing here is a secret: verdicts are computed outside the sandbox. Before any student code runs, an audit
hook (``guard_grading_files``) refuses Python-level access to the challenge and the results folder to
everything but the probe, and records each refusal for the grader.
"""

from __future__ import annotations

import json
import os
import sys
import types
from typing import Callable, Optional

# ``python -c`` program run inside the sandbox; argv[1] is the memfd holding the payload.
STUB = (
    "import json,os,sys,types\n"
    "f=os.fdopen(int(sys.argv[1]),'rb')\n"
    "p=json.loads(f.read())\n"
    "f.close()\n"
    "m=types.ModuleType('grading_kernel_bootstrap')\n"
    "exec(compile(p['bootstrap'],'<kernel_bootstrap>','exec'),m.__dict__)\n"
    "m.main(p)\n"
)


def payload(modules: dict[str, str], connection: Optional[dict], connection_file: Optional[str],
            answers: Optional[dict] = None) -> bytes:
    """The memfd contents: this module's source, ``modules`` (name -> source file) and the connection; or, for
    the answer cells alone (``grading.running.alone``), ``answers`` instead of a connection."""
    from pathlib import Path

    sources = {name: {"path": str(Path(path).resolve()), "text": Path(path).read_text()}
               for name, path in modules.items()}
    return json.dumps({"bootstrap": Path(__file__).read_text(), "modules": sources,
                       "connection": connection, "connection_file": connection_file, "answers": answers}).encode()


def load_modules(sources: dict[str, dict]) -> list[str]:
    """Create each module from its source text, parents first; return their names."""
    for name in sorted(sources, key=lambda n: n.count(".")):
        module = types.ModuleType(name)
        module.__file__ = sources[name]["path"]  # the host path: informative, unreadable in the sandbox
        if any(other.startswith(name + ".") for other in sources):
            module.__path__ = []  # a package, so that ``from grading.sandbox.probe import record`` resolves
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, module)
        exec(compile(sources[name]["text"], f"<{name}>", "exec"), module.__dict__)
    return list(sources)


def write_connection(connection: dict, path: str) -> str:
    """Write the kernel's connection info where ipykernel reads (and rewrites) it; return the path."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(connection, f)
    return path


OUTPUT_LIMIT = 4 * 2**20  # characters of stdout/stderr one cell may send to the grader


def cap_stream_output(limit: int = OUTPUT_LIMIT):
    """Cut what one cell prints after ``limit`` characters; return the reset to call before each cell.

    A courtesy to the grader's memory, not a guard: a notebook that undoes it only slows its own grading.
    """
    from ipykernel.iostream import OutStream

    write, state = OutStream.write, {"used": 0}

    def capped_write(self, text):
        room = limit - state["used"]
        state["used"] += len(text)
        if room <= 0:
            return len(text)
        if len(text) > room:
            write(self, text[:room] + f"\n[output cut: this cell printed more than {limit // 2**20} MB]\n")
            return len(text)
        return write(self, text)

    OutStream.write = capped_write
    return lambda *args: state.update(used=0)


DISPLAY_LIMIT = 16 * 2**20  # characters of rich outputs (HTML, images, JSON...) one cell may display


def _size(data) -> int:
    if isinstance(data, str):
        return len(data)
    if isinstance(data, dict):
        return sum(len(str(k)) + _size(v) for k, v in data.items())
    if isinstance(data, (list, tuple)):
        return sum(_size(v) for v in data)
    return len(repr(data))


def cap_display_output(limit: int = DISPLAY_LIMIT):
    """Replace what one cell displays past ``limit`` characters (every MIME type) by a line saying so; return
    the reset to call before each cell. A courtesy, like ``cap_stream_output``: the autograde process has its
    own memory limit for notebooks that undo it."""
    from ipykernel.zmqshell import ZMQDisplayPublisher

    publish, state = ZMQDisplayPublisher.publish, {"used": 0}

    def capped_publish(self, data, metadata=None, *args, **kwargs):
        state["used"] += _size(data) + _size(metadata or {})
        if state["used"] <= limit:
            return publish(self, data, metadata, *args, **kwargs)
        if state["used"] - _size(data) - _size(metadata or {}) <= limit:  # the first output past the limit
            note = f"[output cut: this cell displayed more than {limit // 2**20} MB]"
            return publish(self, {"text/plain": note}, {})
        return None

    ZMQDisplayPublisher.publish = capped_publish
    return lambda *args: state.update(used=0)


GUARD_LOG = ".guard.jsonl"  # in the results folder: the accesses the guard refused, one JSON object a line
# audit event -> positions of its path arguments
GUARDED_EVENTS = {"open": (0,), "os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,),
                  "os.listdir": (0,), "os.scandir": (0,), "os.chmod": (0,), "os.chown": (0,), "os.link": (0, 1),
                  "os.symlink": (0, 1), "os.truncate": (0,), "os.utime": (0,), "os.chdir": (0,),
                  "os.setxattr": (0,), "os.removexattr": (0,), "shutil.copyfile": (0, 1), "shutil.copytree": (0, 1),
                  "shutil.rmtree": (0,), "shutil.move": (0, 1), "glob.glob": (0,), "glob.glob/2": (0,)}
PROBE_NAMES = ("record", "_write", "_run_all", "PROBES", "decode_tensor", "INTERRUPTED", "ORACLES_SEEN", "_audit",
               "WATCH_EVENT", "runner")


def guard_grading_files(probe: types.ModuleType, challenge: str, results: str) -> Callable[[str, tuple], None]:
    """Install an audit hook (it cannot be removed) that refuses, with PermissionError, every Python-level
    access to the challenge and the results folder but the probe's own: ``record`` opening the challenge,
    ``_write`` (called by ``record``, the probe's functions unchanged) renaming its file into place. Each
    refusal is appended to ``results/GUARD_LOG`` for the grader. Native code (a C extension writing a file
    itself) raises no audit event: what it writes outside a test cell is thrown away by the grader
    (``grading.running.evidence``); inside one, only the probe's numbers are worth writing."""
    import _stat
    from json.encoder import encode_basestring_ascii  # C

    # Everything the hook uses is bound here, as tuples and C functions: the student's code can rewrite modules,
    # classes and builtins, and must not get to run inside the hook (os.path's functions are Python: not used).
    roots = tuple(os.path.realpath(p) for p in (challenge, results, os.path.dirname(results)))
    prefixes = tuple(root + "/" for root in roots)
    io_name = os.path.basename(roots[2])
    record_code, write_code = probe.record.__code__, probe._write.__code__
    probe_dict, runner_dict = probe.__dict__, probe.runner.__dict__  # course_lib.checks.runner: how exercises run
    originals = tuple((name, probe_dict[name]) for name in PROBE_NAMES)
    runner_originals = tuple((name, runner_dict[name]) for name in probe.runner.RUNNER_NAMES)
    codes = tuple((fn, fn.__code__) for _, fn in originals + runner_originals if isinstance(fn, types.FunctionType))
    kinds_dict = probe_dict["PROBES"]
    kinds = tuple(kinds_dict.items())
    positions_of, again_event = types.MappingProxyType(dict(GUARDED_EVENTS)), probe.AGAIN_EVENT
    log = os.open(os.path.join(results, GUARD_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    getframe, lstat, readlink, getcwd, is_link, write = (sys._getframe, os.lstat, os.readlink, os.getcwd,
                                                         _stat.S_ISLNK, os.write)
    str_, bytes_, len_, type_, all_, any_, refuse, os_error = (str, bytes, len, type, all, any, PermissionError,
                                                               OSError)

    def log_entry(event: str, paths: list) -> None:  # one JSON line of GUARD_LOG
        try:
            write(log, ('{"event": ' + encode_basestring_ascii(event) + ', "path": ['
                        + ", ".join([encode_basestring_ascii(p) for p in paths]) + "]}\n").encode())
        except os_error:
            pass

    def hook(event: str, args: tuple) -> None:
        positions = positions_of.get(event)
        if positions is None:
            if event == again_event and getframe(1).f_code is record_code and len_(args) == 1 and \
                    type_(args[0]) is str_:  # a second record of an exercise: the grader scores it 0
                log_entry(event, [args[0][:100]])
            return
        paths = []
        for i in positions:
            raw = args[i] if i < len_(args) else None
            text = raw if type_(raw) is str_ else (bytes_.decode(raw, "utf-8", "surrogateescape")
                                                  if type_(raw) is bytes_ else None)
            if text is None:
                continue
            if not str_.startswith(text, "/"):
                if io_name in str_.split(text, "/"):  # relative to a descriptor of the root
                    paths.append(text)
                    continue
                text = getcwd() + "/" + text
            plain, resolved, parts, hops = [], [], [p for p in str_.split(text, "/") if p and p != "."], 0
            for part in parts:  # the path as written, ".." taken lexically (os.path.abspath)
                if part == "..":
                    plain = plain[:-1]
                else:
                    plain.append(part)
            while parts:  # the path with every link followed (os.path.realpath)
                part = parts.pop(0)
                if part == "..":
                    resolved = resolved[:-1]
                    continue
                candidate = "/" + "/".join(resolved + [part])
                try:
                    mode = lstat(candidate).st_mode
                except os_error:
                    mode = 0
                if hops < 40 and is_link(mode):
                    hops += 1
                    target = readlink(candidate)
                    if str_.startswith(target, "/"):
                        resolved = []
                    parts = [p for p in str_.split(target, "/") if p and p != "."] + parts
                    continue
                resolved.append(part)
            for candidate in ("/" + "/".join(plain), "/" + "/".join(resolved)):
                if candidate in roots or any_(str_.startswith(candidate, prefix) for prefix in prefixes):
                    paths.append(text)
                    break
        if not paths:
            return
        caller = getframe(1)
        intact = (all_(probe_dict.get(name) is value for name, value in originals)
                  and all_(runner_dict.get(name) is value for name, value in runner_originals)
                  and all_(fn.__code__ is code for fn, code in codes)
                  and len_(kinds_dict) == len_(kinds) and all_(kinds_dict.get(k) is v for k, v in kinds))
        if event == "open" and caller.f_code is record_code and intact:
            return
        if (event == "os.rename" and caller.f_code is write_code and caller.f_back is not None
                and caller.f_back.f_code is record_code and intact):
            return
        log_entry(event, paths)
        raise refuse(event + " " + paths[0] + ": reserved to the grader")

    sys.addaudithook(hook)
    return hook


def start_kernel(connection_file: str) -> None:
    """Run IPython's kernel on ``connection_file`` until it is shut down."""
    from ipykernel.kernelapp import IPKernelApp

    resets = [cap_stream_output(), cap_display_output()]
    app = IPKernelApp.instance()
    app.initialize(["-f", connection_file, "--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=40"])
    for reset in resets:
        app.shell.events.register("pre_run_cell", reset)
    app.start()


def main(data: dict) -> None:
    """Entry point called by ``STUB`` with the decoded payload."""
    load_modules(data.get("modules", {}))
    probe = sys.modules.get("grading.sandbox.probe")
    if probe is not None:
        sys.modules["debugpy"] = None  # no debugger while grading: it sets a trace function, which the tripwires refuse
        challenge, results = os.environ.get(probe.CHALLENGE_ENV), os.environ.get(probe.RESULTS_ENV)
        if challenge and results and os.path.isdir(results):
            guard_grading_files(probe, challenge, results)
        probe.arm_tripwires()  # before any student code; the last audit hook (it refuses any other after it)
        if data.get("answers") is not None:  # the answer cells alone (grading.running.alone): no kernel
            answers = data.pop("answers")
            probe.run_answer_cells(answers["cells"], answers["exercises"], answers["limit_s"])
            os._exit(0)  # the results are written (each atomically); nothing of the student's runs at exit
        from ipykernel.ipkernel import IPythonKernel

        # a cell with top-level await would set a Python SIGINT handler, which the tripwires refuse
        IPythonKernel._cancel_on_sigint = IPythonKernel._dummy_context_manager
    if data.get("answers") is not None:  # the answer cells alone need the probe: without it, nothing is recorded
        sys.exit("the answer cells alone need grading.sandbox.probe among the preloaded modules")
    path = data["connection_file"]
    if data.get("connection") is not None:
        write_connection(data["connection"], path)
    start_kernel(path)
