"""What xdppacket needs to know about the machine it runs on, in one table.

Two facts differ between architectures: the number of the ``bpf(2)`` system call
(which glibc does not wrap), and whether the AF_XDP rings can be driven with plain
loads and stores. Python has no memory fences, so the ring code is only correct where
the hardware keeps stores in order (x86-64's total store order).

Importing xdppacket works everywhere: nothing here is looked up at import time. Loading
programs (``bpf()``) works on every machine in the table; opening a socket refuses a
machine whose memory model needs fences (:func:`require_supported_machine`).
"""

from __future__ import annotations

import errno
import platform
from dataclasses import dataclass

__all__ = ["MACHINES", "Machine", "bpf_syscall_number", "require_supported_machine"]


@dataclass(frozen=True)
class Machine:
    """One architecture as ``platform.machine()`` names it on Linux."""

    #: ``__NR_bpf`` from the architecture's asm/unistd.h.
    bpf_syscall: int
    #: Whether plain stores are seen in program order by the kernel (total store order).
    rings_supported: bool


#: Every machine xdppacket knows, by ``platform.machine()``: all little-endian, as the
#: ELF loader and the generated instructions assume. Only x86-64 drives rings.
MACHINES = {
    "x86_64": Machine(bpf_syscall=321, rings_supported=True),
    "aarch64": Machine(bpf_syscall=280, rings_supported=False),
    "riscv64": Machine(bpf_syscall=280, rings_supported=False),
    "loongarch64": Machine(bpf_syscall=280, rings_supported=False),
    "ppc64le": Machine(bpf_syscall=361, rings_supported=False),
}


def _ring_machines() -> str:
    return ", ".join(name for name, machine in MACHINES.items() if machine.rings_supported)


def bpf_syscall_number() -> int:
    """``__NR_bpf`` on this machine; ``OSError(ENOSYS)`` naming the known machines otherwise."""
    name = platform.machine()
    machine = MACHINES.get(name)
    if machine is None:
        raise OSError(
            errno.ENOSYS,
            f"xdppacket does not know the bpf() system call number on {name!r}; "
            f"known machines: {', '.join(MACHINES)}",
        )
    return machine.bpf_syscall


def require_supported_machine() -> None:
    """Refuse machines whose memory model needs fences that Python cannot issue."""
    name = platform.machine()
    machine = MACHINES.get(name)
    if machine is None or not machine.rings_supported:
        raise OSError(
            errno.ENOTSUP,
            f"xdppacket drives AF_XDP rings with plain loads and stores, which is only "
            f"correctly ordered on x86 (total store order); this machine is {name!r}, "
            f"and AF_XDP sockets are supported on: {_ring_machines()}",
        )
