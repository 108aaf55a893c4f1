"""``OptFilter`` on real sockets: the filter's frames reach AF_XDP, the host keeps the rest.

The captured end of a veth pair gets the address 192.0.2.1 (inside the test's private
network namespace) and ordinary UDP servers on ports 5000 and 53. The peer sends real
IPv4/UDP frames and ARP requests through AF_PACKET (or AF_XDP, to reach each queue of an
``XDPMultiQueue``). With ``OptFilter("udp port 53")`` the DNS frames arrive on the AF_XDP
socket, byte for byte, and never reach the port 53 server, while the port 5000 server
gets its datagrams and the kernel answers ARP, exactly as with no XDP program at all.

Sockets of one interface share one program, hence one filter: another filter (or none)
is refused in one process, and across processes (a child process holds the program).
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import AfPacketSender, VethFactory, VethPair, run_command
from tests.xdp_helpers import (
    BOTH_MODES,
    attached_prog_id,
    child_process,
    expect_line,
    make_multiqueue_veth,
    open_fd_count,
    peer_tx_queue_reaching,
    read_frames,
    read_multiqueue,
    read_until_empty,
    send_on_rx_queue,
    settle,
    split_by_queue,
    wait_until,
)
from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_SKB,
    OptFilter,
    OptIoMode,
    OptPollTimeout,
    OptQueueCount,
    OptQueueID,
    OptXDPMode,
    OptXDPProgram,
    XDPMode,
    XDPMultiQueue,
    XDPPacket,
)

CAPTURE_IP = "192.0.2.1"
PEER_IP = "192.0.2.2"
APP_PORT = 5000
DNS_PORT = 53
DNS_FILTER = "udp port 53"
ETH_P_IP, ETH_P_ARP = 0x0800, 0x0806
ARP_REQUEST, ARP_REPLY = 1, 2
GLOBALS = str(Path(__file__).resolve().parents[1] / "bpf" / "globals.o")


# --- Frames -----------------------------------------------------------------------------


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(pair: VethPair, sport: int, dport: int, payload: bytes,
              src_ip: str = PEER_IP) -> bytes:
    """An IPv4/UDP frame peer -> capture (UDP checksum 0: none, which IPv4 allows)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0x4242, 0x4000, 64, 17, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(CAPTURE_IP))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return pair.capture_mac + pair.peer_mac + struct.pack("!H", ETH_P_IP) + header + udp


def _arp(op: int, sender_mac: bytes, sender_ip: str, target_mac: bytes, target_ip: str) -> bytes:
    return (struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, op) + sender_mac + socket.inet_aton(sender_ip)
            + target_mac + socket.inet_aton(target_ip))


def arp_request(pair: VethPair, sender_ip: str = PEER_IP) -> bytes:
    """Who has 192.0.2.1? Tell ``sender_ip`` (the peer's MAC), broadcast."""
    body = _arp(ARP_REQUEST, pair.peer_mac, sender_ip, bytes(6), CAPTURE_IP)
    return b"\xff" * 6 + pair.peer_mac + struct.pack("!H", ETH_P_ARP) + body + bytes(18)


def arp_reply(pair: VethPair, to_ip: str = PEER_IP) -> bytes:
    """The kernel's answer to ``arp_request``: 192.0.2.1 is at the capture end's MAC."""
    body = _arp(ARP_REPLY, pair.capture_mac, CAPTURE_IP, pair.peer_mac, to_ip)
    return pair.peer_mac + pair.capture_mac + struct.pack("!H", ETH_P_ARP) + body


# --- The host side: an address, UDP servers, an ARP listener on the peer -----------------


@contextlib.contextmanager
def udp_server(port: int) -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with server:
        server.bind((CAPTURE_IP, port))
        server.settimeout(0.3)
        yield server


def datagrams(server: socket.socket, count: int) -> list[tuple[bytes, tuple[str, int]]]:
    """Up to ``count`` datagrams, each waited for at most the server's timeout."""
    received: list[tuple[bytes, tuple[str, int]]] = []
    with contextlib.suppress(socket.timeout):
        while len(received) < count:
            received.append(server.recvfrom(2048))
    return received


@contextlib.contextmanager
def arp_listener(ifname: str) -> Iterator[socket.socket]:
    """An AF_PACKET socket for the ARP frames arriving on ``ifname`` (not those it sends)."""
    listener = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    with listener:
        listener.setsockopt(263, 23, 1)  # SOL_PACKET, PACKET_IGNORE_OUTGOING
        listener.bind((ifname, ETH_P_ARP))
        listener.settimeout(2.0)
        yield listener


def arp_frames(listener: socket.socket, count: int) -> list[bytes]:
    received: list[bytes] = []
    with contextlib.suppress(socket.timeout):
        while len(received) < count:
            received.append(listener.recv(2048))
    return received


def give_address(pair: VethPair) -> VethPair:
    """``pair`` with 192.0.2.1/24 on its captured end (gone with the interface)."""
    run_command("ip", "addr", "add", f"{CAPTURE_IP}/24", "dev", pair.capture)
    return pair


@pytest.fixture
def host(veth_pair: VethPair) -> VethPair:
    """``veth_pair`` with 192.0.2.1/24 on its captured end."""
    return give_address(veth_pair)


# --- End to end ------------------------------------------------------------------------------


@BOTH_MODES
def test_dns_reaches_the_socket_while_the_host_keeps_its_traffic(host: VethPair, mode: XDPMode) -> None:
    dns = [udp_frame(host, 40000 + i, DNS_PORT, b"query %d" % i + bytes(i * 100)) for i in range(3)]
    app = [udp_frame(host, 41000 + i, APP_PORT, b"datagram %d" % i) for i in range(3)]
    with udp_server(APP_PORT) as app_server, udp_server(DNS_PORT) as dns_server, \
            arp_listener(host.peer) as arp, AfPacketSender(host.peer) as peer:
        with XDPPacket(host.capture, OptXDPMode(mode), OptFilter(DNS_FILTER),
                       OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(1000)) as sock:
            for frames in zip(dns, app):
                for frame in frames:
                    peer.send(frame)
            peer.send(arp_request(host))
            assert read_frames(sock, len(dns), "read_multi_packets")[0] == dns
            settle()
            assert read_until_empty(sock) == []  # neither the other datagrams nor ARP
            assert datagrams(app_server, 3) == [
                (b"datagram %d" % i, (PEER_IP, 41000 + i)) for i in range(3)
            ]
            assert arp_frames(arp, 1) == [arp_reply(host)]
            assert datagrams(dns_server, 1) == []  # the socket took them from the host
            assert list(sock.program.maps) == ["xsks_map"]
        assert attached_prog_id(host.capture_index) == 0  # the last socket closed: detached
        # Without the program the host gets DNS too: the servers above saw the filter's work.
        peer.send(dns[0])
        assert datagrams(dns_server, 1) == [(b"query 0", (PEER_IP, 40000))]


@contextlib.contextmanager
def queue_senders(pair: VethPair, mode: XDPMode, queues: range) -> Iterator[dict[int, XDPPacket]]:
    """An AF_XDP sender on the peer for each capture rx queue (see ``peer_tx_queue_reaching``).

    Their own program captures nothing but the test ethertype, so the ARP replies the peer
    receives on their queues still reach its stack (and the ARP listener).
    """
    with contextlib.ExitStack() as stack:
        yield {
            q: stack.enter_context(XDPPacket(pair.peer, OptXDPMode(XDP_MODE_SKB), OptFilter("ether proto 0x88b5"),
                                             OptQueueID(peer_tx_queue_reaching(q, mode))))
            for q in queues
        }


@BOTH_MODES
def test_every_queue_of_a_multiqueue_socket_is_filtered(make_veth: VethFactory, mode: XDPMode) -> None:
    pair = give_address(make_multiqueue_veth(make_veth, mode))
    queues = range(4)
    dns = {q: udp_frame(pair, 40000 + q, DNS_PORT, b"query on queue %d" % q) for q in queues}
    app = {q: udp_frame(pair, 41000 + q, APP_PORT, b"datagram on queue %d" % q) for q in queues}
    asker = {q: f"192.0.2.{10 + q}" for q in queues}
    with udp_server(APP_PORT) as app_server, arp_listener(pair.peer) as arp, \
            XDPMultiQueue(pair.capture, OptQueueCount(4), OptXDPMode(mode), OptFilter(DNS_FILTER),
                          OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(1000)) as mq, \
            queue_senders(pair, mode, queues) as senders:
        for q in queues:
            assert senders[q].write_multi_packets([app[q], dns[q], arp_request(pair, asker[q])]) == 3
        frames, infos = read_multiqueue(mq, 4, "read_multi_packets")
        assert split_by_queue(frames, infos) == {q: [dns[q]] for q in queues}
        settle()
        assert mq.read_multi_packets(64)[0] == []
        assert sorted(datagrams(app_server, 4)) == sorted(
            (b"datagram on queue %d" % q, (PEER_IP, 41000 + q)) for q in queues
        )
        assert sorted(arp_frames(arp, 4)) == sorted(arp_reply(pair, asker[q]) for q in queues)
    assert attached_prog_id(pair.capture_index) == 0


def test_the_filter_runs_in_front_of_a_custom_program(host: VethPair) -> None:
    """globals.o counts the frames it sees: only those the filter let through reach it."""
    dns = [udp_frame(host, 40000 + i, DNS_PORT, b"query %d" % i) for i in range(4)]
    app = [udp_frame(host, 41000 + i, APP_PORT, b"datagram %d" % i) for i in range(5)]
    with udp_server(APP_PORT) as app_server, AfPacketSender(host.peer) as peer, \
            XDPPacket(host.capture, OptXDPMode(XDP_MODE_SKB), OptXDPProgram(GLOBALS),
                      OptFilter(DNS_FILTER)) as sock:
        for frame in app + dns:
            peer.send(frame)
        assert read_frames(sock, len(dns), "read_multi_packets")[0] == dns
        assert len(datagrams(app_server, len(app))) == len(app)
        variables = sock.program.global_variables
        # Its .data and .bss variables (relocated behind the filter) count the DNS frames only.
        assert variables["frames"] == len(dns)
        assert variables["bytes_seen"] == 7 + sum(len(frame) for frame in dns)
        assert variables["last_length"] == len(dns[-1])


# --- One filter per interface: in one process ---------------------------------------------


@pytest.mark.parametrize("veth_pair", [2], indirect=True)
@BOTH_MODES
def test_sockets_of_one_process_must_agree_on_the_filter(veth_pair: VethPair, mode: XDPMode) -> None:
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptFilter(DNS_FILTER)):
        prog_id = attached_prog_id(veth_pair.capture_index)
        before = open_fd_count()
        for other, named in [
            ([OptFilter("tcp port 80")], re.escape("OptFilter('tcp port 80')")),
            ([], "no OptFilter"),
            ([OptFilter.from_cbpf([(0x06, 0, 0, 0xFFFF)])], r"OptFilter\.from_cbpf\(<\d+ eBPF instructions>\)"),
        ]:
            message = (rf"^{veth_pair.capture} already captures with OptFilter\('udp port 53'\) for other "
                       rf"sockets of this process, and this socket asks for {named}; .* one filter")
            with pytest.raises(ValueError, match=message):
                XDPPacket(veth_pair.capture, OptXDPMode(mode), OptQueueID(1), *other)
            with pytest.raises(ValueError, match=message):
                XDPMultiQueue(veth_pair.capture, OptXDPMode(mode), OptQueueCount(2), *other)
        assert open_fd_count() == before  # nothing left behind
        assert attached_prog_id(veth_pair.capture_index) == prog_id
        # The same filter, however spelt (the same code): shared.
        with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptQueueID(1), OptFilter("udp  port  53")):
            assert attached_prog_id(veth_pair.capture_index) == prog_id
    assert attached_prog_id(veth_pair.capture_index) == 0


def test_a_filter_is_refused_beside_sockets_without_one(veth_pair: VethPair) -> None:
    with XDPMultiQueue(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)), \
            pytest.raises(ValueError, match=r"already captures with no OptFilter for other sockets of "
                                            r"this process, and this socket asks for OptFilter\('udp port 53'\)"):
        XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB), OptFilter(DNS_FILTER))
    assert attached_prog_id(veth_pair.capture_index) == 0


# --- One filter per interface: across processes -------------------------------------------

# Opens queue 0 (with the filter given, if any), says so, then holds it until killed.
HOLDER = """
    import sys, time
    from xdppacket import OptFilter, OptXDPMode, XDPMode, XDPPacket
    options = [OptFilter(sys.argv[2])] if len(sys.argv) > 2 else []
    with XDPPacket(sys.argv[1], OptXDPMode(XDPMode.SKB), *options):
        print("holding", flush=True)
        time.sleep(60)
"""


@contextlib.contextmanager
def held_by_another_process(pair: VethPair, *expression: str) -> Iterator[int]:
    """A child process holds the program of ``pair.capture``; yields its id."""
    with child_process(HOLDER, pair.capture, *expression) as child:
        expect_line(child, "holding")
        yield attached_prog_id(pair.capture_index)
    assert wait_until(lambda: attached_prog_id(pair.capture_index) == 0)


def test_another_process_with_another_filter_is_refused(make_veth: VethFactory) -> None:
    veth_pair = make_multiqueue_veth(make_veth, XDP_MODE_SKB, queues=2)
    skb = OptXDPMode(XDP_MODE_SKB)
    with held_by_another_process(veth_pair, DNS_FILTER) as prog_id:
        before = open_fd_count()
        for other, named in [([OptFilter("tcp port 80")], re.escape("OptFilter('tcp port 80')")),
                             ([], "no OptFilter")]:
            with pytest.raises(ValueError, match=(
                rf"^{veth_pair.capture} already captures with OptFilter\('udp port 53'\) for another "
                rf"process's sockets, and this socket asks for {named}; .* one filter")):
                XDPPacket(veth_pair.capture, skb, OptQueueID(1), *other)
        with pytest.raises(ValueError, match=r"captures with OptFilter\('udp port 53'\) for another process's "
                                             r"sockets, and this socket asks for OptFilter\('tcp'\)"):
            XDPMultiQueue(veth_pair.capture, skb, OptQueueCount(2), OptFilter("tcp"))
        # The same filter but another program: the tags differ, the filter texts do not.
        with pytest.raises(ValueError, match=(
            rf"already runs XDP program id {prog_id} \('xdp_sock_prog', OptFilter\('udp port 53'\)\) "
            rf"for another process's sockets, which is not what this socket would load \(.*globals\.o, "
            rf"OptFilter\('udp port 53'\)\); .* same OptXDPProgram and OptFilter")):
            XDPPacket(veth_pair.capture, skb, OptQueueID(1), OptXDPProgram(GLOBALS), OptFilter(DNS_FILTER))
        assert open_fd_count() == before  # nothing left behind
        assert attached_prog_id(veth_pair.capture_index) == prog_id
        # The same filter joins the other process's program and gets DNS on its queue.
        with XDPPacket(veth_pair.capture, skb, OptQueueID(1), OptFilter(DNS_FILTER),
                       OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(1000)) as joined:
            assert not joined._queue.program.attached_here  # type: ignore[union-attr]
            assert attached_prog_id(veth_pair.capture_index) == prog_id
            assert list(joined.program.maps) == ["xsks_map"]  # the filter's record is no map of its code
            dns = udp_frame(veth_pair, 40000, DNS_PORT, b"query")
            send_on_rx_queue(veth_pair, 1, XDP_MODE_SKB, [udp_frame(veth_pair, 41000, APP_PORT, b"no"), dns])
            assert read_frames(joined, 1, "read_multi_packets")[0] == [dns]
            settle()
            assert read_until_empty(joined) == []


def test_a_filter_is_refused_beside_another_process_without_one(veth_pair: VethPair) -> None:
    with held_by_another_process(veth_pair), pytest.raises(ValueError, match=(
            rf"^{veth_pair.capture} already captures with no OptFilter for another process's sockets, and "
            rf"this socket asks for OptFilter\('udp port 53'\)")):
        XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB), OptFilter(DNS_FILTER))
