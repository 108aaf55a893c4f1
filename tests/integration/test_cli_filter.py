"""``xdppacket capture EXPRESSION``: the filter runs in XDP, the host keeps everything else.

The set-up is that of ``test_filter_sockets``: 192.0.2.1 on the captured end, a UDP server
on port 5000, the peer sending UDP frames and ARP requests. The capture's output is
compared with the exact DNS frames sent; the server's datagrams and the kernel's ARP
replies show that the other frames went on to the network stack.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.test_cli import cli, closing_lines, finish, run_cli, wait_listening
from tests.integration.test_filter_sockets import (
    APP_PORT,
    DNS_PORT,
    PEER_IP,
    arp_frames,
    arp_listener,
    arp_reply,
    arp_request,
    datagrams,
    give_address,
    udp_frame,
    udp_server,
)
from tests.netns import AfPacketSender, VethPair
from tests.xdp_helpers import attached_prog_id
from xdppacket.pcap import PcapReader


@pytest.fixture
def host(veth_pair: VethPair) -> VethPair:
    return give_address(veth_pair)


@pytest.mark.parametrize("mode", ["drv", "skb"])
def test_capture_with_a_filter_writes_only_dns_and_the_host_keeps_the_rest(
    host: VethPair, mode: str, tmp_path: Path
) -> None:
    dns = [udp_frame(host, 40000 + i, DNS_PORT, b"query %d" % i) for i in range(3)]
    app = [udp_frame(host, 41000 + i, APP_PORT, b"datagram %d" % i) for i in range(3)]
    path = tmp_path / "dns.pcap"
    with udp_server(APP_PORT) as app_server, arp_listener(host.peer) as arp, \
            AfPacketSender(host.peer) as peer, \
            cli("capture", "-i", host.capture, "--mode", mode, "-w", str(path), "-c", "3",
                "udp", "port", "53") as capture:
        wait_listening(capture)
        for frames in zip(app, dns):
            for frame in frames:
                peer.send(frame)
        peer.send(arp_request(host))
        _, stderr = finish(capture)
        assert datagrams(app_server, 3) == [(b"datagram %d" % i, (PEER_IP, 41000 + i)) for i in range(3)]
        assert arp_frames(arp, 1) == [arp_reply(host)]
    assert stderr.endswith(closing_lines(3))
    with PcapReader(path) as reader:
        assert [frame for frame, _ in reader] == dns
    assert attached_prog_id(host.capture_index) == 0


def test_capture_prints_only_the_frames_the_filter_matches(host: VethPair) -> None:
    with cli("capture", "-i", host.capture, "-c", "1", "udp dst port 53") as capture, \
            AfPacketSender(host.peer) as peer:
        wait_listening(capture)
        peer.send(udp_frame(host, 41000, APP_PORT, b"not for the capture"))
        peer.send(udp_frame(host, 40000, DNS_PORT, b"query"))
        stdout, stderr = finish(capture)
    (line,) = stdout.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{6} IP 192\.0\.2\.2\.40000 > 192\.0\.2\.1\.53: .*", line), line
    assert stderr == closing_lines(1)


def test_a_bad_expression_is_refused_before_anything_is_attached(host: VethPair) -> None:
    result = run_cli("capture", "-i", host.capture, "tcp", "and", "and", "udp")
    assert result.returncode != 0
    assert "syntax error at column 9: unexpected token 'and'" in result.stderr
    assert "listening on" not in result.stderr
    assert attached_prog_id(host.capture_index) == 0
