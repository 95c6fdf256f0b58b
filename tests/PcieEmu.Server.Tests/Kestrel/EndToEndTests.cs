using System.Buffers.Binary;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Health.V1;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>Tiers 2 and 3: the real server on a free TCP port (Kestrel) and on a Unix socket served by the
/// direct loop (the default) and by Kestrel (--unix-server kestrel).</summary>
public sealed class EndToEndTests
{
    public static TheoryData<string> Transports => new() { "tcp", "unix", "kestrel-unix" };

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Health_is_serving(string transport)
    {
        await using var s = await TestServer.StartAsync(transport);
        var r = await s.Client.Health.CheckAsync(new HealthCheckRequest(), deadline: T.Deadline).W();
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, r.Status);
        s.AssertNoErrors();
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task Unix_socket_is_private_to_the_user()
    {
        await using var s = await TestServer.StartAsync("unix");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(s.SocketPath));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Malformed_requests_get_status_codes_naming_the_field_and_the_server_goes_on(string transport)
    {
        await using var s = await TestServer.StartAsync(transport);
        var c = s.Client;
        async Task Expect(StatusCode code, string field, Func<Task> call)
        {
            var ex = await Assert.ThrowsAsync<RpcException>(call).W();
            Assert.Equal(code, ex.StatusCode);
            Assert.Contains(field + ":", ex.Status.Detail);
        }
        await Expect(StatusCode.InvalidArgument, "width", () => c.Config.ReadConfigAsync(new ReadConfigRequest { Rid = 0x100, Width = 3 }, deadline: T.Deadline).ResponseAsync);
        await Expect(StatusCode.InvalidArgument, "offset", () => c.Config.WriteConfigAsync(new WriteConfigRequest { Rid = 0x100, Offset = 5000, Width = 1 }, deadline: T.Deadline).ResponseAsync);
        await Expect(StatusCode.InvalidArgument, "address", () => c.Mmio.ReadMmioAsync(new ReadMmioRequest { Address = 3, Width = 4 }, deadline: T.Deadline).ResponseAsync);
        await Expect(StatusCode.InvalidArgument, "value", () => c.Mmio.WriteMmioAsync(new WriteMmioRequest { Address = 0, Width = 1, Value = 256 }, deadline: T.Deadline).ResponseAsync);
        await Expect(StatusCode.InvalidArgument, "length", () => c.Memory.ReadMemoryAsync(new ReadMemoryRequest { Length = 5 << 20 }, deadline: T.Deadline).ResponseAsync);
        await Expect(StatusCode.OutOfRange, "address", () => c.Memory.ReadMemoryAsync(new ReadMemoryRequest { Address = 16 << 20, Length = 1 }, deadline: T.Deadline).ResponseAsync);
        await Expect(StatusCode.OutOfRange, "address", () => c.Memory.WriteMemoryAsync(new WriteMemoryRequest { Address = 0xFFFF_FFFF_FFFF_FFF0, Data = ByteString.CopyFrom(new byte[32]) }, deadline: T.Deadline).ResponseAsync);
        // A message over the transport limit is refused by gRPC itself (RESOURCE_EXHAUSTED), not a crash.
        var big = await Assert.ThrowsAsync<RpcException>(() => c.Memory.WriteMemoryAsync(new WriteMemoryRequest { Data = ByteString.CopyFrom(new byte[6 << 20]) }, deadline: T.Deadline).ResponseAsync).W();
        Assert.Equal(StatusCode.ResourceExhausted, big.StatusCode);
        await Expect(StatusCode.InvalidArgument, "rids[0]", async () =>
        {
            using var call = c.Interrupts.SubscribeInterrupts(new SubscribeInterruptsRequest { Rids = { 0x12345 } }, deadline: T.Deadline);
            await call.ResponseStream.MoveNext(CancellationToken.None);
        });
        await Expect(StatusCode.InvalidArgument, "config_read.offset", async () =>
        {
            await using var session = c.OpenSession();
            await session.ReadConfigAsync(0x100, 4096, 4).W();
        });
        // Still serving.
        Assert.Equal(0x10C98086u, await c.ReadConfig32Async(0x100, 0).W());
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Ram_written_through_the_mapped_file_is_read_by_rpc_and_back(string transport)
    {
        await using var s = await TestServer.StartAsync(transport);
        using var ram = await s.Client.MapRamAsync().W();
        Assert.Equal(16ul << 20, ram.Size);
        var pattern = Enumerable.Range(0, 8192).Select(i => (byte)(i * 7 + 3)).ToArray();
        pattern.CopyTo(ram.GetSpan(0x10_0000 - 4096, pattern.Length));   // crosses a page boundary
        var read = await s.Client.Memory.ReadMemoryAsync(new ReadMemoryRequest { Address = 0x10_0000 - 4096, Length = 8192 }, deadline: T.Deadline).W();
        Assert.Equal(pattern, read.Data.ToByteArray());

        var back = Enumerable.Range(0, LimitsOptions.MemoryTransferCeiling).Select(i => (byte)(i ^ (i >> 8))).ToArray();   // the maximum
        await s.Client.Memory.WriteMemoryAsync(new WriteMemoryRequest { Address = 8 << 20, Data = ByteString.CopyFrom(back) }, deadline: T.Deadline).W();
        Assert.True(ram.GetSpan(8 << 20, back.Length).SequenceEqual(back));
        // The Memory<byte> view sees the same bytes; MMIO reads of RAM agree too.
        Assert.Equal(back[100], ram.GetMemory((8 << 20) + 100, 1).Span[0]);
        var mmio = await s.Client.Mmio.ReadMmioAsync(new ReadMmioRequest { Address = 8 << 20, Width = 8 }, deadline: T.Deadline).W();
        Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(back), mmio.Value);
        s.AssertNoErrors();
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Mixed_stream_of_10k_transactions_keeps_order_and_tags(string transport)
    {
        await using var s = await TestServer.StartAsync(transport);
        using var call = s.Client.Session.Transact(deadline: T.Deadline);
        var expected = new List<(ulong Tag, CompletionStatus Status, ulong Value, byte[]? Data)>();
        var rng = new Random(1234);
        uint msiAddr = 0;
        var ramModel = new byte[4096];
        var pending = new TransactRequest();
        ulong tag = 0;
        async Task Send(Transaction t)
        {
            // Mix single-op messages and batches.
            if (rng.Next(3) == 0)
            {
                var single = new TransactRequest { Tag = t.Tag };
                switch (t.OpCase)
                {
                    case Transaction.OpOneofCase.ConfigRead: single.ConfigRead = t.ConfigRead; break;
                    case Transaction.OpOneofCase.ConfigWrite: single.ConfigWrite = t.ConfigWrite; break;
                    case Transaction.OpOneofCase.MmioRead: single.MmioRead = t.MmioRead; break;
                    case Transaction.OpOneofCase.MmioWrite: single.MmioWrite = t.MmioWrite; break;
                    case Transaction.OpOneofCase.MemoryRead: single.MemoryRead = t.MemoryRead; break;
                    case Transaction.OpOneofCase.MemoryWrite: single.MemoryWrite = t.MemoryWrite; break;
                }
                if (pending.Batch.Count > 0) { await call.RequestStream.WriteAsync(pending).W(); pending = new TransactRequest(); }
                await call.RequestStream.WriteAsync(single).W();
                return;
            }
            pending.Batch.Add(t);
            if (pending.Batch.Count >= 50) { await call.RequestStream.WriteAsync(pending).W(); pending = new TransactRequest(); }
        }

        var reader = Task.Run(async () =>
        {
            var got = new List<(ulong, CompletionStatus, ulong, byte[])>();
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                var r = call.ResponseStream.Current;
                got.Add((r.Tag, r.Status, r.Value, r.Data.ToByteArray()));
                got.AddRange(r.More.Select(c => (c.Tag, c.Status, c.Value, c.Data.ToByteArray())));
            }
            return got;
        });

        for (int i = 0; i < 10_000; i++)
        {
            tag++;
            switch (rng.Next(8))
            {
                case 0:   // posted config write to PF0's MSI Message Address (dword aligned, low 2 bits RO 0)
                    msiAddr = (uint)rng.Next() & 0xFFFF_FFFC;
                    await Send(new Transaction { Tag = tag, ConfigWrite = new ConfigWriteOp { Rid = 0x100, Offset = 0x54, Width = 4, Value = msiAddr } });
                    break;
                case 1:
                    await Send(new Transaction { Tag = tag, ConfigRead = new ConfigReadOp { Rid = 0x100, Offset = 0x54, Width = 4 } });
                    expected.Add((tag, CompletionStatus.Successful, msiAddr, null));
                    break;
                case 2:   // posted write to a missing function: reported with its tag
                    await Send(new Transaction { Tag = tag, ConfigWrite = new ConfigWriteOp { Rid = 0x0106, Offset = 0x10, Width = 2, Value = 1 } });
                    expected.Add((tag, CompletionStatus.UnsupportedRequest, 0, null));
                    break;
                case 3:
                {
                    int off = rng.Next(512) * 8;
                    ulong v = (ulong)rng.NextInt64();
                    bool ack = rng.Next(4) == 0;
                    BinaryPrimitives.WriteUInt64LittleEndian(ramModel.AsSpan(off), v);
                    await Send(new Transaction { Tag = tag, MmioWrite = new MmioWriteOp { Address = (ulong)off, Width = 8, Value = v, Ack = ack } });
                    if (ack) expected.Add((tag, CompletionStatus.Successful, 0, null));
                    break;
                }
                case 4:
                {
                    int off = rng.Next(1024) * 4;
                    await Send(new Transaction { Tag = tag, MmioRead = new MmioReadOp { Address = (ulong)off, Width = 4 } });
                    expected.Add((tag, CompletionStatus.Successful, BinaryPrimitives.ReadUInt32LittleEndian(ramModel.AsSpan(off)), null));
                    break;
                }
                case 5:
                {
                    int off = rng.Next(4000);
                    var data = new byte[rng.Next(1, 96)];
                    rng.NextBytes(data);
                    data.AsSpan(0, Math.Min(data.Length, 4096 - off)).CopyTo(ramModel.AsSpan(off));
                    await Send(new Transaction { Tag = tag, MemoryWrite = new MemoryWriteOp { Address = (ulong)off, Data = ByteString.CopyFrom(data.AsSpan(0, Math.Min(data.Length, 4096 - off))) } });
                    break;
                }
                case 6:
                {
                    int off = rng.Next(4000);
                    int len = rng.Next(0, 96);
                    len = Math.Min(len, 4096 - off);
                    await Send(new Transaction { Tag = tag, MemoryRead = new MemoryReadOp { Address = (ulong)off, Length = (uint)len } });
                    expected.Add((tag, CompletionStatus.Successful, 0, ramModel.AsSpan(off, len).ToArray()));
                    break;
                }
                default:  // read of a missing function: UR, all ones
                    await Send(new Transaction { Tag = tag, ConfigRead = new ConfigReadOp { Rid = 0x0300, Offset = 0, Width = 4 } });
                    expected.Add((tag, CompletionStatus.UnsupportedRequest, 0xFFFF_FFFF, null));
                    break;
            }
        }
        if (pending.Batch.Count > 0) await call.RequestStream.WriteAsync(pending).W();
        await call.RequestStream.CompleteAsync().W();
        var got = await reader.W();

        Assert.Equal(expected.Count, got.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Tag, got[i].Item1);
            Assert.Equal(expected[i].Status, got[i].Item2);
            Assert.Equal(expected[i].Value, got[i].Item3);
            if (expected[i].Data != null) Assert.Equal(expected[i].Data, got[i].Item4);
        }
        s.AssertNoErrors();
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Client_cancelled_mid_stream_leaves_the_server_serving(string transport)
    {
        await using var s = await TestServer.StartAsync(transport);
        using (var cts = new CancellationTokenSource())
        {
            using var call = s.Client.Session.Transact(cancellationToken: cts.Token);
            var batch = new TransactRequest();
            for (int i = 0; i < 500; i++) batch.Batch.Add(new Transaction { Tag = (ulong)i, ConfigRead = new ConfigReadOp { Rid = 0x100, Width = 4 } });
            await call.RequestStream.WriteAsync(batch).W();
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).W());
            for (int i = 0; i < 20; i++) await call.RequestStream.WriteAsync(batch).W();
            cts.Cancel();
            var ex = await Assert.ThrowsAnyAsync<Exception>(async () => { while (await call.ResponseStream.MoveNext(cts.Token)) { } }).W();
            Assert.True(ex is RpcException { StatusCode: StatusCode.Cancelled } or OperationCanceledException, ex.ToString());
        }
        // The server goes on: new streams and unary calls work, state intact.
        await using var session = s.Client.OpenSession();
        Assert.Equal(0x10C98086ul, (await session.ReadConfigAsync(0x100, 0, 4).W()).Value);
        Assert.Equal(0x10C98086u, await s.Client.ReadConfig32Async(0x100, 0).W());
        s.AssertNoErrors();
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Sixteen_concurrent_clients_each_see_their_own_writes(string transport)
    {
        await using var s = await TestServer.StartAsync(transport);
        var tasks = Enumerable.Range(0, 16).Select(id => Task.Run(async () =>
        {
            using var c = s.NewClient();
            await using var session = c.OpenSession();
            ulong region = (ulong)(0x10_0000 + id * 0x1000);
            for (int i = 0; i < 300; i++)
            {
                await session.PostMmioWriteAsync(region + (ulong)(i % 64) * 8, 8, (ulong)id << 32 | (uint)i).AsTask().W();
                if (i % 10 == 9)
                {
                    var r = await session.ReadMmioAsync(region + (ulong)(i % 64) * 8, 8).W();
                    Assert.Equal((ulong)id << 32 | (uint)i, r.Value);
                    Assert.Equal(0x10C98086u, await c.ReadConfig32Async(0x100, 0).W());
                }
            }
            await session.CompleteAsync().W();
            Assert.Equal(0, session.FailedWrites);
        })).ToArray();
        await Task.WhenAll(tasks).W();
        s.AssertNoErrors();
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Stuck_interrupt_subscriber_is_cut_off_while_another_keeps_receiving(string transport)
    {
        await using var s = await TestServer.StartAsync(transport, new Dictionary<string, string?> { ["Limits:InterruptQueueCapacity"] = "256" });
        var c = s.Client;
        // Program PF0's MSI-X table entry 0 through MMIO and enable MSI-X (PCI 3.0 §6.8.2).
        var pf0 = (await c.ListFunctionsAsync().W()).Single(f => f.Rid == 0x100);
        ulong table = pf0.Bars.Single(b => b.Index == 3).Address;
        int msix = await c.FindCapabilityAsync(0x100, PciRegs.CapIdMsix).W();
        Assert.Equal(0x70, msix);
        await c.Mmio.WriteMmioAsync(new WriteMmioRequest { Address = table, Width = 4, Value = 0xFEE0_1000 }, deadline: T.Deadline).W();
        await c.Mmio.WriteMmioAsync(new WriteMmioRequest { Address = table + 8, Width = 4, Value = 0x41 }, deadline: T.Deadline).W();
        await c.Mmio.WriteMmioAsync(new WriteMmioRequest { Address = table + 12, Width = 4, Value = 0 }, deadline: T.Deadline).W();
        ushort ctl = await c.ReadConfig16Async(0x100, msix + 2).W();
        await c.WriteConfig16Async(0x100, msix + 2, (ushort)(ctl | 0x8000)).W();

        using var cts = new CancellationTokenSource(T.Timeout * 4);
        using var live = c.Interrupts.SubscribeInterrupts(new SubscribeInterruptsRequest { Rids = { 0x100 } }, cancellationToken: cts.Token);
        using var stuckClient = s.NewClient();
        using var stuck = stuckClient.Interrupts.SubscribeInterrupts(new SubscribeInterruptsRequest(), cancellationToken: cts.Token);
        await live.ResponseHeadersAsync.W();
        await stuck.ResponseHeadersAsync.W();

        long received = 0;
        ulong lastSeq = 0;
        var machine = s.Machine;
        const int Total = 40_000, Chunk = 64;
        for (int sent = 0; sent < Total; sent += Chunk)
        {
            lock (machine.SyncRoot)
                for (int i = 0; i < Chunk; i++) machine.PhysicalFunctions[0].RaiseInterrupt(0);
            // The live subscriber keeps up (reads everything before more is raised).
            while (received < sent + Chunk)
            {
                Assert.True(await live.ResponseStream.MoveNext(cts.Token).W());
                var ev = live.ResponseStream.Current;
                Assert.True(ev.Sequence > lastSeq);
                Assert.Equal((0x100u, InterruptKind.Msix, 0xFEE0_1000ul, 0x41u, 0u), (ev.Rid, ev.Kind, ev.Address, ev.Data, ev.Vector));
                lastSeq = ev.Sequence;
                received++;
            }
        }
        Assert.Equal(Total, received);

        // The stuck one now drains what reached it, then learns it was cut off and how much it missed.
        var (stuckGot, missed) = await T.DrainCutOff(stuck.ResponseStream, "event", cts.Token);
        // The stream ends once the server has drained the queue; events raised after that were
        // not meant for a subscriber that is gone, so the sum is at most what was raised.
        Assert.True(stuckGot + missed <= Total, $"{stuckGot} received + {missed} missed > {Total} raised");
        Assert.True(stuckGot >= 256);

        // The live subscriber leaving (cancelled) is routine, not a server error.
        await cts.CancelAsync().W();
        await Assert.ThrowsAnyAsync<Exception>(() => live.ResponseStream.MoveNext(CancellationToken.None)).W();
        await using (var again = s.Client.OpenSession())
            Assert.Equal(0x10C98086ul, (await again.ReadConfigAsync(0x100, 0, 4).W()).Value);
        s.AssertNoErrors();
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Sriov_enable_shows_VFs_with_BARs_and_reset_removes_them(string transport)
    {
        await using var s = await TestServer.StartAsync(transport);
        var c = s.Client;
        var vfs = await c.EnableSriovAsync(0x100, 4, ari: false, settle: TimeSpan.Zero).W();
        // Without ARI: First VF Offset 0x180, stride 2: 02:10.0, 02:10.2, ...
        Assert.Equal(new uint[] { 0x0280, 0x0282, 0x0284, 0x0286 }, vfs);
        var list = await c.ListFunctionsAsync().W();
        var vf = list.Single(f => f.Rid == 0x0282);
        Assert.True(vf.IsVirtual);
        Assert.Equal(0x100u, vf.PhysicalFunctionRid);
        Assert.Equal(0x10CAu, vf.DeviceId);
        Assert.Equal(0xFFFFu, await c.ReadConfig16Async(0x0282, 0).W());   // VF Vendor ID reads FFFFh
        var bar0 = vf.Bars.Single(b => b.Index == 0);
        Assert.Equal(16ul * 1024, bar0.Size);
        Assert.True(bar0.Is64Bit);
        Assert.Equal(list.Single(f => f.Rid == 0x0280).Bars.Single(b => b.Index == 0).Address + 16 * 1024, bar0.Address);

        await c.DisableSriovAsync(0x100, settle: TimeSpan.Zero).W();
        Assert.DoesNotContain(await c.ListFunctionsAsync().W(), f => f.IsVirtual);

        await c.EnableSriovAsync(0x101, 2, ari: false, settle: TimeSpan.Zero).W();
        await c.Platform.ResetPlatformAsync(new ResetPlatformRequest(), deadline: T.Deadline).W();
        Assert.Equal(4, (await c.ListFunctionsAsync().W()).Count);
        s.AssertNoErrors();
    }

    [Fact]
    public async Task Sriov_enable_with_ARI_sets_forwarding_and_hierarchy_like_Linux()
    {
        await using var s = await TestServer.StartAsync("tcp");
        var c = s.Client;
        var vfs = await c.EnableSriovAsync(0x100, 2, settle: TimeSpan.Zero).W();
        Assert.Equal(new uint[] { 0x0180, 0x0182 }, vfs);   // First VF Offset 0x80 with ARI Capable Hierarchy
        var platform = await c.GetPlatformAsync().W();
        Assert.True(platform.RootPorts[0].AriForwardingEnabled);
        int sriov = await c.FindExtendedCapabilityAsync(0x100, PciRegs.ExtCapIdSriov).W();
        Assert.Equal(0x160, sriov);
        ushort ctl = await c.ReadConfig16Async(0x100, sriov + PciRegs.SriovControl).W();
        Assert.Equal(PciRegs.SriovCtlVfEnable | PciRegs.SriovCtlVfMse | PciRegs.SriovCtlAriHierarchy, ctl);
        Assert.Contains(await c.ListFunctionsAsync().W(), f => f.Rid == 0x0182 && f.IsVirtual);
        await Assert.ThrowsAsync<InvalidOperationException>(() => c.EnableSriovAsync(0x100, 1, settle: TimeSpan.Zero)).W();
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => c.EnableSriovAsync(0x101, 9, settle: TimeSpan.Zero)).W();
    }

    [Fact]
    public async Task Reflection_lists_the_v1_services()
    {
        await using var s = await TestServer.StartAsync("tcp");
        var reflection = new Grpc.Reflection.V1Alpha.ServerReflection.ServerReflectionClient(s.Client.Channel);
        using var call = reflection.ServerReflectionInfo(deadline: T.Deadline);
        await call.RequestStream.WriteAsync(new Grpc.Reflection.V1Alpha.ServerReflectionRequest { ListServices = "" }).W();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).W());
        var names = call.ResponseStream.Current.ListServicesResponse.Service.Select(x => x.Name).ToList();
        foreach (var svc in new[] { "pcieemu.v1.PlatformService", "pcieemu.v1.ConfigService", "pcieemu.v1.MmioService", "pcieemu.v1.SessionService",
                     "pcieemu.v1.MemoryService", "pcieemu.v1.InterruptService", "pcieemu.v1.EthernetService", "pcieemu.v1.IommuService", "grpc.health.v1.Health" })
            Assert.Contains(svc, names);
        await call.RequestStream.CompleteAsync().W();
        // Read to the end: disposing a call the server is still reading resets it (an error in grpc-dotnet's log).
        Assert.False(await call.ResponseStream.MoveNext(CancellationToken.None).W());
    }
}
