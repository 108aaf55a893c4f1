"""The pure helpers of tests/netns.py: test frames and size mixes (no kernel needed)."""

from __future__ import annotations

import pytest

from tests.netns import (
    ETH_P_TEST,
    MAX_FRAME_SIZE,
    MIN_FRAME_SIZE,
    frame_seq,
    make_test_frame,
    mixed_sizes,
)

DST = bytes.fromhex("020000000001")
SRC = bytes.fromhex("020000000002")


def test_make_test_frame_layout() -> None:
    frame = make_test_frame(MAX_FRAME_SIZE, 300, DST, SRC)
    assert len(frame) == MAX_FRAME_SIZE
    assert frame[:12] == DST + SRC
    assert int.from_bytes(frame[12:14], "big") == ETH_P_TEST
    assert frame_seq(frame) == 300
    assert frame[18:21] == bytes([300 % 256, 301 % 256, 302 % 256])


@pytest.mark.parametrize("size", [18, MIN_FRAME_SIZE, 1000, MAX_FRAME_SIZE, 9000])
def test_make_test_frame_has_exact_size_and_is_deterministic(size: int) -> None:
    frame = make_test_frame(size, 7, DST, SRC)
    assert len(frame) == size
    assert make_test_frame(size, 7, DST, SRC) == frame
    assert make_test_frame(size, 8, DST, SRC) != frame


def test_make_test_frame_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 18 bytes"):
        make_test_frame(17, 0, DST, SRC)
    with pytest.raises(ValueError, match="6-byte MAC"):
        make_test_frame(MIN_FRAME_SIZE, 0, DST[:5], SRC)


def test_mixed_sizes_cover_both_ends_deterministically() -> None:
    sizes = mixed_sizes(100)
    assert len(sizes) == 100
    assert sizes == mixed_sizes(100)
    assert min(sizes) == MIN_FRAME_SIZE
    assert max(sizes) == MAX_FRAME_SIZE
    assert sizes != sorted(sizes)
    assert mixed_sizes(2) in ([MIN_FRAME_SIZE, MAX_FRAME_SIZE], [MAX_FRAME_SIZE, MIN_FRAME_SIZE])
