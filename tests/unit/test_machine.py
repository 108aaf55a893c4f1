"""Which machines xdppacket imports on, loads programs on, and drives rings on.

``import xdppacket`` must work on any architecture: options, ELF/BTF parsing and stats are
plain Python. Only opening a socket refuses a machine whose memory model needs fences.
Each check runs in a fresh interpreter with ``platform.machine`` replaced before the
import, as it would answer on that machine.
"""

from __future__ import annotations

import errno
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import PrivateNetns
from xdppacket import _machine

REPOSITORY = Path(__file__).resolve().parents[2]
RING_MESSAGE = "only correctly ordered on x86 (total store order)"


def run_as(machine: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter where ``platform.machine()`` answers ``machine``."""
    prelude = f"import platform\nplatform.machine = lambda: {machine!r}\n"
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=REPOSITORY,
                          capture_output=True, text=True, timeout=60, check=False)


IMPORT_AND_USE_THE_PURE_PARTS = """
import xdppacket
from xdppacket import OptNumFrames, XDPStats
from xdppacket.options import resolve_options
from xdppacket._bpf_object import BpfObject, SHIPPED_OBJECT_NAME
from importlib import resources
assert resolve_options([OptNumFrames(512)], owner="XDPPacket").num_frames == 512
data = resources.files("xdppacket").joinpath(SHIPPED_OBJECT_NAME).read_bytes()
assert BpfObject.parse(data).program("xdp").name == "xdp_sock_prog"
assert (XDPStats(rx_packets=1) + XDPStats(rx_packets=2)).rx_packets == 3
print("imported on", platform.machine())
"""


@pytest.mark.parametrize("machine", ["aarch64", "riscv64", "ppc64le", "sparc64", ""])
def test_import_works_on_any_machine(machine: str) -> None:
    result = run_as(machine, IMPORT_AND_USE_THE_PURE_PARTS)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"imported on {machine}\n"


@pytest.mark.parametrize("machine", ["aarch64", "riscv64", "ppc64le", "loongarch64", "sparc64", "i686"])
def test_rings_are_refused_without_total_store_order(
    monkeypatch: pytest.MonkeyPatch, machine: str
) -> None:
    monkeypatch.setattr(platform, "machine", lambda: machine)
    with pytest.raises(OSError, match=rf"{re.escape(RING_MESSAGE)}.*this machine is {machine!r}") as caught:
        _machine.require_supported_machine()
    assert caught.value.errno == errno.ENOTSUP


def test_x86_64_drives_rings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    _machine.require_supported_machine()


@pytest.mark.parametrize(
    ("machine", "number"),
    # __NR_bpf from each architecture's asm/unistd.h (arm64, riscv and loongarch share the
    # generic table).
    [("x86_64", 321), ("aarch64", 280), ("riscv64", 280), ("loongarch64", 280), ("ppc64le", 361)],
)
def test_bpf_syscall_numbers(monkeypatch: pytest.MonkeyPatch, machine: str, number: int) -> None:
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert _machine.bpf_syscall_number() == number


def test_unknown_machine_has_no_bpf_syscall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "sparc64")
    with pytest.raises(OSError, match="bpf\\(\\) system call number on 'sparc64'") as caught:
        _machine.bpf_syscall_number()
    assert caught.value.errno == errno.ENOSYS


def test_one_table_names_every_ring_machine_and_its_syscall() -> None:
    assert [name for name, m in _machine.MACHINES.items() if m.rings_supported] == ["x86_64"]


OPEN_A_SOCKET = """
import errno
import re
from xdppacket import XDPPacket, OptXDPMode, XDP_MODE_SKB
try:
    XDPPacket("lo", OptXDPMode(XDP_MODE_SKB))
except OSError as error:
    print(errno.errorcode[error.errno], error)
"""


@pytest.mark.parametrize("machine", ["aarch64", "riscv64"])
def test_opening_a_socket_refuses_the_machine(private_netns: PrivateNetns, machine: str) -> None:
    # Runs in the test's private network namespace (inherited), on its own lo.
    result = run_as(machine, OPEN_A_SOCKET)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ENOTSUP ")
    assert RING_MESSAGE in result.stdout
    assert f"this machine is {machine!r}" in result.stdout
