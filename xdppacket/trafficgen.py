"""Deprecated: the traffic generator moved to ``xdppacket.testing.trafficgen``.

Importing this module still works and gives the same objects, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings

from .testing import trafficgen as _moved
from .testing.trafficgen import *  # noqa: F403  (re-exports exactly its __all__)

__all__ = _moved.__all__

warnings.warn(
    "xdppacket.trafficgen is deprecated: import TrafficGenerator and GeneratorResult from "
    "xdppacket.testing (the rest from xdppacket.testing.trafficgen)",
    DeprecationWarning,
    stacklevel=2,
)
