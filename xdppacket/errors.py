"""The library's own exceptions.

Validation problems raise the built-in ``TypeError``/``ValueError``; a failing kernel
call raises ``OSError`` (so ``PermissionError`` and friends work). The classes here
cover what has no built-in equivalent.
"""

from __future__ import annotations

__all__ = [
    "BPFVerifierError",
    "XDPError",
    "XDPFilterError",
    "XDPProgramBusyError",
    "XDPTimeoutError",
    "XDPWriteError",
]


class XDPError(Exception):
    """Base class of every exception defined by xdppacket."""


class XDPTimeoutError(XDPError, TimeoutError):
    """A non-blocking call waited its whole poll timeout without progress."""


class XDPWriteError(XDPError):
    """A multi-queue write failed part way; ``sent`` frames had already been queued."""

    def __init__(self, message: str, sent: int) -> None:
        super().__init__(message)
        self.sent = sent


class BPFVerifierError(XDPError, OSError):
    """The kernel's verifier rejected an XDP program; ``log`` holds its explanation."""

    def __init__(self, err: int, message: str, log: str) -> None:
        super().__init__(err, f"{message}\n--- verifier log ---\n{log.rstrip()}" if log else message)
        self.log = log


class XDPProgramBusyError(XDPError, OSError):
    """Another XDP program (not one of ours) is attached to the interface.

    ``prog_id`` names it; ``clear_iface_residue_xdp_resources(ifname)`` or
    ``ip link set dev IFNAME xdp off`` removes it.
    """

    def __init__(self, err: int, message: str, prog_id: int) -> None:
        super().__init__(err, message)
        self.prog_id = prog_id


class XDPFilterError(XDPError, ValueError):
    """A capture filter (pcap-filter expression or classic BPF) cannot be compiled.

    A syntax error names the column and the token; a construct that XDP filters do not
    support (host names, ``gateway``, ``protochain``, ...) is named in the message.
    """
