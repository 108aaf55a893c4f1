"""xdppacket demo: capture and inject Ethernet frames through an AF_XDP socket.

Safe to run on any machine: the process first moves into a private network namespace,
where it sees only ``lo`` and a veth pair it creates itself, so nothing touches the
machine's own interfaces. The namespace disappears when the process exits.

Steps:
 1. create the veth pair xdemo0/xdemo1 (frames sent on one end arrive on the other);
 2. open ``XDPPacket("xdemo0")``: this attaches xdppacket's XDP program to xdemo0;
 3. inject a few frames on xdemo1 with a plain AF_PACKET socket;
 4. capture them on xdemo0 with ``read_packet_data()`` and decode them with dpkt;
 5. answer the ARP request with ``write_packet()`` and capture the reply on xdemo1;
 6. print ``get_stats()``, close the socket and check that no XDP program is left.

Usage (as root): ``make demo``, or ``.venv/bin/python cmd/demo.py [--mode skb]``.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

try:
    import dpkt
    from dpkt.utils import inet_to_str, mac_to_str

    import xdppacket
    from xdppacket import CaptureInfo, XDPPacket, XDPStats
except ImportError as missing:
    sys.exit(
        f"demo: cannot import {missing.name}; run `make demo` (it sets up .venv first), "
        f"or `pip install -e '.[test]'`"
    )

CAPTURE_IF, PEER_IF = "xdemo0", "xdemo1"
# Locally administered addresses, so the frames read well.
CAPTURE_MAC, PEER_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
CAPTURE_IP, PEER_IP = socket.inet_aton("192.0.2.1"), socket.inet_aton("192.0.2.2")  # TEST-NET-1
CAPTURE_IP6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")  # documentation prefix
PEER_IP6 = socket.inet_pton(socket.AF_INET6, "2001:db8::2")
BROADCAST_MAC = b"\xff" * 6
ETH_P_LOCAL_EXPERIMENTAL = 0x88B5
ETH_P_ARP = 0x0806
CLONE_NEWNET = 0x40000000
CAPTURE_SECONDS = 3.0
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class DemoError(Exception):
    """A step failed in a way the user should read, not a bug: printed without a traceback."""


# ------------------------------------------------------------------------ the private namespace


def ip(*args: str) -> str:
    """Run iproute2's ``ip`` (inside our namespace, which subprocesses inherit)."""
    executable = shutil.which("ip", path=SBIN_PATH)
    if executable is None:
        raise DemoError("iproute2's `ip` is missing; run `make demo` or `apt-get install iproute2`")
    result = subprocess.run([executable, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DemoError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


def network_namespace_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def enter_private_network_namespace() -> None:
    """unshare(CLONE_NEWNET): from here on this process sees only its own interfaces."""
    before = network_namespace_inode()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise DemoError(f"cannot create a private network namespace: unshare: {os.strerror(err)}")
    if network_namespace_inode() == before:
        raise DemoError("unshare(CLONE_NEWNET) reported success but the namespace did not change")
    # A new interface would otherwise send IPv6 router solicitations that we would capture too.
    disable_ipv6 = Path("/proc/sys/net/ipv6/conf/default/disable_ipv6")
    if disable_ipv6.exists():  # absent when the kernel has no IPv6
        disable_ipv6.write_text("1\n")
    ip("link", "set", "dev", "lo", "up")


def create_veth_pair() -> None:
    ip("link", "add", CAPTURE_IF, "address", mac_to_str(CAPTURE_MAC), "type", "veth",
       "peer", "name", PEER_IF, "address", mac_to_str(PEER_MAC))
    for ifname in (CAPTURE_IF, PEER_IF):
        ip("link", "set", "dev", ifname, "up")


def attached_xdp_program(ifname: str) -> str | None:
    """What ``ip`` reports about the XDP program on ``ifname``, or None if there is none."""
    (link,) = json.loads(ip("-json", "-details", "link", "show", "dev", ifname))
    xdp = link.get("xdp")
    if not xdp or "prog" not in xdp:
        return None
    mode = {1: "native", 2: "generic", 3: "offloaded"}.get(xdp.get("mode"), "unknown")
    program = xdp["prog"]
    return f"program id {program['id']} ({program.get('name', '?')}), {mode} mode"


# ------------------------------------------------------------------------------------ frames


def ethernet(dst: bytes, ethertype: int, payload: bytes) -> bytes:
    """A frame from the peer end: that is where the demo injects."""
    return bytes(dpkt.ethernet.Ethernet(dst=dst, src=PEER_MAC, type=ethertype, data=payload))


def frames_to_inject() -> list[bytes]:
    """A small mix of real-looking traffic, plus frames of the local experimental ethertype."""
    arp_request = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=PEER_MAC, spa=PEER_IP,
                               tha=b"\0" * 6, tpa=CAPTURE_IP)
    dns_query = dpkt.dns.DNS(id=0x1D3, qd=[dpkt.dns.DNS.Q(name="example.com")])
    udp = dpkt.udp.UDP(sport=40000, dport=53, data=bytes(dns_query))
    udp.ulen = len(udp)
    udp_ip = dpkt.ip.IP(src=PEER_IP, dst=CAPTURE_IP, p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=udp)
    echo = dpkt.icmp6.ICMP6(type=dpkt.icmp6.ICMP6_ECHO_REQUEST,
                            data=dpkt.icmp6.ICMP6.Echo(id=7, seq=1, data=b"xdppacket"))
    echo_ip6 = dpkt.ip6.IP6(src=PEER_IP6, dst=CAPTURE_IP6, nxt=dpkt.ip.IP_PROTO_ICMP6, hlim=64,
                            plen=len(echo), data=echo)
    syn = dpkt.tcp.TCP(sport=51000, dport=80, seq=1, flags=dpkt.tcp.TH_SYN, win=64240)
    syn_ip = dpkt.ip.IP(src=PEER_IP, dst=CAPTURE_IP, p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=syn)
    frames = [
        ethernet(BROADCAST_MAC, ETH_P_ARP, bytes(arp_request)),
        ethernet(CAPTURE_MAC, dpkt.ethernet.ETH_TYPE_IP, bytes(udp_ip)),
        ethernet(CAPTURE_MAC, dpkt.ethernet.ETH_TYPE_IP6, bytes(echo_ip6)),
        ethernet(CAPTURE_MAC, dpkt.ethernet.ETH_TYPE_IP, bytes(syn_ip)),
    ]
    frames += [ethernet(CAPTURE_MAC, ETH_P_LOCAL_EXPERIMENTAL, f"xdppacket demo frame {n}".encode())
               for n in range(1, 4)]
    return frames


def arp_reply_to(request_frame: bytes) -> bytes:
    """What xdemo0 would answer if it owned the address asked for."""
    request = dpkt.ethernet.Ethernet(request_frame).data
    reply = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REPLY, sha=CAPTURE_MAC, spa=request.tpa,
                         tha=request.sha, tpa=request.spa)
    return bytes(dpkt.ethernet.Ethernet(dst=request.sha, src=CAPTURE_MAC, type=ETH_P_ARP,
                                        data=bytes(reply)))


def summarize(frame: bytes) -> str:
    """One line per frame, tcpdump style: MACs, protocol, addresses and ports."""
    eth = dpkt.ethernet.Ethernet(frame)
    macs = f"{mac_to_str(eth.src)} > {mac_to_str(eth.dst)}"
    payload = eth.data
    if isinstance(payload, dpkt.arp.ARP):
        if payload.op == dpkt.arp.ARP_OP_REQUEST:
            return f"{macs}  ARP who-has {inet_to_str(payload.tpa)} tell {inet_to_str(payload.spa)}"
        return f"{macs}  ARP reply {inet_to_str(payload.spa)} is-at {mac_to_str(payload.sha)}"
    if isinstance(payload, (dpkt.ip.IP, dpkt.ip6.IP6)):
        return f"{macs}  {summarize_ip(payload)}"
    return f"{macs}  ethertype 0x{eth.type:04x}, {len(payload)} bytes: {bytes(payload)!r}"


def summarize_ip(packet: dpkt.ip.IP | dpkt.ip6.IP6) -> str:
    version = "IPv4" if isinstance(packet, dpkt.ip.IP) else "IPv6"
    src, dst = inet_to_str(packet.src), inet_to_str(packet.dst)
    transport = packet.data
    if isinstance(transport, (dpkt.tcp.TCP, dpkt.udp.UDP)):
        route = f"{endpoint(src, transport.sport)} > {endpoint(dst, transport.dport)}"
        if isinstance(transport, dpkt.tcp.TCP):
            return f"{version} TCP {route} [{dpkt.tcp.tcp_flags_to_str(transport.flags)}]"
        return f"{version} UDP {route}, {len(transport.data)} bytes of payload"
    if isinstance(transport, dpkt.icmp6.ICMP6) and transport.type == dpkt.icmp6.ICMP6_ECHO_REQUEST:
        echo = transport.data
        return f"{version} ICMPv6 {src} > {dst} echo request id {echo.id} seq {echo.seq}"
    return f"{version} {src} > {dst} protocol {packet.p}"


def endpoint(address: str, port: int) -> str:
    """address:port, with an IPv6 address in brackets so the port stays apart."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def describe(frame: bytes, info: CaptureInfo) -> str:
    clock = datetime.fromtimestamp(info.timestamp).strftime("%H:%M:%S.%f")
    return f"  {clock}  {info.length:4d} B  queue {info.queue_id}  {summarize(frame)}"


# ------------------------------------------------------------------------- AF_XDP at work


def capture(xsk: XDPPacket, count: int) -> list[tuple[bytes, CaptureInfo]]:
    """Read up to ``count`` frames, giving up after CAPTURE_SECONDS.

    The socket is non-blocking, so each read waits at most the poll timeout and raises
    ``XDPTimeoutError`` when nothing came: the demo can never hang on a lost frame.
    """
    captured: list[tuple[bytes, CaptureInfo]] = []
    deadline = time.monotonic() + CAPTURE_SECONDS
    while len(captured) < count and time.monotonic() < deadline:
        try:
            captured.append(xsk.read_packet_data())
        except xdppacket.XDPTimeoutError:
            continue
    return captured


def receive_on_peer(listener: socket.socket) -> bytes | None:
    listener.settimeout(CAPTURE_SECONDS)
    try:
        return listener.recv(65536)
    except socket.timeout:
        return None


def print_stats(stats: XDPStats) -> None:
    """The counters in two groups: kept by the library, and reported by the kernel."""
    counters = stats.as_dict()
    kernel_counters = ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
                       "rx_fill_ring_empty_descs", "tx_ring_empty_descs")
    user_counters = [name for name in counters if name not in kernel_counters]
    for title, names in (("user space", user_counters), ("kernel (XDP_STATISTICS)", kernel_counters)):
        print(f"  {title}")
        for name in names:
            print(f"    {name:<26}{counters[name]:>8}")


def run_demo(mode: xdppacket.XDPMode) -> None:
    print(f"creating veth pair {CAPTURE_IF} <-> {PEER_IF} in a private network namespace")
    create_veth_pair()
    try:
        exchange_frames(mode)
    finally:
        ip("link", "delete", CAPTURE_IF)  # the namespace would take it along anyway
        print("deleted the veth pair; the namespace goes away with this process")


def exchange_frames(mode: xdppacket.XDPMode) -> None:
    options = (
        xdppacket.OptXDPMode(mode),
        xdppacket.OptIoMode(xdppacket.IO_MODE_NONBLOCK),
        xdppacket.OptPollTimeout(100_000),  # microseconds
    )
    try:
        xsk = XDPPacket(CAPTURE_IF, *options)
    except OSError as error:
        hint = " (try: cmd/demo.py --mode skb)" if error.errno == errno.EOPNOTSUPP else ""
        raise DemoError(f"cannot open the AF_XDP socket: {error.strerror or error}{hint}") from error
    with xsk:
        print(f"opened {xsk!r}: {attached_xdp_program(CAPTURE_IF)}")

        injected = frames_to_inject()
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sender:
            sender.bind((PEER_IF, 0))
            for frame in injected:
                sender.send(frame)
        print(f"\ninjected {len(injected)} frames on {PEER_IF} (AF_PACKET); "
              f"captured on {CAPTURE_IF} with read_packet_data():")
        captured = capture(xsk, len(injected))
        for frame, info in captured:
            print(describe(frame, info))
        captured_frames = {frame for frame, _ in captured}
        missing = [frame for frame in injected if frame not in captured_frames]
        if missing:
            raise DemoError(f"{len(missing)} of the {len(injected)} injected frames were not captured")
        print(f"  all {len(injected)} frames captured, byte for byte")

        reply = arp_reply_to(injected[0])
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as listener:
            listener.bind((PEER_IF, ETH_P_ARP))
            xsk.write_packet(reply)
            print(f"\nwrote an ARP reply on {CAPTURE_IF} with write_packet():")
            print(f"  {summarize(reply)}")
            seen = receive_on_peer(listener)
        if seen != reply:
            raise DemoError(f"the ARP reply did not arrive on {PEER_IF} (got {seen!r})")
        print(f"  captured on {PEER_IF} (AF_PACKET), byte for byte")

        print(f"\nget_stats() of {CAPTURE_IF} queue {xsk.queue_id}:")
        print_stats(xsk.get_stats())

    print(f"\nclosed the socket; XDP program on {CAPTURE_IF}: "
          f"{attached_xdp_program(CAPTURE_IF) or 'none (detached with the last socket)'}")
    if attached_xdp_program(CAPTURE_IF) is not None:
        raise DemoError(f"an XDP program is still attached to {CAPTURE_IF} after close()")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("native", "skb"), default="native",
                        help="XDP mode: native (in the driver, the default) or skb (generic, any driver)")
    args = parser.parse_args(argv)
    mode = xdppacket.XDP_MODE_SKB if args.mode == "skb" else xdppacket.XDP_MODE_DRV

    if os.geteuid() != 0:
        print("demo: AF_XDP, bpf() and network namespaces need root: run as root, e.g. `sudo make demo`",
              file=sys.stderr)
        return 1
    try:
        enter_private_network_namespace()
        run_demo(mode)
    except (DemoError, OSError) as error:
        print(f"\ndemo failed: {error}", file=sys.stderr)
        return 1
    print("\ndemo finished: all steps succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
