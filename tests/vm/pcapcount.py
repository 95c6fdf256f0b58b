#!/usr/bin/python3
"""pcapcount.py FILE MAC: counts, in a capture of Ethernet frames (pcapng as `serve --pcap` writes it,
or classic pcap), the ARP requests sent by MAC, the ARP replies to it, and the ICMP echo requests
from it and echo replies to it. Prints "arp_requests=N arp_replies=N echo_requests=N echo_replies=N"."""
import struct, sys

path, mac = sys.argv[1], bytes(int(x, 16) for x in sys.argv[2].split(":"))
data = open(path, "rb").read()


def pcap_frames():
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    if struct.unpack(endian + "I", data[20:24])[0] != 1:
        sys.exit(f"{path}: link type is not Ethernet")
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        yield data[off + 16:off + 16 + incl]
        off += 16 + incl


def pcapng_frames():
    # Blocks: type, total length, body, total length. The section header's byte-order magic says the
    # endianness; interface description blocks carry the link type; enhanced packet blocks the frames.
    endian, links, off = "<", [], 0
    while off + 12 <= len(data):
        if data[off:off + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if data[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            links = []
        btype, blen = struct.unpack(endian + "II", data[off:off + 8])
        if blen < 12 or off + blen > len(data):
            break   # a block still being written
        if btype == 1:
            links.append(struct.unpack(endian + "H", data[off + 8:off + 10])[0])
        elif btype == 6:
            iface, _, _, caplen = struct.unpack(endian + "IIII", data[off + 8:off + 24])
            if iface < len(links) and links[iface] != 1:
                sys.exit(f"{path}: link type of interface {iface} is not Ethernet")
            yield data[off + 28:off + 28 + caplen]
        off += blen


magic = struct.unpack("<I", data[:4])[0] if len(data) >= 4 else 0
if magic == 0x0A0D0D0A:
    frames = pcapng_frames()
elif magic in (0xA1B2C3D4, 0xA1B23C4D, 0xD4C3B2A1, 0x4D3CB2A1):
    frames = pcap_frames()
else:
    sys.exit(f"{path}: not a pcapng or pcap file (magic 0x{magic:08x})")
n = dict(arp_requests=0, arp_replies=0, echo_requests=0, echo_replies=0)
for f in frames:
    if len(f) < 14:
        continue
    etype = struct.unpack("!H", f[12:14])[0]
    if etype == 0x0806 and len(f) >= 22:
        op = struct.unpack("!H", f[20:22])[0]
        if op == 1 and f[6:12] == mac:
            n["arp_requests"] += 1
        elif op == 2 and f[0:6] == mac:
            n["arp_replies"] += 1
    elif etype == 0x0800 and len(f) >= 35 and f[23] == 1:
        icmp = f[14 + (f[14] & 0x0F) * 4:]
        if icmp and icmp[0] == 8 and f[6:12] == mac:
            n["echo_requests"] += 1
        elif icmp and icmp[0] == 0 and f[0:6] == mac:
            n["echo_replies"] += 1
print(" ".join(f"{k}={v}" for k, v in n.items()))
