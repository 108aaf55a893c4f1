"""Ping-pong between two interfaces with asyncio: round-trip times of raw frames over AF_XDP.

Usage, as root:
    python examples/async_pingpong.py IF_PING IF_PONG [--count N] [--mode drv|skb]

One event loop drives both ends (for example the two ends of a veth pair, or two NICs
cabled together): the ping side sends numbered frames out of IF_PING, the pong side
reads them on IF_PONG and sends each one back with its addresses swapped, and the ping
side waits for the answer before sending the next. It prints the round-trip times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import struct
import time

from xdppacket import XDP_MODE_DRV, XDP_MODE_SKB, OptXDPMode
from xdppacket.aio import AsyncXDPPacket

MODES = {"drv": XDP_MODE_DRV, "skb": XDP_MODE_SKB}
PING_MAC = bytes.fromhex("020000000001")
PONG_MAC = bytes.fromhex("020000000002")
ETH_P_EXPERIMENT = 0x88B5  # local experimental ethertype: no stack claims these frames
HEADER = struct.Struct("!6s6sH4sI")  # Ethernet header, b"PING"/b"PONG", sequence number
FRAME_SIZE = 60
REPLY_TIMEOUT_S = 1.0


def ping_frame(seq: int) -> bytes:
    return HEADER.pack(PONG_MAC, PING_MAC, ETH_P_EXPERIMENT, b"PING", seq).ljust(FRAME_SIZE, b"\0")


async def pong(sock: AsyncXDPPacket) -> None:
    """Answer every ping: same frame, addresses swapped, PING turned into PONG."""
    async for data, _ in sock:
        dst, src, ethertype, kind, seq = HEADER.unpack_from(data)
        if ethertype == ETH_P_EXPERIMENT and kind == b"PING":
            await sock.write_packet(HEADER.pack(src, dst, ethertype, b"PONG", seq) + data[HEADER.size :])


async def wait_for_pong(sock: AsyncXDPPacket, seq: int) -> None:
    while True:
        data, _ = await sock.read_packet_data()
        if HEADER.unpack_from(data)[3:] == (b"PONG", seq):
            return


async def ping(sock: AsyncXDPPacket, count: int) -> tuple[list[float], int]:
    """Round-trip times in microseconds of the answered pings, and how many got no answer."""
    times: list[float] = []
    lost = 0
    for seq in range(count):
        started = time.perf_counter()
        await sock.write_packet(ping_frame(seq))
        try:
            await asyncio.wait_for(wait_for_pong(sock, seq), REPLY_TIMEOUT_S)
        except asyncio.TimeoutError:
            lost += 1
            continue
        times.append((time.perf_counter() - started) * 1e6)
    return times, lost


async def main(args: argparse.Namespace) -> None:
    mode = OptXDPMode(MODES[args.mode])
    async with AsyncXDPPacket(args.ping, mode) as ping_sock, AsyncXDPPacket(args.pong, mode) as pong_sock:
        ponger = asyncio.ensure_future(pong(pong_sock))
        times, lost = await ping(ping_sock, args.count)
        ponger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ponger
    if times:
        print(f"{len(times)} round trips, {lost} lost: min {min(times):.0f} us, "
              f"median {statistics.median(times):.0f} us, max {max(times):.0f} us", flush=True)
    else:
        print(f"0 round trips, {lost} lost", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ping", metavar="IF_PING")
    parser.add_argument("pong", metavar="IF_PONG")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--mode", choices=MODES, default="drv")
    asyncio.run(main(parser.parse_args()))
