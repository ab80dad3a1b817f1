"""Run a student's Jupyter kernel inside a bubblewrap sandbox with resource limits.

The grader (nbgrader, running unconfined) starts the kernel through a kernelspec whose argv is
``python -m grading.sandbox SETTINGS.json {connection_file}``. This module, still unconfined,
reads the hidden-check modules into memory, sets resource limits, and execs ``bwrap``. Inside:
no network (own network namespace, only a down loopback), own PID/IPC/UTS namespaces, no
capabilities, a read-only view of the system, Python and course_lib only, a private scratch
folder as working directory, a tmpfs /tmp. The kernel talks to nbgrader over Unix sockets
(``ipc`` transport) in a runtime folder private to this one submission. The check modules are
compiled from memory before student code runs, so their source is nowhere on the sandbox's disk,
and a guard restores patched attributes of torch, numpy, builtins and the checks before each cell.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

KERNEL_NAME = "course-sandbox"


@dataclass
class SandboxSettings:
    """Limits and file-system view of one sandboxed kernel (saved as JSON beside its kernelspec)."""

    memory_mb: int = 8192  # address space: importing torch alone maps ~3.3 GB of it
    cpu_s: int = 600
    file_size_mb: int = 256
    threads: int = 1
    enabled: bool = True
    readonly_paths: list[str] = field(default_factory=list)
    data_dir: Optional[str] = None
    preload_modules: dict[str, str] = field(default_factory=dict)  # module name -> source file
    env: dict[str, str] = field(default_factory=dict)  # extra environment of the kernel

    def save(self, path: Path) -> None:
        """Write the settings as JSON."""
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> "SandboxSettings":
        """Read settings written by ``save``."""
        return cls(**json.loads(Path(path).read_text()))


def bwrap_available() -> bool:
    """True when bubblewrap is installed and can create the namespaces we need here."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    import subprocess

    probe = subprocess.run(
        [exe, "--unshare-net", "--unshare-pid", "--die-with-parent", "--ro-bind", "/", "/", "true"],
        capture_output=True,
    )
    return probe.returncode == 0


def default_readonly_paths() -> list[str]:
    """System, Python and course_lib paths the kernel needs to read (nothing else of the repo)."""
    import course_lib

    paths = ["/usr", sys.base_prefix, sys.prefix, str(Path(course_lib.__file__).resolve().parent)]
    for etc in ("/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"):
        if os.path.exists(etc):
            paths.append(etc)
    return paths


def write_kernelspec(jupyter_dir: Path, settings: SandboxSettings, repo_root: Path) -> Path:
    """Write the sandbox kernelspec and its settings into ``jupyter_dir/kernels``; return its folder."""
    kernel_dir = jupyter_dir / "kernels" / KERNEL_NAME
    kernel_dir.mkdir(parents=True, exist_ok=True)
    settings.save(kernel_dir / "sandbox.json")
    spec = {
        "argv": [sys.executable, "-m", "grading.sandbox", str(kernel_dir / "sandbox.json"), "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        "interrupt_mode": "message",
        "env": {"PYTHONPATH": str(repo_root)},
    }
    (kernel_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return kernel_dir


def _bind_args(paths: list[str]) -> list[str]:
    """bwrap arguments that mount each path read-only at the same place, keeping /bin-style symlinks."""
    args: list[str] = []
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for p in dict.fromkeys(paths):
        if os.path.exists(p):
            args += ["--ro-bind", p, p]
    return args


def _set_limits(settings: SandboxSettings) -> None:
    """Apply CPU-time, address-space, file-size and core-dump limits (inherited by the kernel)."""
    mem = settings.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (settings.cpu_s, settings.cpu_s + 5))
    fsize = settings.file_size_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _preload_fd(settings: SandboxSettings) -> int:
    """An inheritable memfd holding the check modules' sources as JSON (never a file in the sandbox)."""
    sources = {name: {"path": str(Path(path).resolve()), "text": Path(path).read_text()}
               for name, path in settings.preload_modules.items()}
    fd = os.memfd_create("checks", 0)
    os.write(fd, json.dumps(sources).encode())
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    return fd


def kernel_command(settings: SandboxSettings, connection_file: str, workdir: str, fd: int) -> list[str]:
    """The full command that starts the sandboxed kernel."""
    boot = [sys.executable, "-c", BOOTSTRAP, str(fd), connection_file]
    if not settings.enabled:
        return boot
    runtime_dir = str(Path(connection_file).resolve().parent)
    env = {
        "PATH": f"{sys.prefix}/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "MPLCONFIGDIR": "/tmp/.mpl",
        "MPLBACKEND": "Agg",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": str(settings.threads),
        "MKL_NUM_THREADS": str(settings.threads),
        "OPENBLAS_NUM_THREADS": str(settings.threads),
        "NBGRADER_EXECUTION": os.environ.get("NBGRADER_EXECUTION", "autograde"),
        **settings.env,
    }
    args = ["bwrap", "--die-with-parent", "--unshare-net", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--cap-drop", "ALL", "--hostname", "sandbox",
            "--clearenv", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    args += _bind_args(settings.readonly_paths)
    if settings.data_dir and os.path.isdir(settings.data_dir):
        args += ["--ro-bind", settings.data_dir, "/data"]
        env["COURSE_DATA"] = "/data"
    args += ["--bind", runtime_dir, runtime_dir, "--bind", workdir, "/tmp/work", "--chdir", "/tmp/work"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args + ["--"] + boot


def main(argv: list[str]) -> None:
    """Kernelspec entry point: ``python -m grading.sandbox SETTINGS.json CONNECTION_FILE``."""
    settings = SandboxSettings.load(Path(argv[0]))
    connection_file = os.path.abspath(argv[1])
    # The kernel never works in the grader's folder (it holds the notebook with hidden tests):
    # it gets a fresh scratch copy of the non-notebook files nbgrader put there.
    workdir = Path(os.environ.get("GRADING_SCRATCH") or Path(connection_file).parent / "work")
    workdir.mkdir(parents=True, exist_ok=True)
    for item in Path.cwd().iterdir():
        if item.is_file() and item.suffix != ".ipynb":
            shutil.copy(item, workdir / item.name)
    fd = _preload_fd(settings)
    command = kernel_command(settings, connection_file, str(workdir), fd)
    if not settings.enabled:
        os.chdir(workdir)
    _set_limits(settings)
    os.execvp(command[0], command)


# Runs inside the sandbox: load the checks from the memfd, install the guard, start IPython's kernel.
BOOTSTRAP = r'''
import json, os, sys, types

def _load_hidden_modules(fd):
    """Compile the check modules from memory (``__file__`` keeps the unreadable original path)."""
    with os.fdopen(fd, "r") as f:
        sources = json.load(f)
    for name in sorted(sources, key=lambda n: n.count(".")):
        module = types.ModuleType(name)
        module.__file__ = sources[name]["path"]
        if name.count(".") == 0:
            module.__path__ = []
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
        exec(compile(sources[name]["text"], "<hidden %s>" % name, "exec"), module.__dict__)
    return list(sources)

sources = _load_hidden_modules(int(sys.argv[1]))

import builtins, math
guarded = [builtins, math]
for modname in ("torch", "torch.testing", "torch.nn", "torch.nn.functional", "torch.nn.init",
                "numpy", "numpy.testing", "unittest", "course_lib.optim"):
    try:
        __import__(modname)
        guarded.append(sys.modules[modname])
    except Exception:
        pass
guarded += [m for n, m in sys.modules.items() if n in sources]
snapshot = [(m.__dict__, dict(m.__dict__)) for m in guarded]
try:
    import torch
    snapshot += [(c, dict(vars(c))) for c in (torch.Tensor, torch.nn.Module, torch.nn.Parameter)]
except Exception:
    pass
saved_modules = {n: sys.modules[n] for n in list(sources) + [m.__name__ for m in guarded if hasattr(m, "__name__")] if n in sys.modules}

def _restore(*_args, **_kwargs):
    """Undo monkeypatching of guarded modules and classes before each cell runs."""
    sys.modules.update(saved_modules)
    for target, saved in snapshot:
        if isinstance(target, dict):
            for key, value in saved.items():
                if target.get(key, _restore) is not value:
                    target[key] = value
        else:
            current = vars(target)
            for key, value in saved.items():
                if current.get(key, _restore) is not value and key not in ("__dict__", "__weakref__", "__doc__"):
                    try:
                        setattr(target, key, value)
                    except (AttributeError, TypeError):
                        pass

from ipykernel.kernelapp import IPKernelApp
app = IPKernelApp.instance()
app.initialize(["-f", sys.argv[2], "--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=40"])
app.shell.events.register("pre_run_cell", _restore)
app.start()
'''

if __name__ == "__main__":
    main(sys.argv[1:])
