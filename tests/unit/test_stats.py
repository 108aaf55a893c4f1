"""``XDPStats`` arithmetic and ``CaptureInfo``: pure value objects."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from xdppacket import CaptureInfo, XDPStats
from xdppacket.stats import capture_info_from_fields

FIELD_NAMES = [
    # user-space counters
    "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "polls", "rx_empty", "tx_full",
    "fq_full", "cq_empty", "send_busy", "send_again",
    # kernel counters (struct xdp_statistics order)
    "rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
    "rx_fill_ring_empty_descs", "tx_ring_empty_descs",
]  # fmt: skip


def stats_counting_from(start: int, step: int) -> XDPStats:
    """Stats whose fields are start, start+step, ... so every field differs."""
    return XDPStats(**{name: start + i * step for i, name in enumerate(FIELD_NAMES)})


def test_fields_are_the_spec_counters_in_order() -> None:
    assert [field.name for field in dataclasses.fields(XDPStats)] == FIELD_NAMES
    assert XDPStats().as_dict() == dict.fromkeys(FIELD_NAMES, 0)


def test_as_dict_maps_every_field() -> None:
    stats = stats_counting_from(1, 1)
    assert stats.as_dict() == {name: 1 + i for i, name in enumerate(FIELD_NAMES)}


def test_addition_is_field_by_field() -> None:
    total = stats_counting_from(1, 1) + stats_counting_from(1000, 100)
    assert total.as_dict() == {name: 1001 + 101 * i for i, name in enumerate(FIELD_NAMES)}


def test_subtraction_is_field_by_field() -> None:
    delta = stats_counting_from(1000, 100) - stats_counting_from(1, 1)
    assert delta.as_dict() == {name: 999 + 99 * i for i, name in enumerate(FIELD_NAMES)}


def test_sum_accumulates_from_empty_stats() -> None:
    per_queue = [stats_counting_from(n, n) for n in (1, 2, 3, 4)]
    total = sum(per_queue, XDPStats())
    assert total.as_dict() == {name: 10 + 10 * i for i, name in enumerate(FIELD_NAMES)}
    assert total - per_queue[0] == sum(per_queue[1:], XDPStats())


@pytest.mark.parametrize("other", [1, 1.5, None, {"rx_packets": 1}, (0,) * 17])
def test_arithmetic_with_other_types_is_a_type_error(other: object) -> None:
    with pytest.raises(TypeError):
        XDPStats() + other  # type: ignore[operator]
    with pytest.raises(TypeError):
        XDPStats() - other  # type: ignore[operator]


def test_stats_are_immutable() -> None:
    stats = XDPStats(rx_packets=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.rx_packets = 2  # type: ignore[misc]
    assert stats.rx_packets == 1


def test_capture_info_fields() -> None:
    info = CaptureInfo(
        timestamp_ns=1_700_000_000_123_456_789,
        capture_length=60,
        length=64,
        interface_index=7,
        queue_id=3,
    )
    assert tuple(info) == (1_700_000_000_123_456_789, 60, 64, 7, 3, b"")  # no metadata by default
    assert CaptureInfo._fields == (
        "timestamp_ns", "capture_length", "length", "interface_index", "queue_id", "metadata",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("timestamp_ns", "seconds"),
    [(0, 0.0), (1_500_000_000, 1.5), (1_700_000_000_250_000_000, 1_700_000_000.25)],
)
def test_capture_info_timestamp_is_derived_from_nanoseconds(timestamp_ns: int, seconds: float) -> None:
    info = CaptureInfo(timestamp_ns, 60, 60, 1, 0)
    assert info.timestamp == seconds
    assert isinstance(info.timestamp, float)


@pytest.mark.parametrize("field", [*CaptureInfo._fields, "timestamp"])
def test_capture_info_is_immutable(field: str) -> None:
    info = CaptureInfo(1, 60, 60, 1, 0)
    with pytest.raises(AttributeError):
        setattr(info, field, 5)
    assert info == (1, 60, 60, 1, 0, b"")


def test_capture_info_built_from_fields_is_the_same_value() -> None:
    """The receive path's constructor and the users' one make equal, interchangeable values."""
    fields = (1_700_000_000_123_456_789, 60, 64, 7, 3, b"meta")
    built = capture_info_from_fields(fields)
    assert type(built) is CaptureInfo
    assert (built.timestamp_ns, built.capture_length, built.length, built.interface_index, built.queue_id,
            built.metadata) == fields
    assert built.timestamp == 1_700_000_000.1234567
    assert hash(built) == hash(CaptureInfo(*fields))
    assert built == CaptureInfo(*fields) == fields


def test_capture_info_keeps_the_namedtuple_conveniences() -> None:
    info = CaptureInfo(5, 60, 64, 7, 3)
    assert repr(info) == ("CaptureInfo(timestamp_ns=5, capture_length=60, length=64, interface_index=7, "
                          "queue_id=3, metadata=b'')")
    assert info._asdict() == {"timestamp_ns": 5, "capture_length": 60, "length": 64, "interface_index": 7,
                              "queue_id": 3, "metadata": b""}
    replaced = info._replace(queue_id=1, metadata=b"x")
    assert type(replaced) is CaptureInfo
    assert replaced == (5, 60, 64, 7, 1, b"x")
    with pytest.raises(ValueError, match="no field"):
        info._replace(queue=1)
    copied = pickle.loads(pickle.dumps(info))
    assert type(copied) is CaptureInfo
    assert copied == info
    assert copy.copy(info) == info
    assert copy.deepcopy(info) == info
    assert CaptureInfo.__match_args__ == CaptureInfo._fields  # class patterns (``case CaptureInfo(t, ...)``)


def test_capture_info_wrong_arguments_name_the_class() -> None:
    with pytest.raises(TypeError, match=r"CaptureInfo\(\) missing 3 required positional arguments"):
        CaptureInfo(1, 60)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"CaptureInfo\(\) got an unexpected keyword argument 'ts'"):
        CaptureInfo(ts=1, capture_length=60, length=60, interface_index=1, queue_id=0)  # type: ignore[call-arg]
