#!/usr/bin/python3
"""Measures the Python client against a server and prints a table:
ReadConfig round trip (sequential unary calls) and pipelined Session throughput
(futures with a bounded window, and batched messages). Bounded in count; loopback only.

    /usr/bin/python3 clients/python/examples/bench.py                 # starts its own server
    /usr/bin/python3 clients/python/examples/bench.py --target tcp://127.0.0.1:50551
"""
import argparse
import statistics
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pcieemu  # noqa: E402
from pcieemu import pb  # noqa: E402


def round_trip(emu, n):
    for _ in range(200):  # warm up
        emu.config_read("01:00.0", 0, 4)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        emu.config_read("01:00.0", 0, 4)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return statistics.mean(samples), samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def pipelined(emu, n, window):
    with emu.session() as s:
        for f in [s.config_read("01:00.0", 0, 4) for _ in range(200)]:
            f.result(30)
        pending = deque()
        t0 = time.perf_counter()
        for _ in range(n):
            pending.append(s.config_read("01:00.0", 0, 4))
            if len(pending) >= window:
                pending.popleft().result(30)
        while pending:
            pending.popleft().result(30)
        return n / (time.perf_counter() - t0)


def batched(emu, n, batch):
    """Raw TransactRequest.batch messages of `batch` reads each, all sent before reading completions."""
    op = pb.session_pb2.ConfigReadOp(rid=0x100, offset=0, width=4)
    msgs = []
    tag = 0
    for _ in range(n // batch):
        m = pb.session_pb2.TransactRequest()
        for _ in range(batch):
            t = m.batch.add()
            t.tag = tag
            t.config_read.CopyFrom(op)
            tag += 1
        msgs.append(m)
    t0 = time.perf_counter()
    got = 0
    for resp in emu.session_stub.Transact(iter(msgs), timeout=120):
        got += 1 + len(resp.more)
    elapsed = time.perf_counter() - t0
    assert got == tag, (got, tag)
    return got / elapsed


def main():
    ap = argparse.ArgumentParser(description="Python client benchmark")
    ap.add_argument("--target", action="append", help="tcp://host:port or unix:///path (repeatable); default: start a server")
    ap.add_argument("--token-file", default=None,
                    help="TCP: the server's token file (default: $PCIEEMU_TOKEN, else the default token file)")
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--reads", type=int, default=50000)
    args = ap.parse_args()
    server = None
    targets = args.target
    if not targets:
        from pcieemu.testing import ServerProcess
        server = ServerProcess()
        targets = [server.tcp_target, server.unix_target]
        args.token_file = server.token_file
    try:
        print(f"{'transport':<10} {'ReadConfig mean us':>19} {'p50 us':>8} {'p99 us':>8} {'Session window=64 ops/s':>24} {'Session batch=256 ops/s':>24}")
        for t in targets:
            with pcieemu.connect(t, token_file=args.token_file) as emu:
                mean, p50, p99 = round_trip(emu, args.calls)
                pipe = pipelined(emu, args.reads, 64)
                batch = batched(emu, args.reads, 256)
                kind = "unix" if t.startswith("unix:") else "tcp"
                print(f"{kind:<10} {mean:>19.1f} {p50:>8.1f} {p99:>8.1f} {pipe:>24,.0f} {batch:>24,.0f}")
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
