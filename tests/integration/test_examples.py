"""The multi-queue examples run as documented, against a 4-queue veth pair with traffic.

Each example runs as a script in the test's network namespace. Once it says it is
capturing, the test sends a known number of frames to each queue, then lets the example
stop (``--duration``, or Ctrl-C as a user would) and checks the counts it prints.
"""

from __future__ import annotations

import time

import pytest

from tests.example_runs import ctrl_c, example_running, finish, read_line
from tests.netns import VethPair
from tests.xdp_helpers import BOTH_MODES, MULTI_QUEUES, QueueSenders, frames_for_queue
from xdppacket import XDP_MODE_DRV, XDP_MODE_SKB, XDPMode

MODE_ARG = {XDP_MODE_SKB: "skb", XDP_MODE_DRV: "drv"}
# Long enough to print at least one rate line, short enough to keep the suite fast.
DURATION = "1.5"


def send_traffic(pair: VethPair, senders: QueueSenders) -> dict[int, list[bytes]]:
    """Queue q gets 10 * (q + 1) frames; returns what was sent."""
    sent = {queue: frames_for_queue(pair, queue, 10 * (queue + 1)) for queue in range(MULTI_QUEUES)}
    for queue, frames in sent.items():
        senders.send(queue, frames)
    return sent


@BOTH_MODES
@pytest.mark.parametrize("stop", ["duration", "ctrl-c"])
def test_multiqueue_capture_prints_rates_and_final_per_queue_counts(
    pair: VethPair, senders: QueueSenders, mode: XDPMode, stop: str
) -> None:
    args = [pair.capture, "--queues", str(MULTI_QUEUES), "--mode", MODE_ARG[mode]]
    if stop == "duration":
        args += ["--duration", DURATION]
    with example_running("examples/multiqueue_capture.py", *args) as example:
        assert read_line(example) == (
            f"capturing on {pair.capture} queues 0-3 ({MODE_ARG[mode]} mode), Ctrl-C stops"
        )
        sent = send_traffic(pair, senders)
        rates = read_line(example)  # the first report, about a second in
        assert rates.split()[0] == "rx/s"
        assert [word.split("=")[0] for word in rates.split()[1:]] == ["q0", "q1", "q2", "q3", "all"]
        if stop == "ctrl-c":
            ctrl_c(example)
        output = finish(example)
    table = [line.split() for line in output.splitlines() if not line.startswith("rx/s")]
    assert table[0] == ["queue", "rx_packets", "rx_bytes", "rx_dropped"]
    expected = [
        [str(queue), str(len(frames)), str(sum(map(len, frames))), "0"] for queue, frames in sent.items()
    ]
    total = sum(len(frames) for frames in sent.values())
    total_bytes = sum(len(frame) for frames in sent.values() for frame in frames)
    assert table[1:] == [*expected, ["all", str(total), str(total_bytes), "0"]]


@BOTH_MODES
@pytest.mark.parametrize("stop", ["duration", "ctrl-c"])
def test_per_queue_process_counts_each_queue_in_its_own_process(
    pair: VethPair, senders: QueueSenders, mode: XDPMode, stop: str
) -> None:
    args = [pair.capture, "--queues", str(MULTI_QUEUES), "--mode", MODE_ARG[mode]]
    if stop == "duration":
        args += ["--duration", DURATION]
    with example_running("examples/per_queue_process.py", *args) as example:
        ready = sorted(read_line(example) for _ in range(MULTI_QUEUES))
        assert ready == [f"queue {queue}: capturing" for queue in range(MULTI_QUEUES)]
        sent = send_traffic(pair, senders)
        if stop == "ctrl-c":
            time.sleep(0.3)  # the workers read the frames within milliseconds
            ctrl_c(example)
        output = finish(example)
    assert sorted(output.splitlines()) == [
        f"queue {queue}: {len(frames)} packets, {sum(map(len, frames))} bytes"
        for queue, frames in sent.items()
    ]
