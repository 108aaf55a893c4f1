"""Capture an interface with asyncio into a pcap file, and serve live counters over HTTP.

Usage, as root:
    python examples/async_capture.py IFNAME -w FILE [--queues N] [--mode drv|skb]
        [--http PORT] [-c COUNT] [--duration SECONDS]

Frames of queues 0..N-1 go to FILE (nanosecond pcap, xdppacket.pcap.PcapWriter) as they
arrive. With --http, `curl http://127.0.0.1:PORT/` answers with the counters as JSON while
it runs. Ctrl-C, SIGTERM, -c or --duration stops it; it then prints the final counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

from xdppacket import XDP_MODE_DRV, XDP_MODE_SKB, OptQueueCount, OptXDPMode
from xdppacket.aio import AsyncXDPMultiQueue
from xdppacket.pcap import PcapWriter

MODES = {"drv": XDP_MODE_DRV, "skb": XDP_MODE_SKB}


def counters(mq: AsyncXDPMultiQueue, written: int) -> dict[str, int]:
    total = mq.get_stats()[0]  # [0] sums the queues
    return {"written": written, "rx_packets": total.rx_packets, "rx_bytes": total.rx_bytes,
            "rx_dropped": total.rx_dropped}


async def serve_counters(port: int, current: dict[str, int]) -> asyncio.AbstractServer:
    """A minimal HTTP/1.0 endpoint: any request gets the counters as JSON."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()  # the request line; headers and body are not needed
        body = json.dumps(current).encode()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port)


async def capture(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if args.duration is not None:
        loop.call_later(args.duration, stop.set)
    current: dict[str, int] = {}
    async with AsyncXDPMultiQueue(args.ifname, OptQueueCount(args.queues), OptXDPMode(MODES[args.mode])) as mq:
        server = await serve_counters(args.http, current) if args.http is not None else None
        with PcapWriter(args.write) as pcap:
            print(f"capturing on {args.ifname} queues 0-{args.queues - 1} into {args.write}", flush=True)

            async def write_frames() -> None:
                written = 0
                async for packets, infos in mq.batches(256, zero_copy=True):  # views: no copy
                    if args.count is not None:
                        packets, infos = packets[: args.count - written], infos[: args.count - written]
                    pcap.write_batch(packets, infos)  # before the next iteration ends the views
                    written += len(packets)
                    current.update(counters(mq, written))
                    if written == args.count:
                        stop.set()
                        return

            current.update(counters(mq, 0))
            writer = asyncio.ensure_future(write_frames())
            await stop.wait()
            writer.cancel()  # a cancelled read loses no frame: it just ends here
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            final = counters(mq, current["written"])
        if server is not None:
            server.close()
            await server.wait_closed()
    print(" ".join(f"{name}={value}" for name, value in final.items()), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ifname")
    parser.add_argument("-w", "--write", required=True, help="pcap file to write")
    parser.add_argument("--queues", type=int, default=1)
    parser.add_argument("--mode", choices=MODES, default="drv")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve counters on 127.0.0.1:PORT")
    parser.add_argument("-c", "--count", type=int, help="stop after this many frames")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    asyncio.run(capture(parser.parse_args()))
