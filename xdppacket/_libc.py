"""The one place that calls into libc through ctypes.

Everything else in the package uses Python's own ``socket``, ``mmap`` and ``select``
modules; this module covers the few calls those cannot make: ``bind`` with an AF_XDP
address, the ``bpf`` system call, and ioctls that take a pointer.

Every wrapper turns a failed call into ``OSError(errno, message)`` and retries on
EINTR, so callers never look at ``ctypes.get_errno()`` themselves.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import mmap
import os
from array import array
from typing import Callable

from ._machine import bpf_syscall_number

__all__ = [
    "IOV_MAX",
    "OUT_OF_DESCRIPTORS_HINTS",
    "bind_raw",
    "bpf_syscall",
    "buffer_address",
    "exporter_factory",
    "check_call",
    "ioctl_ptr",
    "os_error",
    "setns",
    "unshare",
    "writev_iovecs",
]

_libc = ctypes.CDLL(None, use_errno=True)

# Looked up at the first bpf() call, not at import: importing works on any machine.
_bpf_syscall_number = functools.lru_cache(maxsize=None)(bpf_syscall_number)

_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_uint]

_bind = _libc.bind
_bind.restype = ctypes.c_int
_bind.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]

_ioctl = _libc.ioctl
_ioctl.restype = ctypes.c_int
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]

_writev = _libc.writev
_writev.restype = ctypes.c_ssize_t
_writev.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
#: Linux refuses writev with more spans than this.
IOV_MAX = 1024

# Namespaces (xdppacket.testing): os.unshare and os.setns exist only from Python 3.12.
_unshare = _libc.unshare
_unshare.restype = ctypes.c_int
_unshare.argtypes = [ctypes.c_int]
_setns = _libc.setns
_setns.restype = ctypes.c_int
_setns.argtypes = [ctypes.c_int, ctypes.c_int]


#: What to do when the process runs out of file descriptors (EMFILE) or the system does (ENFILE).
OUT_OF_DESCRIPTORS_HINTS = {
    errno.EMFILE: "too many open files: raise the limit with `ulimit -n` (RLIMIT_NOFILE) "
                  "or close descriptors this process no longer needs",
    errno.ENFILE: "too many open files in the system: raise fs.file-max or close files",
}


def os_error(err: int, what: str) -> OSError:
    """Build an ``OSError`` whose subclass follows errno (PermissionError, ...).

    Running out of file descriptors says so plainly, with the fix, whatever the call was.
    """
    hint = OUT_OF_DESCRIPTORS_HINTS.get(err)
    return OSError(err, f"{what}: {os.strerror(err)}" + (f" ({hint})" if hint else ""))


def check_call(call: Callable[[], int], what: str) -> int:
    """Run a libc call that returns -1 and sets errno on failure; retry on EINTR."""
    while True:
        result = call()
        if result >= 0:
            return result
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise os_error(err, what)


def bpf_syscall(cmd: int, attr: ctypes.Structure, what: str) -> int:
    """Call ``bpf(cmd, &attr, sizeof(attr))``; return its non-negative result."""
    number = _bpf_syscall_number()
    return check_call(
        lambda: _syscall(number, cmd, ctypes.addressof(attr), ctypes.sizeof(attr)), what
    )


def unshare(flags: int, what: str) -> None:
    """``unshare(flags)``: move the calling thread into new namespaces."""
    check_call(lambda: _unshare(flags), what)


def setns(fd: int, nstype: int, what: str) -> None:
    """``setns(fd, nstype)``: move the calling thread into the namespace ``fd`` refers to."""
    check_call(lambda: _setns(fd, nstype), what)


def bind_raw(fd: int, address: bytes, what: str) -> None:
    """``bind(fd, address, len(address))`` for address families Python cannot encode."""
    buffer = (ctypes.c_char * len(address)).from_buffer_copy(address)
    check_call(lambda: _bind(fd, ctypes.addressof(buffer), len(address)), what)


def buffer_address(buffer: mmap.mmap) -> int:
    """The virtual address of a writable mapping, for the kernel (UMEM registration)."""
    first_byte = ctypes.c_char.from_buffer(buffer)
    try:
        return ctypes.addressof(first_byte)
    finally:
        del first_byte  # drop the buffer export at once so the mapping can be closed later


def exporter_factory(buffer: mmap.mmap) -> Callable[[], ctypes.Array[ctypes.c_ubyte]]:
    """Return a function making fresh buffer exporters over the whole of ``buffer``.

    Every ``memoryview`` taken from one exporter (and every slice of those views) keeps
    a reference to that exporter, so ``sys.getrefcount(exporter)`` tells whether any view
    of it survives. The zero-copy lease in ``_umem`` relies on that to never hand a frame
    back to the kernel while a user still holds a view of it.
    """
    array_type = ctypes.c_ubyte * len(buffer)
    return lambda: array_type.from_buffer(buffer)


def ioctl_ptr(fd: int, request: int, arg: ctypes.Structure, what: str) -> int:
    """``ioctl(fd, request, &arg)`` for requests whose argument holds further pointers."""
    return check_call(lambda: _ioctl(fd, request, ctypes.addressof(arg)), what)



def writev_iovecs(fd: int, iovecs: bytes, count: int, total: int) -> None:
    """``writev`` the ``count`` spans of the ``struct iovec`` array ``iovecs`` to ``fd``
    completely (``total`` bytes in all), at most IOV_MAX (1024) spans a call, resuming
    after a partial write (a pipe, a signal).

    For memory that Python could only hand ``os.writev`` as one buffer object per span
    (``_pcap_records``: records straight from the UMEM). The caller keeps the memory
    mapped during the call.
    """
    while count:
        chunk = min(count, IOV_MAX)
        wanted = total if chunk == count else sum(memoryview(iovecs).cast("Q")[1 : 2 * chunk : 2])
        written = check_call(functools.partial(_writev, fd, iovecs, chunk), "writev")
        if written == wanted:
            iovecs = iovecs[16 * chunk :]
            count -= chunk
            total -= wanted
            continue
        # Skip the spans written completely; the first one written in part starts further on.
        spans = array("Q", iovecs)
        done = 0
        while written >= spans[2 * done + 1]:
            written -= spans[2 * done + 1]
            done += 1
        spans[2 * done] += written
        spans[2 * done + 1] -= written
        del spans[: 2 * done]
        iovecs = spans.tobytes()
        count -= done
        total = sum(spans[1::2])
