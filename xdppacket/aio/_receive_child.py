"""The child side of ``ReceiveProcess``: open a socket, read it, send batches to the parent.

Started by ``ReceiveProcess`` as ``python -c CHILD_COMMAND FD PARENT_PID``: standard input carries the pickled
``ChildConfig``; FD is this end of a ``SOCK_SEQPACKET`` socket pair. Each message is one
pickled ``Message``. The first is ``Message.ready()`` or the error that kept the socket
from opening. A message that does not fit the socket's buffer (the parent is behind) is
dropped and counted, never waited for: the child keeps the ring drained whatever the
parent does. SIGTERM ends the child; so does the parent closing its end.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import signal
import socket
import sys
from dataclasses import dataclass
from types import FrameType
from typing import Any

__all__ = ["CHILD_COMMAND", "ChildConfig", "Message", "main"]

#: What the child runs: this module imported by name, so pickled ``Message``s name their class right.
CHILD_COMMAND = "import sys; from xdppacket.aio._receive_child import main; main(sys.argv)"

_SO_SNDBUFFORCE = 32
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildConfig:
    """What the child opens and how it reads: ``socket_class(ifname, *opts)``, batches of ``batch_size``."""

    socket_class: type
    ifname: str
    opts: tuple[object, ...]
    batch_size: int
    buffer_bytes: int
    max_message_bytes: int


@dataclass(frozen=True)
class Message:
    """One batch (or part of one) with the child's counters so far; or the start-up outcome."""

    packets: list[bytes]
    infos: list[Any]
    read_packets: int
    dropped_batches: int
    dropped_packets: int
    kernel_dropped: int
    error: BaseException | None = None

    @classmethod
    def ready(cls) -> Message:
        return cls([], [], 0, 0, 0, 0)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _parts(packets: list[bytes], infos: list[Any], limit: int) -> list[tuple[list[bytes], list[Any]]]:
    """Split a batch into runs of frames whose bytes stay within ``limit`` (at least one frame each)."""
    parts: list[tuple[list[bytes], list[Any]]] = []
    start = size = 0
    for index, packet in enumerate(packets):
        if size and size + len(packet) > limit:
            parts.append((packets[start:index], infos[start:index]))
            start, size = index, 0
        size += len(packet)
    parts.append((packets[start:], infos[start:]))
    return parts


def run(channel: socket.socket, config: ChildConfig) -> None:
    try:
        sock = config.socket_class(config.ifname, *config.opts)
    except Exception as error:  # the parent raises it from start()
        channel.send(pickle.dumps(Message([], [], 0, 0, 0, 0, error)))
        return
    with sock:
        channel.send(pickle.dumps(Message.ready()))
        read_packets = dropped_batches = dropped_packets = 0
        while True:
            packets, infos = sock.read_multi_packets(config.batch_size)
            if not packets:
                continue
            read_packets += len(packets)
            stats = sock.get_stats()
            kernel_dropped = (stats[0] if isinstance(stats, list) else stats).rx_dropped
            for part, part_infos in _parts(packets, infos, config.max_message_bytes):
                message = Message(part, part_infos, read_packets, dropped_batches, dropped_packets, kernel_dropped)
                try:
                    channel.send(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL), socket.MSG_DONTWAIT)
                except BlockingIOError:
                    dropped_batches += 1
                    dropped_packets += len(part)
                except OSError as error:
                    if error.errno in (errno.EPIPE, errno.ECONNRESET, errno.ECONNREFUSED):
                        return  # the parent is gone
                    raise


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, _stop)
    # The child must not outlive its parent (it would hold the queue): SIGTERM when it dies.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(argv[2]):  # the parent died before prctl took effect
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    config: ChildConfig = pickle.load(sys.stdin.buffer)
    channel = socket.socket(fileno=int(argv[1]))
    try:
        channel.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, config.buffer_bytes)
    except PermissionError:
        channel.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.buffer_bytes)
    with channel:
        run(channel, config)
