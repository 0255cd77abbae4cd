"""A seccomp filter for student code: the system calls it never needs and an escape would.

Loaded by worker.py (which imports nothing of the project but the files beside
it) in every submission's process before any student code runs, and inherited
by everything that process starts. The kernel refuses these calls with EPERM:

- new namespaces and mounts (unshare, setns, mount and the new mount API, clone
  with a CLONE_NEW* flag; clone3 answers ENOSYS, so the C library falls back to
  clone, whose flags a filter can read): no nested root, no remounting /tmp;
- tracing or reading other processes (ptrace, process_vm_readv/writev);
- kernel keyrings, bpf, perf events, userfaultfd, io_uring: large attack
  surface, no use for tensor code;
- System V IPC and POSIX message queues, whose objects outlive a process and
  would let one submission leave data for the next;
- sockets of any family but AF_UNIX: no network even where no network
  namespace can be made (a container without CAP_SYS_ADMIN).

Only x86-64 has the table below; elsewhere `supported()` is False and the
isolation level says so. System calls of other ABIs (32-bit int 0x80, x32) are
refused whole, so they cannot be used to go around the table.
"""
from __future__ import annotations

import ctypes
import errno
import platform
import struct

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
AUDIT_ARCH_X86_64 = 0xC000003E
X32_BIT = 0x40000000
AF_UNIX = 1
CLONE_NEW_ANY = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80

ALLOW = 0x7FFF0000
DENY = 0x00050000 | errno.EPERM
NOT_IMPLEMENTED = 0x00050000 | errno.ENOSYS

# x86-64 numbers (asm/unistd_64.h)
CLONE, CLONE3, SOCKET = 56, 435, 41
DENIED = {
    "shmget": 29, "semget": 64, "msgget": 68, "ptrace": 101, "pivot_root": 155, "mount": 165, "umount2": 166,
    "mq_open": 240, "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "bpf": 321, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}

# classic BPF opcodes
LOAD_WORD = 0x20      # BPF_LD | BPF_W | BPF_ABS
JUMP_EQUAL = 0x15     # BPF_JMP | BPF_JEQ | BPF_K
JUMP_ANY_BIT = 0x45   # BPF_JMP | BPF_JSET | BPF_K
RETURN = 0x06         # BPF_RET | BPF_K
NR, ARCH, ARG0 = 0, 4, 16  # offsets in struct seccomp_data (ARG0: low 32 bits of the first argument)


def supported() -> bool:
    return platform.machine() == "x86_64"


def _op(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def program(denied: dict[str, int] = DENIED, *, unix_sockets_only: bool = True) -> bytes:
    """The filter as classic BPF. Jump offsets count instructions skipped after the jump."""
    ops = [_op(LOAD_WORD, ARCH), _op(JUMP_EQUAL, AUDIT_ARCH_X86_64, 1, 0), _op(RETURN, DENY),
           _op(LOAD_WORD, NR), _op(JUMP_ANY_BIT, X32_BIT, 0, 1), _op(RETURN, DENY)]
    for number in denied.values():
        ops += [_op(JUMP_EQUAL, number, 0, 1), _op(RETURN, DENY)]
    ops += [_op(JUMP_EQUAL, CLONE3, 0, 1), _op(RETURN, NOT_IMPLEMENTED)]
    # clone: refused when any namespace flag is set
    ops += [_op(JUMP_EQUAL, CLONE, 0, 4), _op(LOAD_WORD, ARG0), _op(JUMP_ANY_BIT, CLONE_NEW_ANY, 0, 1),
            _op(RETURN, DENY), _op(RETURN, ALLOW)]
    if unix_sockets_only:
        ops += [_op(JUMP_EQUAL, SOCKET, 0, 4), _op(LOAD_WORD, ARG0), _op(JUMP_EQUAL, AF_UNIX, 0, 1),
                _op(RETURN, ALLOW), _op(RETURN, DENY)]
    ops.append(_op(RETURN, ALLOW))
    return b"".join(ops)


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def no_new_privs() -> None:
    """From here on, exec can never gain privileges (setuid binaries, file capabilities)."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def install(code: bytes | None = None) -> None:
    """Load the filter into this process (and everything it starts). Sets NoNewPrivs first, as the kernel
    requires of a process without CAP_SYS_ADMIN."""
    code = program() if code is None else code
    no_new_privs()
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _Program(len(code) // 8, ctypes.cast(buffer, ctypes.c_char_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
