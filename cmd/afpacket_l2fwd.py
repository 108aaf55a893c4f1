"""afpacket_l2fwd: the l2fwd examples done with plain AF_PACKET sockets (cmd/l2fwd_bench.py's baseline).

What a Python program does without xdppacket: one raw socket per interface, one
``recv_into`` (into a reused buffer) and one ``send`` per frame.

- 1link (``-i IF``): every frame goes back out of IF, source and destination MAC addresses
  swapped, like ``examples/l2fwd_1link.py``. A blocking loop.
- 2link (``-i IF1 -j IF2``): every frame goes out of the other interface, unchanged, both
  ways, like ``examples/l2fwd_2link.py``. Non-blocking sockets: ``poll`` waits while both
  are idle, then each ready socket is read until it is empty.

Each socket's receive buffer is set to ``RCVBUF_BYTES`` (with ``SO_RCVBUFFORCE``, as root:
``net.core.rmem_max`` caps the plain option): the default (~208 KiB) holds fewer frames than
one burst of 64 redirected frames here (each takes a page), which would lose frames at any
rate; 4 MiB is about as many frames as the AF_XDP forwarders' 1024-entry rx ring holds.

The sockets take every protocol (``ETH_P_ALL``) but not the frames leaving their own
interface (``PACKET_IGNORE_OUTGOING``), or a forwarder would send its own output again. A
send the device refuses (``ENOBUFS``: veth's far end is full) drops that frame, as a NIC
with a full queue would, and is counted.

Prints ``afpacket_l2fwd ready`` once the sockets are bound, and at the end (SIGINT,
SIGTERM or ``--duration``) one line per interface:
``total IF rx_packets=N tx_packets=N tx_dropped=N``.

Usage, as root: python cmd/afpacket_l2fwd.py -i IF [-j IF2] [--duration S]
"""

from __future__ import annotations

import argparse
import errno
import select
import signal
import socket
import sys
from dataclasses import dataclass
from types import FrameType

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
SO_RCVBUFFORCE = 33
RCVBUF_BYTES = 4 << 20
BUFFER_SIZE = 65536
IDLE_POLL_MS = 100


@dataclass
class Port:
    """One interface's socket and what went through it."""

    ifname: str
    sock: socket.socket
    rx_packets: int = 0
    tx_packets: int = 0
    tx_dropped: int = 0

    @classmethod
    def open(cls, ifname: str, blocking: bool) -> Port:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
            sock.bind((ifname, ETH_P_ALL))
            sock.setblocking(blocking)
        except BaseException:
            sock.close()
            raise
        return cls(ifname, sock)

    def send(self, frame: memoryview) -> None:
        try:
            self.sock.send(frame)
            self.tx_packets += 1
        except OSError as error:
            if error.errno != errno.ENOBUFS:
                raise
            self.tx_dropped += 1


def forward_back(port: Port) -> None:
    """1link: receive, swap the MAC addresses in place, send back; forever."""
    buffer = bytearray(BUFFER_SIZE)
    view = memoryview(buffer)
    while True:
        length = port.sock.recv_into(buffer)
        port.rx_packets += 1
        buffer[0:12] = buffer[6:12] + buffer[0:6]
        port.send(view[:length])


def forward_between(first: Port, second: Port) -> None:
    """2link: whatever arrives on one port leaves through the other; forever."""
    buffer = bytearray(BUFFER_SIZE)
    view = memoryview(buffer)
    other = {first.sock.fileno(): (first, second), second.sock.fileno(): (second, first)}
    poller = select.poll()
    for fd in other:
        poller.register(fd, select.POLLIN)
    while True:
        for fd, _ in poller.poll(IDLE_POLL_MS):
            source, destination = other[fd]
            while True:
                try:
                    length = source.sock.recv_into(buffer)
                except BlockingIOError:
                    break
                source.rx_packets += 1
                destination.send(view[:length])


def stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--interface", required=True, metavar="IF", help="(first) interface")
    parser.add_argument("-j", "--interface2", metavar="IF2", help="second interface: 2link mode")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    ports = [Port.open(args.interface, blocking=args.interface2 is None)]
    if args.interface2:
        ports.append(Port.open(args.interface2, blocking=False))
    print("afpacket_l2fwd ready", flush=True)
    if args.duration:
        signal.setitimer(signal.ITIMER_REAL, args.duration)
    try:
        if len(ports) == 1:
            forward_back(ports[0])
        else:
            forward_between(*ports)
    except KeyboardInterrupt:
        pass
    for port in ports:
        print(f"total {port.ifname} rx_packets={port.rx_packets} tx_packets={port.tx_packets} "
              f"tx_dropped={port.tx_dropped}", flush=True)
        port.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
