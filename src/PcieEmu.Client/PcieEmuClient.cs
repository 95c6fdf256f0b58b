using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Health.V1;
using Grpc.Net.Client;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Client;

/// <summary>
/// A connection to a PcieEmu server over TCP or a Unix socket, with the generated service clients
/// and typed helpers for what a driver does most: config access, capability walks, SR-IOV
/// enable/disable the way Linux does it, MMIO and memory, RAM mapping, interrupts, Ethernet
/// inject/capture and VT-d translation. Every unary call (helpers and the stubs below) has a
/// deadline of <see cref="Timeout"/> (30 s by default) unless the call passes its own
/// (<c>deadline:</c> on a stub, or <see cref="WithTimeout"/>); streams have none but are cancellable.
/// </summary>
public sealed partial class PcieEmuClient : IDisposable
{
    /// <summary>The deadline a unary call gets when it sets none (the same in every PcieEmu client).</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    private readonly bool _ownsChannel;

    private PcieEmuClient(GrpcChannel channel, Endpoint endpoint, TimeSpan timeout, bool ownsChannel)
    {
        if (timeout <= TimeSpan.Zero && timeout != System.Threading.Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(timeout), "timeout must be positive or Timeout.InfiniteTimeSpan");
        Channel = channel;
        Endpoint = endpoint;
        Timeout = timeout;
        _ownsChannel = ownsChannel;
        var invoker = channel.Intercept(new DefaultDeadlineInterceptor(timeout));
        Platform = new PlatformService.PlatformServiceClient(invoker);
        Config = new ConfigService.ConfigServiceClient(invoker);
        Mmio = new MmioService.MmioServiceClient(invoker);
        Memory = new MemoryService.MemoryServiceClient(invoker);
        Session = new SessionService.SessionServiceClient(invoker);
        Interrupts = new InterruptService.InterruptServiceClient(invoker);
        Ethernet = new EthernetService.EthernetServiceClient(invoker);
        Iommu = new IommuService.IommuServiceClient(invoker);
        Trace = new TraceService.TraceServiceClient(invoker);
        Health = new Health.HealthClient(invoker);
    }

    /// <summary>The deadline of unary calls that set none (<see cref="System.Threading.Timeout.InfiniteTimeSpan"/> = none).</summary>
    public TimeSpan Timeout { get; }

    /// <summary>
    /// A client on the same connection whose unary calls get <paramref name="timeout"/> instead
    /// (the per-call override: <c>await client.WithTimeout(TimeSpan.FromSeconds(2)).ReadMmio32Async(a)</c>).
    /// Disposing it leaves the connection open.
    /// </summary>
    public PcieEmuClient WithTimeout(TimeSpan timeout) => new(Channel, Endpoint, timeout, ownsChannel: false) { HasToken = HasToken };

    /// <summary>
    /// Connects to <paramref name="target"/> (<c>unix:///path</c> or <c>tcp://host:port</c>; null =
    /// <see cref="Endpoints.DefaultTarget"/>). The connection is made lazily by the first call.
    /// On TCP every call carries the server's token (<c>authorization: Bearer</c>), found by
    /// <see cref="TokenAuth.Resolve"/>: <paramref name="token"/>, else the file
    /// <paramref name="tokenFile"/>, else $PCIEEMU_TOKEN, else the default token file. A Unix
    /// socket needs no token and is sent none. <paramref name="timeout"/>: the deadline of unary
    /// calls that set none (default <see cref="DefaultTimeout"/>, 30 s).
    /// </summary>
    public static PcieEmuClient Connect(string? target = null, string? token = null, string? tokenFile = null, TimeSpan? timeout = null)
    {
        var ep = Endpoints.Parse(target ?? Endpoints.DefaultTarget());
        string? bearer = ep.Kind == EndpointKind.Tcp ? TokenAuth.Resolve(token, tokenFile) : null;
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = System.Threading.Timeout.InfiniteTimeSpan,
            KeepAlivePingDelay = TimeSpan.FromSeconds(60),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(30),
        };
        string address;
        if (ep.Kind == EndpointKind.Unix)
        {
            string path = ep.Path;
            handler.ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            };
            address = "http://localhost";
        }
        else
        {
            address = $"http://{(ep.Host.Contains(':', StringComparison.Ordinal) ? $"[{ep.Host}]" : ep.Host)}:{ep.Port}";
        }
        var options = new GrpcChannelOptions
        {
            HttpHandler = handler,
            MaxReceiveMessageSize = 8 << 20,
            MaxSendMessageSize = 8 << 20,
        };
        if (bearer != null)
        {
            // Channel-level call credentials so every stub made on Channel sends the token too.
            // The channel is plain HTTP/2 (h2c), hence the explicit opt-in.
            string value = $"{TokenAuth.Scheme} {bearer}";
            options.Credentials = ChannelCredentials.Create(ChannelCredentials.Insecure,
                CallCredentials.FromInterceptor((_, metadata) =>
                {
                    metadata.Add(TokenAuth.MetadataKey, value);
                    return Task.CompletedTask;
                }));
            options.UnsafeUseInsecureChannelCallCredentials = true;
        }
        var channel = GrpcChannel.ForAddress(address, options);
        return new PcieEmuClient(channel, ep, timeout ?? DefaultTimeout, ownsChannel: true) { HasToken = bearer != null };
    }

    /// <summary>Whether this client sends a token (TCP with a token found).</summary>
    public bool HasToken { get; private init; }

    /// <summary>The endpoint this client talks to.</summary>
    public Endpoint Endpoint { get; }
    /// <summary>The underlying gRPC channel.</summary>
    public GrpcChannel Channel { get; }
    /// <summary>PlatformService stub.</summary>
    public PlatformService.PlatformServiceClient Platform { get; }
    /// <summary>ConfigService stub.</summary>
    public ConfigService.ConfigServiceClient Config { get; }
    /// <summary>MmioService stub.</summary>
    public MmioService.MmioServiceClient Mmio { get; }
    /// <summary>MemoryService stub.</summary>
    public MemoryService.MemoryServiceClient Memory { get; }
    /// <summary>SessionService stub (see <see cref="OpenSession"/> for the wrapper).</summary>
    public SessionService.SessionServiceClient Session { get; }
    /// <summary>InterruptService stub.</summary>
    public InterruptService.InterruptServiceClient Interrupts { get; }
    /// <summary>EthernetService stub.</summary>
    public EthernetService.EthernetServiceClient Ethernet { get; }
    /// <summary>IommuService stub.</summary>
    public IommuService.IommuServiceClient Iommu { get; }
    /// <summary>TraceService stub: the decoded transaction stream.</summary>
    public TraceService.TraceServiceClient Trace { get; }
    /// <summary>grpc.health.v1 stub.</summary>
    public Health.HealthClient Health { get; }

    /// <summary>Opens an ordered transaction stream (posted writes, tagged reads).</summary>
    public PcieSession OpenSession(CancellationToken cancellationToken = default) => new(Session.Transact(cancellationToken: cancellationToken));

    /// <summary>Opens a shared-memory ring (same host only): single accesses without a socket round trip. See <see cref="Ring.PcieRing"/>.</summary>
    public Task<Ring.PcieRing> OpenRingAsync(OpenRingRequest? request = null, CancellationToken cancellationToken = default) =>
        Ring.PcieRing.OpenAsync(Session, request, cancellationToken: cancellationToken);

    /// <summary>Describes the machine.</summary>
    public async Task<GetPlatformResponse> GetPlatformAsync(CancellationToken cancellationToken = default) =>
        await Platform.GetPlatformAsync(new GetPlatformRequest(), cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Functions that answer config requests now.</summary>
    public async Task<IReadOnlyList<Function>> ListFunctionsAsync(CancellationToken cancellationToken = default) =>
        (await Platform.ListFunctionsAsync(new ListFunctionsRequest(), cancellationToken: cancellationToken).ConfigureAwait(false)).Functions;

    // ---------------- Config space ----------------

    /// <summary>A config read with its completion status (UR: value all ones).</summary>
    public async Task<ReadConfigResponse> ReadConfigAsync(uint rid, int offset, int width, CancellationToken cancellationToken = default) =>
        await Config.ReadConfigAsync(new ReadConfigRequest { Rid = rid, Offset = (uint)offset, Width = (uint)width }, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Reads one config byte (all ones if nothing answers, as hardware reads).</summary>
    public async Task<byte> ReadConfig8Async(uint rid, int offset, CancellationToken cancellationToken = default) =>
        (byte)(await ReadConfigAsync(rid, offset, 1, cancellationToken).ConfigureAwait(false)).Value;

    /// <summary>Reads one config word.</summary>
    public async Task<ushort> ReadConfig16Async(uint rid, int offset, CancellationToken cancellationToken = default) =>
        (ushort)(await ReadConfigAsync(rid, offset, 2, cancellationToken).ConfigureAwait(false)).Value;

    /// <summary>Reads one config dword.</summary>
    public async Task<uint> ReadConfig32Async(uint rid, int offset, CancellationToken cancellationToken = default) =>
        (await ReadConfigAsync(rid, offset, 4, cancellationToken).ConfigureAwait(false)).Value;

    /// <summary>A config write; returns its completion status.</summary>
    public async Task<CompletionStatus> WriteConfigAsync(uint rid, int offset, int width, uint value, CancellationToken cancellationToken = default) =>
        (await Config.WriteConfigAsync(new WriteConfigRequest { Rid = rid, Offset = (uint)offset, Width = (uint)width, Value = value }, cancellationToken: cancellationToken).ConfigureAwait(false)).Status;

    /// <summary>Writes one config byte.</summary>
    public Task<CompletionStatus> WriteConfig8Async(uint rid, int offset, byte value, CancellationToken cancellationToken = default) =>
        WriteConfigAsync(rid, offset, 1, value, cancellationToken);

    /// <summary>Writes one config word.</summary>
    public Task<CompletionStatus> WriteConfig16Async(uint rid, int offset, ushort value, CancellationToken cancellationToken = default) =>
        WriteConfigAsync(rid, offset, 2, value, cancellationToken);

    /// <summary>Writes one config dword.</summary>
    public Task<CompletionStatus> WriteConfig32Async(uint rid, int offset, uint value, CancellationToken cancellationToken = default) =>
        WriteConfigAsync(rid, offset, 4, value, cancellationToken);

    /// <summary>Reads the whole config space (256 or 4096 bytes) in one session round trip.</summary>
    public async Task<byte[]> DumpConfigAsync(uint rid, int length = 4096, CancellationToken cancellationToken = default)
    {
        if (length is <= 0 or > 4096 || length % 4 != 0) throw new ArgumentOutOfRangeException(nameof(length));
        await using var session = OpenSession(cancellationToken);
        var reads = new Task<SessionCompletion>[length / 4];
        for (int i = 0; i < reads.Length; i++) reads[i] = session.QueueConfigRead(rid, 4 * i, 4);
        await session.FlushAsync(cancellationToken).ConfigureAwait(false);
        var bytes = new byte[length];
        for (int i = 0; i < reads.Length; i++)
        {
            uint value = (uint)(await reads[i].WaitAsync(cancellationToken).ConfigureAwait(false)).Value;
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4 * i), value);
        }
        return bytes;
    }

    /// <summary>
    /// Walks the capability list (PCI 3.0 §6.7) for capability <paramref name="id"/>; returns its
    /// offset, or 0 when absent (or the function has no list). Loops are cut after 48 entries.
    /// </summary>
    public async Task<int> FindCapabilityAsync(uint rid, byte id, CancellationToken cancellationToken = default)
    {
        const int StatusCapList = 0x10;
        if ((await ReadConfig16Async(rid, 0x06, cancellationToken).ConfigureAwait(false) & StatusCapList) == 0) return 0;
        int pos = await ReadConfig8Async(rid, 0x34, cancellationToken).ConfigureAwait(false) & 0xFC;
        for (int ttl = 48; ttl > 0 && pos >= 0x40; ttl--)
        {
            ushort header = await ReadConfig16Async(rid, pos, cancellationToken).ConfigureAwait(false);
            if ((header & 0xFF) == 0xFF) return 0;
            if ((header & 0xFF) == id) return pos;
            pos = (header >> 8) & 0xFC;
        }
        return 0;
    }

    /// <summary>
    /// Walks the extended capability list from 0x100 (PCIe Base §7.6) for capability
    /// <paramref name="id"/>; returns its offset or 0. Loops are cut after 480 entries.
    /// </summary>
    public async Task<int> FindExtendedCapabilityAsync(uint rid, ushort id, CancellationToken cancellationToken = default)
    {
        int pos = 0x100;
        for (int ttl = 480; ttl > 0 && pos >= 0x100; ttl--)
        {
            uint header = await ReadConfig32Async(rid, pos, cancellationToken).ConfigureAwait(false);
            if (header is 0 or 0xFFFF_FFFF) return 0;
            if ((header & 0xFFFF) == id) return pos;
            pos = (int)(header >> 20) & 0xFFC;
        }
        return 0;
    }

    // ---------------- Interrupts ----------------

    /// <summary>
    /// Subscribes to interrupt events of <paramref name="rids"/> (null or empty = all). The sequence
    /// ends with an <see cref="RpcException"/> (RESOURCE_EXHAUSTED) if this subscriber falls behind.
    /// </summary>
    public async IAsyncEnumerable<InterruptEvent> SubscribeInterruptsAsync(IEnumerable<uint>? rids = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var request = new SubscribeInterruptsRequest();
        if (rids != null) request.Rids.AddRange(rids);
        using var call = Interrupts.SubscribeInterrupts(request, cancellationToken: cancellationToken);
        while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            yield return call.ResponseStream.Current;
    }

    /// <summary>
    /// Subscribes and waits until the server confirms the subscription is live (its response
    /// headers), so every interrupt raised after this returns reaches <see cref="InterruptStream.Events"/>.
    /// </summary>
    public async Task<InterruptStream> OpenInterruptStreamAsync(IEnumerable<uint>? rids = null, CancellationToken cancellationToken = default)
    {
        var request = new SubscribeInterruptsRequest();
        if (rids != null) request.Rids.AddRange(rids);
        var call = Interrupts.SubscribeInterrupts(request, cancellationToken: cancellationToken);
        try
        {
            await call.ResponseHeadersAsync.WaitAsync(cancellationToken).ConfigureAwait(false);
            return new InterruptStream(call);
        }
        catch
        {
            call.Dispose();
            throw;
        }
    }

    // ---------------- The wire ----------------

    /// <summary>Injects a frame into port <paramref name="port"/> as if the link partner sent it; returns how many receive queues took it.</summary>
    public async Task<int> InjectFrameAsync(int port, ReadOnlyMemory<byte> frame, CancellationToken cancellationToken = default) =>
        (int)(await Ethernet.InjectFrameAsync(new InjectFrameRequest { Port = (uint)port, Data = Google.Protobuf.ByteString.CopyFrom(frame.Span) },
            cancellationToken: cancellationToken).ConfigureAwait(false)).Queues;

    /// <summary>
    /// Frames port <paramref name="port"/> transmits from now on. The sequence ends with an
    /// <see cref="RpcException"/> (RESOURCE_EXHAUSTED) if this subscriber falls behind.
    /// </summary>
    public async IAsyncEnumerable<CapturedFrame> CaptureFramesAsync(int port, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var call = Ethernet.CaptureFrames(new CaptureFramesRequest { Port = (uint)port }, cancellationToken: cancellationToken);
        while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            yield return call.ResponseStream.Current;
    }

    /// <summary>
    /// Decoded transactions that pass the filter, from now on: <paramref name="rids"/> as BDFs
    /// ("01:10.0"), <paramref name="kinds"/> by name ("config", "mmio", "dma", "msi", "iommu",
    /// "frame", "lifecycle"); null or empty = all. A subscriber that falls behind gets a
    /// TRACE_KIND_GAP event with the count it lost, and the stream goes on.
    /// </summary>
    public async IAsyncEnumerable<TraceEvent> SubscribeTraceAsync(IEnumerable<string>? rids = null, IEnumerable<string>? kinds = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var filter = new TraceFilter();
        if (rids != null) filter.Rids.AddRange(rids);
        if (kinds != null) filter.Kinds.AddRange(kinds);
        using var call = Trace.Subscribe(filter, cancellationToken: cancellationToken);
        while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            yield return call.ResponseStream.Current;
    }

    /// <summary>The driver-conduct checker's violations so far, oldest first (docs/checker.md):
    /// only <paramref name="ruleIds"/> and <paramref name="rids"/> (BDFs) when given, only those after
    /// <paramref name="afterSequence"/>. FAILED_PRECONDITION when the server runs with <c>--check off</c>.</summary>
    public async Task<GetViolationsResponse> GetViolationsAsync(IEnumerable<string>? ruleIds = null, IEnumerable<string>? rids = null,
        ulong afterSequence = 0, CancellationToken cancellationToken = default)
    {
        var request = new GetViolationsRequest { AfterSequence = afterSequence };
        if (ruleIds != null) request.RuleIds.AddRange(ruleIds);
        if (rids != null) request.Rids.AddRange(rids);
        return await Trace.GetViolationsAsync(request, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Forgets the violations recorded so far; returns how many.</summary>
    public async Task<int> ClearViolationsAsync(CancellationToken cancellationToken = default) =>
        (int)(await Trace.ClearViolationsAsync(new ClearViolationsRequest(), cancellationToken: cancellationToken).ConfigureAwait(false)).Cleared;

    /// <summary>The end of a driver test: throws <see cref="ViolationsException"/> listing every
    /// violation the checker recorded (of any severity), or returns when there is none.</summary>
    public async Task AssertNoViolationsAsync(CancellationToken cancellationToken = default)
    {
        var reply = await GetViolationsAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        if (reply.Violations.Count > 0 || reply.Dropped > 0) throw new ViolationsException(reply.Violations, reply.Dropped);
    }

    // ---------------- RAM ----------------

    /// <summary>Maps the machine's RAM file (same host only) for direct access.</summary>
    public async Task<RamMapping> MapRamAsync(CancellationToken cancellationToken = default)
    {
        var platform = await GetPlatformAsync(cancellationToken).ConfigureAwait(false);
        var region = platform.RamRegions.FirstOrDefault(r => r.SharedFilePath.Length > 0)
            ?? throw new InvalidOperationException("the server has no shareable RAM region");
        return new RamMapping(region.SharedFilePath, region.Base, region.Size);
    }

    // ---------------- Platform ----------------

    /// <summary>Resets the machine (RAM zeroed, VFs gone, functions at power-on state); returns how many functions answer.</summary>
    public async Task<int> ResetPlatformAsync(CancellationToken cancellationToken = default) =>
        (int)(await Platform.ResetPlatformAsync(new ResetPlatformRequest(), cancellationToken: cancellationToken).ConfigureAwait(false)).Functions;

    // ---------------- MMIO (CPU memory requests) ----------------

    /// <summary>A memory read of <paramref name="width"/> bytes (1, 2, 4, 8; aligned) with its completion status (UR: all ones).</summary>
    public async Task<ReadMmioResponse> ReadMmioAsync(ulong address, int width, CancellationToken cancellationToken = default) =>
        await Mmio.ReadMmioAsync(new ReadMmioRequest { Address = address, Width = (uint)width }, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Reads one byte of memory space (all ones when nothing decodes it, as hardware reads).</summary>
    public async Task<byte> ReadMmio8Async(ulong address, CancellationToken cancellationToken = default) =>
        (byte)(await ReadMmioAsync(address, 1, cancellationToken).ConfigureAwait(false)).Value;

    /// <summary>Reads one word of memory space.</summary>
    public async Task<ushort> ReadMmio16Async(ulong address, CancellationToken cancellationToken = default) =>
        (ushort)(await ReadMmioAsync(address, 2, cancellationToken).ConfigureAwait(false)).Value;

    /// <summary>Reads one dword of memory space (a 32-bit register).</summary>
    public async Task<uint> ReadMmio32Async(ulong address, CancellationToken cancellationToken = default) =>
        (uint)(await ReadMmioAsync(address, 4, cancellationToken).ConfigureAwait(false)).Value;

    /// <summary>Reads one qword of memory space.</summary>
    public async Task<ulong> ReadMmio64Async(ulong address, CancellationToken cancellationToken = default) =>
        (await ReadMmioAsync(address, 8, cancellationToken).ConfigureAwait(false)).Value;

    /// <summary>A memory write of <paramref name="width"/> bytes; returns its status (UR: nothing decoded it, dropped).</summary>
    public async Task<CompletionStatus> WriteMmioAsync(ulong address, int width, ulong value, CancellationToken cancellationToken = default) =>
        (await Mmio.WriteMmioAsync(new WriteMmioRequest { Address = address, Width = (uint)width, Value = value }, cancellationToken: cancellationToken).ConfigureAwait(false)).Status;

    /// <summary>Writes one byte of memory space.</summary>
    public Task<CompletionStatus> WriteMmio8Async(ulong address, byte value, CancellationToken cancellationToken = default) =>
        WriteMmioAsync(address, 1, value, cancellationToken);

    /// <summary>Writes one word of memory space.</summary>
    public Task<CompletionStatus> WriteMmio16Async(ulong address, ushort value, CancellationToken cancellationToken = default) =>
        WriteMmioAsync(address, 2, value, cancellationToken);

    /// <summary>Writes one dword of memory space.</summary>
    public Task<CompletionStatus> WriteMmio32Async(ulong address, uint value, CancellationToken cancellationToken = default) =>
        WriteMmioAsync(address, 4, value, cancellationToken);

    /// <summary>Writes one qword of memory space.</summary>
    public Task<CompletionStatus> WriteMmio64Async(ulong address, ulong value, CancellationToken cancellationToken = default) =>
        WriteMmioAsync(address, 8, value, cancellationToken);

    // ---------------- Memory (RAM over RPC; see MapRamAsync for the mapping) ----------------

    /// <summary>Reads <paramref name="length"/> bytes of RAM at physical <paramref name="address"/> over RPC.</summary>
    public async Task<byte[]> ReadMemoryAsync(ulong address, int length, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return (await Memory.ReadMemoryAsync(new ReadMemoryRequest { Address = address, Length = (uint)length }, cancellationToken: cancellationToken).ConfigureAwait(false)).Data.ToByteArray();
    }

    /// <summary>Writes <paramref name="data"/> to RAM at physical <paramref name="address"/> over RPC; returns the bytes written.</summary>
    public async Task<int> WriteMemoryAsync(ulong address, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) =>
        (int)(await Memory.WriteMemoryAsync(new WriteMemoryRequest { Address = address, Data = Google.Protobuf.ByteString.CopyFrom(data.Span) },
            cancellationToken: cancellationToken).ConfigureAwait(false)).Length;

    // ---------------- VT-d ----------------

    /// <summary>
    /// Translates a DMA address of requester <paramref name="rid"/> through the remapping unit as a
    /// device access would (<paramref name="write"/>: a write request). A fault is recorded like a
    /// real one unless <paramref name="dryRun"/>.
    /// </summary>
    public async Task<TranslateAddressResponse> TranslateAddressAsync(uint rid, ulong address, bool write = false, bool dryRun = false,
        CancellationToken cancellationToken = default) =>
        await Iommu.TranslateAddressAsync(new TranslateAddressRequest { Rid = rid, Address = address, Write = write, DryRun = dryRun },
            cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_ownsChannel) Channel.Dispose();
    }

    /// <summary>Gives unary calls without a deadline the client's default one; streams are left alone.</summary>
    private sealed class DefaultDeadlineInterceptor(TimeSpan timeout) : Interceptor
    {
        private ClientInterceptorContext<TRequest, TResponse> WithDeadline<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context)
            where TRequest : class where TResponse : class =>
            context.Options.Deadline != null || timeout == System.Threading.Timeout.InfiniteTimeSpan
                ? context
                : new(context.Method, context.Host, context.Options.WithDeadline(DateTime.UtcNow + timeout));

        public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context,
            AsyncUnaryCallContinuation<TRequest, TResponse> continuation) => continuation(request, WithDeadline(context));

        public override TResponse BlockingUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context,
            BlockingUnaryCallContinuation<TRequest, TResponse> continuation) => continuation(request, WithDeadline(context));
    }
}
