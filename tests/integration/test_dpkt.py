"""dpkt on zero-copy views: decode within a batch; what is kept keeps its frame from the kernel."""

from __future__ import annotations

import gc

import dpkt

from tests.netns import VethPair
from tests.xdp_helpers import send_frames, settle
from xdppacket import (
    IO_MODE_NONBLOCK,
    OptIoMode,
    OptNumFrames,
    OptRingSize,
    OptXDPMode,
    XDPMode,
    XDPPacket,
)


def udp_frames(pair: VethPair, count: int) -> list[bytes]:
    """Real Ethernet/IPv4/UDP frames from the peer, payload ``b"frame <i>"``."""
    frames = []
    for i in range(count):
        udp = dpkt.udp.UDP(sport=40000 + i, dport=5000, data=f"frame {i}".encode())
        udp.ulen = len(udp)
        ip = dpkt.ip.IP(src=bytes([10, 0, 0, 2]), dst=bytes([10, 0, 0, 1]), p=dpkt.ip.IP_PROTO_UDP, data=udp)
        ip.len = len(ip)
        frames.append(bytes(dpkt.ethernet.Ethernet(dst=pair.capture_mac, src=pair.peer_mac,
                                                   type=dpkt.ethernet.ETH_TYPE_IP, data=ip)))
    return frames


def test_dpkt_decodes_zero_copy_views_and_what_it_keeps_stays_exact(veth_pair: VethPair) -> None:
    frames = udp_frames(veth_pair, 48)
    small = (OptNumFrames(64), OptRingSize(64))
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), OptIoMode(IO_MODE_NONBLOCK), *small) as sock:
        send_frames(veth_pair.peer, frames[:16])
        settle()
        views, _ = sock.zero_copy_read_multi_packets(16)
        decoded = [dpkt.ethernet.Ethernet(view) for view in views]  # within the batch: safe
        assert [(eth.data.data.sport, bytes(eth.data.data.data)) for eth in decoded] == [
            (40000 + i, f"frame {i}".encode()) for i in range(16)
        ]
        kept = decoded[3]  # dpkt keeps slices of the view: the batch's frames stay lent
        del decoded, views
        # More traffic than the free frames could carry if the kept batch were reused.
        for start in range(16, 48, 16):
            send_frames(veth_pair.peer, frames[start : start + 16])
            settle()
            assert [bytes(p) for p in sock.read_multi_packets(16)[0]] == frames[start : start + 16]
            assert sock.check_frames()["rx"]["lent"] == 16  # held for the dpkt object
            assert bytes(kept.data.data.data) == b"frame 3"  # never overwritten
        del kept
        gc.collect()
        sock.read_multi_packets(1)  # the next read takes the batch back
        assert sock.check_frames()["rx"]["lent"] == 0
