"""dump: print one line for every frame arriving on queues 0..N-1 of an interface, decoded with dpkt.

Each line: arrival time (CaptureInfo.timestamp, seconds since the epoch, as tcpdump -tt
prints it), the queue, the frame length, the MAC addresses, and what dpkt finds inside:

    1764505000.123456 q0 74 02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 10.0.0.1:1234 > 10.0.0.2:80 TCP [S] len 0

Frame lines go to stdout; the "listening" line, the once-a-second rate lines and the final
totals go to stderr, so stdout can be piped. Stops after -c frames, on Ctrl-C, SIGTERM or
at the end of --duration. Needs dpkt (pip install 'xdppacket[cli]').

Usage, as root:
    python examples/dump.py -i IFNAME [-c N] [--queues N] [--mode drv|skb] [--duration S]
"""

from __future__ import annotations

import argparse
import sys

from _classic_common import (
    RX,
    RateReporter,
    add_run_arguments,
    errors_as_messages,
    positive_int,
    queue_labels,
    run_until_stopped,
    socket_options,
)

from xdppacket import CaptureInfo, OptQueueCount, XDPMultiQueue

try:
    import dpkt
except ImportError:
    sys.exit("dump.py decodes frames with dpkt: pip install 'xdppacket[cli]' (or pip install dpkt)")

# tcpdump's letters for the TCP flags, in its order; ACK is "." after them.
_TCP_FLAG_LETTERS = (
    (dpkt.tcp.TH_FIN, "F"), (dpkt.tcp.TH_SYN, "S"), (dpkt.tcp.TH_RST, "R"), (dpkt.tcp.TH_PUSH, "P"),
    (dpkt.tcp.TH_URG, "U"), (dpkt.tcp.TH_ECE, "E"), (dpkt.tcp.TH_CWR, "W"),
)


def mac(address: bytes) -> str:
    return address.hex(":")


def tcp_flags(flags: int) -> str:
    letters = "".join(letter for bit, letter in _TCP_FLAG_LETTERS if flags & bit)
    return letters + ("." if flags & dpkt.tcp.TH_ACK else "")


def network_summary(eth: dpkt.ethernet.Ethernet) -> str:
    """IPv4/IPv6 addresses and ports with TCP/UDP details; the ethertype for anything else."""
    ip = eth.data
    if isinstance(ip, dpkt.ip.IP):
        version, src, dst, protocol = "IPv4", dpkt.utils.inet_to_str(ip.src), dpkt.utils.inet_to_str(ip.dst), ip.p
    elif isinstance(ip, dpkt.ip6.IP6):
        version, protocol = "IPv6", ip.nxt
        src, dst = f"[{dpkt.utils.inet_to_str(ip.src)}]", f"[{dpkt.utils.inet_to_str(ip.dst)}]"
    else:
        return f"ethertype 0x{eth.type:04x}"
    transport = ip.data
    if isinstance(transport, dpkt.tcp.TCP):
        return (f"{version} {src}:{transport.sport} > {dst}:{transport.dport} "
                f"TCP [{tcp_flags(transport.flags)}] len {len(transport.data)}")
    if isinstance(transport, dpkt.udp.UDP):
        return f"{version} {src}:{transport.sport} > {dst}:{transport.dport} UDP len {len(transport.data)}"
    return f"{version} {src} > {dst} proto {protocol}"


def summary(frame: bytes, info: CaptureInfo) -> str:
    head = f"{info.timestamp:.6f} q{info.queue_id} {info.length}"
    try:
        eth = dpkt.ethernet.Ethernet(frame)
    except dpkt.UnpackError as error:  # too short for an Ethernet header
        return f"{head} undecodable: {error}"
    return f"{head} {mac(eth.src)} > {mac(eth.dst)} {network_summary(eth)}"


def dump(ifname: str, count: int | None, queues: int, mode: str, duration: float | None) -> None:
    with XDPMultiQueue(ifname, OptQueueCount(queues), *socket_options(mode)) as mq:
        remaining = count

        def print_one_batch() -> bool:
            nonlocal remaining
            frames, infos = mq.read_multi_packets(64 if remaining is None else min(64, remaining))
            if frames:
                sys.stdout.write("".join(summary(frame, info) + "\n" for frame, info in zip(frames, infos)))
                sys.stdout.flush()
            if remaining is not None:
                remaining -= len(frames)
            return remaining != 0

        reporter = RateReporter(lambda: queue_labels(mq.get_stats()), RX, out=sys.stderr)
        print(f"dump on {ifname} queues 0-{queues - 1} ({mode} mode), Ctrl-C stops", file=sys.stderr, flush=True)
        run_until_stopped(print_one_batch, reporter, duration)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Runs until -c frames are printed, Ctrl-C, SIGTERM or --duration.")
    parser.add_argument("-i", "--interface", required=True, metavar="IF", help="interface to capture on")
    parser.add_argument("-c", "--count", type=positive_int, metavar="N", help="stop after N frames")
    parser.add_argument("--queues", type=positive_int, default=1, metavar="N", help="capture queues 0..N-1 (default 1)")
    add_run_arguments(parser)
    args = parser.parse_args()
    with errors_as_messages():
        dump(args.interface, args.count, args.queues, args.mode, args.duration)


if __name__ == "__main__":
    main()
