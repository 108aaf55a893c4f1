"""The ``xdppacket`` command: capture, replay, generate and diagnose from the shell.

``main(argv)`` parses the command line and returns the exit status: 0 done, 1 a runtime
error (one line on stderr, no traceback), 2 a usage error (argparse's message), 130
interrupted before anything was done. Each command lives in a module of its own.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence

from .._netdev import xdp_features
from ..errors import XDPError
from ..options import XDP_MODE_DRV, XDP_MODE_SKB, XDPMode
from ..pcap import DEFAULT_SNAPLEN

__all__ = ["build_parser", "main"]

PROG = "xdppacket"
MODES = {"drv": XDP_MODE_DRV, "skb": XDP_MODE_SKB}

_DESCRIPTION = """\
Capture and send raw Ethernet frames through Linux AF_XDP sockets (root, or
CAP_NET_RAW + CAP_NET_ADMIN + CAP_BPF). Run `xdppacket COMMAND --help` for a command."""

_CAPTURE_EPILOG = """\
examples:
  xdppacket capture -i eth0                     print a line per frame, like tcpdump
  xdppacket capture -i eth0 -w out.pcap -c 1000 write 1000 frames to a pcap file
  xdppacket capture -i eth0 -w - | tcpdump -r - pipe into tcpdump
  xdppacket capture -i eth0 udp port 53         only frames the filter matches

Unlike tcpdump, the frames are taken from the kernel by an XDP program: the ones
captured (those the filter matches, or all without one) do NOT reach the
interface's network stack while the capture runs. Ctrl-C ends the capture and
prints how many frames were captured and dropped by the kernel."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _queues(text: str) -> int | None:
    return None if text == "all" else _positive_int(text)


def _mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6 or not all(len(part) in (1, 2) for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a MAC address like 02:00:00:00:00:01")
    try:
        return bytes(int(part, 16) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a MAC address like 02:00:00:00:00:01") from None


def _add_mode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="XDP mode: drv (native, fast) or skb (generic, works on every driver); "
                             "default: drv where the driver supports it, else skb")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    capture = commands.add_parser(
        "capture", help="capture frames like tcpdump (all queues)", epilog=_CAPTURE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Capture frames on every rx queue of an interface; print them or write a file.")
    capture.add_argument("-i", "--interface", required=True, metavar="IF", help="interface to capture on")
    capture.add_argument("-w", dest="write", metavar="FILE",
                         help="write frames to FILE (pcap, nanosecond timestamps) instead of printing "
                              "them; '-' is standard output")
    capture.add_argument("-c", dest="count", type=_positive_int, metavar="N", help="exit after N frames")
    capture.add_argument("--duration", type=_positive_float, metavar="S", help="exit after S seconds")
    capture.add_argument("--queues", type=_queues, default=None, metavar="N|all",
                         help="capture queues 0..N-1 (default: all of the interface's rx queues)")
    _add_mode(capture)
    capture.add_argument("--pcapng", action="store_true",
                         help="write pcapng: an interface per queue, kernel drop counters at the end")
    capture.add_argument("-s", "--snapshot-length", dest="snaplen", type=_positive_int, default=DEFAULT_SNAPLEN,
                         metavar="SNAPLEN", help=f"store at most SNAPLEN bytes of each frame (default {DEFAULT_SNAPLEN})")
    capture.add_argument("expression", nargs="*", metavar="EXPRESSION",
                         help="pcap-filter expression, as for tcpdump (man 7 pcap-filter)")

    replay = commands.add_parser("replay", help="send the frames of a pcap/pcapng file",
                                 description="Send the frames of a pcap or pcapng file, in order.")
    replay.add_argument("-i", "--interface", required=True, metavar="IF", help="interface to send on")
    replay.add_argument("file", metavar="FILE", help="pcap or pcapng file ('-' is standard input)")
    replay.add_argument("--pps", type=_positive_float, metavar="N", help="send N frames a second (default: as fast as possible)")
    replay.add_argument("--loop", type=_non_negative_int, default=1, metavar="N",
                        help="send the file N times; 0 repeats until Ctrl-C (default 1)")
    replay.add_argument("--queue", type=_non_negative_int, default=0, metavar="Q", help="tx queue (default 0)")
    _add_mode(replay)

    generate = commands.add_parser(
        "generate", help="send test frames at millions per second",
        description="Send copies of one test frame (ethertype 0x88b5) through the kernel's XDP "
                    "live-frame generator. A veth receiver needs native XDP or GRO on to accept them.")
    generate.add_argument("-i", "--interface", required=True, metavar="IF", help="interface to send on")
    bounds = generate.add_mutually_exclusive_group()
    bounds.add_argument("--count", type=_positive_int, metavar="N", help="send N frames")
    bounds.add_argument("--duration", type=_positive_float, metavar="S", help="send for S seconds")
    generate.add_argument("--size", type=_positive_int, default=64, metavar="B", help="frame size in bytes, without FCS (default 64)")
    generate.add_argument("--dst", type=_mac, default=b"\xff" * 6, metavar="MAC",
                          help="destination MAC (default ff:ff:ff:ff:ff:ff)")
    generate.add_argument("--cpu", type=_non_negative_int, metavar="CPU",
                          help="send from this CPU (a veth receiver gets them on rx queue CPU mod its queues)")

    diagnose = commands.add_parser("diagnose", help="why frames do not arrive: driver, XDP, queues, MTU, privileges",
                                   description="Report what decides whether AF_XDP can capture on IF.")
    diagnose.add_argument("interface", metavar="IF")
    return parser


def _mode(choice: str | None, ifname: str) -> XDPMode:
    """--mode, or drv where the driver reports native XDP (or cannot say), else skb."""
    if choice is not None:
        return MODES[choice]
    from .._interface import interface_index

    features = xdp_features(interface_index(ifname))
    return XDP_MODE_SKB if features is not None and not features.native else XDP_MODE_DRV


def _run(args: argparse.Namespace) -> int:
    if args.command == "capture":
        from .capture import CaptureRequest, run_capture

        if args.write is None and args.pcapng:
            raise ValueError("--pcapng needs -w FILE")
        result = run_capture(CaptureRequest(
            ifname=args.interface, queues=args.queues, mode=_mode(args.mode, args.interface),
            write_to=args.write, pcapng=args.pcapng, count=args.count, duration=args.duration,
            snaplen=args.snaplen, expression=" ".join(args.expression)))
        sys.stderr.write(result.closing_lines())
    elif args.command == "replay":
        from .replay import ReplayRequest, run_replay

        replayed = run_replay(ReplayRequest(
            ifname=args.interface, path=args.file, pps=args.pps, loop=args.loop,
            mode=_mode(args.mode, args.interface), queue=args.queue))
        print(replayed.summary())
    elif args.command == "generate":
        from .generate import GenerateRequest, result_line, run_generate

        generated = run_generate(GenerateRequest(
            ifname=args.interface, count=args.count, duration=args.duration, size=args.size,
            dst=args.dst, cpu=args.cpu))
        print(result_line(generated))
    else:
        from .diagnose import diagnose, render

        sys.stdout.write(render(diagnose(args.interface)))
    return 0


def _silence_stdout() -> None:
    """After EPIPE (``| head``), point stdout at /dev/null so the exit flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _message(exc: BaseException) -> str:
    """An OSError's own text without the "[Errno N]" prefix; the file name if it has one."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename is not None else "")
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits with 2 on a usage error
    try:
        return _run(args)
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError, XDPError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            _silence_stdout()
            return 0
        sys.stderr.write(f"{PROG}: error: {_message(exc)}\n")
        return 1
