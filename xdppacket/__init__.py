"""xdppacket: capture and inject raw Ethernet frames through Linux AF_XDP sockets.

Pure Python over the standard library. ``XDPPacket`` drives one queue of an interface;
``XDPMultiQueue`` several. README.md has a tour of the API and its guarantees.
"""

from __future__ import annotations

import warnings

from ._program import clear_iface_residue_xdp_resources
from .errors import (
    BPFVerifierError,
    XDPError,
    XDPFilterError,
    XDPProgramBusyError,
    XDPTimeoutError,
    XDPWriteError,
)
from .filter import CompiledFilter, OptFilter, compile_filter
from .multiqueue import XDPMultiQueue, get_xdp_socket_from_multi_queue
from .options import (
    BIND_AUTO,
    BIND_COPY,
    BIND_ZEROCOPY,
    IO_MODE_BLOCK,
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    BindMode,
    IOMode,
    OptBatchTimestamps,
    OptBindMode,
    OptBusyPoll,
    OptFrameSize,
    OptHeadroom,
    OptHugePages,
    OptIoMode,
    OptMultiBuffer,
    OptNumFrames,
    OptPollTimeout,
    OptQueueCount,
    OptQueueID,
    OptRingSize,
    OptSharedUmem,
    OptXDPMode,
    OptXDPProgram,
    XDPMode,
    XDPOptions,
)
from .packet import XDPPacket
from .stats import CaptureInfo, XDPStats

__version__ = "0.1.0"

__all__ = [
    "OptBatchTimestamps",
    "BPFVerifierError",
    "CaptureInfo",
    "IOMode",
    "IO_MODE_BLOCK",
    "IO_MODE_NONBLOCK",
    "OptFrameSize",
    "OptIoMode",
    "OptNumFrames",
    "OptPollTimeout",
    "OptQueueCount",
    "OptQueueID",
    "OptRingSize",
    "OptXDPMode",
    "OptXDPProgram",
    "XDPError",
    "XDPMode",
    "XDPMultiQueue",
    "XDPOptions",
    "XDPPacket",
    "XDPProgramBusyError",
    "XDPStats",
    "XDPTimeoutError",
    "XDPWriteError",
    "XDP_MODE_DRV",
    "XDP_MODE_SKB",
    "clear_iface_residue_xdp_resources",
    "CompiledFilter",
    "OptFilter",
    "XDPFilterError",
    "compile_filter",
    "get_xdp_socket_from_multi_queue",
    "BIND_AUTO",
    "BIND_COPY",
    "BIND_ZEROCOPY",
    "BindMode",
    "OptBindMode",
    "OptBusyPoll",
    "OptHeadroom",
    "OptHugePages",
    "OptMultiBuffer",
    "OptSharedUmem",
]


# Moved to xdppacket.testing; the old names keep working with a DeprecationWarning.
_MOVED_TO_TESTING = ("GeneratorResult", "TrafficGenerator")


def __getattr__(name: str) -> object:
    if name in _MOVED_TO_TESTING:
        warnings.warn(
            f"xdppacket.{name} is deprecated: import it from xdppacket.testing",
            DeprecationWarning,
            stacklevel=2,
        )
        from . import testing

        return getattr(testing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
