"""The ``xdppacket`` command run for real on veth pairs in the test's network namespace.

Each command runs as ``python -m xdppacket`` in a child process (which inherits the
namespace), leading its own process group as a shell job would, so SIGINT to the group is
Ctrl-C. Captures print their "listening on" line on stderr once every queue's socket is
bound: frames are sent only after it. What the command wrote (pcap on stdout piped into
tcpdump, a file, summary lines) is compared with the exact frames sent.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.capture_files import (
    isb_interface,
    isb_options,
    parse_tcpdump,
    pcapng_blocks,
    tcpdump_command,
)
from tests.example_runs import exit_output, killed_with_its_group, read_line
from tests.netns import AfPacketCapture, VethFactory, VethPair
from tests.xdp_helpers import (
    MULTI_QUEUES,
    QueueSenders,
    frames_for_queue,
    frames_from_peer,
    frames_to_peer,
    make_multiqueue_veth,
    send_frames,
)
from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    CaptureInfo,
    OptIoMode,
    OptMultiBuffer,
    OptPollTimeout,
    OptXDPMode,
    XDPPacket,
)
from xdppacket.cli.generate import build_frame
from xdppacket.pcap import PcapNgWriter, PcapReader, PcapWriter

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 20
LISTENING = re.compile(r"xdppacket: listening on (\S+) queues? (\S+) \((native|generic) XDP\), "
                       r"link-type EN10MB \(Ethernet\), snapshot length (\d+) bytes")


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def cli(*args: str, text: bool = True) -> Iterator[subprocess.Popen[Any]]:
    """``python -m xdppacket args...`` as a job of its own; killed with its group at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "xdppacket", *args], env=cli_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text, start_new_session=True,
    )
    with killed_with_its_group(process):
        yield process


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xdppacket", *args], env=cli_env(), capture_output=True,
                          text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)


def wait_listening(process: subprocess.Popen[Any]) -> re.Match[str]:
    """The capture's "listening on" line (stderr), after which every queue is bound."""
    line = read_line(process, stderr=True, timeout=TIMEOUT_S)
    match = LISTENING.fullmatch(line)
    assert match, line
    return match


def finish(process: subprocess.Popen[Any]) -> tuple[Any, Any]:
    """The rest of stdout and stderr once the command exits, which it must do with status 0."""
    return exit_output(process, TIMEOUT_S)


def closing_lines(captured: int, dropped: int = 0) -> str:
    return (f"{captured} packets captured\n{captured + dropped} packets received by filter\n"
            f"{dropped} packets dropped by kernel\n")


def send_to_every_queue(pair: VethPair) -> list[bytes]:
    """Frames for each capture queue (3, 4, 5, 6 of them), sent from the peer's tx queues."""
    sent = []
    with QueueSenders(pair, XDP_MODE_DRV) as senders:
        for queue in range(MULTI_QUEUES):
            frames = frames_for_queue(pair, queue, 3 + queue)
            senders.send(queue, frames)
            sent += frames
    return sent


# ------------------------------------------------------------------------------ capture


def test_capture_to_stdout_pipes_into_tcpdump_from_every_queue(make_veth: VethFactory) -> None:
    """Without --queues all four queues are captured; `-w - | tcpdump -r -` gets every frame exactly."""
    pair = make_multiqueue_veth(make_veth, XDP_MODE_DRV)
    count = sum(3 + queue for queue in range(MULTI_QUEUES))
    with cli("capture", "-i", pair.capture, "-w", "-", "-c", str(count), text=False) as capture:
        reader = subprocess.Popen(tcpdump_command("-"), stdin=capture.stdout, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        assert capture.stdout is not None
        capture.stdout.close()  # tcpdump holds the pipe now
        listening = wait_listening(capture)
        assert listening.group(1, 2, 3) == (pair.capture, "0-3", "native")
        sent = send_to_every_queue(pair)
        _, stderr = finish(capture)
        dump, dump_err = reader.communicate(timeout=TIMEOUT_S)
    assert reader.returncode == 0, dump_err
    assert stderr.decode() == closing_lines(count)
    records = parse_tcpdump(dump)
    assert sorted(record.data for record in records) == sorted(sent)
    assert all(record.length == len(record.data) for record in records)
    assert any(record.timestamp_ns % 1000 for record in records)  # nanoseconds, not microseconds * 1000
    stamps = [record.timestamp_ns for record in records]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_the_capture_with_a_complete_file_and_closing_lines(
    make_veth: VethFactory, tmp_path: Path, signum: int
) -> None:
    pair = make_veth(1)
    path = tmp_path / "out.pcapng"
    frames = frames_from_peer(pair, 10)
    with cli("capture", "-i", pair.capture, "-w", str(path), "--pcapng") as capture:
        wait_listening(capture)
        send_frames(pair.peer, frames)
        # The status line (once a second, a line of its own off a terminal) shows them written.
        while not (line := read_line(capture, stderr=True, timeout=TIMEOUT_S)).startswith("10 packets captured, "):
            assert re.fullmatch(r"\d+ packets captured, \d+ pps, 0 dropped by kernel", line), line
        assert re.fullmatch(r"10 packets captured, \d+ pps, 0 dropped by kernel", line)
        os.killpg(capture.pid, signum)  # Ctrl-C is SIGINT to the whole job
        _, stderr = finish(capture)
    assert stderr.endswith(closing_lines(10))
    with PcapReader(path) as reader:
        assert [frame for frame, _ in reader] == frames
    # The kernel's counters close the file: an interface statistics block for queue 0.
    last_type, last_block = list(pcapng_blocks(path.read_bytes()))[-1]
    assert (last_type, isb_interface(last_block)) == (5, 0)
    counters = {code: struct.unpack("<Q", value)[0] for code, value in isb_options(last_block).items()
                if code in (4, 5, 8)}  # isb_ifrecv, isb_ifdrop, isb_usrdeliv
    assert counters == {4: 10, 5: 0, 8: 10}


def test_count_prints_one_tcpdump_line_per_frame_and_stops(veth_pair: VethPair) -> None:
    frames = frames_from_peer(veth_pair, 5)
    with cli("capture", "-i", veth_pair.capture, "-c", "3") as capture:
        wait_listening(capture)
        send_frames(veth_pair.peer, frames)
        stdout, stderr = finish(capture)
    mac = ":".join(f"{b:02x}" for b in veth_pair.peer_mac), ":".join(f"{b:02x}" for b in veth_pair.capture_mac)
    lines = stdout.splitlines()
    assert len(lines) == 3
    for line, frame in zip(lines, frames):
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{6} " + re.escape(
            f"{mac[0]} > {mac[1]}, ethertype Unknown (0x88b5), length {len(frame)}"), line), line
    assert stderr == closing_lines(3)


def test_duration_ends_an_idle_capture(veth_pair: VethPair) -> None:
    with cli("capture", "-i", veth_pair.capture, "--duration", "0.5") as capture:
        wait_listening(capture)
        started = time.monotonic()
        stdout, stderr = finish(capture)
    assert 0.3 < time.monotonic() - started < 5
    assert (stdout, stderr) == ("", closing_lines(0))


def test_queues_limits_the_capture_to_the_first_queues(make_veth: VethFactory, tmp_path: Path) -> None:
    pair = make_multiqueue_veth(make_veth, XDP_MODE_DRV)
    path = tmp_path / "out.pcap"
    with cli("capture", "-i", pair.capture, "--queues", "1", "--mode", "drv", "-w", str(path),
             "--duration", "1") as capture:
        assert wait_listening(capture).group(2) == "0"
        sent = send_to_every_queue(pair)
        _, stderr = finish(capture)
    queue_0 = sent[:3]
    assert stderr.endswith(closing_lines(3))
    with PcapReader(path) as reader:
        assert [frame for frame, _ in reader] == queue_0


# ------------------------------------------------------------------------ replay, generate


def write_capture(path: Path, frames: list[bytes]) -> None:
    infos = [CaptureInfo(1_700_000_000_000_000_000 + i, len(f), len(f), 1, 0) for i, f in enumerate(frames)]
    writer = PcapNgWriter(path) if path.suffix == ".pcapng" else PcapWriter(path)
    with writer:
        writer.write_batch(frames, infos)


@pytest.mark.parametrize("suffix", [".pcap", ".pcapng"])
def test_replay_sends_the_file_frames_exactly(veth_pair: VethPair, tmp_path: Path, suffix: str) -> None:
    frames = frames_to_peer(veth_pair, 20)
    path = tmp_path / f"in{suffix}"
    write_capture(path, frames)
    with AfPacketCapture(veth_pair.peer) as peer:
        result = run_cli("replay", "-i", veth_pair.capture, str(path), "--loop", "2")
        assert result.returncode == 0, result.stderr
        assert peer.recv_frames(40, 5) == frames + frames
        assert peer.recv_frames(1, 0.2) == []
    size = 2 * sum(map(len, frames))
    assert re.fullmatch(rf"40 packets \({size} bytes\) sent in \d+\.\d{{3}} s, \d+ pps\n", result.stdout)


def test_replay_paces_to_pps(veth_pair: VethPair, tmp_path: Path) -> None:
    frames = frames_to_peer(veth_pair, 10)
    write_capture(tmp_path / "in.pcap", frames)
    with AfPacketCapture(veth_pair.peer) as peer:
        started = time.monotonic()
        result = run_cli("replay", "-i", veth_pair.capture, str(tmp_path / "in.pcap"), "--pps", "20")
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert peer.recv_frames(10, 5) == frames
    assert elapsed > 9 / 20  # the 10th frame leaves 9/20 s after the first


def test_generate_sends_count_frames_of_size(veth_pair: VethPair) -> None:
    receiver = XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_DRV), OptIoMode(IO_MODE_NONBLOCK),
                         OptPollTimeout(10_000))
    with receiver:
        result = run_cli("generate", "-i", veth_pair.peer, "--count", "1000", "--size", "100")
        assert result.returncode == 0, result.stderr
        received: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(received) < 1000 and time.monotonic() < deadline:
            received += receiver.read_multi_packets(64)[0]
        assert receiver.read_multi_packets(64)[0] == []
    assert len(received) == 1000
    assert set(received) == {build_frame(100, b"\xff" * 6, veth_pair.peer_mac)}  # broadcast, from the peer
    assert re.fullmatch(r"1000 packets sent \(100 bytes each\) in \d+\.\d{3} s: \d+ pps, [\d.]+ Mbit/s\n",
                        result.stdout)


# ------------------------------------------------------------------------------ diagnose


def test_diagnose_a_veth(make_veth: VethFactory) -> None:
    pair = make_veth(4)
    result = run_cli("diagnose", pair.capture)
    assert result.returncode == 0, result.stderr
    report = dict(line.split(":", 1) for line in result.stdout.splitlines() if not line.startswith(" "))
    assert report["interface"].strip().startswith(f"{pair.capture} (index {pair.capture_index}), MAC ")
    assert report["interface"].endswith(": up, running")
    assert report["driver"].strip().startswith("veth")
    assert report["XDP support"].strip().startswith("native XDP: yes (--mode drv); zero-copy AF_XDP: no")
    assert report["queues"].strip().startswith("rx 4, tx 4: `xdppacket capture` opens all 4 queue(s)")
    assert "MTU 1500: frames up to 1518 bytes" in report["frame size"]
    assert report["XDP programs"].strip().startswith("none attached")
    assert "CAP_NET_ADMIN" in report["privileges"]
    assert report["summary"].strip() == "no problem found"
    # With a capture running, its program shows (as xdppacket's) and is no problem.
    with XDPPacket(pair.capture, OptXDPMode(XDP_MODE_DRV)):
        result = run_cli("diagnose", pair.capture)
    assert re.search(r"XDP programs: native: id \d+, name 'xdp_sock_prog' \(xdppacket's", result.stdout)
    assert result.stdout.endswith("summary:      no problem found\n")
    # Jumbo-frame sockets run the frags variant, whose name the kernel cuts to 15 characters.
    with XDPPacket(pair.capture, OptXDPMode(XDP_MODE_DRV), OptMultiBuffer()):
        result = run_cli("diagnose", pair.capture)
    assert re.search(r"XDP programs: native: id \d+, name 'xdp_sock_prog_f' \(xdppacket's", result.stdout)


def test_diagnose_lo_and_a_down_interface(make_veth: VethFactory) -> None:
    result = run_cli("diagnose", "lo")
    assert result.returncode == 0, result.stderr
    assert "driver:       not reported" in result.stdout
    assert "native XDP: no, generic mode only" in result.stdout
    assert "problem: use OptMultiBuffer() for jumbo frames, or lower the MTU to 3822 or less" in result.stdout
    assert result.stdout.endswith("summary:      1 problem(s) found\n")
    pair = make_veth(1)
    subprocess.run(["ip", "link", "set", "dev", pair.capture, "down"], check=True,
                   env={**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"})
    result = run_cli("diagnose", pair.capture)
    assert f"problem: bring it up: ip link set dev {pair.capture} up" in result.stdout
    result = run_cli("diagnose", pair.peer)  # its peer is down: no carrier
    assert "up, no carrier" in result.stdout


# -------------------------------------------------------------------------- exit codes


def test_errors_are_one_line_and_exit_1_usage_exits_2(tmp_path: Path) -> None:
    missing = run_cli("capture", "-i", "nosuch0")
    assert missing.returncode == 1
    assert missing.stderr == ("xdppacket: error: no network interface named 'nosuch0' in this network "
                              "namespace; list them with `ip link`\n")
    (tmp_path / "not.pcap").write_bytes(b"GIF89a" + bytes(40))
    bad_file = run_cli("replay", "-i", "lo", str(tmp_path / "not.pcap"))
    assert bad_file.returncode == 1
    assert bad_file.stderr == "xdppacket: error: not a pcap or pcapng file (magic 47494638)\n"
    usage = run_cli("capture")
    assert usage.returncode == 2
    assert "the following arguments are required: -i/--interface" in usage.stderr
    assert run_cli("capture", "-i", "lo", "-c", "0").returncode == 2


def test_console_script_and_help() -> None:
    script = Path(sys.executable).parent / "xdppacket"
    assert script.exists(), "the console script is missing: reinstall with `make setup`"
    result = subprocess.run([str(script), "capture", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "-w FILE" in result.stdout
    assert "xdppacket capture -i eth0 -w - | tcpdump -r -" in result.stdout
