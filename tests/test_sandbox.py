"""The grading sandbox: real sandboxed kernels, probed from inside and checked from the host."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from grading.sandbox import cgroups, kernel_bootstrap, seccomp
from grading.sandbox.launcher import (
    KERNEL_NAME,
    SandboxSettings,
    SandboxUnavailable,
    _shared_mounts,
    _shared_tmpfs,
    bwrap_available,
    cleanup,
    default_readonly_paths,
    preflight,
    read_status,
    run_name,
    sweep,
    write_kernelspec,
)

REPO = Path(__file__).resolve().parent.parent
MARK = "sandbox-marker-7d1c"
GRADER_SECRET = "postgresql://grader:s3cret-4e1f@db/gradebook"  # as an instructor's shell might hold
needs_root_bwrap = pytest.mark.skipif(os.geteuid() != 0 or not bwrap_available(),
                                      reason="needs root (cgroups, sandbox user) and a working bubblewrap")


def _cgroups_here() -> bool:
    """True when this host lets us create cgroups."""
    try:
        cgroups.create("probe-test", cgroups.Limits(), cgroups.ROOT)
    except (cgroups.CgroupError, OSError):
        return False
    return cgroups.remove("probe-test")


needs_cgroups = pytest.mark.skipif(os.geteuid() != 0 or not _cgroups_here(), reason="no writable cgroup hierarchy")


class Kernel:
    """A started sandboxed kernel and what the test needs to know about it."""

    def __init__(self, km, kc, settings: SandboxSettings, io: Path, runtime: Path) -> None:
        self.km, self.kc, self.settings, self.io, self.runtime = km, kc, settings, io, runtime

    def run(self, code: str, timeout: float = 60) -> str:
        """Execute ``code``; return its stdout, with the traceback of an error appended."""
        out: list[str] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("ERROR " + msg["content"]["ename"] + ": " + msg["content"]["evalue"])

        self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        return "".join(out)

    def json(self, code: str, timeout: float = 60) -> dict:
        """Execute ``code``, which ends by printing one JSON object; return it."""
        text = self.run(code, timeout)
        decoder, found, end = json.JSONDecoder(), [], 0
        for start in (i for i, c in enumerate(text) if c == "{"):  # other output may interleave with it
            if start >= end:
                with contextlib.suppress(ValueError):
                    obj, end = decoder.raw_decode(text, start)
                    found.append(obj)
        assert found, f"no JSON object in {text!r}"
        return found[-1]

    def group(self) -> str:
        """The kernel's cgroup name."""
        return run_name(str(self.io), None)


@contextlib.contextmanager
def sandboxed_kernel(tmp: Path, launcher_out=None, **overrides):
    """Start a sandboxed kernel with ``overrides`` of the test settings; shut it down and clean up after."""
    values = dict(readonly_paths=default_readonly_paths(), preload_modules={"grading": str(REPO / "grading" /
                  "__init__.py")}, memory_mb=1024, tmpfs_mb=64, cpu_s=120, log_file=None)
    values.update(overrides)
    settings = SandboxSettings(**values)
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    kernels = tmp / "jupyter"
    write_kernelspec(kernels, settings, REPO)
    runtime = Path(tempfile.mkdtemp(prefix="sbt-", dir="/tmp"))  # Unix socket paths stay short
    io = tmp / "io"
    (io / "results").mkdir(parents=True, exist_ok=True)
    (io / "challenge.json").write_text(json.dumps({"seed": 3}))
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(
        kernel_dirs=[str(kernels / "kernels")]), transport="ipc", ip=str(runtime / "k"),
        connection_file=str(runtime / "kernel.json"))
    env = dict(os.environ, PYTHONPATH=str(REPO), COURSE_GRADING_IO=str(io), GRADER_SECRET=GRADER_SECRET)
    km.start_kernel(env=env, stdout=launcher_out, stderr=launcher_out)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield Kernel(km, kc, settings, io, runtime)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        assert cleanup(settings, io_dir=str(io))  # the runtime folder is found in the launcher's record
        assert not {str(runtime), str(io / "results")} & set(_shared_mounts())
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One sandboxed kernel for the probes that leave it alive; its launcher's stdout goes to a file."""
    tmp = tmp_path_factory.mktemp("shared")
    data = tmp / "data" / "FashionMNIST"
    data.mkdir(parents=True)
    (data / "public.txt").write_text("public")
    (data / "private.txt").write_text("private")
    (data / "private.txt").chmod(0o600)  # as tempfile.mkstemp leaves a downloaded file
    with open(tmp / "launcher_out.txt", "w+") as out, sandboxed_kernel(tmp, launcher_out=out,
                                                                        data_dir=str(tmp / "data")) as kernel:
        kernel.launcher_out = tmp / "launcher_out.txt"
        yield kernel


# ---------------------------------------------------------------- units: bootstrap, cgroups, settings


def test_bootstrap_loads_modules_as_a_package(tmp_path):
    """Preloaded sources become importable modules, parents first, without files on disk."""
    sources = {"pkgx.sub": {"path": "/nowhere/sub.py", "text": "VALUE = 7"},
               "pkgx": {"path": "/nowhere/__init__.py", "text": "NAME = 'p'"}}
    try:
        assert sorted(kernel_bootstrap.load_modules(sources)) == ["pkgx", "pkgx.sub"]
        from pkgx.sub import VALUE  # type: ignore[import-not-found]

        assert VALUE == 7 and sys.modules["pkgx"].sub.VALUE == 7
    finally:
        sys.modules.pop("pkgx.sub", None)
        sys.modules.pop("pkgx", None)
    path = kernel_bootstrap.write_connection({"ip": "x"}, str(tmp_path / "k" / "c.json"))
    assert json.loads(Path(path).read_text()) == {"ip": "x"} and os.stat(path).st_mode & 0o077 == 0


def test_stub_runs_the_payload_from_a_memfd():
    """The ``python -c`` stub executes the bootstrap source it reads from the descriptor, then closes it."""
    payload = {"bootstrap": "import os, sys\ndef main(p):\n    print(p['word'], os.path.exists('/proc/self/fd/%s'"
                            " % sys.argv[1]))\n", "word": "hello"}
    fd = os.memfd_create("t", 0)
    os.write(fd, json.dumps(payload).encode())
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        out = subprocess.run([sys.executable, "-c", kernel_bootstrap.STUB, str(fd)], pass_fds=(fd,),
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.close(fd)
    assert out.split() == ["hello", "False"]


def test_payload_carries_sources_and_connection():
    """The memfd payload holds the bootstrap module's own source and each preloaded module's."""
    data = json.loads(kernel_bootstrap.payload({"grading": str(REPO / "grading" / "__init__.py")},
                                               {"ip": "/run/kernel/k"}, "/tmp/.kernel/kernel.json"))
    assert "def main(" in data["bootstrap"] and "_restore" not in data["bootstrap"]
    assert data["modules"]["grading"]["text"] == (REPO / "grading" / "__init__.py").read_text()
    assert data["connection"]["ip"] == "/run/kernel/k"


def test_settings_round_trip_and_defaults(tmp_path):
    """Settings survive JSON; defaults fit two kernels on a 2-core 24 GB machine."""
    s = SandboxSettings(pids_max=99, cgroups="warn", env={"A": "1"})
    s.save(tmp_path / "s.json")
    assert SandboxSettings.load(tmp_path / "s.json") == s
    d = SandboxSettings()
    assert d.cgroups == "require" and 2 * d.memory_mb <= 12 * 1024 and d.tmpfs_mb < d.memory_mb
    assert d.pids_max <= 512


def test_no_cgroup_hierarchy_is_named(tmp_path):
    """A folder with no cgroup file system is reported as such."""
    with pytest.raises(cgroups.CgroupError, match="no cgroup hierarchy"):
        cgroups.version(str(tmp_path))
    assert cgroups.remove("k-x", str(tmp_path)) and cgroups.sweep(str(tmp_path)) == 0


def test_cgroup_v2_limits_written(tmp_path):
    """On cgroup v2 the group gets memory.max, no swap, pids.max and cpu.weight; controllers are delegated."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("\n")
    parent = tmp_path / cgroups.PARENT
    (parent / "k-1").mkdir(parents=True)  # a real cgroupfs creates these files itself
    (parent / "cgroup.controllers").write_text("cpu memory pids\n")
    (parent / "cgroup.subtree_control").write_text("\n")
    for name in ("memory.swap.max", "cpu.weight"):
        (parent / "k-1" / name).write_text("max\n")
    assert cgroups.version(str(tmp_path)) == 2
    assert cgroups.create("k-1", cgroups.Limits(memory_mb=300, pids_max=70, cpu_weight=50), str(tmp_path)) == [
        parent / "k-1"]
    files = {n: (parent / "k-1" / n).read_text() for n in ("memory.max", "memory.swap.max", "pids.max", "cpu.weight")}
    assert files == {"memory.max": str(300 * 2**20), "memory.swap.max": "0", "pids.max": "70", "cpu.weight": "50"}
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    with pytest.raises(ValueError):
        cgroups.create("..", cgroups.Limits(), str(tmp_path))


@needs_cgroups
def test_cgroup_counts_children_and_is_removed():
    """A child that allocates past the group's memory is killed; remove() kills stragglers and deletes it."""
    name = f"test-{os.getpid()}"
    groups = cgroups.create(name, cgroups.Limits(memory_mb=128, pids_max=20), cgroups.ROOT)
    try:
        child = subprocess.run([sys.executable, "-c", "b = b'x' * (400 * 2**20)"],
                               preexec_fn=lambda: cgroups.enter(groups))
        assert child.returncode == -9
        assert cgroups.usage(name)["peak_bytes"] <= 128 * 2**20
        sleeper = subprocess.Popen(["sleep", "60"], preexec_fn=lambda: cgroups.enter(groups))
    finally:
        assert cgroups.remove(name)
    assert sleeper.wait(timeout=10) == -9
    assert not any(g.exists() for g in groups)


@needs_cgroups
def test_sweep_removes_only_empty_groups():
    """sweep() deletes an empty leftover group but not one with a process in it."""
    empty, busy, young = f"stale-{os.getpid()}", f"busy-{os.getpid()}", f"young-{os.getpid()}"
    for group in cgroups.create(empty, cgroups.Limits(), cgroups.ROOT):
        os.utime(group, (0, 0))  # left there long ago
    cgroups.create(young, cgroups.Limits(), cgroups.ROOT)  # a launcher about to enter it
    groups = cgroups.create(busy, cgroups.Limits(), cgroups.ROOT)
    sleeper = subprocess.Popen(["sleep", "60"], preexec_fn=lambda: cgroups.enter(groups))
    try:
        for group in groups:
            os.utime(group, (0, 0))
        cgroups.sweep(cgroups.ROOT)
        parents = cgroups.parents()
        assert not any((p / empty).exists() for p in parents)
        assert all((p / busy).exists() and (p / young).exists() for p in parents)
    finally:
        for name in (busy, empty, young):
            cgroups.remove(name)
        sleeper.wait()


def test_preflight_modes(tmp_path):
    """Without a cgroup, "require" refuses naming the cause and "warn" returns a loud warning."""
    if not bwrap_available():
        pytest.skip("no bubblewrap")
    with pytest.raises(SandboxUnavailable, match="no cgroup"):
        preflight(SandboxSettings(cgroup_root=str(tmp_path)))
    warnings = preflight(SandboxSettings(cgroup_root=str(tmp_path), cgroups="warn"))
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: no cgroup")


@needs_root_bwrap
def test_launcher_refuses_without_cgroup(tmp_path):
    """In "require" mode the launcher exits with an error naming the missing cgroup, starting nothing."""
    settings = SandboxSettings(cgroup_root=str(tmp_path / "nothing"), readonly_paths=default_readonly_paths())
    settings.save(tmp_path / "s.json")
    (tmp_path / "kernel.json").write_text(json.dumps({"transport": "ipc", "ip": str(tmp_path / "k")}))
    run = subprocess.run([sys.executable, "-m", "grading.sandbox.launcher", str(tmp_path / "s.json"),
                          str(tmp_path / "kernel.json")], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 1 and "no cgroup for the kernel" in run.stderr and "cgroups='warn'" in run.stderr


# ---------------------------------------------------------------- real sandboxed kernels

@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_unprivileged_inside_and_outside(shared):
    """uid 1000 in the sandbox, and no process of the kernel runs as root on the host."""
    inside = shared.json("import os, json; print(json.dumps({'uid': os.getuid(), 'euid': os.geteuid()}))")
    assert inside == {"uid": 1000, "euid": 1000}
    status = read_status(str(shared.io))
    assert status["uid"] != 0 and status["cgroup"] == shared.group() and status["warnings"] == []
    procs = [int(p) for p in (cgroups.parents()[1] / shared.group() / "cgroup.procs").read_text().split()]
    assert procs
    for pid in procs:
        uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split("\n")[0].split()
        assert "0" not in uids, (pid, uids)


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_the_kernel_knows_no_user_of_the_host(shared):
    """/etc/passwd and /etc/group name root and the sandbox's user only; no mount shows where they came from."""
    seen = shared.json("import json, pwd, grp, os\nprint(json.dumps({'users': [u.pw_name for u in pwd.getpwall()], "
                       "'groups': [g.gr_name for g in grp.getgrall()], 'me': pwd.getpwuid(os.getuid()).pw_name, "
                       "'mounts': open('/proc/self/mountinfo').read()}))")
    assert seen["users"] == ["root", "sandbox"] and seen["groups"] == ["root", "sandbox"] and seen["me"] == "sandbox"
    host_users = {line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines()} - {"root"}
    assert host_users and not [line for line in seen["mounts"].splitlines() if " /etc/passwd " in line
                               and line.split()[3] == "/etc/passwd"]


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_proc_sys_read_only(shared):
    """Writing a kernel setting fails, and the host's value is unchanged."""
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    out = shared.run("try:\n    open('/proc/sys/kernel/core_pattern', 'w').write('|/tmp/x')\n    print('WROTE')\n"
                     "except OSError as e:\n    print('refused', e.errno)")
    assert out.startswith("refused") and "WROTE" not in out
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before
    nested = shared.run("import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'import ctypes; "
                        "print(\"unshare\", ctypes.CDLL(None).unshare(0x10000000))'])")  # CLONE_NEWUSER
    assert "unshare -1" in nested  # no nested user namespace, hence no capabilities to mount or tune anything


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_writable_paths_are_not_executable_nor_at_host_paths(shared):
    """Scripts written to the shared folders cannot run; the runtime folder is not at its host path."""
    code = f"""
import json, os, subprocess
res = {{'host_path_visible': os.path.exists({str(shared.runtime)!r})}}
for folder in ('/run/kernel', '/grading/results', '/tmp/work'):
    path = folder + '/x.sh'
    try:
        with open(path, 'w') as f:
            f.write('#!/bin/sh\\necho ran\\n')
        os.chmod(path, 0o755)
        res[folder] = subprocess.run([path], capture_output=True, text=True).stdout
    except OSError as e:
        res[folder] = 'refused %s' % e.errno
    finally:
        if os.path.exists(path):
            os.remove(path)
print(json.dumps(res))
"""
    res = shared.json(code)
    assert res["host_path_visible"] is False
    assert res["/run/kernel"].startswith("refused") and res["/grading/results"].startswith("refused")
    assert res["/tmp/work"] == "ran\n"  # the scratch tmpfs exists only inside the sandbox


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_io_folder_and_environment(shared):
    """The challenge is readable (not writable) at /grading, results writable, both named in the environment."""
    code = """
import json, os
res = {'challenge': open(os.environ['COURSE_GRADING_CHALLENGE']).read(),
       'results': os.environ['COURSE_GRADING_RESULTS']}
try:
    open(os.environ['COURSE_GRADING_CHALLENGE'], 'w')
    res['challenge_writable'] = True
except OSError:
    res['challenge_writable'] = False
with open(os.path.join(res['results'], 'sgd.tmp'), 'w') as f:
    f.write('data')
os.rename(os.path.join(res['results'], 'sgd.tmp'), os.path.join(res['results'], 'sgd.safetensors'))
print(json.dumps(res))
"""
    res = shared.json(code)
    assert json.loads(res["challenge"]) == {"seed": 3} and res["challenge_writable"] is False
    assert res["results"] == "/grading/results"
    assert (shared.io / "results" / "sgd.safetensors").read_text() == "data"


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_no_process_in_the_sandbox_shows_the_graders_environment(shared):
    """A variable of the grader's environment is in no readable /proc/PID/environ of the sandbox, pid 1 included."""
    code = """
import json, os
seen = {}
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        seen[pid] = open(f'/proc/{pid}/environ', 'rb').read().decode(errors='replace')
    except OSError as error:
        seen[pid] = type(error).__name__
print(json.dumps(seen))
"""
    seen = shared.json(code)
    assert "1" in seen and len(seen) >= 2, seen  # pid 1 (bubblewrap) and the kernel, at least
    assert not [pid for pid, text in seen.items() if "s3cret-4e1f" in text or "GRADER_SECRET" in text], seen


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
@pytest.mark.skipif(seccomp.program() is None, reason="the seccomp filter is built for x86-64 only")
def test_seccomp_refuses_system_calls_a_notebook_never_needs(shared):
    """A seccomp filter is loaded; unshare(0) and joining a new session keyring, which any process may do,
    fail with EPERM, as do ptrace, mount, bpf and perf_event_open; ordinary calls still work."""
    code = """
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
calls = {"unshare": (272, 0), "keyctl": (250, 1, 0), "ptrace": (101, 0, 0, 0, 0), "mount": (165, 0, 0, 0, 0, 0),
         "bpf": (321, 0, 0, 0), "perf_event_open": (298, 0, 0, 0, 0, 0)}
res = {}
for name, (number, *args) in calls.items():
    ctypes.set_errno(0)
    res[name] = [libc.syscall(number, *args), ctypes.get_errno()]
res["seccomp"] = [line.split()[1] for line in open("/proc/self/status") if line.startswith("Seccomp:")]
res["getpid"] = os.getpid() > 0
print(json.dumps(res))
"""
    res = shared.json(code)
    assert res.pop("seccomp") == ["2"] and res.pop("getpid") is True
    assert res == {name: [-1, errno.EPERM] for name in res}, res


def test_seccomp_program_shape():
    """The filter is whole sock_filter records, refuses other ABIs first, and has no filter off x86-64."""
    code = seccomp.program("x86_64")
    assert len(code) % 8 == 0 and len(code) // 8 == len(set(seccomp.DENIED_X86_64.values())) + 7
    assert seccomp.program("aarch64") is None


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_data_readable_even_when_private_on_the_host(shared):
    """The data folder is at /data (COURSE_DATA), read-only; files only root could read arrive as copies."""
    code = """
import json, os
root = os.environ['COURSE_DATA']
res = {n: open(os.path.join(root, 'FashionMNIST', n)).read() for n in ('public.txt', 'private.txt')}
try:
    open(os.path.join(root, 'FashionMNIST', 'new.txt'), 'w')
    res['writable'] = True
except OSError:
    res['writable'] = False
print(json.dumps(res))
"""
    assert shared.json(code) == {"public.txt": "public", "private.txt": "private", "writable": False}
    warnings = preflight(dataclasses.replace(shared.settings, cgroups="warn"))
    assert any("1 data files are readable by root only" in w for w in warnings)


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_host_paths_unreadable(shared, tmp_path):
    """The workspace, another student's folder, solutions/, a gradebook and grading code are out of reach."""
    workspace = tmp_path / "grading_workspace"
    other = workspace / "submitted" / "other_student" / "optimization"
    other.mkdir(parents=True)
    (other / "optimization.ipynb").write_text("{}")
    (workspace / "gradebook.db").write_text("secret")
    paths = [workspace, other / "optimization.ipynb", workspace / "gradebook.db", REPO / "solutions",
             REPO / "grading" / "sandbox" / "launcher.py", REPO / "grading", "/etc/shadow",
             str(shared.io / "challenge.json")]
    code = f"""
import json, os
res = {{}}
for p in {[str(p) for p in paths]!r}:
    try:
        res[p] = os.listdir(p) if os.path.isdir(p) else open(p).read()[:10]
    except OSError as e:
        res[p] = 'refused'
print(json.dumps(res))
"""
    res = shared.json(code)
    assert all(v == "refused" or v == [] for v in res.values()), res


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_no_network_to_host(shared):
    """A listener on the host's 127.0.0.1 cannot be reached from the kernel."""
    from conftest import host_listener  # here: HOLDER's process imports this module without tests/ on its path

    with host_listener() as server:
        server.settimeout(0.5)
        port = server.getsockname()[1]
        out = shared.run(f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                         "    print('CONNECTED')\nexcept OSError as e:\n    print('refused', e.errno)")
        assert out.startswith("refused")
        with pytest.raises(socket.timeout):
            server.accept()


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_a_grading_kernel_runs_await_and_refuses_python_signal_handlers(tmp_path):
    """With the probe preloaded (its tripwires armed, as when grading): a cell with top-level await runs, and
    plain signal handlers may be set, but a Python signal handler and another audit hook may not."""
    from grading.running.workspace import sandbox_settings
    from grading.settings import GradingSettings

    preload = sandbox_settings(GradingSettings(workspace=tmp_path / "ws")).preload_modules
    assert "grading.sandbox.probe" in preload
    with sandboxed_kernel(tmp_path, preload_modules=preload) as kernel:
        assert kernel.run("import asyncio\nawait asyncio.sleep(0)\nprint('awaited')") == "awaited\n"
        code = ("import signal, sys\nprevious = signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "signal.signal(signal.SIGINT, previous)\nheard = []\nsys.addaudithook(lambda e, a: heard.append(e))\n"
                "sys.audit('course.test')\nprint('hooks heard', len(heard))\n"
                "signal.signal(signal.SIGALRM, lambda *args: None)")
        assert kernel.run(code) == ("hooks heard 0\nERROR PermissionError: a Python signal handler is not "
                                    "available in a graded notebook")
        assert kernel.run("print(6 * 7)") == "42\n"


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_tmpfs_is_sized(shared):
    """Writing more than tmpfs_mb to /tmp fails with ENOSPC; the kernel lives on."""
    out = shared.run("import errno, os\ntry:\n    with open('/tmp/big', 'wb') as f:\n        for _ in range(100):\n"
                     "            f.write(b'x' * 2**20)\n    print('WROTE')\nexcept OSError as e:\n"
                     "    print('full', e.errno == errno.ENOSPC)\nfinally:\n    os.remove('/tmp/big')")
    assert out.strip() == "full True"


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_shared_folders_are_sized(shared):
    """The folders shared with the host are small tmpfs: the host's disk cannot be filled through them."""
    code = """
import errno, json, os
res = {}
for folder in ('/run/kernel', '/grading/results'):
    try:
        with open(folder + '/big', 'wb') as f:
            for _ in range(100):
                f.write(b'x' * 2**20)
        res[folder] = 'wrote'
    except OSError as e:
        res[folder] = errno.errorcode[e.errno]
    finally:
        os.remove(folder + '/big')
print(json.dumps(res))
"""
    assert shared.json(code) == {"/run/kernel": "ENOSPC", "/grading/results": "ENOSPC"}
    assert {str(shared.runtime), str(shared.io / "results")} <= set(_shared_mounts())


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")
def test_sweep_unmounts_shared_folders_of_dead_kernels(tmp_path):
    """A shared tmpfs whose kernel's cgroup is empty, or that is old and had none, is unmounted by sweep."""
    folders = [tmp_path / "dead", tmp_path / "old", tmp_path / "young"]
    markers = [{"run": "k-gone", "cgroup": True, "started": 0}, {"run": "k-x", "cgroup": False, "started": 0},
               {"run": "k-y", "cgroup": False, "started": 4e9}]
    for folder, marker in zip(folders, markers):
        folder.mkdir()
        _shared_tmpfs(str(folder), 1, 0, marker)
    try:
        assert {str(f) for f in folders} <= set(_shared_mounts())
        sweep(SandboxSettings())
        assert set(_shared_mounts()) & {str(f) for f in folders} == {str(folders[2])}
    finally:
        cleanup(SandboxSettings(), io_dir=None, connection_file=str(folders[2] / "x.json"))
    assert not set(_shared_mounts()) & {str(f) for f in folders}


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_kernel_output_never_reaches_the_launchers_stdout(shared):
    """Bytes written to every pipe or file the kernel (or bwrap's init) holds never reach the launcher's pipes."""
    code = f"""
import json, os, subprocess
targets = ['/proc/self/fd/' + f for f in os.listdir('/proc/self/fd')] + ['/proc/1/fd/1', '/proc/1/fd/2']
wrote, links = 0, []
for path in targets:
    try:
        link = os.readlink(path)
    except OSError:
        continue
    links.append(link)
    if link.startswith(('pipe:', '/')):  # not the kernel's own sockets
        try:
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, b'{MARK}\\n{{not json\\n')
            os.close(fd)
            wrote += 1
        except OSError:
            pass
subprocess.run(['sh', '-c', 'echo {MARK}; echo {MARK} >&2'])
print(json.dumps({{'wrote': wrote, 'memfd': [x for x in links if 'memfd' in x]}}))
"""
    res = shared.json(code)
    assert res["wrote"] >= 4 and res["memfd"] == []  # stdout, stderr, ipykernel's saved copies; payload closed
    assert MARK not in shared.launcher_out.read_text()


def test_a_cells_printed_output_is_cut_and_the_next_cell_prints_again(shared):
    """A 400 MB print reaches the grader as a few MB with a note; the next cell's output is whole."""
    text = shared.run("print('x' * 400_000_000)", timeout=120)
    assert 2**20 < len(text) < 5 * 2**20 and "[output cut" in text
    assert shared.run("print('after the flood')").strip() == "after the flood"


def test_a_cells_displayed_output_is_cut_and_the_next_cell_displays_again(shared):
    """Rich outputs of every type count: 48 x 50 MB displays reach the grader as 16 MB at most, with a note."""
    def displayed(code: str) -> list[str]:
        out: list[str] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] in ("display_data", "execute_result"):
                out.append(json.dumps(msg["content"]["data"]))

        shared.kc.execute_interactive(code, output_hook=hook, timeout=120)
        return out

    flood = displayed("from IPython.display import display\nblob = 'x' * 50_000_000\n"
                      "for _ in range(48):\n    display({'text/html': blob, 'text/plain': 'p'}, raw=True)")
    assert sum(map(len, flood)) < 16 * 2**20 + 1000 and "[output cut: this cell displayed more than" in flood[-1]
    assert displayed("display({'text/plain': 'after the flood'}, raw=True)") == ['{"text/plain": "after the flood"}']


def test_the_autograde_process_heap_is_capped():
    """limit_memory: past the cap a notebook's outputs end in MemoryError; the hard limit stays for the kernel."""
    code = ("import resource\nfrom grading.running.autograde_one import limit_memory\n"
            "hard = resource.getrlimit(resource.RLIMIT_DATA)[1]\nlimit_memory(512)\n"
            "assert resource.getrlimit(resource.RLIMIT_DATA) == (512 * 2**20, hard)\n"
            "try:\n    held = [('x' * 100_000_000) + str(i) for i in range(10)]\n"
            "except MemoryError:\n    print('MemoryError')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == "MemoryError", out.stderr


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_pids_limit_stops_a_fork_bomb(tmp_path):
    """500 forks: the pids limit stops them, the kernel survives, the host never saw more than the limit."""
    code = """
import json, os, signal, time
kids, error = [], None
for _ in range(500):
    try:
        pid = os.fork()
    except OSError as e:
        error = e.errno
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print(json.dumps({'forked': len(kids), 'error': error}))
"""
    with sandboxed_kernel(tmp_path, pids_max=64) as kernel:
        res = kernel.json(code)
        assert res["error"] is not None and 0 < res["forked"] < 64
        assert kernel.run("print(6 * 7)").strip() == "42"
        assert (cgroups.parents()[1] / kernel.group() / "pids.max").read_text().strip() == "64"


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_memory_limit_counts_children_and_tmpfs(tmp_path):
    """A child allocating past the limit, and a child filling /tmp past it, are killed at the group's limit."""
    child = """
import json, subprocess, sys
def child(code):
    pre = "open('/proc/self/oom_score_adj', 'w').write('1000')\\n"  # be the one the OOM killer picks
    return subprocess.run([sys.executable, '-c', pre + code]).returncode
alloc = child("b = b'x' * (700 * 2**20)")
fill = child("f = open('/tmp/big', 'wb')\\nfor _ in range(700):\\n    f.write(b'x' * 2**20)\\n    f.flush()")
import os
size = os.path.getsize('/tmp/big')
os.remove('/tmp/big')
print(json.dumps({'alloc': alloc, 'fill': fill, 'size': size}))
"""
    with sandboxed_kernel(tmp_path, memory_mb=400, tmpfs_mb=2048, file_size_mb=2048) as kernel:
        res = kernel.json(child)
        assert res["alloc"] == -9 and res["fill"] == -9, res
        assert res["size"] < 400 * 2**20
        usage = cgroups.usage(kernel.group())
        assert usage["peak_bytes"] <= 400 * 2**20 and usage["oom_kills"] >= 2
        assert kernel.run("print(6 * 7)").strip() == "42"


HOLDER = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.test_sandbox import sandboxed_kernel
with sandboxed_kernel(Path(sys.argv[1])) as kernel:
    kernel.run("import subprocess; p = subprocess.Popen(['sleep', '300'])")
    print('ready', flush=True)
    time.sleep(300)
"""


@pytest.mark.slow
@needs_root_bwrap
@needs_cgroups
def test_kernel_dies_with_the_process_that_started_it(tmp_path):
    """Killing the process that started the kernel (a submission past its time) kills the whole sandbox."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), str(REPO)], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout.readline().strip() == "ready"
        name = run_name(str(tmp_path / "io"), None)
        assert len(cgroups.procs(name)) >= 3  # bwrap, the kernel, its sleeping child
    finally:
        holder.kill()
        holder.wait()
    for _ in range(100):
        if not cgroups.procs(name):
            break
        time.sleep(0.1)
    assert cgroups.procs(name) == []
    shared = read_status(str(tmp_path / "io"))["shared"]
    assert cleanup(SandboxSettings(), io_dir=str(tmp_path / "io"))
    assert not set(_shared_mounts()) & set(shared)
    shutil.rmtree(shared[0])  # the holder's runtime folder


@pytest.mark.slow
@needs_root_bwrap
def test_warn_mode_runs_without_cgroup_and_says_so(tmp_path):
    """With cgroups='warn' and no cgroup hierarchy, the kernel runs and the problem is loud and recorded."""
    with open(tmp_path / "launcher_err.txt", "w+") as out, sandboxed_kernel(
            tmp_path, launcher_out=out, cgroups="warn", cgroup_root=str(tmp_path / "no-cgroups")) as kernel:
        assert kernel.run("import os; print(os.getuid())").strip() == "1000"
        status = read_status(str(kernel.io))
        assert status["cgroup"] is None and status["warnings"][0].startswith("WARNING: kernel runs without a cgroup")
        assert "WARNING: kernel runs without a cgroup" in (tmp_path / "launcher_err.txt").read_text()


@pytest.mark.slow
def test_unsandboxed_kernel_gets_host_io_paths(tmp_path):
    """With the sandbox off the kernel still gets the IO variables, as host paths, and a scratch cwd."""
    with sandboxed_kernel(tmp_path, enabled=False) as kernel:
        res = kernel.json("import os, json; print(json.dumps({k: os.environ.get(k) for k in "
                          "('COURSE_GRADING_CHALLENGE', 'COURSE_GRADING_RESULTS')}))")
        assert res == {"COURSE_GRADING_CHALLENGE": str(kernel.io / "challenge.json"),
                       "COURSE_GRADING_RESULTS": str(kernel.io / "results")}


@needs_root_bwrap
def test_sweep_leaves_results_mounted_while_their_grader_runs(tmp_path):
    """Another batch's sweep keeps an exited kernel's results until the grader that claimed them is gone."""
    from grading.sandbox.launcher import GRADER_FILE, claim

    io = tmp_path / "io"
    results = io / "results"
    results.mkdir(parents=True)
    claim(io)  # this test process plays the grader that has not yet read the results
    marker = {"run": "k-sweep-test", "cgroup": True, "started": 0.0, "io": os.path.realpath(io)}  # no cgroup: exited
    _shared_tmpfs(str(results), 1, os.getgid(), marker)
    try:
        (results / "adam.safetensors").write_bytes(b"results")
        sweep(SandboxSettings(cgroup_root=str(tmp_path / "no-cgroups")))
        assert (results / "adam.safetensors").read_bytes() == b"results", "a live grader's results were swept"
        (io / GRADER_FILE).write_text('{"pid": 999999999, "start": "1"}')  # the grader died without cleaning up
        sweep(SandboxSettings(cgroup_root=str(tmp_path / "no-cgroups")))
        assert os.path.realpath(results) not in _shared_mounts() and not (results / "adam.safetensors").exists()
    finally:
        cleanup(SandboxSettings(cgroup_root=str(tmp_path / "no-cgroups")), io_dir=str(io))
