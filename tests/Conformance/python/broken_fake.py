"""A deliberately broken PcieEmu server for testing the conformance suite itself.

It forwards every RPC byte for byte to a real server, except SessionService.Transact, where it
drops posted-write ordering: writes without an ack are held back and sent only after the next
read (reads overtake posted writes, within batches too). A conformance suite worth having must
catch this.
"""
from __future__ import annotations

from concurrent import futures
from typing import Iterator, List, Optional

import grpc

from pcieemu import pb

TRANSACT = "/pcieemu.v1.SessionService/Transact"
STREAMING = {"/pcieemu.v1.InterruptService/SubscribeInterrupts", "/pcieemu.v1.EthernetService/CaptureFrames"}
_WRITES = {"config_write", "mmio_write", "memory_write"}


def _posted(op_holder) -> bool:
    kind = op_holder.WhichOneof("op")
    return kind in _WRITES and not getattr(op_holder, kind).ack


def reorder(requests: Iterator) -> Iterator:
    """Yields the requests with posted writes moved behind the next read."""
    held: List = []
    for req in requests:
        if req.batch:
            ops = [t for t in req.batch if not _posted(t)] + [t for t in req.batch if _posted(t)]
            del req.batch[:]
            req.batch.extend(ops)
        ops = ([req] if req.WhichOneof("op") else []) + list(req.batch)
        if ops and all(_posted(t) for t in ops):
            held.append(req)
            continue
        yield req
        yield from held
        held.clear()
    yield from held


class _Forwarder(grpc.GenericRpcHandler):
    def __init__(self, upstream: grpc.Channel):
        self.up = upstream

    def service(self, details):
        method = details.method
        if method == TRANSACT:
            call = self.up.stream_stream(method, request_serializer=pb.session_pb2.TransactRequest.SerializeToString,
                                         response_deserializer=None)

            def transact(request_iterator, context):
                try:
                    yield from call(reorder(request_iterator), timeout=30)
                except grpc.RpcError as e:
                    context.abort(e.code(), e.details())
            return grpc.stream_stream_rpc_method_handler(transact, request_deserializer=pb.session_pb2.TransactRequest.FromString)
        if method in STREAMING:
            call = self.up.unary_stream(method)

            def stream(request, context):
                try:
                    upstream = call(request, timeout=30)
                    context.send_initial_metadata(upstream.initial_metadata())
                    yield from upstream
                except grpc.RpcError as e:
                    context.abort(e.code(), e.details())
            return grpc.unary_stream_rpc_method_handler(stream)
        unary = self.up.unary_unary(method)

        def forward(request, context):
            try:
                return unary(request, timeout=30)
            except grpc.RpcError as e:
                context.abort(e.code(), e.details())
        return grpc.unary_unary_rpc_method_handler(forward)


class BrokenFakeServer:
    """Listens on a free loopback port; ``target`` is its tcp:// URL."""

    def __init__(self, upstream_target: str, token_file: Optional[str] = None):
        from pcieemu.client import grpc_target, resolve_token, with_token
        gt, is_unix = grpc_target(upstream_target)
        self.channel = grpc.insecure_channel(gt, options=[("grpc.default_authority", "localhost")] if is_unix else [])
        if not is_unix:
            self.channel = with_token(self.channel, resolve_token(token_file=token_file))
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[_Forwarder(self.channel)],
                                  options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)])
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = f"tcp://127.0.0.1:{port}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)
        self.channel.close()
