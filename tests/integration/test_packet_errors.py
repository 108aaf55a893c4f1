"""Bad input to ``XDPPacket``: each is refused with the right exception and a clear message.

Bad options and interface names must be refused before any kernel resource exists:
no XDP program on the interface, not one file descriptor more. A refused packet must
queue nothing: no tx counter moves and the next frame written is the first the peer
sees. A closed socket refuses everything but ``close()``.
"""

from __future__ import annotations

import contextlib
import errno
import select
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.netns import AfPacketCapture, VethPair, make_test_frame, run_command
from tests.xdp_helpers import (
    BOTH_MODES,
    attached_prog_id,
    frames_from_peer,
    frames_to_peer,
    open_fd_count,
    send_frames,
    watchdog,
)
from xdppacket import (
    IO_MODE_BLOCK,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    OptFrameSize,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptQueueCount,
    OptQueueID,
    OptRingSize,
    OptXDPMode,
    XDPMode,
    XDPPacket,
)


@contextlib.contextmanager
def leaves_nothing_behind(pair: VethPair) -> Iterator[None]:
    """The block attaches no XDP program to the capture end and leaves no extra fd open."""
    fds = open_fd_count()
    yield
    assert attached_prog_id(pair.capture_index) == 0
    assert open_fd_count() == fds


# ------------------------------------------------------------------ options and interfaces

# Each builds the options inside pytest.raises: a bad option object fails as it is made.
BAD_OPTIONS: list[tuple[str, Callable[[], tuple[Any, ...]], type[Exception], str]] = [
    ("unknown object", lambda: (object(),), TypeError,
     r"^XDPPacket: unknown option <object object at .*>; options are OptNumFrames, "),
    ("bare int", lambda: (64,), TypeError, r"^XDPPacket: unknown option 64; options are "),
    ("bare mode", lambda: (XDP_MODE_SKB,), TypeError, r"^XDPPacket: unknown option "),
    ("option class", lambda: (OptNumFrames,), TypeError, r"^XDPPacket: unknown option "),
    ("queue count", lambda: (OptQueueCount(2),), TypeError,
     r"^XDPPacket does not take OptQueueCount; use OptQueueID$"),
    ("ring beyond frames", lambda: (OptNumFrames(64), OptRingSize(256)), ValueError,
     r"^OptRingSize\(256\) exceeds twice OptNumFrames\(64\); use a ring size of at most 128"),
    ("frames not power of two", lambda: (OptNumFrames(100),), ValueError,
     r"^OptNumFrames\(100\): must be a power of two from 64 to 262144$"),
    ("frames str", lambda: (OptNumFrames("1024"),), TypeError, r"^OptNumFrames takes an int"),  # type: ignore[arg-type]
    ("frame size", lambda: (OptFrameSize(1500),), ValueError,
     r"^OptFrameSize\(1500\): must be 2048 or 4096$"),
    ("ring size float", lambda: (OptRingSize(64.0),), TypeError, r"^OptRingSize takes an int"),  # type: ignore[arg-type]
    ("ring size small", lambda: (OptRingSize(32),), ValueError, r"^OptRingSize\(32\): must be "),
    ("negative timeout", lambda: (OptPollTimeout(-1),), ValueError,
     r"^OptPollTimeout\(-1\): must be from 0 to 86400000000 microseconds \(one day\); to wait "),
    ("mode str", lambda: (OptXDPMode("skb"),), TypeError, r"^OptXDPMode takes XDP_MODE_DRV or "),  # type: ignore[arg-type]
    ("io mode bool", lambda: (OptIoMode(True),), TypeError, r"^OptIoMode takes IO_MODE_BLOCK or "),  # type: ignore[arg-type]
    ("io mode swapped", lambda: (OptIoMode(XDP_MODE_SKB),), TypeError, r"^OptIoMode takes "),  # type: ignore[arg-type]
    ("xdp mode swapped", lambda: (OptXDPMode(IO_MODE_BLOCK),), TypeError, r"^OptXDPMode takes "),  # type: ignore[arg-type]
    ("queue id negative", lambda: (OptQueueID(-1),), ValueError, r"^OptQueueID\(-1\): must be "),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make_options", "error", "pattern"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_OPTIONS],
)
def test_bad_options_are_refused_before_any_kernel_resource(
    veth_pair: VethPair, make_options: Callable[[], tuple[Any, ...]], error: type[Exception],
    pattern: str,
) -> None:
    with leaves_nothing_behind(veth_pair), pytest.raises(error, match=pattern):
        XDPPacket(veth_pair.capture, *make_options())


@pytest.mark.parametrize(
    ("ifname", "error", "pattern"),
    [
        ("nosuch0", FileNotFoundError,
         r"no network interface named 'nosuch0' in this network namespace; list them with `ip link`"),
        ("", ValueError, r"^interface name is empty"),
        ("x" * 16, ValueError, r"is 16 bytes long; Linux allows at most 15$"),
        ("xa 1", ValueError, r"^interface name 'xa 1' is not valid"),
        (b"lo", TypeError, r"^interface name must be a str, not bytes$"),
        (None, TypeError, r"^interface name must be a str, not NoneType$"),
    ],
)  # fmt: skip
def test_bad_interface_names_are_refused(
    veth_pair: VethPair, ifname: Any, error: type[Exception], pattern: str
) -> None:
    with leaves_nothing_behind(veth_pair), pytest.raises(error, match=pattern) as caught:
        XDPPacket(ifname)
    if error is FileNotFoundError:
        assert caught.value.errno == errno.ENODEV  # type: ignore[attr-defined]


@pytest.mark.parametrize("veth_pair", [4], indirect=True)
@pytest.mark.parametrize("queue_id", [4, 63])
def test_a_queue_beyond_the_interface_is_refused(veth_pair: VethPair, queue_id: int) -> None:
    message = (
        rf"^OptQueueID\({queue_id}\): {veth_pair.capture} has 4 rx queue\(s\), so the queue id "
        rf"must be below 4$"
    )
    with leaves_nothing_behind(veth_pair), pytest.raises(ValueError, match=message):
        XDPPacket(veth_pair.capture, OptQueueID(queue_id))


def test_native_mode_refused_by_the_driver_names_the_fix(veth_pair: VethPair) -> None:
    # veth refuses native XDP when its peer's MTU leaves a frame no room in one page.
    run_command("ip", "link", "set", veth_pair.peer, "mtu", "4000")
    with leaves_nothing_behind(veth_pair), pytest.raises(OSError) as caught:  # noqa: PT011
        XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_DRV))
    assert caught.value.errno == errno.ERANGE
    assert str(caught.value).startswith(
        f"[Errno 34] attaching the XDP program to {veth_pair.capture} in native (XDP_MODE_DRV) "
        f"mode failed: "
    )
    assert str(caught.value).endswith(
        "(the MTU is too large for native XDP on this device (for veth: the MTU of its peer); "
        "lower it, e.g. to 1500, or use OptXDPMode(XDP_MODE_SKB))"
    )
    with XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)) as sock:  # the suggested way out
        assert sock.options.xdp_mode is XDP_MODE_SKB


# --------------------------------------------------------------------------------- packets

# (packet, capture MTU, what the refusal says). With a 2048-byte UMEM frame, the longest
# packet is the frame or, if less, what the MTU lets out: MTU + Ethernet header + VLAN tag.
REFUSED_SIZES = [
    pytest.param(b"", 1500, "^cannot send an empty packet$", id="empty-bytes"),
    pytest.param(bytearray(), 1500, "^cannot send an empty packet$", id="empty-bytearray"),
    pytest.param(memoryview(b"abc")[3:], 1500, "^cannot send an empty packet$", id="empty-view"),
    pytest.param(bytes(2049), 3000, r"^packet of 2049 bytes is longer than the 2048 bytes this "
                 r"socket can send; use OptFrameSize\(4096\)$", id="beyond-frame"),
    pytest.param(bytes(1519), 1500, r"^packet of 1519 bytes is longer than the 1518 bytes this "
                 r"socket can send; raise the MTU of xa\d+ \(ip link set dev xa\d+ mtu N\)$",
                 id="beyond-mtu"),
    pytest.param(bytearray(65536), 1500, "^packet of 65536 bytes is longer than ", id="huge"),
]  # fmt: skip


def write(sock: XDPPacket, writer: str, batch: list[Any]) -> None:
    """``write_packet(batch[0])`` or ``write_multi_packets(batch)``."""
    if writer == "write_packet":
        sock.write_packet(batch[0])
    else:
        sock.write_multi_packets(batch)


@pytest.mark.filterwarnings("ignore::xdppacket._frame_fit.FramesTooLongWarning")  # MTUs beyond the frame, on purpose
@BOTH_MODES
@pytest.mark.parametrize(("packet", "mtu", "pattern"), REFUSED_SIZES)
@pytest.mark.parametrize("writer", ["write_packet", "write_multi_packets"])
def test_empty_or_oversized_packets_queue_nothing(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode, packet: Any, mtu: int,
    pattern: str, writer: str,
) -> None:
    good = frames_to_peer(veth_pair, 3)
    run_command("ip", "link", "set", veth_pair.capture, "mtu", str(mtu))
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptFrameSize(2048)) as sock:
        # A bad packet anywhere in a batch refuses the whole batch, good ones before it too.
        batch = [packet] if writer == "write_packet" else [good[0], packet, good[1]]
        with pytest.raises(ValueError, match=pattern):
            write(sock, writer, batch)
        assert (sock.get_stats().tx_packets, sock.get_stats().tx_bytes) == (0, 0)
        sock.write_packet(good[2])
        # Had anything been queued before the refusal, it would arrive first.
        assert peer_capture.recv_frames(1, timeout=5) == [good[2]]
        assert sock.get_stats().tx_packets == 1


@pytest.mark.filterwarnings("ignore::xdppacket._frame_fit.FramesTooLongWarning")  # MTUs beyond the frame, on purpose
@BOTH_MODES
@pytest.mark.parametrize(
    ("mtu", "frame_size", "size"),
    [
        pytest.param(2034, 2048, 2048, id="whole-frame"),  # 2048 - 14 bytes of payload
        pytest.param(1500, 4096, 1518, id="mtu-plus-header-and-vlan-tag"),
    ],
)
def test_a_packet_as_long_as_allowed_is_sent(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode, mtu: int, frame_size: int,
    size: int,
) -> None:
    frame = make_test_frame(size, 1, veth_pair.peer_mac, veth_pair.capture_mac)
    for ifname in (veth_pair.capture, veth_pair.peer):
        run_command("ip", "link", "set", ifname, "mtu", str(mtu))
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptFrameSize(frame_size)) as sock:
        sock.write_packet(frame)
        assert peer_capture.recv_frames(1, timeout=5) == [frame]
        assert sock.get_stats().tx_bytes == size


@BOTH_MODES
@pytest.mark.parametrize("packet", ["text", 42, None, [0x88, 0xB5], object()], ids=repr)
def test_non_bytes_packets_are_a_type_error(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode, packet: object
) -> None:
    good = frames_to_peer(veth_pair, 2)
    pattern = "^a packet must be bytes-like \\(bytes, bytearray, memoryview\\), got "
    with XDPPacket(veth_pair.capture, OptXDPMode(mode)) as sock:
        with pytest.raises(TypeError, match=pattern + type(packet).__name__):
            sock.write_packet(packet)
        with pytest.raises(TypeError, match=pattern):
            sock.write_multi_packets([good[0], packet])
        assert sock.get_stats().tx_packets == 0
        sock.write_packet(good[1])
        assert peer_capture.recv_frames(1, timeout=5) == [good[1]]


ONE_PACKET_NOT_A_LIST = r"^write_multi_packets takes a sequence of packets, not one packet: wrap it in a list$"


@pytest.mark.parametrize(
    ("batch", "pattern"),
    [(None, "^write_multi_packets takes a list of packets, got NoneType$"),
     (42, "^write_multi_packets takes a list of packets, got int$"), (b"\x88\xb5", ONE_PACKET_NOT_A_LIST),
     ("text", ONE_PACKET_NOT_A_LIST),
     ({b"x" * 60}, "^write_multi_packets takes an ordered sequence of packets .* not a set, whose order"),
     ({b"x" * 60: 1}, "^write_multi_packets takes an ordered sequence of packets .* not a dict, whose order")],
    ids=repr,
)
def test_write_multi_packets_needs_a_sequence_of_packets(veth_pair: VethPair, batch: Any, pattern: str) -> None:
    with XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)) as sock:
        with pytest.raises(TypeError, match=pattern):
            sock.write_multi_packets(batch)
        assert sock.get_stats().tx_packets == 0


# --------------------------------------------------------------------------------- reading


@pytest.mark.parametrize("variant", ["read_multi_packets", "zero_copy_read_multi_packets"])
@pytest.mark.parametrize(
    ("max_packets", "error", "pattern"),
    [
        (0, ValueError, "^max_packets must be at least 1, got 0$"),
        (-5, ValueError, "^max_packets must be at least 1, got -5$"),
        (True, TypeError, "^max_packets takes an int, got bool$"),
        (16.0, TypeError, "^max_packets takes an int, got float$"),
        ("16", TypeError, "^max_packets takes an int, got str$"),
        (None, TypeError, "^max_packets takes an int, got NoneType$"),
    ],
)
def test_bad_max_packets_is_refused_and_consumes_nothing(
    veth_pair: VethPair, variant: str, max_packets: Any, error: type[Exception], pattern: str
) -> None:
    frames = frames_from_peer(veth_pair, 2)
    with XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)) as sock:
        send_frames(veth_pair.peer, frames)
        with pytest.raises(error, match=pattern):
            getattr(sock, variant)(max_packets)
        with watchdog(10):
            packets, _ = sock.read_multi_packets(2)
        assert packets == frames[: len(packets)]


# ---------------------------------------------------------------------- closed and lifetime

CALLS_ON_A_CLOSED_SOCKET: dict[str, Callable[[XDPPacket], object]] = {
    "read_packet_data": lambda sock: sock.read_packet_data(),
    "zero_copy_read_packet_data": lambda sock: sock.zero_copy_read_packet_data(),
    "read_multi_packets": lambda sock: sock.read_multi_packets(),
    "zero_copy_read_multi_packets": lambda sock: sock.zero_copy_read_multi_packets(4),
    "write_packet": lambda sock: sock.write_packet(bytes(60)),
    "write_multi_packets": lambda sock: sock.write_multi_packets([bytes(60)]),
    "get_stats": lambda sock: sock.get_stats(),
    "fileno": lambda sock: sock.fileno(),
}


@pytest.mark.parametrize("call", list(CALLS_ON_A_CLOSED_SOCKET))
def test_every_method_of_a_closed_socket_raises(veth_pair: VethPair, call: str) -> None:
    sock = XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB))
    sock.close()
    with watchdog(5), pytest.raises(ValueError, match="^I/O operation on a closed XDPPacket$"):
        CALLS_ON_A_CLOSED_SOCKET[call](sock)


def test_close_is_idempotent_and_closed_says_so(veth_pair: VethPair) -> None:
    sock = XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB))
    assert not sock.closed
    assert repr(sock) == f"<XDPPacket {veth_pair.capture} queue 0 open>"
    sock.close()
    assert sock.closed
    sock.close()
    assert sock.closed
    assert repr(sock) == f"<XDPPacket {veth_pair.capture} queue 0 closed>"
    assert attached_prog_id(veth_pair.capture_index) == 0


def test_the_context_manager_closes_even_on_an_exception(veth_pair: VethPair) -> None:
    used: list[XDPPacket] = []

    def use_then_fail() -> None:
        with XDPPacket(veth_pair.capture) as sock:
            used.append(sock)
            assert not sock.closed
            assert attached_prog_id(veth_pair.capture_index) != 0
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        use_then_fail()
    assert used[0].closed
    assert attached_prog_id(veth_pair.capture_index) == 0


def test_attributes_describe_the_socket(veth_pair: VethPair) -> None:
    with XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB), OptPollTimeout(7)) as sock:
        assert (sock.ifname, sock.ifindex, sock.queue_id) == (
            veth_pair.capture, veth_pair.capture_index, 0,
        )  # fmt: skip
        assert (sock.options.xdp_mode, sock.options.poll_timeout_us) == (XDP_MODE_SKB, 7)


@BOTH_MODES
def test_fileno_works_with_select(veth_pair: VethPair, mode: XDPMode) -> None:
    frame = frames_from_peer(veth_pair, 2)[1]
    with XDPPacket(veth_pair.capture, OptXDPMode(mode)) as sock:
        fd = sock.fileno()
        assert fd == sock.fileno()
        assert select.select([fd], [], [], 0) == ([], [], [])  # nothing received yet
        assert select.select([], [sock], [], 0)[1] == [sock]  # room in the tx ring
        send_frames(veth_pair.peer, [frame])
        assert select.select([sock], [], [], 5)[0] == [sock]
        assert sock.read_packet_data()[0] == frame
        assert select.select([fd], [], [], 0)[0] == []
