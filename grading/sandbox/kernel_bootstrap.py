"""First code of a sandboxed kernel: load the grading modules from memory, then start IPython's kernel.

The launcher (``grading.sandbox.launcher``) never lets the sandbox see this file or the repository. It writes a
JSON payload into an inherited memfd: this module's source, the sources of ``preload_modules`` (e.g.
``grading`` and ``grading.sandbox.probe``) and the kernel's connection info. Inside, ``STUB`` (run with
``python -c STUB FD``) reads the memfd, closes it, executes this source as a module and calls ``main``.
Nothing here is a secret or a guard: verdicts are computed outside the sandbox, so student code may
change anything in this process without changing a grade.
"""

from __future__ import annotations

import json
import os
import sys
import types
from typing import Optional

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


def payload(modules: dict[str, str], connection: Optional[dict], connection_file: str) -> bytes:
    """The memfd contents: this module's source, ``modules`` (name -> source file) and the connection."""
    from pathlib import Path

    sources = {name: {"path": str(Path(path).resolve()), "text": Path(path).read_text()}
               for name, path in modules.items()}
    return json.dumps({"bootstrap": Path(__file__).read_text(), "modules": sources,
                       "connection": connection, "connection_file": connection_file}).encode()


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
    path = data["connection_file"]
    if data.get("connection") is not None:
        write_connection(data["connection"], path)
    start_kernel(path)
