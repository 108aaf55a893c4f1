"""The options an asyncio socket hands to the synchronous socket it is built on."""

from __future__ import annotations

from ..options import IO_MODE_NONBLOCK, OptIoMode, OptPollTimeout

__all__ = ["event_loop_options"]


def event_loop_options(opts: tuple[object, ...]) -> tuple[object, ...]:
    """The user's options, then non-blocking mode with a zero poll timeout.

    Later options win, so whatever ``OptIoMode``/``OptPollTimeout`` the user gave is
    overridden (SPEC: they are ignored, waiting is the event loop's): a synchronous call
    then never waits, and only the event loop does.
    """
    return (*opts, OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(0))
