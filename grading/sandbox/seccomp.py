"""The sandbox's seccomp filter: system calls a notebook never needs fail with EPERM.

A classic BPF program in the form bubblewrap's ``--seccomp FD`` loads (an array of ``struct
sock_filter``, as libseccomp's ``seccomp_export_bpf`` writes it), applied to the kernel right before
bubblewrap executes it. Refused: tracing and reading other processes (ptrace, process_vm_*), mounts
and namespaces (mount, umount2, pivot_root, chroot, the new mount API, unshare, setns), the kernel's
keyrings (add_key, request_key, keyctl), bpf, perf_event_open, userfaultfd, modules, kexec, reboot,
swap, the clock, the kernel log, I/O ports, quotas, accounting and handle-based opens; so are system
calls of any other ABI (i386, x32), which an x86-64 Python never makes. Built for x86-64 only:
``program()`` is None elsewhere, and the launcher then says that the kernel runs without it.
"""

from __future__ import annotations

import errno
import platform
import struct
from typing import Optional

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
DENIED_X86_64 = {
    "ptrace": 101, "syslog": 103, "pivot_root": 155, "chroot": 161, "acct": 163, "settimeofday": 164,
    "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311,
    "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}

# classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h)
LD_W_ABS, JEQ_K, JGE_K, RET_K = 0x20, 0x15, 0x35, 0x06
RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
DATA_NR, DATA_ARCH = 0, 4  # offsets in struct seccomp_data


def _instruction(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def program(machine: Optional[str] = None) -> Optional[bytes]:
    """The filter for this machine's architecture (``platform.machine()``), or None where none is built."""
    if (machine or platform.machine()) != "x86_64":
        return None
    numbers = sorted(set(DENIED_X86_64.values()))
    deny = 5 + len(numbers) + 1  # index of the final "refuse" instruction
    code = [_instruction(LD_W_ABS, DATA_ARCH),
            _instruction(JEQ_K, AUDIT_ARCH_X86_64, jt=1),  # another ABI: refused by the next instruction
            _instruction(RET_K, RET_ERRNO | errno.EPERM),
            _instruction(LD_W_ABS, DATA_NR),
            _instruction(JGE_K, X32_SYSCALL_BIT, jt=deny - 5)]
    for index, number in enumerate(numbers, start=5):
        code.append(_instruction(JEQ_K, number, jt=deny - index - 1))
    code += [_instruction(RET_K, RET_ALLOW), _instruction(RET_K, RET_ERRNO | errno.EPERM)]
    assert len(code) == deny + 1
    return b"".join(code)
