"""Pure checks made when a socket opens: do the interface's frames fit a UMEM frame, and the bind flags."""

from __future__ import annotations

import warnings

import pytest

from xdppacket import (
    BIND_AUTO,
    BIND_COPY,
    BIND_ZEROCOPY,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    BindMode,
    OptBindMode,
    OptFrameSize,
    OptHeadroom,
    OptMultiBuffer,
    OptXDPMode,
    XDPMode,
)
from xdppacket._frame_fit import check_frames_fit, longest_delivered_frame, received_bytes_per_frame
from xdppacket._xsk import bind_flags_for
from xdppacket.options import resolve_options

XDP_COPY, XDP_ZEROCOPY, XDP_USE_NEED_WAKEUP, XDP_USE_SG = 2, 4, 8, 16


def fit(mtu: int, *opts: object) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_frames_fit("eth9", mtu, resolve_options(opts, owner="XDPPacket"), stacklevel=1)
    return caught


def test_capacity_and_longest_frame() -> None:
    assert longest_delivered_frame(1500) == 1518
    assert received_bytes_per_frame(4096, 0) == 3840
    assert received_bytes_per_frame(2048, 100) == 1692


@pytest.mark.parametrize(("mtu", "frame_size"), [(1500, 2048), (1774, 2048), (3822, 4096)])
def test_frames_that_fit_pass_silently(mtu: int, frame_size: int) -> None:
    assert fit(mtu, OptFrameSize(frame_size)) == []


def test_an_mtu_a_4096_byte_frame_holds_suggests_it() -> None:
    (warning,) = fit(1775, OptFrameSize(2048))
    assert issubclass(warning.category, UserWarning)
    assert str(warning.message) == (
        "eth9 has MTU 1775, so it delivers frames of up to 1793 bytes, but a 2048-byte UMEM frame holds only "
        "1792 received bytes: longer frames are dropped by the kernel and show only in rx_dropped; use "
        "OptFrameSize(4096), or use OptMultiBuffer() to receive them whole, or lower the MTU (ip link set dev "
        "eth9 mtu N)"
    )


@pytest.mark.parametrize("frame_size", [2048, 4096])
def test_a_jumbo_mtu_suggests_multi_buffer_only(frame_size: int) -> None:
    (warning,) = fit(9000, OptFrameSize(frame_size))
    assert "use OptMultiBuffer() to receive them whole" in str(warning.message)
    assert "OptFrameSize" not in str(warning.message)


@pytest.mark.parametrize("frame_size", [2048, 4096])
def test_multi_buffer_receives_long_frames_whole_so_nothing_warns(frame_size: int) -> None:
    assert fit(9000, OptFrameSize(frame_size), OptMultiBuffer()) == []
    assert fit(65000, OptFrameSize(frame_size), OptMultiBuffer(), OptHeadroom(1)) == []


def test_a_headroom_that_makes_frames_not_fit_is_refused() -> None:
    assert fit(1500, OptFrameSize(2048), OptHeadroom(274)) == []
    with pytest.raises(ValueError, match=r"^OptHeadroom\(275\): eth9 \(MTU 1500\) delivers frames of up to 1518 "
                                         r"bytes .* holds only 1517 received bytes .*; use OptHeadroom\(274\) or less$"):
        fit(1500, OptFrameSize(2048), OptHeadroom(275))
    with pytest.raises(ValueError, match=r"use no OptHeadroom or lower the MTU \(ip link set dev eth9 mtu N\)$"):
        fit(9000, OptHeadroom(1))


@pytest.mark.parametrize(
    ("mode", "bind_mode", "flags"),
    [
        (XDP_MODE_SKB, BIND_AUTO, XDP_USE_NEED_WAKEUP | XDP_COPY),  # generic mode can only copy
        (XDP_MODE_DRV, BIND_AUTO, XDP_USE_NEED_WAKEUP),  # the kernel tries zero-copy, falls back
        (XDP_MODE_SKB, BIND_COPY, XDP_USE_NEED_WAKEUP | XDP_COPY),
        (XDP_MODE_DRV, BIND_COPY, XDP_USE_NEED_WAKEUP | XDP_COPY),
        (XDP_MODE_DRV, BIND_ZEROCOPY, XDP_USE_NEED_WAKEUP | XDP_ZEROCOPY),
    ],
)
def test_bind_flags(mode: XDPMode, bind_mode: BindMode, flags: int) -> None:
    options = resolve_options([OptXDPMode(mode), OptBindMode(bind_mode)], owner="XDPPacket")
    assert bind_flags_for(options) == flags


@pytest.mark.parametrize("mode", [XDP_MODE_SKB, XDP_MODE_DRV])
def test_multi_buffer_binds_with_xdp_use_sg(mode: XDPMode) -> None:
    plain = resolve_options([OptXDPMode(mode)], owner="XDPPacket")
    multi_buffer = resolve_options([OptXDPMode(mode), OptMultiBuffer()], owner="XDPPacket")
    assert bind_flags_for(multi_buffer) == bind_flags_for(plain) | XDP_USE_SG
