"""Print every frame arriving on queue 0 of an interface; Ctrl-C prints the counters and stops.

Usage, as root: python examples/capture.py IFNAME [skb]   (skb: generic mode, for any driver)
"""

import sys

from xdppacket import XDP_MODE_DRV, XDP_MODE_SKB, OptXDPMode, XDPMode, XDPPacket


def capture(ifname: str, mode: XDPMode) -> None:
    with XDPPacket(ifname, OptXDPMode(mode)) as xsk:
        try:
            while True:
                data, info = xsk.read_packet_data()  # blocks until a frame arrives
                print(f"{info.length:5} bytes  {data[:24].hex(' ')}")
        except KeyboardInterrupt:  # Ctrl-C
            print({name: value for name, value in xsk.get_stats().as_dict().items() if value})


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    capture(sys.argv[1], XDP_MODE_SKB if sys.argv[2:] == ["skb"] else XDP_MODE_DRV)
