"""txonly: send one fixed frame out of one queue of an interface as fast as possible.

Like the kernel's xdpsock sample in txonly mode. The frame is SIZE bytes: destination MAC
(--dst, broadcast by default), the interface's own MAC, ethertype 0x88B5 (IEEE local
experimental), then bytes counting 0, 1, 2, ... (mod 256). Frames go out in batches of
--batch through write_multi_packets. Once a second it prints the transmit rate; at the end
(--count frames sent, Ctrl-C, SIGTERM or --duration) the totals.

Usage, as root:
    python examples/txonly.py -i IFNAME [--size B] [--count N] [--queue Q] [--dst MAC]
                              [--batch B] [--mode drv|skb] [--duration S]
"""

from __future__ import annotations

import argparse
import fcntl
import socket
import struct

from _classic_common import (
    TX,
    RateReporter,
    add_run_arguments,
    errors_as_messages,
    positive_int,
    run_until_stopped,
    socket_options,
)

from xdppacket import OptQueueID, XDPPacket

ETH_P_LOCAL_EXPERIMENTAL = 0x88B5
MIN_FRAME_SIZE = 60  # Ethernet's minimum, without the FCS the NIC adds
_SIOCGIFHWADDR = 0x8927  # linux/sockios.h


def interface_mac(ifname: str) -> bytes:
    """The interface's MAC address, asked of the kernel (sysfs may show another namespace's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16s16x", ifname.encode())
        reply = fcntl.ioctl(sock, _SIOCGIFHWADDR, request)
    return reply[18:24]  # struct ifreq: the name, then sockaddr's family (2 bytes) and address


def build_frame(size: int, dst: bytes, src: bytes) -> bytes:
    header = dst + src + struct.pack("!H", ETH_P_LOCAL_EXPERIMENTAL)
    return header + bytes(i % 256 for i in range(size - len(header)))


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` as 6 bytes; argparse reports a ValueError as an invalid value."""
    mac = bytes.fromhex(text.replace(":", ""))
    if len(mac) != 6:
        raise ValueError(text)
    return mac


def frame_size(text: str) -> int:
    size = int(text)
    if size < MIN_FRAME_SIZE:
        raise argparse.ArgumentTypeError(f"{size} is below Ethernet's minimum frame of {MIN_FRAME_SIZE} bytes")
    return size


def txonly(ifname: str, size: int, count: int | None, queue: int, dst: bytes, batch: int,
           mode: str, duration: float | None) -> None:
    with XDPPacket(ifname, OptQueueID(queue), *socket_options(mode)) as xsk:
        frame = build_frame(size, dst, interface_mac(ifname))
        remaining = count

        def send_one_batch() -> bool:
            nonlocal remaining
            wanted = batch if remaining is None else min(batch, remaining)
            sent = xsk.write_multi_packets([frame] * wanted)  # each is copied into a tx frame
            if remaining is not None:
                remaining -= sent
            return remaining != 0

        reporter = RateReporter(lambda: {"all": xsk.get_stats()}, TX)
        print(f"txonly on {ifname} queue {queue} ({mode} mode): {size}-byte frames to {dst.hex(':')}, "
              "Ctrl-C stops", flush=True)
        run_until_stopped(send_one_batch, reporter, duration)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Runs until --count frames are sent, Ctrl-C, SIGTERM or --duration.")
    parser.add_argument("-i", "--interface", required=True, metavar="IF", help="interface to send on")
    parser.add_argument("--size", type=frame_size, default=64, metavar="B", help="frame size in bytes (default 64)")
    parser.add_argument("--count", type=positive_int, metavar="N", help="stop after N frames (default: no limit)")
    parser.add_argument("--queue", type=int, default=0, metavar="Q", help="tx queue (default 0)")
    parser.add_argument("--dst", type=parse_mac, default=b"\xff" * 6, metavar="MAC",
                        help="destination MAC address (default ff:ff:ff:ff:ff:ff)")
    parser.add_argument("--batch", type=positive_int, default=64, metavar="B", help="frames per write (default 64)")
    add_run_arguments(parser)
    args = parser.parse_args()
    with errors_as_messages():
        txonly(args.interface, args.size, args.count, args.queue, args.dst, args.batch, args.mode, args.duration)


if __name__ == "__main__":
    main()
