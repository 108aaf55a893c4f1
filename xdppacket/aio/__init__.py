"""xdppacket for asyncio: sockets whose reads and writes are coroutines.

``AsyncXDPPacket`` and ``AsyncXDPMultiQueue`` take the synchronous classes' options and
return what they return; waiting is the event loop's (``OptIoMode``/``OptPollTimeout``
are ignored), and no call ever blocks the loop. Cancelling any coroutine, or leaving an
``async for`` early, loses no received frame and leaks no transmit frame.

``ReceiveThread`` reads a synchronous socket in a thread of its own, ``ReceiveProcess``
in a child process; both hand copied batches to asyncio code through a bounded queue,
counting what they had to drop: for programs whose event loop is too busy to keep a
ring drained. README.md ("asyncio")
says when to use which, with measured figures.
"""

from ._multiqueue import AsyncXDPMultiQueue
from ._packet import AsyncXDPPacket
from ._process import ReceiveProcess
from ._runner import ReceiveStats, ReceiveThread

__all__ = ["AsyncXDPMultiQueue", "AsyncXDPPacket", "ReceiveProcess", "ReceiveStats", "ReceiveThread"]
