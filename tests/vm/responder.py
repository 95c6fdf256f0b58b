#!/usr/bin/python3
"""The link partner on a NIC port's wire for the VM test: answers ARP requests and ICMP echo
requests for one IPv4 address by injecting replies (EthernetService.InjectFrame), after seeing
the guest's frames through EthernetService.CaptureFrames.

    responder.py --target unix:///path.sock [--port 0] [--ip 10.0.2.2] [--mac 02:00:00:00:02:02]
                 [--duration SECONDS]

Prints one line per frame seen and per reply injected, and on exit (SIGTERM/SIGINT or duration) a
summary line "RESPONDER frames=N arp_requests=N arp_replies=N echo_requests=N echo_replies=N
rejected=N" (rejected: replies the NIC did not accept into any queue).
"""
import argparse, os, signal, struct, sys, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python", "src"))
import pcieemu  # noqa: E402

ETH_ARP, ETH_IP = 0x0806, 0x0800


def ip_bytes(s):
    parts = [int(p) for p in s.split(".")]
    if len(parts) != 4 or any(p < 0 or p > 255 for p in parts):
        raise argparse.ArgumentTypeError(f"--ip: '{s}' is not an IPv4 address")
    return bytes(parts)


def mac_bytes(s):
    parts = s.split(":")
    if len(parts) != 6:
        raise argparse.ArgumentTypeError(f"--mac: '{s}' is not a MAC address")
    return bytes(int(p, 16) for p in parts)


def fmt_mac(b):
    return ":".join(f"{x:02x}" for x in b)


def fmt_ip(b):
    return ".".join(str(x) for x in b)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def arp_reply(frame, my_mac, my_ip):
    """The reply to an ARP request for my_ip, or None."""
    if len(frame) < 42:
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
    if (htype, ptype, hlen, plen, op) != (1, ETH_IP, 6, 4, 1) or tpa != my_ip:
        return None
    arp = struct.pack("!HHBBH", 1, ETH_IP, 6, 4, 2) + my_mac + my_ip + sha + spa
    return sha + my_mac + struct.pack("!H", ETH_ARP) + arp, spa


def echo_reply(frame, my_mac, my_ip):
    """The reply to an ICMP echo request to my_ip, or None."""
    if len(frame) < 34:
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14] >> 4 != 4 or ihl < 20 or len(frame) < 14 + ihl + 8:
        return None
    total = struct.unpack("!H", frame[16:18])[0]
    ip = frame[14:14 + total]
    if ip[9] != 1 or ip[16:20] != my_ip or len(ip) < ihl + 8:
        return None
    icmp = ip[ihl:]
    if icmp[0] != 8:
        return None
    src = ip[12:16]
    hdr = bytearray(ip[:ihl])
    hdr[8] = 64                       # TTL
    hdr[12:16], hdr[16:20] = my_ip, src
    hdr[10:12] = b"\0\0"
    hdr[10:12] = struct.pack("!H", checksum(bytes(hdr)))
    body = bytearray(icmp)
    body[0] = 0                       # echo reply
    body[2:4] = b"\0\0"
    body[2:4] = struct.pack("!H", checksum(bytes(body)))
    seq = struct.unpack("!H", icmp[6:8])[0]
    return frame[6:12] + my_mac + struct.pack("!H", ETH_IP) + bytes(hdr) + bytes(body), src, seq


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ip", type=ip_bytes, default=ip_bytes("10.0.2.2"))
    ap.add_argument("--mac", type=mac_bytes, default=mac_bytes("02:00:00:00:02:02"))
    ap.add_argument("--duration", type=float, default=0)
    a = ap.parse_args()

    emu = pcieemu.connect(a.target, wait=30)
    stats = dict(frames=0, arp_requests=0, arp_replies=0, echo_requests=0, echo_replies=0, rejected=0)
    cap = emu.capture_frames(a.port)
    stop = threading.Event()
    print(f"RESPONDER READY port={a.port} ip={fmt_ip(a.ip)} mac={fmt_mac(a.mac)}", flush=True)

    def serve():
        try:
            for fr in cap:
                data = bytes(fr.data)
                stats["frames"] += 1
                etype = struct.unpack("!H", data[12:14])[0] if len(data) >= 14 else 0
                print(f"RESPONDER frame {len(data)} bytes {fmt_mac(data[6:12])} -> {fmt_mac(data[0:6])} type 0x{etype:04x}", flush=True)
                reply = None
                if etype == ETH_ARP and (r := arp_reply(data, a.mac, a.ip)):
                    stats["arp_requests"] += 1
                    reply, kind = r[0], f"arp reply to {fmt_ip(r[1])}"
                    key = "arp_replies"
                elif etype == ETH_IP and (r := echo_reply(data, a.mac, a.ip)):
                    stats["echo_requests"] += 1
                    reply, kind = r[0], f"echo reply to {fmt_ip(r[1])} seq {r[2]}"
                    key = "echo_replies"
                if reply is not None:
                    reply = reply.ljust(60, b"\0")   # a real link partner pads to the 64-byte minimum (60 + FCS)
                    res = emu.inject_frame(a.port, reply)
                    if res.accepted:
                        stats[key] += 1
                    else:
                        stats["rejected"] += 1
                    print(f"RESPONDER injected {kind}: accepted={res.accepted} queues={res.queues}", flush=True)
        except Exception as e:  # the stream ends when closed or when the server goes away
            if not stop.is_set():
                print(f"RESPONDER capture ended: {e}", flush=True)
        finally:
            stop.set()

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    deadline = time.monotonic() + a.duration if a.duration > 0 else None
    while not stop.wait(0.2):
        if deadline and time.monotonic() > deadline:
            break
    stop.set()
    cap.close()
    print("RESPONDER " + " ".join(f"{k}={v}" for k, v in stats.items()), flush=True)


if __name__ == "__main__":
    main()
