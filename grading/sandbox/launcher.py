"""Run a student's Jupyter kernel in a bubblewrap sandbox, as an unprivileged user, in its own cgroup.

nbgrader (unconfined) starts the kernel through a kernelspec whose argv is
``python -m grading.sandbox.launcher SETTINGS.json {connection_file}``. This launcher, still unconfined, then:

1. puts itself in a cgroup of its own (``grading.sandbox.cgroups``): memory of the kernel, its children and its
   tmpfs together, a process count and a CPU share; where no cgroup can be made, ``cgroups="require"``
   refuses and ``"warn"`` runs on rlimits alone, saying so on stderr and in the status file;
2. sets rlimits (CPU seconds, file size, no core dumps, address space as a second line);
3. as root: mounts a sized noexec, nosuid, nodev tmpfs (``shared_mb``, owned by root, group the sandbox
   user's, mode 1770) on each of the two folders the kernel writes on the host: the runtime folder
   (connection file, ipc sockets; its files are copied in) and ``IO/results``, so that no path is both
   writable and executable and the host's disk cannot be filled (bwrap itself has no noexec option);
   then, in a private mount namespace, binds those and the read-only paths the sandbox user could not
   reach (e.g. under /root) into a staging tmpfs; drops to the sandbox user (``course-sandbox``,
   created if missing);
4. sends the kernel's stdin/stdout/stderr to /dev/null (the grader's control channel stays its own),
   closes every other descriptor but the payload memfd, and execs bwrap.

Inside: a user namespace (uid 1000, an unprivileged uid outside; no nested user namespaces), no network,
own PID/IPC/UTS/cgroup namespaces, read-only system, Python, course_lib and data; ``/proc/sys``
read-only; sized tmpfs for ``/tmp`` (working folder ``/tmp/work``), ``/dev`` and ``/dev/shm``; the rest
of the root read-only;
the runtime folder at ``/run/kernel`` (not its host path); ``/grading/challenge.json`` (a read-only
copy) and ``/grading/results``. The kernel starts from ``grading.sandbox.kernel_bootstrap``, read from the
memfd, so neither it nor the preloaded modules are files in the sandbox.

The pipeline passes ``COURSE_GRADING_IO=<host folder>`` (not inside the runtime folder) in the
launcher's environment; once the kernel is gone and ``IO/results`` has been read, it calls
``cleanup(settings, io_dir=..., connection_file=...)`` (kills leftovers, removes the cgroup, unmounts
the two tmpfs: their files are gone after it); ``sweep(settings)`` before a batch removes cgroups and
tmpfs left by crashed runs; ``preflight(settings)`` checks the host once.

The same launcher runs the answer cells alone (``grading.running.alone``), started by the grader with
``python -m grading.sandbox.launcher SETTINGS.json --answers``: the same sandbox and limits, in a cgroup and an IO
folder of its own, with no runtime folder, no kernel and no copies of nbgrader's working files.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import pwd
import re
import resource
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from grading.sandbox import cgroups as cg
from grading.sandbox import kernel_bootstrap, seccomp

KERNEL_NAME = "course-sandbox"
IO_ENV = "COURSE_GRADING_IO"  # host folder holding challenge.json and results/, set by the pipeline
INNER_RUNTIME = "/run/kernel"
INNER_IO = "/grading"
INNER_UID = 1000
STAGE = "/run/course-sandbox"  # mount point of the staging tmpfs, in the launcher's namespace only


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be set up as the settings require; the message names the cause."""


@dataclass
class SandboxSettings:
    """Limits and file-system view of one sandboxed kernel (saved as JSON beside its kernelspec)."""

    memory_mb: int = 4096  # cgroup: the kernel, its children and its tmpfs together (torch needs ~600)
    address_space_mb: int = 16384  # RLIMIT_AS per process, a second line (importing torch maps ~3.3 GB)
    cpu_s: int = 600  # RLIMIT_CPU per process
    file_size_mb: int = 256  # RLIMIT_FSIZE: largest file a process may write
    pids_max: int = 256  # processes and threads of the kernel and its children
    cpu_weight: int = 100  # CPU share against other groups (cgroup v2 scale; 100 is the default)
    tmpfs_mb: int = 512  # /tmp, the working folder included (also counted in memory_mb)
    shm_mb: int = 64  # /dev/shm
    shared_mb: int = 64  # each folder shared with the host (runtime sockets, results): a tmpfs of this size
    threads: int = 1  # OMP/MKL/OpenBLAS threads
    enabled: bool = True  # False: unconfined kernel (trusted notebooks only)
    cgroups: str = "require"  # no cgroup possible: "require" refuses, "warn" runs on rlimits, loudly
    cgroup_root: str = cg.ROOT  # where the cgroup hierarchies are mounted
    user: str = "course-sandbox"  # host user the kernel runs as when the launcher is root
    readonly_paths: list[str] = field(default_factory=list)
    data_dir: Optional[str] = None  # bound read-only at /data (COURSE_DATA)
    preload_modules: dict[str, str] = field(default_factory=dict)  # module name -> source file
    env: dict[str, str] = field(default_factory=dict)  # extra environment of the kernel
    log_file: Optional[str] = None  # debugging only: the kernel's stdout/stderr instead of /dev/null

    def save(self, path: Path) -> None:
        """Write the settings as JSON."""
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> "SandboxSettings":
        """Read settings written by ``save``."""
        return cls(**json.loads(Path(path).read_text()))

    def limits(self) -> cg.Limits:
        """The cgroup limits."""
        return cg.Limits(memory_mb=self.memory_mb, pids_max=self.pids_max, cpu_weight=self.cpu_weight)


# ---------------------------------------------------------------- host checks, kernelspec, clean-up


def bwrap_available() -> bool:
    """True when bubblewrap is installed and can create the namespaces we need here."""
    return _bwrap_works(None)


def _bwrap_works(ids: Optional[tuple[int, int]]) -> bool:
    """True when bwrap, run as the sandbox user (uid, gid) or as this user, gets the namespaces we use."""
    exe = shutil.which("bwrap")

    def drop() -> None:
        if ids:
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])

    if exe is None:
        return False
    probe = subprocess.run([exe, "--unshare-user", "--disable-userns", "--uid", str(INNER_UID), "--unshare-net",
                            "--unshare-pid", "--die-with-parent", "--ro-bind", "/usr", "/usr", "--symlink",
                            "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                            "--proc", "/proc", "true"], capture_output=True, preexec_fn=drop, cwd="/")
    return probe.returncode == 0


def preflight(settings: SandboxSettings) -> list[str]:
    """Check once that kernels can be sandboxed as ``settings`` ask; return warnings for the notes.

    Raises SandboxUnavailable naming the cause (no bwrap, no user namespaces, no cgroup in "require").
    """
    if not settings.enabled:
        return ["kernels ran unsandboxed (--no-sandbox)"]
    ids = sandbox_ids(settings.user) if os.geteuid() == 0 else None
    if not _bwrap_works(ids):
        raise SandboxUnavailable("bubblewrap (apt package bubblewrap) is missing or cannot create user and network "
                                 f"namespaces as {settings.user if ids else 'this user'} "
                                 "(see /proc/sys/user/max_user_namespaces)")
    warnings = []
    hidden = _unreadable_files(settings.data_dir) if ids and settings.data_dir else []
    if hidden:  # the launcher hands them in as copies; readable files are cheaper
        warnings.append(f"WARNING: {len(hidden)} data files are readable by root only and are copied into each "
                        f"kernel's memory; run chmod -R a+rX {settings.data_dir}")
    name = f"preflight-{os.getpid()}"
    try:
        cg.create(name, settings.limits(), settings.cgroup_root)
    except cg.CgroupError as exc:
        if settings.cgroups == "require":
            raise SandboxUnavailable(f"no cgroup for the kernels: {exc}; pass cgroups='warn' to grade with "
                                     "rlimits only") from exc
        return warnings + [f"WARNING: no cgroup: memory, process count and CPU share of kernels are not limited "
                           f"as a whole, only per process by rlimits ({exc})"]
    finally:
        cg.remove(name, settings.cgroup_root)
    return warnings


def default_readonly_paths() -> list[str]:
    """System, Python and course_lib paths the kernel needs to read (nothing else of the repo)."""
    import course_lib

    paths = ["/usr", sys.base_prefix, sys.prefix, str(Path(course_lib.__file__).resolve().parent)]
    for etc in ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/fonts"):  # users: user_files()
        if os.path.exists(etc):
            paths.append(etc)
    return paths


def write_kernelspec(jupyter_dir: Path, settings: SandboxSettings, repo_root: Path) -> Path:
    """Write the sandbox kernelspec and its settings into ``jupyter_dir/kernels``; return its folder."""
    kernel_dir = jupyter_dir / "kernels" / KERNEL_NAME
    kernel_dir.mkdir(parents=True, exist_ok=True)
    settings.save(kernel_dir / "sandbox.json")
    spec = {
        "argv": [sys.executable, "-m", "grading.sandbox.launcher", str(kernel_dir / "sandbox.json"),
                 "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        "interrupt_mode": "message",
        "env": {"PYTHONPATH": str(repo_root)},
    }
    (kernel_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return kernel_dir


def run_name(io_dir: Optional[str], connection_file: Optional[str]) -> str:
    """The cgroup name of a kernel: from its IO folder when it has one, else from its connection file."""
    key = io_dir or connection_file
    if not key:
        raise ValueError("need the IO folder or the connection file")
    return "k-" + hashlib.sha256(os.path.realpath(key).encode()).hexdigest()[:24]


def status_file(io_dir: Optional[str], connection_file: str) -> Path:
    """Where the launcher records how the kernel was confined (not writable from the sandbox)."""
    if io_dir:
        return Path(io_dir) / "sandbox.json"
    return Path(connection_file).resolve().parent / (Path(connection_file).stem + ".sandbox.json")


def read_status(io_dir: Optional[str] = None, connection_file: Optional[str] = None) -> dict:
    """The launcher's record: {"cgroup": name or null, "uid": host uid, "warnings": [...], "shared": [folders]}."""
    if not (io_dir or connection_file):
        return {}
    path = status_file(io_dir, connection_file or "")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def peak_memory_mb(settings: SandboxSettings, io_dir: Optional[str] = None,
                   connection_file: Optional[str] = None) -> Optional[float]:
    """The most memory the kernel's cgroup held (its children and tmpfs included), in MB; None without a
    cgroup or where the hierarchy does not report it. Read before ``cleanup`` removes the group."""
    try:
        peak = cg.usage(run_name(io_dir, connection_file), settings.cgroup_root)["peak_bytes"]
    except (cg.CgroupError, OSError, ValueError):
        return None
    return round(peak / 2**20, 1) if peak else None


def cleanup(settings: SandboxSettings, io_dir: Optional[str] = None, connection_file: Optional[str] = None) -> bool:
    """After the kernel is gone and its results were read: kill its leftovers, remove its cgroup, unmount
    its shared tmpfs (runtime folder, ``IO/results``); True when all went."""
    gone = cg.remove(run_name(io_dir, connection_file), settings.cgroup_root)
    folders = ([os.path.dirname(os.path.abspath(connection_file))] if connection_file else []) + (
        [os.path.join(io_dir, "results")] if io_dir else [])
    status = read_status(io_dir, connection_file)
    folders += [f for f in status.get("shared", []) if isinstance(f, str)]  # written by the launcher (root)
    return all([gone] + [_unmount_shared(folder) for folder in dict.fromkeys(folders)])


GRADER_FILE = "grader.json"  # in the IO folder (root-owned, not reachable from the sandbox): who reads the results


def _start_time(pid: int) -> Optional[str]:
    """A process's start time in clock ticks since boot (/proc/PID/stat field 22), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # fields after the command name start at field 3


def claim(io_dir: str | Path) -> None:
    """Record that this process will read ``io_dir``'s results and clean it up: no other batch's sweep
    unmounts its shared tmpfs while this process lives, even after the kernel has exited."""
    Path(io_dir, GRADER_FILE).write_text(json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid())}))


def _grader_alive(io_dir: Optional[str]) -> bool:
    """Whether the process that claimed ``io_dir`` (see ``claim``) still runs (a reused pid does not count)."""
    if not io_dir:
        return False
    try:
        owner = json.loads(Path(io_dir, GRADER_FILE).read_text())
        started = _start_time(int(owner["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return started is not None and started == owner.get("start")


def sweep(settings: SandboxSettings, max_age_s: float = 86400.0) -> int:
    """Before a batch: remove empty cgroups and unmount shared tmpfs of dead kernels; return how many.

    A tmpfs counts as dead when the grader that claimed its IO folder has exited and its kernel's cgroup
    has no process left, or, for a kernel that ran without a cgroup, when it is older than ``max_age_s``.
    Several batches may run on one machine (``--jobs``, Dask workers): a kernel that has exited while
    its grader has not yet read the results is not dead.
    """
    removed = cg.sweep(settings.cgroup_root)
    for folder in _shared_mounts():
        try:
            marker = json.loads(Path(folder, MARKER).read_text())
        except (OSError, ValueError):
            marker = {}
        if _grader_alive(marker.get("io")):
            continue
        if marker.get("cgroup"):
            dead = not cg.procs(marker["run"], settings.cgroup_root)
        else:
            dead = time.time() - float(marker.get("started", 0)) > max_age_s
        removed += dead and _unmount_shared(folder)
    return removed


# ---------------------------------------------------------------- the unprivileged user


def sandbox_ids(user: str) -> tuple[int, int]:
    """uid and gid of the sandbox user, creating it (a system user without home or shell) if missing."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", user], capture_output=True)
        try:  # a concurrent launcher may have created it first
            entry = pwd.getpwnam(user)
        except KeyError:
            raise SandboxUnavailable(f"cannot create the sandbox user {user!r} (useradd failed)") from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise SandboxUnavailable(f"the sandbox user {user!r} must not be root")
    return entry.pw_uid, entry.pw_gid


# ---------------------------------------------------------------- mounts (root only, private namespace)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
CLONE_NEWNS = 0x20000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MS_REC, MS_PRIVATE, MS_RELATIME = 1 << 14, 1 << 18, 1 << 21


def _mount(source: Optional[str], target: str, fstype: Optional[str], flags: int, data: Optional[str] = None) -> None:
    """mount(2), raising OSError."""
    enc = (lambda s: None if s is None else s.encode())  # noqa: E731
    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} -> {target}: {os.strerror(err)}")


def _locked_flags(path: str) -> int:
    """The mount flags a remount of ``path`` must keep (statvfs bits -> MS_* bits)."""
    f = os.statvfs(path).f_flag
    same = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | 16 | 64 | 1024 | 2048  # sync, mand, noatime...
    return (f & same) | (MS_RELATIME if f & 4096 else 0)


def _reachable(path: str) -> bool:
    """True when any user can reach ``path`` (every parent folder is o+x)."""
    parent = Path(path).resolve().parent
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [parent, *parent.parents])


def _private_stage(sources: list[tuple[str, bool]]) -> list[str]:
    """Enter a private mount namespace and bind each (path, writable) into a staging tmpfs.

    Writable binds get noexec, nosuid, nodev; read-only ones rdonly, nosuid, nodev. Returns the staged
    paths, reachable by the sandbox user even where the originals sit under a private folder (/root).
    """
    if _libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    os.makedirs(STAGE, mode=0o755, exist_ok=True)
    _mount("course-sandbox", STAGE, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0755")
    staged = []
    for i, (source, writable) in enumerate(sources):
        target = f"{STAGE}/{i}"
        if os.path.isdir(source):
            os.mkdir(target)
        else:
            Path(target).touch()
        _mount(source, target, None, MS_BIND | (0 if writable else MS_REC))
        extra = MS_NOSUID | MS_NODEV | (MS_NOEXEC if writable else MS_RDONLY)
        _mount(None, target, None, MS_REMOUNT | MS_BIND | _locked_flags(target) | extra)
        staged.append(target)
    return staged


SHARED_SOURCE = "course-sandbox-rw"  # source name of the shared tmpfs in /proc/self/mountinfo
MARKER = ".course-sandbox"  # root-owned file in each shared tmpfs: which kernel, since when


def _shared_mounts() -> list[str]:
    """Mount points of the shared tmpfs folders in this mount namespace."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:2] == ["tmpfs", SHARED_SOURCE]:
            points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), left.split()[4]))
    return points


def _shared_tmpfs(folder: str, size_mb: int, gid: int, marker: dict) -> None:
    """Mount a sized noexec tmpfs (group ``gid``, 1770) on a host folder the kernel writes, keeping its files."""
    folder = os.path.realpath(folder)
    if folder in _shared_mounts():  # a restarted kernel
        return
    keep = {p.name: (p.read_bytes(), p.stat()) for p in Path(folder).iterdir()
            if p.is_file() and not p.is_symlink() and p.stat().st_size <= 2**20}
    _mount(SHARED_SOURCE, folder, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={size_mb}m,mode=1770,gid={gid}")
    for name, (data, st) in keep.items():
        fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.write(fd, data)
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, st.st_mode & 0o777)
        os.close(fd)
    Path(folder, MARKER).write_text(json.dumps(marker))


def _unmount_shared(folder: str) -> bool:
    """Lazily unmount a shared tmpfs (its files go with it); True when it is not (or no longer) one."""
    folder = os.path.realpath(folder)
    if folder not in _shared_mounts():
        return True
    return _libc.umount2(folder.encode(), 2) == 0  # MNT_DETACH


# ---------------------------------------------------------------- the command


def user_files() -> dict[str, bytes]:
    """/etc/passwd and /etc/group as the kernel sees them: root and the sandbox's user, none of the host's."""
    return {"/etc/passwd": (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                            f"sandbox:x:{INNER_UID}:{INNER_UID}:sandbox:/tmp:/usr/sbin/nologin\n").encode(),
            "/etc/group": f"root:x:0:\nsandbox:x:{INNER_UID}:\n".encode()}


def _memfd(name: str, data: bytes) -> int:
    """An inheritable in-memory file holding ``data``, positioned at its start."""
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    return fd


def _dev_args(settings: SandboxSettings) -> list[str]:
    """A small /dev (bwrap's --dev cannot be sized) with the usual character devices and a sized /dev/shm."""
    args = ["--size", str(2**20), "--tmpfs", "/dev"]
    for dev in ("null", "zero", "full", "random", "urandom"):
        args += ["--dev-bind", f"/dev/{dev}", f"/dev/{dev}"]
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        args += ["--symlink", f"/proc/self/fd/{i}", f"/dev/{name}"]
    return args + ["--symlink", "/proc/self/fd", "/dev/fd", "--size", str(settings.shm_mb * 2**20),
                   "--tmpfs", "/dev/shm"]


def _inner_connection(info: dict, runtime_dir: str) -> dict:
    """The connection info as the kernel sees it: ipc socket paths under INNER_RUNTIME."""
    if info.get("transport") != "ipc":
        raise SandboxUnavailable("the sandboxed kernel has no network: set KernelManager.transport = 'ipc'")
    if os.path.dirname(os.path.realpath(info["ip"])) != os.path.realpath(runtime_dir):
        raise SandboxUnavailable(f"the kernel's ipc path {info['ip']} must lie in its runtime folder {runtime_dir}")
    return dict(info, ip=f"{INNER_RUNTIME}/{os.path.basename(info['ip'])}")


def kernel_env(settings: SandboxSettings) -> dict[str, str]:
    """The kernel's whole environment inside the sandbox."""
    return {
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


def bwrap_command(settings: SandboxSettings, binds: dict[str, str], files: dict[str, int],
                  env: dict[str, str], fd: int, ro_files: Optional[dict[str, int]] = None,
                  seccomp_fd: Optional[int] = None) -> list[str]:
    """bwrap's argv. ``binds``: inside path -> host path ('rw:' prefix: writable); ``files``: inside path
    -> fd copied to a writable file; ``ro_files``: inside path -> fd copied to a read-only file;
    ``seccomp_fd``: the filter program (grading.sandbox.seccomp) to apply to the kernel."""
    args = ["bwrap", "--unshare-user", "--disable-userns", "--uid", str(INNER_UID), "--gid", str(INNER_UID),
            "--unshare-net",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent",
            "--new-session", "--hostname", "sandbox", "--clearenv", "--proc", "/proc"]
    args += _dev_args(settings)
    args += ["--size", str(settings.tmpfs_mb * 2**20), "--tmpfs", "/tmp", "--dir", "/tmp/work"]
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top) and top not in binds:
            args += ["--ro-bind", top, top]
    for inside, host in binds.items():
        args += ["--bind", host[3:], inside] if host.startswith("rw:") else ["--ro-bind", host, inside]
    for inside, file_fd in files.items():
        args += ["--file", str(file_fd), inside]
    for inside, file_fd in (ro_files or {}).items():
        args += ["--ro-bind-data", str(file_fd), inside]
    args += ["--remount-ro", "/", "--chdir", "/tmp/work"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return args + ["--", sys.executable, "-c", kernel_bootstrap.STUB, str(fd)]


def _unreadable_files(folder: str, limit: int = 1000) -> list[Path]:
    """Files under ``folder`` that other users (the sandbox user) cannot read."""
    found = []
    for dirpath, _, names in os.walk(folder):
        found += [p for p in (Path(dirpath, n) for n in names)
                  if p.is_file() and not p.is_symlink() and not p.stat().st_mode & stat.S_IROTH]
        if len(found) >= limit:
            break
    return found[:limit]


def _workdir_files(limit: int = 200) -> list[Path]:
    """The non-notebook files nbgrader put in the launcher's folder (the kernel gets copies)."""
    return [p for p in sorted(Path.cwd().iterdir())[:limit]
            if p.is_file() and not p.is_symlink() and p.suffix != ".ipynb"]


# ---------------------------------------------------------------- the launcher


def _set_limits(settings: SandboxSettings, nproc: bool) -> None:
    """CPU-time, file-size, core-dump and address-space limits (and a process count without cgroup)."""
    resource.setrlimit(resource.RLIMIT_CPU, (settings.cpu_s, settings.cpu_s + 5))
    fsize = settings.file_size_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, data_hard = resource.getrlimit(resource.RLIMIT_DATA)  # the autograde process's own heap cap is not the kernel's
    resource.setrlimit(resource.RLIMIT_DATA, (data_hard, data_hard))
    if settings.address_space_mb:
        mem = settings.address_space_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    if nproc:  # per host uid, so shared by the kernels running at once
        resource.setrlimit(resource.RLIMIT_NPROC, (settings.pids_max, settings.pids_max))


def _enter_cgroup(settings: SandboxSettings, name: str, status: dict) -> bool:
    """Join the kernel's cgroup; False (and a loud warning) where there is none and the mode allows it."""
    try:
        cg.enter(cg.create(name, settings.limits(), settings.cgroup_root))
        status["cgroup"] = name
        return True
    except cg.CgroupError as exc:
        if settings.cgroups == "require":
            raise SandboxUnavailable(f"no cgroup for the kernel: {exc} (settings: cgroups='warn' runs with "
                                     "rlimits only)") from exc
        message = (f"WARNING: kernel runs without a cgroup ({exc}): memory, processes and CPU are limited "
                   "per process only")
        print(message, file=sys.stderr, flush=True)
        status["warnings"].append(message)
        return False


def _redirect_stdio(log_file: Optional[str]) -> None:
    """The kernel gets /dev/null (or a debug log) as stdin, stdout and stderr, never the grader's pipes."""
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log_file else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)


def _close_fds(keep: list[int]) -> None:
    """Close every descriptor above 2 except ``keep`` (made inheritable)."""
    for fd in sorted(int(x) for x in os.listdir("/proc/self/fd")):
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    for fd in keep:
        os.set_inheritable(fd, True)


def _exec_unconfined(settings: SandboxSettings, connection_file: Optional[str], io_dir: Optional[str], status: dict,
                     answers: Optional[dict]) -> None:
    """``enabled=False``: the kernel runs as the launcher's user, in a scratch folder, IO at host paths."""
    workdir = Path(os.environ.get("GRADING_SCRATCH")
                   or (Path(connection_file).parent if connection_file else Path(io_dir or ".")) / "work")
    workdir.mkdir(parents=True, exist_ok=True)
    for item in _workdir_files() if answers is None else ():
        shutil.copy(item, workdir / item.name)
    if io_dir:
        os.environ.update(COURSE_GRADING_CHALLENGE=str(Path(io_dir, "challenge.json")),
                          COURSE_GRADING_RESULTS=str(Path(io_dir, "results")))
    os.environ.update(settings.env)
    fd = _memfd("kernel", kernel_bootstrap.payload(settings.preload_modules, None, connection_file, answers))
    status_file(io_dir, connection_file or "").write_text(json.dumps(status))
    os.chdir(workdir)
    _set_limits(settings, nproc=False)
    _redirect_stdio(settings.log_file)
    _close_fds([fd])
    os.execv(sys.executable, [sys.executable, "-c", kernel_bootstrap.STUB, str(fd)])


def _data_copies(settings: SandboxSettings) -> dict[str, int]:
    """Read-only copies (inside path -> fd) of the data files the sandbox user could not read in place
    (``preflight`` warns about them once)."""
    hidden = _unreadable_files(settings.data_dir) if settings.data_dir else []
    return {f"/data/{path.relative_to(settings.data_dir)}": os.open(path, os.O_RDONLY) for path in hidden}


def _plan_binds(writable: list[tuple[str, str]], readonly: list[tuple[str, str]], gid: int, marker: dict,
                settings: SandboxSettings, status: dict) -> dict[str, str]:
    """As root: shared tmpfs on the writable folders, staging of unreachable paths; inside -> host path."""
    for _, host in writable:
        _shared_tmpfs(host, settings.shared_mb, gid, marker)
    status["shared"] = [os.path.realpath(host) for _, host in writable]
    staged_ro = [(inside, host) for inside, host in readonly if not _reachable(host)]
    sources = [(host, True) for _, host in writable] + [(host, False) for _, host in staged_ro]
    staged = iter(_private_stage(sources))
    binds = {inside: "rw:" + next(staged) for inside, _ in writable}
    binds.update({inside: next(staged) for inside, _ in staged_ro})
    binds.update({inside: host for inside, host in readonly if inside not in binds})
    return binds


def launch(settings: SandboxSettings, connection_file: Optional[str], io_dir: Optional[str],
           answers: Optional[dict] = None) -> None:
    """Set everything up and exec the sandboxed kernel (never returns). With ``answers`` (and no connection
    file) the process runs the answer cells alone instead (``grading.running.alone``): the same sandbox, with
    no runtime folder and no kernel."""
    if (answers is None) == (connection_file is None) or (answers is not None and not io_dir):
        raise SandboxUnavailable("a kernel needs its connection file; the answer cells alone, an IO folder")
    connection_file = os.path.abspath(connection_file) if connection_file else None
    runtime_dir = os.path.dirname(connection_file) if connection_file else None
    info = json.loads(Path(connection_file).read_text()) if connection_file else None
    status: dict = {"cgroup": None, "uid": os.getuid(), "warnings": []}
    if io_dir:
        Path(io_dir, "results").mkdir(exist_ok=True)
    if not settings.enabled:
        _exec_unconfined(settings, connection_file, io_dir, status, answers)
    root = os.geteuid() == 0
    if (root and io_dir and runtime_dir
            and os.path.realpath(io_dir).startswith(os.path.realpath(runtime_dir) + os.sep)):
        raise SandboxUnavailable(f"the IO folder {io_dir} must not lie in the runtime folder {runtime_dir}")
    uid, gid = sandbox_ids(settings.user) if root else (os.getuid(), os.getgid())
    name = run_name(io_dir, connection_file)
    has_cgroup = _enter_cgroup(settings, name, status)
    env = kernel_env(settings)
    writable = ([(INNER_RUNTIME, runtime_dir)] if runtime_dir else []) + (
        [(f"{INNER_IO}/results", f"{io_dir}/results")] if io_dir else [])
    readonly = [(p, p) for p in dict.fromkeys(settings.readonly_paths) if os.path.exists(p)]
    ro_files = {path: _memfd(os.path.basename(path), data) for path, data in user_files().items()}
    if settings.data_dir and os.path.isdir(settings.data_dir):
        readonly.append(("/data", settings.data_dir))
        env["COURSE_DATA"] = "/data"
        ro_files.update(_data_copies(settings) if root else {})
    if root:
        marker = {"run": name, "cgroup": has_cgroup, "started": time.time(),
                  "io": os.path.realpath(io_dir) if io_dir else None}
        binds = _plan_binds(writable, readonly, gid, marker, settings, status)
    else:
        status["warnings"].append("WARNING: launcher not root: the kernel runs as the grader's user, and the "
                                  "runtime and results folders are bound as they are (no size limit, no noexec)")
        binds = {inside: "rw:" + host for inside, host in writable}
        binds.update({inside: host for inside, host in readonly})
    files = {f"/tmp/work/{item.name}": os.open(item, os.O_RDONLY) for item in _workdir_files()} if info else {}
    if io_dir:
        challenge = Path(io_dir, "challenge.json")
        if challenge.is_file():
            ro_files[f"{INNER_IO}/challenge.json"] = _memfd("challenge", challenge.read_bytes()[: 64 * 2**20])
        env.update(COURSE_GRADING_CHALLENGE=f"{INNER_IO}/challenge.json", COURSE_GRADING_RESULTS=f"{INNER_IO}/results")
    connection = _inner_connection(info, runtime_dir) if info else None
    fd = _memfd("kernel", kernel_bootstrap.payload(settings.preload_modules, connection,
                                                   "/tmp/.kernel/kernel.json" if info else None, answers))
    filter_code = seccomp.program()
    seccomp_fds = [] if filter_code is None else [_memfd("seccomp", filter_code)]
    if filter_code is None:
        status["warnings"].append(f"WARNING: no seccomp filter for {platform.machine()}: the kernel may make any "
                                  "system call its user may")
    command = bwrap_command(settings, binds, files, env, fd, ro_files, *seccomp_fds)
    command[0] = shutil.which("bwrap") or "/usr/bin/bwrap"
    status["uid"] = uid
    status_file(io_dir, connection_file or "").write_text(json.dumps(status))
    _set_limits(settings, nproc=not has_cgroup)
    _redirect_stdio(settings.log_file)
    _close_fds([fd, *files.values(), *ro_files.values(), *seccomp_fds])
    if root:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    # an empty environment: bwrap's own process is the sandbox's pid 1, whose /proc/1/environ the kernel can
    # read; the kernel's environment is set by --clearenv and --setenv alone
    os.execve(command[0], command, {})


ANSWERS_FILE = "answers.json"  # in the IO folder of the answer cells alone: what to run (grading.running.alone)


def main(argv: list[str]) -> None:
    """Kernelspec entry point: ``python -m grading.sandbox.launcher SETTINGS.json CONNECTION_FILE``; and
    ``python -m grading.sandbox.launcher SETTINGS.json --answers`` for the answer cells alone, which reads
    ``ANSWERS_FILE`` in the IO folder."""
    settings = SandboxSettings.load(Path(argv[0]))
    io_dir = os.environ.get(IO_ENV) or None
    try:
        if argv[1] == "--answers":
            if not io_dir:
                raise SandboxUnavailable(f"the answer cells alone need {IO_ENV}")
            launch(settings, None, io_dir, json.loads(Path(io_dir, ANSWERS_FILE).read_text()))
        launch(settings, argv[1], io_dir)
    except SandboxUnavailable as exc:
        sys.exit(f"grading.sandbox.launcher: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
