"""_interface and _netlink against the real kernel, inside a private network namespace.

Everything kernel-facing runs in one child process started with ``unshare -n``: it
creates its own veth pairs (and a bridge, a macvlan), so the machine's interfaces are never seen,
and everything it created vanishes with the namespace when the child exits. The child
prints one JSON report; the tests below assert on it.

Needs root (CAP_NET_ADMIN, CAP_BPF). Without it the tests skip, unless
XDPPACKET_REQUIRE_KERNEL=1, which turns the skip into a failure. The XDP attach/detach
checks load a two-instruction XDP_PASS program from raw bytecode (no compiler needed) and
attach it through netlink, the way another tool would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs as `unshare -n python -c NETNS_SCRIPT`; prints one JSON object.
NETNS_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, re, socket, subprocess, sys
    from pathlib import Path

    from tests.xdp_helpers import XDP_PASS_PROGRAM
    from xdppacket import _bpf, _device, _interface, _netlink

    XDP_FLAGS_SKB_MODE = 2  # linux/if_link.h

    def sh(*args):
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout

    def outcome(call):
        try:
            return {"value": call()}
        except Exception as exc:
            return {"error": type(exc).__name__, "errno": getattr(exc, "errno", None),
                    "message": str(exc)}

    def link_as_dict(link):
        return {**dataclasses.asdict(link), "address": link.address.hex(":")}

    # A new interface sends IPv6 solicitations of its own; keep the namespace quiet.
    Path("/proc/sys/net/ipv6/conf/default/disable_ipv6").write_text("1")
    sh("ip", "link", "add", "xa", "numrxqueues", "4", "numtxqueues", "4", "type", "veth",
       "peer", "name", "xb", "numrxqueues", "4", "numtxqueues", "4")
    sh("ip", "link", "add", "ya", "numrxqueues", "2", "numtxqueues", "2", "type", "veth",
       "peer", "name", "yb", "numrxqueues", "2", "numtxqueues", "2")
    # A bridge has no ethtool get_channels: rx_queue_count must fall back to netlink.
    bridge = subprocess.run(["ip", "link", "add", "br0", "numrxqueues", "3", "type", "bridge"],
                            capture_output=True).returncode == 0
    for name in ("xa", "xb"):
        sh("ip", "link", "set", name, "up")

    report = {}
    report["kernel_names"] = {name: index for index, name in socket.if_nameindex()}
    report["index_of"] = {name: _interface.interface_index(name)
                          for name in report["kernel_names"]}
    report["name_of"] = {str(index): _interface.interface_name(index)
                         for index in report["kernel_names"].values()}
    queue_count_names = ["xa", "xb", "ya", "lo"] + (["br0"] if bridge else [])
    report["rx_queue_count"] = {name: _interface.rx_queue_count(name)
                                for name in queue_count_names}
    report["is_up"] = {name: bool(_device.interface_flags(name) & _device.IFF_UP) for name in ("xa", "xb", "ya", "yb")}
    xa = _interface.interface_index("xa")
    report["link_xa"] = link_as_dict(_netlink.get_link(xa))
    report["ip_mac_xa"] = re.search(r"link/ether ([0-9a-f:]{17})",
                                    sh("ip", "-o", "link", "show", "xa")).group(1)
    report["missing"] = {
        "interface_index": outcome(lambda: _interface.interface_index("nosuch0")),
        "rx_queue_count": outcome(lambda: _interface.rx_queue_count("nosuch0")),
        "interface_flags": outcome(lambda: _device.interface_flags("nosuch0")),
        "interface_name": outcome(lambda: _interface.interface_name(999999)),
        "get_link": outcome(lambda: _netlink.get_link(999999)),
        "set_xdp_fd": outcome(lambda: _netlink.set_xdp_fd(999999, -1, 0)),
    }
    report["detach_when_nothing_attached"] = outcome(
        lambda: _netlink.set_xdp_fd(_interface.interface_index("ya"), -1, 0))

    # An XDP_PASS program attached in generic mode through netlink, as `ip link set
    # xdpgeneric` does. The interface keeps it after our descriptor closes.
    prog_fd = _bpf.prog_load(_bpf.BPF_PROG_TYPE_XDP, XDP_PASS_PROGRAM, "GPL", name="xdp_pass")
    report["loaded_prog_id"] = _bpf.prog_get_info_by_fd(prog_fd).id
    _netlink.set_xdp_fd(xa, prog_fd, XDP_FLAGS_SKB_MODE)
    ip_details = sh("ip", "-d", "link", "show", "xa")
    report["ip_prog_id"] = int(re.search(r"prog/xdp id (\\d+)", ip_details).group(1))
    report["link_xa_attached"] = link_as_dict(_netlink.get_link(xa))
    report["detach"] = outcome(lambda: _netlink.set_xdp_fd(xa, -1, XDP_FLAGS_SKB_MODE))
    report["link_xa_detached"] = link_as_dict(_netlink.get_link(xa))
    # With a program on an upper device (a macvlan on ya), the kernel refuses any
    # change on ya and says why in an extended ack.
    macvlan = subprocess.run(["ip", "link", "add", "mv", "link", "ya", "type", "macvlan"],
                             capture_output=True)
    if macvlan.returncode == 0:
        mv = _interface.interface_index("mv")
        _netlink.set_xdp_fd(mv, prog_fd, XDP_FLAGS_SKB_MODE)
        ya = _interface.interface_index("ya")
        report["upper_has_program"] = outcome(lambda: _netlink.set_xdp_fd(ya, -1, 0))

    print(json.dumps(report))
    """
)


def skip_or_fail(reason: str) -> NoReturn:
    """Skip, or fail when XDPPACKET_REQUIRE_KERNEL=1 says the kernel tests must run."""
    if os.environ.get("XDPPACKET_REQUIRE_KERNEL") == "1":
        pytest.fail(f"{reason}; XDPPACKET_REQUIRE_KERNEL=1 requires the kernel tests to run")
    pytest.skip(reason)


def run_in_private_netns(script: str, *args: str) -> dict[str, Any]:
    """Run a Python script under `unshare -n` with this checkout importable; parse its JSON."""
    completed = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", script, *args],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        pytest.fail(f"script in private network namespace failed:\n{completed.stderr}")
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


@pytest.fixture(scope="module")
def netns_report() -> dict[str, Any]:
    """Create a private network namespace with veth pairs xa/xb (4 queues), ya/yb (2 queues),
    a bridge br0 (3 queues) and a macvlan mv on ya, run all kernel checks there, return
    their JSON report.

    The namespace, and every interface in it, goes away when the child process exits.
    """
    if os.geteuid() != 0:
        skip_or_fail("needs root (CAP_NET_ADMIN) to create network namespaces and veth pairs")
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            skip_or_fail(f"needs the `{tool}` command")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        skip_or_fail(f"cannot create a network namespace: {probe.stderr.strip()}")
    return run_in_private_netns(NETNS_SCRIPT)


def test_interface_index_and_name_round_trip(netns_report):
    kernel_names = netns_report["kernel_names"]
    assert {"lo", "xa", "xb", "ya", "yb"} <= set(kernel_names)
    assert netns_report["index_of"] == kernel_names
    assert netns_report["name_of"] == {str(index): name for name, index in kernel_names.items()}


def test_rx_queue_count_follows_the_veth_queue_count(netns_report):
    counts = netns_report["rx_queue_count"]
    assert (counts["xa"], counts["xb"], counts["ya"]) == (4, 4, 2)


def test_rx_queue_count_falls_back_to_netlink_without_ethtool_channels(netns_report):
    counts = netns_report["rx_queue_count"]
    assert counts["lo"] == 1
    if "br0" not in counts:
        pytest.skip("could not create a bridge in the namespace")
    assert counts["br0"] == 3


def test_get_link_describes_the_veth(netns_report):
    link = netns_report["link_xa"]
    assert link["ifindex"] == netns_report["kernel_names"]["xa"]
    assert link["ifname"] == "xa"
    assert link["mtu"] == 1500
    assert link["address"] == netns_report["ip_mac_xa"]
    assert (link["num_rx_queues"], link["num_tx_queues"]) == (4, 4)
    assert (link["xdp_attached"], link["xdp_prog_id"]) == (0, 0)


def test_interface_flags_say_which_interfaces_are_up(netns_report):
    """xa and xb were set up, ya and yb were left down (the state a new veth starts in)."""
    assert netns_report["is_up"] == {"xa": True, "xb": True, "ya": False, "yb": False}


@pytest.mark.parametrize("call", ["interface_index", "rx_queue_count", "interface_flags"])
def test_a_missing_interface_name_says_how_to_list_interfaces(netns_report, call):
    error = netns_report["missing"][call]
    assert (error["error"], error["errno"]) == ("FileNotFoundError", 19)
    assert error["message"] == (
        "[Errno 19] no network interface named 'nosuch0' in this network namespace; "
        "list them with `ip link`"
    )


def test_a_missing_interface_index_is_reported(netns_report):
    error = netns_report["missing"]["interface_name"]
    assert (error["error"], error["errno"]) == ("FileNotFoundError", 19)
    assert "no network interface with index 999999 in this network namespace" in error["message"]


@pytest.mark.parametrize(
    ("call", "request_name"), [("get_link", "RTM_GETLINK"), ("set_xdp_fd", "RTM_SETLINK")]
)
def test_netlink_errors_name_the_request_and_the_interface(netns_report, call, request_name):
    error = netns_report["missing"][call]
    assert (error["error"], error["errno"]) == ("OSError", 19)
    assert request_name in error["message"]
    assert "ifindex 999999" in error["message"]
    assert "No such device" in error["message"]


def test_detaching_when_nothing_is_attached_succeeds(netns_report):
    assert netns_report["detach_when_nothing_attached"] == {"value": None}


def test_get_link_reports_a_generic_mode_program(netns_report):
    link = netns_report["link_xa_attached"]
    prog_id = netns_report["ip_prog_id"]
    assert prog_id == netns_report["loaded_prog_id"]
    assert link["xdp_attached"] == 2  # XDP_ATTACHED_SKB
    assert (link["xdp_prog_id"], link["xdp_skb_prog_id"], link["xdp_drv_prog_id"]) == (
        prog_id,
        prog_id,
        0,
    )


def test_set_xdp_fd_error_carries_the_kernel_extended_ack(netns_report):
    if "upper_has_program" not in netns_report:
        pytest.skip("could not create a macvlan upper device")
    error = netns_report["upper_has_program"]
    assert (error["error"], error["errno"]) == ("FileExistsError", 17)
    assert error["message"].startswith(
        "[Errno 17] RTM_SETLINK: detach XDP program from interface 'ya' (ifindex "
    )
    assert error["message"].endswith(
        ": File exists (kernel: Cannot attach when an upper device already has a program)"
    )


def test_set_xdp_fd_minus_one_detaches(netns_report):
    assert netns_report["detach"] == {"value": None}
    link = netns_report["link_xa_detached"]
    assert (link["xdp_attached"], link["xdp_prog_id"], link["xdp_skb_prog_id"]) == (0, 0, 0)
