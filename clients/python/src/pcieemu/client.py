"""Connection and the unary RPCs, with config/capability helpers on top."""
from __future__ import annotations

import getpass
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

import grpc

from . import _logic, pb
from .bdf import Bdf, RidLike, format_bdf, to_rid

DEFAULT_TCP_TARGET = "tcp://127.0.0.1:50551"
TARGET_VARIABLE = "PCIEEMU_TARGET"
TOKEN_VARIABLE = "PCIEEMU_TOKEN"
DEFAULT_TIMEOUT = 30.0  # seconds: the deadline of every unary call unless the call passes timeout=


def _user_name() -> str:
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return getpass.getuser()


def default_runtime_dir() -> str:
    """The server's private runtime directory: $XDG_RUNTIME_DIR/pcie-emu when XDG_RUNTIME_DIR is
    an existing directory, else $TMPDIR/pcie-emu-USER (holds the default socket and token file)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "pcie-emu")
    return os.path.join(tempfile.gettempdir(), f"pcie-emu-{_user_name()}")


def default_unix_socket() -> str:
    """``pcie-emu.sock`` in :func:`default_runtime_dir` (the server's default socket)."""
    return os.path.join(default_runtime_dir(), "pcie-emu.sock")


def default_token_path() -> str:
    """``token`` in :func:`default_runtime_dir` (where the server writes its TCP token by default)."""
    return os.path.join(default_runtime_dir(), "token")


def resolve_token(token: Optional[str] = None, token_file: Optional[str] = None) -> Optional[str]:
    """The TCP token a client sends, first found of: ``token``; the file ``token_file`` (an
    OSError when it cannot be read); $PCIEEMU_TOKEN; the default token file when readable.
    None when there is none (the server then answers UNAUTHENTICATED on TCP)."""
    if token and token.strip():
        return token.strip()
    if token_file:
        with open(token_file, encoding="ascii") as f:
            text = f.read().strip()
        if not text:
            raise OSError(f"token file '{token_file}' is empty")
        return text
    env = os.environ.get(TOKEN_VARIABLE, "").strip()
    if env:
        return env
    try:
        with open(default_token_path(), encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call of the channel."""

    def __init__(self, token: str):
        self._header = ("authorization", "Bearer " + token)

    def _details(self, d):
        md = list(d.metadata or []) + [self._header]
        return _CallDetails(d.method, d.timeout, md, d.credentials, getattr(d, "wait_for_ready", None),
                            getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def with_token(channel: grpc.Channel, token: Optional[str]) -> grpc.Channel:
    """``channel`` sending ``authorization: Bearer <token>`` on every call (unchanged when None)."""
    return grpc.intercept_channel(channel, _BearerToken(token)) if token else channel


def default_target() -> str:
    """$PCIEEMU_TARGET, else the default Unix socket when it exists, else tcp://127.0.0.1:50551."""
    t = os.environ.get(TARGET_VARIABLE)
    if t:
        return t
    sock = default_unix_socket()
    return "unix://" + sock if os.path.exists(sock) else DEFAULT_TCP_TARGET


def grpc_target(target: str) -> Tuple[str, bool]:
    """Turns ``tcp://h:p`` / ``http://h:p`` / ``unix:///path`` into a grpc target; returns (target, is_unix)."""
    t = target.strip()
    if t.startswith("unix:"):
        path = t[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path.startswith("/"):
            raise ValueError(f"'{target}': a unix target needs an absolute path (unix:///run/x.sock)")
        return "unix://" + path, True
    for scheme in ("tcp://", "http://"):
        if t.startswith(scheme):
            hostport = t[len(scheme):].rstrip("/")
            if ":" not in hostport.rsplit("]", 1)[-1]:
                raise ValueError(f"'{target}': missing port (tcp://host:port)")
            return hostport, False
    raise ValueError(f"'{target}': expected tcp://host:port or unix:///path")


class ServerError(RuntimeError):
    """A gRPC error from the server (malformed request, out of range, ...)."""

    def __init__(self, err: grpc.RpcError):
        self.code: grpc.StatusCode = err.code()
        self.details: str = err.details() or ""
        hint = ""
        if self.code == grpc.StatusCode.UNAUTHENTICATED:
            hint = (f" (TCP needs the server's token: set ${TOKEN_VARIABLE}, pass token_file=, or make "
                    f"{default_token_path()} readable; a Unix socket needs none)")
        super().__init__(f"{self.code.name}: {self.details}{hint}")


class ViolationsError(AssertionError):
    """Raised by ``assert_no_violations()``: the driver-conduct checker recorded violations
    (docs/checker.md). ``violations`` holds the Violation messages, ``dropped`` the count the
    server did not keep; the message lists each one's requester, rule id, spec, event, what the
    hardware did and the hint."""

    def __init__(self, violations, dropped: int = 0):
        self.violations = list(violations)
        self.dropped = dropped
        super().__init__(describe_violations(self.violations, dropped))


def describe_violations(violations, dropped: int = 0) -> str:
    """One line per violation (requester, rule id, spec, event, outcome, hint) after a count."""
    head = f"{len(violations)} driver-conduct violation(s)"
    if dropped:
        head += f" (and {dropped} not kept)"
    return "\n".join([head] + [f"{v.requester} {v.rule.id} ({v.rule.spec}): {v.event} -> {v.outcome}. Hint: {v.rule.hint}"
                               for v in violations])


def violations_request(rule_ids: Optional[Iterable[str]] = None, rids: Optional[Iterable[RidLike]] = None,
                       after_sequence: int = 0):
    """GetViolationsRequest; ``rids`` as BDF text, Bdf or routing ID."""
    return pb.trace_pb2.GetViolationsRequest(rule_ids=list(rule_ids or []),
                                             rids=[format_bdf(to_rid(r)) for r in (rids or [])],
                                             after_sequence=after_sequence)


@dataclass(frozen=True)
class ConfigRead:
    """A non-posted read's completion: status and value (all ones for Unsupported Request)."""
    status: int
    value: int

    @property
    def ok(self) -> bool:
        return self.status == pb.SUCCESSFUL

    @property
    def status_name(self) -> str:
        return pb.status_name(self.status)


class ChannelOwner:
    """What Client and pcieemu.aio.AsyncClient share: the target, flags, default deadline and stubs."""

    target: str
    is_unix: bool
    is_local: bool
    timeout: float
    has_token: bool
    _metadata: Optional[Tuple[Tuple[str, str], ...]]

    def _open(self, target: Optional[str], timeout: float, token: Optional[str], token_file: Optional[str],
              make_channel: Callable[[str, List[Tuple[str, Any]], Optional[str]], Any]) -> Any:
        """Resolves the target and token, opens the channel with ``make_channel(grpc_target, options,
        bearer)`` and sets ``self``'s target, flags and stubs: the part Client and pcieemu.aio.AsyncClient share."""
        self.target = target or default_target()
        gt, is_unix = grpc_target(self.target)
        options: List[Tuple[str, Any]] = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        if is_unix:
            options.append(("grpc.default_authority", "localhost"))
        self.is_unix = is_unix
        self.is_local = is_unix or gt.split(":")[0] in ("127.0.0.1", "localhost", "[::1]")
        self.timeout = timeout
        bearer = None if is_unix else resolve_token(token, token_file)
        self.has_token = bearer is not None
        self._metadata = (("authorization", "Bearer " + bearer),) if bearer else None
        channel = make_channel(gt, options, bearer)
        self.platform_stub = pb.platform_pb2_grpc.PlatformServiceStub(channel)
        self.config_stub = pb.config_pb2_grpc.ConfigServiceStub(channel)
        self.mmio_stub = pb.mmio_pb2_grpc.MmioServiceStub(channel)
        self.memory_stub = pb.memory_pb2_grpc.MemoryServiceStub(channel)
        self.session_stub = pb.session_pb2_grpc.SessionServiceStub(channel)
        self.interrupt_stub = pb.interrupt_pb2_grpc.InterruptServiceStub(channel)
        self.ethernet_stub = pb.ethernet_pb2_grpc.EthernetServiceStub(channel)
        self.iommu_stub = pb.iommu_pb2_grpc.IommuServiceStub(channel)
        self.trace_stub = pb.trace_pb2_grpc.TraceServiceStub(channel)
        return channel


class Client(ChannelOwner):
    """One channel to a PcieEmu server and typed helpers over every service.

    Errors from the server are raised as :class:`ServerError`; completion statuses (UR, CA) are
    hardware answers and are returned, never raised.
    """

    def __init__(self, target: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
                 token: Optional[str] = None, token_file: Optional[str] = None):
        """On TCP every call carries the server's token (``authorization: Bearer``), found by
        :func:`resolve_token`: ``token``, else ``token_file``, else $PCIEEMU_TOKEN, else the
        default token file. A Unix socket needs none and is sent none. ``timeout`` is the deadline
        of each unary call in seconds (every call takes ``timeout=`` to override it; streams have
        none unless given one)."""
        self.channel = self._open(target, timeout, token, token_file,
                                  lambda gt, options, bearer: with_token(grpc.insecure_channel(gt, options=options), bearer))

    # -- lifetime ---------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 10.0) -> "Client":
        """Blocks until the channel is connected (raises grpc.FutureTimeoutError)."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)
        return self

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, fn, request, timeout: Optional[float] = None):
        try:
            return fn(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            raise ServerError(e) from None

    # -- platform ---------------------------------------------------------------------------
    def get_platform(self, timeout: Optional[float] = None):
        """GetPlatformResponse: root ports, RAM regions, IOMMU units, limits."""
        return self._call(self.platform_stub.GetPlatform, pb.platform_pb2.GetPlatformRequest(), timeout)

    def list_functions(self, timeout: Optional[float] = None) -> list:
        """Every function that answers config requests now (enabled VFs included)."""
        return list(self._call(self.platform_stub.ListFunctions, pb.platform_pb2.ListFunctionsRequest(), timeout).functions)

    def reset(self, timeout: Optional[float] = None) -> int:
        """Cold platform reset; returns the number of functions after it."""
        return self._call(self.platform_stub.ResetPlatform, pb.platform_pb2.ResetPlatformRequest(), timeout).functions

    # -- config -----------------------------------------------------------------------------
    def config_read(self, rid: RidLike, offset: int, width: int = 4, timeout: Optional[float] = None) -> ConfigRead:
        r = self._call(self.config_stub.ReadConfig,
                       pb.config_pb2.ReadConfigRequest(rid=to_rid(rid), offset=offset, width=width), timeout)
        return ConfigRead(r.status, r.value)

    def config_write(self, rid: RidLike, offset: int, width: int, value: int, timeout: Optional[float] = None) -> int:
        """Returns the completion status (SUCCESSFUL, or UNSUPPORTED_REQUEST when nothing answers)."""
        return self._call(self.config_stub.WriteConfig,
                          pb.config_pb2.WriteConfigRequest(rid=to_rid(rid), offset=offset, width=width, value=value),
                          timeout).status

    def cfg_read8(self, rid: RidLike, offset: int, timeout: Optional[float] = None) -> int:
        return self.config_read(rid, offset, 1, timeout).value

    def cfg_read16(self, rid: RidLike, offset: int, timeout: Optional[float] = None) -> int:
        return self.config_read(rid, offset, 2, timeout).value

    def cfg_read32(self, rid: RidLike, offset: int, timeout: Optional[float] = None) -> int:
        return self.config_read(rid, offset, 4, timeout).value

    def cfg_write8(self, rid: RidLike, offset: int, value: int, timeout: Optional[float] = None) -> int:
        return self.config_write(rid, offset, 1, value, timeout)

    def cfg_write16(self, rid: RidLike, offset: int, value: int, timeout: Optional[float] = None) -> int:
        return self.config_write(rid, offset, 2, value, timeout)

    def cfg_write32(self, rid: RidLike, offset: int, value: int, timeout: Optional[float] = None) -> int:
        return self.config_write(rid, offset, 4, value, timeout)

    # -- capabilities (pcieemu._logic, shared with pcieemu.aio) --------------------------------
    def capabilities(self, rid: RidLike) -> Iterator[Tuple[int, int]]:
        """(id, offset) of each standard capability, following 0x34; stops on a loop or a broken chain."""
        return iter(_logic.run_sync(_logic.capabilities(_logic.SyncAdapter(self), rid)))

    def ext_capabilities(self, rid: RidLike) -> Iterator[Tuple[int, int, int]]:
        """(id, version, offset) of each extended capability, from 0x100."""
        return iter(_logic.run_sync(_logic.ext_capabilities(_logic.SyncAdapter(self), rid)))

    def find_capability(self, rid: RidLike, cap_id: int) -> Optional[int]:
        return _logic.run_sync(_logic.find_capability(_logic.SyncAdapter(self), rid, cap_id))

    def find_ext_capability(self, rid: RidLike, cap_id: int) -> Optional[int]:
        return _logic.run_sync(_logic.find_ext_capability(_logic.SyncAdapter(self), rid, cap_id))

    def bar_address(self, rid: RidLike, index: int) -> int:
        """The address programmed in BAR ``index`` (64-bit BARs combined, I/O and flag bits stripped)."""
        return _logic.run_sync(_logic.bar_address(_logic.SyncAdapter(self), rid, index))

    # -- MMIO -------------------------------------------------------------------------------
    def mmio_read(self, address: int, width: int = 4, timeout: Optional[float] = None) -> ConfigRead:
        r = self._call(self.mmio_stub.ReadMmio, pb.mmio_pb2.ReadMmioRequest(address=address, width=width), timeout)
        return ConfigRead(r.status, r.value)

    def mmio_write(self, address: int, width: int, value: int, timeout: Optional[float] = None) -> int:
        return self._call(self.mmio_stub.WriteMmio,
                          pb.mmio_pb2.WriteMmioRequest(address=address, width=width, value=value), timeout).status

    def read32(self, address: int, timeout: Optional[float] = None) -> int:
        return self.mmio_read(address, 4, timeout).value

    def write32(self, address: int, value: int, timeout: Optional[float] = None) -> int:
        return self.mmio_write(address, 4, value, timeout)

    # -- memory -----------------------------------------------------------------------------
    def read_memory(self, address: int, length: int, timeout: Optional[float] = None) -> bytes:
        return self._call(self.memory_stub.ReadMemory,
                          pb.memory_pb2.ReadMemoryRequest(address=address, length=length), timeout).data

    def write_memory(self, address: int, data: bytes, timeout: Optional[float] = None) -> int:
        return self._call(self.memory_stub.WriteMemory,
                          pb.memory_pb2.WriteMemoryRequest(address=address, data=bytes(data)), timeout).length

    def map_ram(self, prefer_mmap: bool = True):
        """A :class:`RamView` of RAM: the shared file mapped with mmap when it is reachable, else RPCs."""
        from .ram import RamView
        return RamView.open(self, prefer_mmap=prefer_mmap)

    # -- streams ----------------------------------------------------------------------------
    def open_ring(self, submission_entries: int = 0, completion_entries: int = 0, data_size: int = 0):
        """Opens a shared-memory ring (same host as the server; see :class:`pcieemu.Ring`)."""
        from .ring import Ring
        return Ring(self, submission_entries, completion_entries, data_size)

    def session(self):
        """Opens the ordered Session stream (see :class:`pcieemu.Session`; batches of up to 256)."""
        from .session import Session
        return Session(self)

    def subscribe_interrupts(self, rids: Optional[Iterable[RidLike]] = None,
                             timeout: Optional[float] = None) -> "StreamSubscription":
        """Interrupt events for ``rids`` (all functions when empty) as an iterator; close() ends it.
        It is live (events from then on reach it) when this returns. ``timeout`` bounds the whole stream."""
        req = pb.interrupt_pb2.SubscribeInterruptsRequest(rids=[to_rid(r) for r in (rids or [])])
        return StreamSubscription.open(self.interrupt_stub.SubscribeInterrupts(req, timeout=timeout))

    def capture_frames(self, port: int = 0, timeout: Optional[float] = None) -> "StreamSubscription":
        """Frames ``port`` transmits onto the wire (CapturedFrame: port, data, timestamp_ns) as an
        iterator; live when this returns; close() ends it. ``timeout`` bounds the whole stream."""
        req = pb.ethernet_pb2.CaptureFramesRequest(port=port)
        return StreamSubscription.open(self.ethernet_stub.CaptureFrames(req, timeout=timeout))

    def subscribe_trace(self, rids: Optional[Iterable[RidLike]] = None, kinds: Optional[Iterable[str]] = None,
                        timeout: Optional[float] = None) -> "StreamSubscription":
        """Decoded transactions (TraceEvent, docs/trace.md) that pass the filter, from now on, in
        order, as an iterator; live when this returns; close() ends it. ``rids``: functions (BDF
        text such as "01:10.0", a Bdf or a routing ID); ``kinds``: "config", "mmio", "dma", "msi",
        "iommu", "frame", "lifecycle"; empty = all. A subscriber that falls behind gets a
        TRACE_KIND_GAP event whose ``missed`` is the count it lost, and the stream goes on. No
        deadline unless ``timeout`` (s) is given; a bad filter raises ServerError (INVALID_ARGUMENT)."""
        return StreamSubscription.open(self.trace_stub.Subscribe(trace_filter(rids, kinds), timeout=timeout))

    # -- driver-conduct checker (docs/checker.md) ---------------------------------------------
    def get_violations(self, rule_ids: Optional[Iterable[str]] = None, rids: Optional[Iterable[RidLike]] = None,
                       after_sequence: int = 0, timeout: Optional[float] = None):
        """GetViolationsResponse (violations oldest first, dropped): only ``rule_ids`` / ``rids``
        when given, only those after ``after_sequence``. ServerError FAILED_PRECONDITION when the
        server runs with ``--check off``; INVALID_ARGUMENT naming the field for a bad rule id."""
        return self._call(self.trace_stub.GetViolations, violations_request(rule_ids, rids, after_sequence), timeout)

    def clear_violations(self, timeout: Optional[float] = None) -> int:
        """Forgets the violations recorded so far; returns how many."""
        return self._call(self.trace_stub.ClearViolations, pb.trace_pb2.ClearViolationsRequest(), timeout).cleared

    def assert_no_violations(self, timeout: Optional[float] = None) -> None:
        """The end of a driver test: raises :class:`ViolationsError` (an AssertionError) listing
        every violation the checker recorded, of any severity, or returns when there is none."""
        r = self.get_violations(timeout=timeout)
        if r.violations or r.dropped:
            raise ViolationsError(r.violations, r.dropped)

    # -- Ethernet / IOMMU -------------------------------------------------------------------
    def inject_frame(self, port: int, data: bytes, timeout: Optional[float] = None):
        """Delivers ``data`` (destination MAC first, no FCS) to ``port`` from the link partner;
        returns InjectFrameResponse (accepted, queues)."""
        return self._call(self.ethernet_stub.InjectFrame,
                          pb.ethernet_pb2.InjectFrameRequest(port=port, data=bytes(data)), timeout)

    def translate_address(self, rid: RidLike, address: int, write: bool = False, dry_run: bool = True,
                          timeout: Optional[float] = None):
        """IommuService.TranslateAddress; returns TranslateAddressResponse (status, translated_address,
        fault_reason, fault_recorded)."""
        req = pb.iommu_pb2.TranslateAddressRequest(rid=to_rid(rid), address=address, write=write, dry_run=dry_run)
        return self._call(self.iommu_stub.TranslateAddress, req, timeout)

    # -- SR-IOV (pcieemu._logic, shared with pcieemu.aio) -------------------------------------
    def enable_vfs(self, pf: RidLike, num_vfs: int, ari: Optional[bool] = None, settle: float = 0.1):
        """Linux-style SR-IOV enable (``ari=None``: ARI when the port and device support it);
        returns a :class:`SriovState`."""
        return _logic.run_sync(_logic.enable_vfs(_logic.SyncAdapter(self), pf, num_vfs, ari=ari, settle=settle))

    def disable_vfs(self, pf: RidLike) -> None:
        _logic.run_sync(_logic.disable_vfs(_logic.SyncAdapter(self), pf))


def trace_filter(rids: Optional[Iterable[RidLike]] = None, kinds: Optional[Iterable[str]] = None):
    """The TraceFilter for ``rids`` (text goes as is, the server checks it; numbers are formatted
    as BDFs) and ``kinds`` (names as is)."""
    texts = [r if isinstance(r, str) else format_bdf(to_rid(r)) for r in (rids or [])]
    return pb.trace_pb2.TraceFilter(rids=texts, kinds=list(kinds or []))


class StreamSubscription:
    """Iterates the messages of a server stream (InterruptEvent, CapturedFrame, TraceEvent); ``close()`` (or
    leaving a ``with`` block) cancels the stream and ends the iteration."""

    def __init__(self, call):
        self._call = call

    @classmethod
    def open(cls, call) -> "StreamSubscription":
        """Waits for the response headers: the server sends them once the subscription is registered."""
        try:
            call.initial_metadata()
        except grpc.RpcError as e:
            raise ServerError(e) from None
        if call.done() and call.code() != grpc.StatusCode.OK:  # refused (bad filter, limit): trailers only
            raise ServerError(call)
        return cls(call)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._call)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise ServerError(e) from None

    def close(self) -> None:
        self._call.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


InterruptSubscription = StreamSubscription  # the name before 0.2.0


def connect(target: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT, wait: float = 10.0,
            token: Optional[str] = None, token_file: Optional[str] = None) -> Client:
    """Connects to ``target`` (tcp://host:port or unix:///path; default: see :func:`default_target`).
    On TCP the token comes from ``token``, ``token_file``, $PCIEEMU_TOKEN or the default token file.
    ``timeout``: the default deadline of unary calls (s); ``wait``: how long to wait for the server
    (0: do not wait)."""
    c = Client(target, timeout=timeout, token=token, token_file=token_file)
    if wait:
        try:
            c.wait_ready(wait)
        except grpc.FutureTimeoutError:
            c.close()
            raise ConnectionError(f"no PcieEmu server answered at {c.target} within {wait} s") from None
    return c
