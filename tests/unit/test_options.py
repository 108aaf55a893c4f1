"""Option objects and ``resolve_options``: types, ranges, defaults, precedence, combinations.

Pure: no socket or kernel call happens here, which is the point. Every refusal must
name the option at fault.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from xdppacket import (
    BIND_AUTO,
    BIND_COPY,
    BIND_ZEROCOPY,
    IO_MODE_BLOCK,
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    OptBindMode,
    OptBusyPoll,
    OptFilter,
    OptFrameSize,
    OptHeadroom,
    OptHugePages,
    OptIoMode,
    OptMultiBuffer,
    OptNumFrames,
    OptPollTimeout,
    OptQueueCount,
    OptQueueID,
    OptRingSize,
    OptXDPMode,
    XDPOptions,
    compile_filter,
)
from xdppacket.options import resolve_options

INT_OPTIONS = [OptNumFrames, OptFrameSize, OptRingSize, OptQueueID, OptQueueCount, OptPollTimeout]


@pytest.mark.parametrize("option", INT_OPTIONS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("value", ["64", 64.0, None, True, b"\x40"], ids=repr)
def test_int_options_refuse_other_types(option: Any, value: object) -> None:
    # bool is an int subclass, but OptNumFrames(True) is surely a mistake.
    with pytest.raises(TypeError, match=f"^{option.__name__} takes an int, got "):
        option(value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        (OptNumFrames, 0),
        (OptNumFrames, 32),
        (OptNumFrames, 65),
        (OptNumFrames, 96),
        (OptNumFrames, 524288),
        (OptNumFrames, -64),
        (OptFrameSize, 1024),
        (OptFrameSize, 3000),
        (OptFrameSize, 8192),
        (OptRingSize, 32),
        (OptRingSize, 100),
        (OptRingSize, 1048576),
        (OptQueueID, -1),
        (OptQueueCount, 0),
        (OptQueueCount, 65),
        (OptPollTimeout, -1),
        (OptPollTimeout, 86_400 * 1_000_000 + 1),
        (OptPollTimeout, 2**63),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_out_of_range_values_are_refused_by_name(option: Any, value: int) -> None:
    with pytest.raises(ValueError, match=rf"^{option.__name__}\({value}\): must be "):
        option(value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        (OptNumFrames, 64),
        (OptNumFrames, 262144),
        (OptFrameSize, 2048),
        (OptFrameSize, 4096),
        (OptRingSize, 64),
        (OptRingSize, 524288),
        (OptQueueID, 0),
        (OptQueueID, 63),
        (OptQueueID, 200),
        (OptQueueCount, 1),
        (OptQueueCount, 64),
        (OptPollTimeout, 0),
        (OptPollTimeout, 10**9),
        (OptPollTimeout, 86_400 * 1_000_000),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_values_at_the_ends_of_the_ranges_are_accepted(option: Any, value: int) -> None:
    assert option(value).value == value


@pytest.mark.parametrize("value", [2, 4, "skb", None, IO_MODE_BLOCK])
def test_xdp_mode_takes_only_the_mode_constants(value: object) -> None:
    with pytest.raises(TypeError, match="^OptXDPMode takes XDP_MODE_DRV or XDP_MODE_SKB, got "):
        OptXDPMode(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 1, "block", None, XDP_MODE_SKB])
def test_io_mode_takes_only_the_io_mode_constants(value: object) -> None:
    with pytest.raises(TypeError, match="^OptIoMode takes IO_MODE_BLOCK or IO_MODE_NONBLOCK, got "):
        OptIoMode(value)  # type: ignore[arg-type]


def test_defaults() -> None:
    expected = XDPOptions(
        num_frames=1024,
        frame_size=4096,
        ring_size=1024,
        xdp_mode=XDP_MODE_DRV,
        queue_id=0,
        queue_count=1,
        poll_timeout_us=100,
        io_mode=IO_MODE_BLOCK,
    )
    assert XDPOptions() == expected
    assert resolve_options([], owner="XDPPacket") == expected
    assert expected.blocking


def test_every_option_lands_in_its_field() -> None:
    options = resolve_options(
        [
            OptNumFrames(128),
            OptFrameSize(2048),
            OptRingSize(256),
            OptXDPMode(XDP_MODE_SKB),
            OptQueueID(3),
            OptPollTimeout(250),
            OptIoMode(IO_MODE_NONBLOCK),
        ],
        owner="XDPPacket",
    )
    assert options == XDPOptions(128, 2048, 256, XDP_MODE_SKB, 3, 1, 250, IO_MODE_NONBLOCK)
    assert not options.blocking
    assert resolve_options([OptQueueCount(4)], owner="XDPMultiQueue").queue_count == 4


def test_later_options_win() -> None:
    options = resolve_options(
        [OptPollTimeout(5), OptXDPMode(XDP_MODE_SKB), OptPollTimeout(7), OptXDPMode(XDP_MODE_DRV)],
        owner="XDPPacket",
    )
    assert (options.poll_timeout_us, options.xdp_mode) == (7, XDP_MODE_DRV)


def test_ring_size_up_to_twice_the_frames_is_accepted() -> None:
    options = resolve_options([OptNumFrames(64), OptRingSize(128)], owner="XDPPacket")
    assert (options.num_frames, options.ring_size) == (64, 128)


@pytest.mark.parametrize(
    "opts",
    [
        [OptNumFrames(64), OptRingSize(256)],
        [OptRingSize(256), OptNumFrames(64)],  # the check runs on the final values
        [OptRingSize(4096)],  # against the default of 1024 frames
    ],
)
def test_ring_size_beyond_twice_the_frames_is_refused(opts: list[object]) -> None:
    with pytest.raises(ValueError, match=r"^OptRingSize\(\d+\) exceeds twice OptNumFrames\(\d+\)"):
        resolve_options(opts, owner="XDPPacket")


def test_xdppacket_refuses_queue_count() -> None:
    with pytest.raises(TypeError, match="^XDPPacket does not take OptQueueCount; use OptQueueID$"):
        resolve_options([OptQueueCount(2)], owner="XDPPacket")


def test_multi_queue_refuses_queue_id() -> None:
    with pytest.raises(TypeError, match="^XDPMultiQueue does not take OptQueueID; use OptQueueCount$"):
        resolve_options([OptQueueID(2)], owner="XDPMultiQueue")


@pytest.mark.parametrize("opt", [object(), 64, "OptNumFrames(64)", XDP_MODE_SKB, IO_MODE_NONBLOCK,
                                 OptNumFrames])
def test_unknown_option_objects_are_a_type_error(opt: object) -> None:
    with pytest.raises(TypeError, match=r"^XDPPacket: unknown option .*; options are OptNumFrames, "):
        resolve_options([OptPollTimeout(5), opt], owner="XDPPacket")


def test_options_are_immutable() -> None:
    options = resolve_options([OptNumFrames(512)], owner="XDPPacket")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.num_frames = 256  # type: ignore[misc]
    option = OptNumFrames(512)
    with pytest.raises(dataclasses.FrozenInstanceError):
        option.value = 64  # type: ignore[misc]
    assert options.num_frames == option.value == 512


def test_no_filter_by_default() -> None:
    assert resolve_options([], owner="XDPPacket").filter is None


@pytest.mark.parametrize("owner", ["XDPPacket", "XDPMultiQueue"])
def test_a_filter_resolves_to_its_compiled_prologue(owner: str) -> None:
    option = OptFilter("udp port 53")
    options = resolve_options([OptNumFrames(512), option], owner=owner)
    assert options.filter is option.compiled
    assert options.filter == compile_filter("udp port 53")
    assert options.num_frames == 512
    assert "filter=<CompiledFilter of OptFilter('udp port 53'): " in repr(options)


def test_the_last_filter_wins() -> None:
    classic = OptFilter.from_cbpf([(0x06, 0, 0, 0xFFFF)])
    options = resolve_options([OptFilter("tcp"), classic], owner="XDPPacket")
    assert options.filter is classic.compiled
    assert options.filter.expression is None


# ------------------------------------------------------------------ advanced AF_XDP options


def test_advanced_option_defaults() -> None:
    options = resolve_options([], owner="XDPPacket")
    assert (options.bind_mode, options.busy_poll, options.huge_pages, options.headroom) == (BIND_AUTO, None, False, 0)


def test_multi_buffer_is_off_unless_asked_for() -> None:
    assert resolve_options([], owner="XDPPacket").multi_buffer is False
    assert resolve_options([OptMultiBuffer()], owner="XDPMultiQueue").multi_buffer is True
    assert OptMultiBuffer() == OptMultiBuffer()


def test_advanced_options_land_in_their_fields() -> None:
    options = resolve_options(
        [OptBindMode(BIND_COPY), OptBusyPoll(budget=8, timeout_us=100), OptHugePages(), OptHeadroom(128)],
        owner="XDPMultiQueue",
    )
    assert options.bind_mode is BIND_COPY
    assert options.busy_poll == OptBusyPoll(budget=8, timeout_us=100)
    assert (options.huge_pages, options.headroom) == (True, 128)
    assert OptBusyPoll() == OptBusyPoll(budget=64, timeout_us=20)


@pytest.mark.parametrize("value", [0, 2, 4, "BIND_AUTO", None, XDP_MODE_DRV], ids=repr)
def test_bind_mode_takes_only_the_bind_constants(value: object) -> None:
    with pytest.raises(TypeError, match=r"^OptBindMode takes BIND_AUTO, BIND_COPY or BIND_ZEROCOPY, got "):
        OptBindMode(value)  # type: ignore[arg-type]


def test_bind_mode_constants_are_the_kernel_bind_flags() -> None:
    assert (int(BIND_AUTO), int(BIND_COPY), int(BIND_ZEROCOPY)) == (0, 2, 4)  # XDP_COPY, XDP_ZEROCOPY


def test_zero_copy_in_generic_mode_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^OptBindMode\(BIND_ZEROCOPY\) cannot work with "
                                         r"OptXDPMode\(XDP_MODE_SKB\): generic mode always copies frames"):
        resolve_options([OptBindMode(BIND_ZEROCOPY), OptXDPMode(XDP_MODE_SKB)], owner="XDPPacket")
    assert resolve_options([OptBindMode(BIND_COPY), OptXDPMode(XDP_MODE_SKB)], owner="XDPPacket")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"budget": 0}, r"^OptBusyPoll\(budget=0\): the budget must be from 1 to 65535 frames$"),
        ({"budget": 65536}, r"^OptBusyPoll\(budget=65536\): "),
        ({"timeout_us": -1}, r"^OptBusyPoll\(timeout_us=-1\): must be from 0 to 2147483647 microseconds$"),
        ({"timeout_us": 2**31}, r"^OptBusyPoll\(timeout_us=2147483648\): "),
    ],
)
def test_busy_poll_ranges(kwargs: dict[str, int], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        OptBusyPoll(**kwargs)


@pytest.mark.parametrize("kwargs", [{"budget": 1}, {"budget": 65535}, {"timeout_us": 0}, {"timeout_us": 2**31 - 1}])
def test_busy_poll_range_ends_are_accepted(kwargs: dict[str, int]) -> None:
    assert OptBusyPoll(**kwargs)


@pytest.mark.parametrize(("kwargs", "name"), [({"budget": 1.0}, "budget"), ({"timeout_us": True}, "timeout_us")])
def test_busy_poll_takes_ints(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(TypeError, match=rf"^OptBusyPoll {name} takes an int"):
        OptBusyPoll(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, 3840, 100000])
def test_headroom_range(value: int) -> None:
    with pytest.raises(ValueError, match=rf"^OptHeadroom\({value}\): must be from 0 to 3839 bytes$"):
        OptHeadroom(value)


def test_headroom_must_leave_room_in_the_frame() -> None:
    assert resolve_options([OptFrameSize(2048), OptHeadroom(1791)], owner="XDPPacket").headroom == 1791
    with pytest.raises(ValueError, match=r"^OptHeadroom\(1792\) leaves no room for a frame in OptFrameSize\(2048\)"):
        resolve_options([OptFrameSize(2048), OptHeadroom(1792)], owner="XDPPacket")


def test_batch_timestamps_is_off_unless_asked_for() -> None:
    from xdppacket import OptBatchTimestamps

    assert resolve_options([], owner="XDPPacket").batch_timestamps is False
    assert resolve_options([OptBatchTimestamps()], owner="XDPPacket").batch_timestamps is True
    assert resolve_options([OptBatchTimestamps(False)], owner="XDPMultiQueue").batch_timestamps is False
    with pytest.raises(TypeError, match="^OptBatchTimestamps takes a bool, got int 1"):
        OptBatchTimestamps(1)  # type: ignore[arg-type]
