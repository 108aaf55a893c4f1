"""TrafficGenerator without the kernel: the BPF program's bytes, argument checks, results.

Argument checks run before any kernel call, and the interface is looked up right after
them: so a valid frame given with a missing interface fails with FileNotFoundError, which
needs no privileges and shows that the frame itself was accepted.
"""

from __future__ import annotations

import dataclasses
import mmap

import dpkt
import pytest

from xdppacket.testing.trafficgen import (
    MAX_FRAME_SIZE,
    MIN_FRAME_SIZE,
    GeneratorResult,
    TrafficGenerator,
    _next_chunk,
    redirect_program,
)

MISSING_INTERFACE = "tgen-missing0"
MISSING_INTERFACE_ERROR = f"no network interface named {MISSING_INTERFACE!r}"
FRAME = bytes.fromhex("020000000001 020000000002 88b5") + bytes(46)


def test_redirect_program_bytes() -> None:
    # struct bpf_insn, little-endian: code, (src_reg << 4) | dst_reg, s16 off, s32 imm.
    assert redirect_program(0x12345678) == bytes.fromhex(
        "b7 01 0000 78563412"  # BPF_ALU64|BPF_MOV|BPF_K: r1 = 0x12345678 (the ifindex)
        "b7 02 0000 00000000"  # r2 = 0 (flags)
        "85 00 0000 17000000"  # BPF_JMP|BPF_CALL: helper 23, bpf_redirect
        "95 00 0000 00000000"  # BPF_JMP|BPF_EXIT: return r0 (XDP_REDIRECT)
    )


def test_redirect_program_takes_any_positive_s32_ifindex() -> None:
    assert redirect_program(1)[4:8] == bytes.fromhex("01000000")
    assert redirect_program(0x7FFFFFFF)[4:8] == bytes.fromhex("ffffff7f")


@pytest.mark.parametrize(
    ("ifindex", "error"),
    [(0, ValueError), (-1, ValueError), (1 << 31, ValueError), (True, TypeError), ("1", TypeError)],
)
def test_redirect_program_rejects_bad_ifindex(ifindex: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="ifindex"):
        redirect_program(ifindex)  # type: ignore[arg-type]


def test_max_frame_size_is_a_page_minus_the_kernel_overhead() -> None:
    assert MIN_FRAME_SIZE == 14
    assert MAX_FRAME_SIZE == mmap.PAGESIZE - 256 - 432
    if mmap.PAGESIZE == 4096:
        assert MAX_FRAME_SIZE == 3408


@pytest.mark.parametrize("size", [0, 1, MIN_FRAME_SIZE - 1, MAX_FRAME_SIZE + 1, 9000])
def test_frame_of_bad_size_is_refused(size: int) -> None:
    bounds = rf"{MIN_FRAME_SIZE} .* {MAX_FRAME_SIZE}"
    with pytest.raises(ValueError, match=rf"frame of {size} bytes: live frames must be {bounds}"):
        TrafficGenerator(MISSING_INTERFACE, bytes(size))


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        ("\x02" * 60, "not str"),
        (60, "not int"),
        (None, "not NoneType"),
        (object(), "not object"),
        (3.0, "not float"),
    ],
)
def test_frame_that_is_not_bytes_like_is_refused(frame: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        TrafficGenerator(MISSING_INTERFACE, frame)


@pytest.mark.parametrize(
    "frame",
    [
        FRAME,
        bytearray(FRAME),
        memoryview(FRAME),
        list(FRAME),
        bytes(MIN_FRAME_SIZE),
        bytes(MAX_FRAME_SIZE),
        dpkt.ethernet.Ethernet(dst=FRAME[:6], src=FRAME[6:12], type=0x88B5, data=bytes(46)),
    ],
    ids=["bytes", "bytearray", "memoryview", "list", "min", "max", "dpkt"],
)
def test_valid_frames_get_as_far_as_the_interface_lookup(frame: object) -> None:
    with pytest.raises(FileNotFoundError, match=MISSING_INTERFACE_ERROR):
        TrafficGenerator(MISSING_INTERFACE, frame)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cpu": -1}, ValueError, "cpu -1 is not one this thread may run on"),
        ({"cpu": 1 << 20}, ValueError, "is not one this thread may run on"),
        ({"cpu": "0"}, TypeError, "cpu must be an int or None"),
        ({"cpu": True}, TypeError, "cpu must be an int or None"),
        ({"batch_size": 0}, ValueError, r"batch_size must be in 1\.\.256"),
        ({"batch_size": 257}, ValueError, r"batch_size must be in 1\.\.256"),
        ({"batch_size": 64.0}, TypeError, "batch_size must be an int"),
    ],
)
def test_bad_cpu_or_batch_size_is_refused(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        TrafficGenerator(MISSING_INTERFACE, FRAME, **kwargs)  # type: ignore[arg-type]


def test_bad_interface_name_is_refused() -> None:
    with pytest.raises(ValueError, match="Linux allows at most 15"):
        TrafficGenerator("x" * 16, FRAME)
    with pytest.raises(TypeError, match="interface name must be a str"):
        TrafficGenerator(b"eth0", FRAME)  # type: ignore[arg-type]


def test_generator_result_rates() -> None:
    result = GeneratorResult(frames=3_000_000, seconds=2.0, frame_size=64)
    assert result.pps == 1_500_000
    assert result.bps == 1_500_000 * 64 * 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.frames = 1  # type: ignore[misc]
    assert not hasattr(result, "__dict__")


def test_chunks_start_fixed_then_follow_the_measured_rate() -> None:
    assert _next_chunk(0, 0.0, float("inf")) == 1 << 16
    assert _next_chunk(1_000_000, 0.5, float("inf")) == 400_000  # 2 Mpps for 0.2 s
    assert _next_chunk(1_000_000, 0.5, 0.05) == 100_000  # only 50 ms left
    assert _next_chunk(1_000_000, 0.5, 1e-9) == 1  # always at least one frame
    assert _next_chunk(10**9, 1.0, float("inf")) == 1 << 22  # capped: calls stay well below 1 s
