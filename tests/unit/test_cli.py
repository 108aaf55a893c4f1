"""The command line's pure parts, without the kernel: argument checks, tcpdump-like summary
lines, diagnose's judgements, the netdev netlink encoding and the generator's frame.

The commands themselves run on veth pairs in ``tests/integration/test_cli.py``.
"""

from __future__ import annotations

import resource
import struct
import time

import dpkt
import pytest

from xdppacket import CaptureInfo, XDPMode, _netdev
from xdppacket.cli import main
from xdppacket.cli import summary as summary_module
from xdppacket.cli.diagnose import (
    capability_finding,
    frame_size_finding,
    memlock_finding,
    parse_cap_eff,
)
from xdppacket.cli.generate import build_frame
from xdppacket.cli.summary import link_line, summarize

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
TIMESTAMP_NS = 1_700_000_000_123_456_789
CLOCK = time.strftime("%H:%M:%S", time.localtime(1_700_000_000)) + ".123456"


def info_for(frame: bytes) -> CaptureInfo:
    return CaptureInfo(TIMESTAMP_NS, len(frame), len(frame), 1, 0)


def ethernet(payload: object, ethertype: int) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(dst=MAC_B, src=MAC_A, type=ethertype, data=payload))


# ------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize("argv", [
    ["capture"],
    ["capture", "-i", "lo", "-c", "0"],
    ["capture", "-i", "lo", "--duration", "-1"],
    ["capture", "-i", "lo", "--mode", "hw"],
    ["capture", "-i", "lo", "--queues", "some"],
    ["replay", "-i", "lo"],
    ["generate", "-i", "lo", "--count", "5", "--duration", "1"],
    ["generate", "-i", "lo", "--dst", "01:02:03"],
    ["unknown"],
])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage: xdppacket" in capsys.readouterr().err


def test_a_runtime_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capture", "-i", "lo", "--pcapng"]) == 1
    assert capsys.readouterr().err == "xdppacket: error: --pcapng needs -w FILE\n"


# ------------------------------------------------------------------------------- summaries


def test_udp_tcp_arp_and_ipv6_lines_read_like_tcpdump() -> None:
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    udp = dpkt.udp.UDP(sport=1234, dport=53, data=b"hello")
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_UDP, data=udp)
    ip.len = len(ip)
    frame = ethernet(ip, dpkt.ethernet.ETH_TYPE_IP)
    assert summarize(frame, info_for(frame)) == f"{CLOCK} IP 10.0.0.1.1234 > 10.0.0.2.53: UDP, length 5"

    tcp = dpkt.tcp.TCP(sport=40000, dport=80, seq=7, flags=dpkt.tcp.TH_SYN)
    ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, data=tcp)
    ip.len = len(ip)
    frame = ethernet(ip, dpkt.ethernet.ETH_TYPE_IP)
    assert summarize(frame, info_for(frame)) == (
        f"{CLOCK} IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 7, length 0")

    arp = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=MAC_A, spa=src, tha=bytes(6), tpa=dst)
    frame = ethernet(arp, dpkt.ethernet.ETH_TYPE_ARP)
    assert summarize(frame, info_for(frame)) == f"{CLOCK} ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28"

    icmp6 = dpkt.icmp6.ICMP6(type=128, code=0, data=b"\x00" * 8)
    ip6 = dpkt.ip6.IP6(src=bytes(15) + b"\x01", dst=bytes(15) + b"\x02", nxt=58, hlim=64, data=icmp6)
    ip6.plen = len(icmp6)
    frame = ethernet(ip6, dpkt.ethernet.ETH_TYPE_IP6)
    assert summarize(frame, info_for(frame)) == f"{CLOCK} IP6 ::1 > ::2: ICMP6 type 128 code 0, length 12"


def test_other_frames_get_the_link_level_line_with_or_without_dpkt(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = MAC_B + MAC_A + struct.pack("!H", 0x88B5) + bytes(46)
    expected = (f"{CLOCK} 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype Unknown (0x88b5), "
                "length 60")
    assert summarize(frame, info_for(frame)) == expected
    ipv4_garbage = MAC_B + MAC_A + b"\x08\x00" + b"\xff" * 10
    monkeypatch.setattr(summary_module, "dpkt", None)  # as without the cli extra
    assert summarize(frame, info_for(frame)) == expected
    assert summarize(ipv4_garbage, info_for(ipv4_garbage)).endswith("ethertype IPv4 (0x0800), length 24")
    assert link_line(b"\x01\x02", 2) == "[|ether], length 2"


# -------------------------------------------------------------------------------- diagnose


def test_frame_size_against_the_mtu() -> None:
    assert frame_size_finding("x", 1500).problem is None
    assert "they fit OptFrameSize(2048) (1792 bytes)" in frame_size_finding("x", 1500).text
    assert "not OptFrameSize(2048)" in frame_size_finding("x", 1775).text  # 1775 + 18 > 1792
    assert frame_size_finding("x", 3822).problem is None  # 3822 + 18 = 3840, the 4096 frame's room
    jumbo = frame_size_finding("x", 3823)
    assert jumbo.problem == ("use OptMultiBuffer() for jumbo frames, or lower the MTU to 3822 or less "
                             "(ip link set dev x mtu 3822)")


def test_capabilities() -> None:
    status = "Name:\tpython\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n"
    everything = parse_cap_eff(status)
    assert everything == 0x1FFFFFFFFFF
    assert capability_finding(everything).problem is None
    assert capability_finding(0).problem == (
        "missing CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF (or CAP_SYS_ADMIN): run as root, or grant them "
        "(setcap, or systemd's AmbientCapabilities=)")
    net_admin_raw_sys_admin = (1 << 12) | (1 << 13) | (1 << 21)
    assert capability_finding(net_admin_raw_sys_admin).problem is None
    with pytest.raises(ValueError, match="CapEff"):
        parse_cap_eff("Name:\tx\n")


def test_memlock() -> None:
    ipc_lock = 1 << 14
    eight_mib = 8 << 20
    assert "not charged" in memlock_finding(eight_mib, eight_mib, ipc_lock, 4).text
    low = memlock_finding(eight_mib, eight_mib, 0, 4)  # 4 queues lock 32 MiB
    assert low.problem is not None
    assert "ulimit -l" in low.problem
    assert memlock_finding(eight_mib, eight_mib, 0, 1).problem is None
    unlimited = memlock_finding(resource.RLIM_INFINITY, resource.RLIM_INFINITY, 0, 64)
    assert unlimited.problem is None
    assert unlimited.text.startswith("RLIMIT_MEMLOCK unlimited (hard unlimited)")


# ---------------------------------------------------------------------------------- netdev


def test_netdev_requests_and_replies_are_encoded_as_the_kernel_expects() -> None:
    request = _netdev.encode_get_family(b"netdev", seq=7)
    # nlmsghdr (len, GENL_ID_CTRL, REQUEST|ACK, seq 7, pid 0), genlmsghdr (GETFAMILY, v1),
    # then CTRL_ATTR_FAMILY_NAME "netdev\0" padded to 4 bytes.
    assert request == (struct.pack("=IHHII", 32, 0x10, 0x5, 7, 0) + struct.pack("=BBH", 3, 1, 0)
                       + struct.pack("=HH", 11, 2) + b"netdev\0" + b"\0")
    dev_get = _netdev.encode_dev_get(family_id=28, ifindex=5, seq=8)
    assert dev_get == (struct.pack("=IHHII", 28, 28, 0x5, 8, 0) + struct.pack("=BBH", 1, 1, 0)
                       + struct.pack("=HHI", 8, 1, 5))
    family_reply = struct.pack("=BBH", 1, 2, 0) + struct.pack("=HHH2x", 6, 1, 28)
    assert _netdev.decode_family_id(family_reply) == 28
    dev_reply = (struct.pack("=BBH", 1, 1, 0) + struct.pack("=HHI", 8, 1, 5)
                 + struct.pack("=HHQ", 12, 3, 0b0101011) + struct.pack("=HHI", 8, 4, 1))
    features = _netdev.decode_dev(dev_reply)
    assert features == _netdev.XdpFeatures(flags=0b0101011, zc_max_segs=1)
    assert (features.native, features.zero_copy, features.multi_buffer) == (True, True, True)
    assert features.names == ["basic", "redirect", "xsk-zerocopy", "rx-sg"]


# -------------------------------------------------------------------------------- generate


def test_the_generated_frame() -> None:
    frame = build_frame(300, b"\xff" * 6, MAC_A)
    assert frame[:14] == b"\xff" * 6 + MAC_A + b"\x88\xb5"
    assert frame[14:] == (bytes(range(256)) * 2)[:286]
    with pytest.raises(ValueError, match="--size 13: a frame needs at least 14 bytes"):
        build_frame(13, b"\xff" * 6, MAC_A)


class _OneFrameAtATime:
    """Stands in for XDPMultiQueue: a short batch (one frame) per read, 5 reads in all."""

    def __init__(self) -> None:
        self.reads = 0

    def zero_copy_read_multi_packets(self, wanted: int) -> tuple[list[bytes], list[CaptureInfo]]:
        self.reads += 1
        return [bytes(60)], [info_for(bytes(60))]


class _Sink:
    def __init__(self) -> None:
        self.frames = 0

    def write_batch(self, views: list[bytes], infos: list[CaptureInfo]) -> None:
        self.frames += len(views)


@pytest.mark.parametrize(("write_to", "gathers"), [("out.pcap", True), (None, False)])
def test_a_file_capture_lets_frames_gather_after_a_short_batch(
    monkeypatch: pytest.MonkeyPatch, write_to: str | None, gathers: bool
) -> None:
    """Written to a file, a slow stream is read in batches (like tcpdump's buffer timeout);
    printed, each frame shows at once."""
    from xdppacket.cli import capture

    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    request = capture.CaptureRequest("xa", 1, XDPMode.SKB, write_to, False, 5, None, 65535, "")
    sink = _Sink()
    assert capture._capture_loop(_OneFrameAtATime(), sink, request, None) == 5  # type: ignore[arg-type]
    assert sink.frames == 5
    # The last read asked for the one frame still wanted: not short, no nap.
    assert len(naps) == (4 if gathers else 0)
    assert all(0 < nap <= capture._GATHER_S for nap in naps)


def test_a_gathering_pause_lasts_until_the_next_batch_would_be_full() -> None:
    """At the rate the last batch came, never longer than the cap: the ring cannot overflow."""
    from xdppacket.cli.capture import _GATHER_S, _gathering_pause

    assert _gathering_pause(got=256, wanted=1024, since_previous_read=0.0005) == pytest.approx(0.0015)
    assert _gathering_pause(got=1000, wanted=1024, since_previous_read=0.001) == pytest.approx(0.000024)
    assert _gathering_pause(got=1, wanted=1024, since_previous_read=0.01) == _GATHER_S  # a slow stream
