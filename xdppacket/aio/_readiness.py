"""``Readiness``: coroutines waiting for one descriptor to become readable or writable.

``loop.add_reader(fd, ...)`` keeps one callback per descriptor: a second registration
replaces the first, whose waiter would then sleep forever. ``Readiness`` therefore
registers the descriptor once for however many coroutines wait on it, wakes them all
together, and unregisters as soon as nobody waits (so an idle socket costs the loop
nothing).

A wait is also bounded by a slice: the kernel reports a deleted interface only through
``SO_ERROR``, never by waking the socket, so a waiter comes back now and then and the
caller's next non-blocking call notices (the synchronous classes do the same).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

__all__ = ["WAIT_SLICE_S", "Readiness"]

#: The longest a wait lasts before its caller checks the socket again.
WAIT_SLICE_S = 0.25

_R = TypeVar("_R")


class Readiness:
    """Waiters for one direction (read or write) of one descriptor.

    Owns nothing but its loop registration, which exists exactly while a coroutine
    waits. ``detach()`` unregisters and wakes every waiter: call it before the
    descriptor closes. Not thread-safe: use it from its event loop's thread.
    """

    def __init__(self, fd: int, *, writable: bool) -> None:
        self._fd = fd
        self._writable = writable
        self._waiters: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # set while registered

    async def wait(self, timeout: float = WAIT_SLICE_S) -> None:
        """Return once the descriptor is ready, or after ``timeout`` seconds (the caller retries)."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError("an xdppacket.aio socket is waited on from two event loops at once")
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.add(waiter)
        if self._loop is None:
            self._register(loop)
        timer = loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)
            if not self._waiters:
                self._unregister()

    async def first_result(self, attempt: Callable[[], _R | None]) -> _R:
        """What ``attempt()`` returns once it is not None, waiting for readiness between tries.

        Nothing is awaited after a try that succeeded, so cancelling the caller (at its
        only await, between tries) never loses what a try took.
        """
        while True:
            result = attempt()
            if result is not None:
                return result
            await self.wait()

    def detach(self) -> None:
        """Unregister the descriptor and wake every waiter (before the descriptor closes)."""
        self._unregister()
        self._wake_all()

    def _register(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._writable:
            loop.add_writer(self._fd, self._ready)
        else:
            loop.add_reader(self._fd, self._ready)
        self._loop = loop

    def _unregister(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        if self._writable:
            loop.remove_writer(self._fd)
        else:
            loop.remove_reader(self._fd)

    def _ready(self) -> None:
        # Level-triggered: stop watching until someone waits again, or the loop would spin.
        self._unregister()
        self._wake_all()

    def _wake_all(self) -> None:
        for waiter in self._waiters:
            _wake(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
