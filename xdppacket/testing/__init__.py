"""Helpers for testing code built on xdppacket: real interfaces without touching the machine.

Like pyroute2's fixtures, these are what xdppacket's own tests use, published so that
users test their programs the same way:

- ``private_netns()``: run a block in a new, empty network namespace (then come back);
- ``veth_pair(capture, peer, queues=...)``: a veth pair inside it, with its MAC addresses;
- ``run_xdp(program, frame)``: run an XDP program once on a frame with
  ``BPF_PROG_TEST_RUN`` and get ``(XDPAction, frame_out)``, no NIC needed;
- ``TrafficGenerator``: millions of frames per second into an interface, from Python.

All are context managers or plain functions with no pytest dependency; README.md
("Testing your own XDP code") shows them as pytest fixtures. Everything here needs root.
"""

from ._netns import PrivateNetns, VethPair, in_private_netns, private_netns, veth_pair
from ._xdp_run import XDPAction, run_xdp
from .trafficgen import GeneratorResult, TrafficGenerator

__all__ = [
    "GeneratorResult",
    "PrivateNetns",
    "TrafficGenerator",
    "VethPair",
    "XDPAction",
    "in_private_netns",
    "private_netns",
    "run_xdp",
    "veth_pair",
]
