"""``_libc.writev_iovecs``: the capture fast path's one system call, partial writes included.

The partial writes are real ones: a pipe shrunk to one page, drained slowly by a thread,
while a timer signal keeps interrupting the blocked ``writev`` (the kernel then returns
what it wrote so far), as Ctrl-C can while ``capture -w -`` writes into a pipe.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import random
import signal
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from xdppacket._libc import writev_iovecs

_F_SETPIPE_SZ = 1031


def spans_of(memory: bytes, count: int) -> list[tuple[int, int]]:
    """``count`` spans (offset, size) into ``memory``, in no particular order, some overlapping."""
    chooser = random.Random(count)
    spans = []
    for _ in range(count):
        size = chooser.randrange(1, 200)
        spans.append((chooser.randrange(0, len(memory) - size), size))
    return spans


def iovecs_of(base: int, spans: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("<QQ", base + offset, size) for offset, size in spans)


@pytest.fixture
def interrupting_timer() -> Iterator[None]:
    """SIGALRM every millisecond, handled in Python (so a blocked system call is interrupted)."""
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: None)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)


def slow_drain(fd: int, into: bytearray) -> threading.Thread:
    def drain() -> None:
        while chunk := os.read(fd, 4096):
            into.extend(chunk)
            time.sleep(0.0005)

    thread = threading.Thread(target=drain)
    thread.start()
    return thread


@pytest.mark.parametrize("count", [300, 2500], ids=["one call", "beyond IOV_MAX"])
def test_every_span_arrives_in_order_through_interrupted_writes(interrupting_timer: None, count: int) -> None:
    memory = random.Random(1).randbytes(65536)
    buffer = ctypes.create_string_buffer(memory, len(memory))
    spans = spans_of(memory, count)
    expected = b"".join(memory[offset : offset + size] for offset, size in spans)
    read_fd, write_fd = os.pipe()
    received = bytearray()
    try:
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, 4096)
        drainer = slow_drain(read_fd, received)
        try:
            writev_iovecs(write_fd, iovecs_of(ctypes.addressof(buffer), spans), count, len(expected))
        finally:
            os.close(write_fd)
            drainer.join(timeout=30)
    finally:
        os.close(read_fd)
    assert bytes(received) == expected


def test_an_error_is_raised_with_its_errno() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    buffer = ctypes.create_string_buffer(b"x" * 16)
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        with pytest.raises(BrokenPipeError, match="writev"):
            writev_iovecs(write_fd, iovecs_of(ctypes.addressof(buffer), [(0, 16)]), 1, 16)
    finally:
        signal.signal(signal.SIGPIPE, previous)
        os.close(write_fd)
