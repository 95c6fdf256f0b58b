#!/usr/bin/python3
"""pcapcount.py FILE MAC: counts, in a pcap of Ethernet frames, the ARP requests sent by MAC, the
ARP replies to it, and the ICMP echo requests from it and echo replies to it. Prints
"arp_requests=N arp_replies=N echo_requests=N echo_replies=N"."""
import struct, sys

path, mac = sys.argv[1], bytes(int(x, 16) for x in sys.argv[2].split(":"))
data = open(path, "rb").read()
magic = struct.unpack("<I", data[:4])[0]
if magic in (0xA1B2C3D4, 0xA1B23C4D):
    endian = "<"
elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
    endian = ">"
else:
    sys.exit(f"{path}: not a pcap file (magic 0x{magic:08x})")
if struct.unpack(endian + "I", data[20:24])[0] != 1:
    sys.exit(f"{path}: link type is not Ethernet")
n = dict(arp_requests=0, arp_replies=0, echo_requests=0, echo_replies=0)
off = 24
while off + 16 <= len(data):
    incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
    f = data[off + 16:off + 16 + incl]
    off += 16 + incl
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
