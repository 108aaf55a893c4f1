"""scapy's sniff over its own socket against sniff over an XDPSuperSocket, on the same load.

Both sides run scapy's ``AsyncSniffer`` (dissecting every frame, storing none) on the
capture end of a veth pair in a private network namespace; only the socket differs:
scapy's own L2 listen socket (``AF_PACKET``) or ``XDPSuperSocket`` (AF_XDP, native mode).
``xdppacket.testing.TrafficGenerator`` offers the same paced load to each (``--rate``
frames per second of 64-byte frames for ``--seconds``), rounds alternate the two, and the
medians are printed: frames offered, received, and the received rate.

scapy's per-packet Python work (a few tens of microseconds) is the bottleneck, and the
load comes in bursts of rate x ``--tick`` frames (each generator call costs ~24 ms, so it
cannot be paced finely): what differs between the sockets is how many frames of a burst
wait for scapy instead of being lost. That is set by the buffer of each: scapy's
``conf.bufsize`` receive buffer (64 KiB unless ``--bufsize``) against the AF_XDP rx ring
(1024 frames by default).

Needs root and scapy (``pip install xdppacket[scapy]``). Usage:
``python cmd/scapy_bench.py [--rounds N] [--seconds S] [--rate PPS] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xdppacket import XDP_MODE_DRV, OptXDPMode
from xdppacket.testing import TrafficGenerator, private_netns, veth_pair

#: 64-byte frames of the local experimental ethertype, to the broadcast address.
FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + bytes(50)
#: How long after the load a sniffer may still drain what waits for it.
GRACE_SECONDS = 0.5
SCAPY_L2 = "scapy L2 socket (AF_PACKET)"
XDP = "XDPSuperSocket (AF_XDP)"


@dataclass(frozen=True)
class Round:
    """One round of one socket: frames offered and received, over the load's duration."""

    socket: str
    offered: int
    received: int
    seconds: float

    @property
    def received_pps(self) -> float:
        return self.received / self.seconds


def offer_paced(generator: TrafficGenerator, rate: int, seconds: float, tick: float) -> tuple[int, float]:
    """Send ``rate`` frames per second for ``seconds``, a burst every ``tick``; return (frames, s)."""
    burst = max(1, int(rate * tick))
    sent = 0
    start = time.monotonic()
    next_burst = start
    while next_burst - start < seconds:
        sent += generator.send(burst).frames
        next_burst += tick
        time.sleep(max(0.0, next_burst - time.monotonic()))
    return sent, time.monotonic() - start


def run_round(name: str, start_sniffer: Callable[[], Any], generator: TrafficGenerator,
              args: argparse.Namespace) -> Round:
    """Start a sniffer, offer the load, let it drain, stop it; count what it dissected."""
    sniffer = start_sniffer()
    deadline = time.monotonic() + 5
    while not sniffer.running and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the sniffer is in its select() when the load starts
    offered, elapsed = offer_paced(generator, args.rate, args.seconds, args.tick)
    time.sleep(GRACE_SECONDS)
    sniffer.stop()
    return Round(name, offered, int(sniffer.count), elapsed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per socket (default 3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="load per round (default 2)")
    parser.add_argument("--rate", type=int, default=50_000, help="offered pps (default 50000)")
    parser.add_argument("--tick", type=float, default=0.1, help="seconds between bursts (default 0.1)")
    parser.add_argument("--bufsize", type=int, help="scapy's conf.bufsize (default: scapy's)")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()
    ethtool = shutil.which("ethtool", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if ethtool is None:
        sys.exit("scapy_bench needs ethtool (Debian package ethtool)")

    rounds: list[Round] = []
    with private_netns(), veth_pair("sbcap", "sbgen") as pair:
        # Redirected frames reach a veth only with GRO on or a native XDP program there;
        # GRO lets the AF_PACKET side receive them too.
        subprocess.run([ethtool, "-K", pair.capture, "gro", "on"], check=True, capture_output=True)
        # Imported in the namespace: scapy lists the interfaces it can see when imported.
        from scapy.config import conf
        from scapy.sendrecv import AsyncSniffer

        from xdppacket.scapy import XDPSuperSocket

        if args.bufsize is not None:
            conf.bufsize = args.bufsize

        def scapy_l2() -> Any:
            sniffer = AsyncSniffer(iface=pair.capture, store=False)
            sniffer.start()
            return sniffer

        with TrafficGenerator(pair.peer, FRAME) as generator:
            for _ in range(args.rounds):
                rounds.append(run_round(SCAPY_L2, scapy_l2, generator, args))
                with XDPSuperSocket(pair.capture, OptXDPMode(XDP_MODE_DRV)) as sock:

                    def over_xdp(sock: Any = sock) -> Any:
                        sniffer = AsyncSniffer(opened_socket=sock, store=False)
                        sniffer.start()
                        return sniffer

                    rounds.append(run_round(XDP, over_xdp, generator, args))
                for done in rounds[-2:]:
                    print(f"{done.socket:30} offered {done.offered:9} received {done.received:9} "
                          f"({100 * done.received / max(1, done.offered):5.1f} %) "
                          f"{done.received_pps:10.0f} pps", file=sys.stderr)
    medians = summarize(rounds)
    if args.json:
        print(json.dumps({"rate": args.rate, "seconds": args.seconds, "tick": args.tick,
                          "medians": medians}))
    else:
        for name, median in medians.items():
            print(f"median {name:30} offered {median['offered']:9.0f} received "
                  f"{median['received']:9.0f} {median['received_pps']:10.0f} pps")
    return 0


def summarize(rounds: list[Round]) -> dict[str, dict[str, float]]:
    """Per socket: the median of each measure over its rounds."""
    medians: dict[str, dict[str, float]] = {}
    for name in (SCAPY_L2, XDP):
        mine = [done for done in rounds if done.socket == name]
        medians[name] = {
            "offered": statistics.median(done.offered for done in mine),
            "received": statistics.median(done.received for done in mine),
            "received_pps": statistics.median(done.received_pps for done in mine),
            "rounds": len(mine),
        }
    return medians


if __name__ == "__main__":
    sys.exit(main())
