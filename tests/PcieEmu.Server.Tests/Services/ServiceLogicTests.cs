using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using PcieEmu.Core.Platform;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;
using PcieEmu.Server.Services;

namespace PcieEmu.Server.Tests.Services;

/// <summary>Tier 1: the services called directly with a fake context (no transport).</summary>
public sealed class ServiceLogicTests : IDisposable
{
    private readonly Machine _m = new(new MachineOptions { RamSize = 1 << 20 });
    private readonly LimitsOptions _limits = new() { MaxInterruptSubscribers = 2, InterruptQueueCapacity = 8 };
    private readonly FakeContext _ctx = new();

    public void Dispose() => _m.Dispose();

    private ConfigGrpcService Config => new(_m);
    private MmioGrpcService Mmio => new(_m);
    private MemoryGrpcService Memory => new(_m, _limits);
    private SessionGrpcService Session => new(_m, _limits, RunningLifetime.Shutdown, new Ring.SharedRings(_m, _limits, new ServeSettings()), NullLogger<SessionGrpcService>.Instance);

    private static async Task<RpcException> Fails(Func<Task> call, StatusCode code, string field)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call).WaitAsync(T.Timeout);
        Assert.Equal(code, ex.StatusCode);
        Assert.Contains(field + ":", ex.Status.Detail);
        return ex;
    }

    [Fact]
    public async Task ReadConfig_returns_ids_and_UR_for_missing_function()
    {
        var ok = await Config.ReadConfig(new ReadConfigRequest { Rid = 0x0100, Offset = 0, Width = 4 }, _ctx).W();
        Assert.Equal(CompletionStatus.Successful, ok.Status);
        Assert.Equal(0x10C98086u, ok.Value);
        var ur = await Config.ReadConfig(new ReadConfigRequest { Rid = 0x0300, Offset = 0, Width = 2 }, _ctx).W();
        Assert.Equal(CompletionStatus.UnsupportedRequest, ur.Status);
        Assert.Equal(0xFFFFu, ur.Value);
    }

    [Theory]
    [InlineData(0x10000u, 0u, 4u, "rid")]
    [InlineData(0x100u, 4096u, 4u, "offset")]
    [InlineData(0x100u, 0xFFFF_FFFFu, 4u, "offset")]
    [InlineData(0x100u, 0u, 3u, "width")]
    [InlineData(0x100u, 0u, 0u, "width")]
    [InlineData(0x100u, 0u, 8u, "width")]
    [InlineData(0x100u, 0u, 0xFFFF_FFFFu, "width")]
    [InlineData(0x100u, 3u, 2u, "offset")]
    [InlineData(0x100u, 2u, 4u, "offset")]
    public Task ReadConfig_rejects_malformed_fields(uint rid, uint offset, uint width, string field) =>
        Fails(() => Config.ReadConfig(new ReadConfigRequest { Rid = rid, Offset = offset, Width = width }, _ctx), StatusCode.InvalidArgument, field);

    [Theory]
    [InlineData(0x10000u, 0u, 4u, 0u, "rid")]
    [InlineData(0x100u, 4096u, 4u, 0u, "offset")]
    [InlineData(0x100u, 0u, 5u, 0u, "width")]
    [InlineData(0x100u, 1u, 4u, 0u, "offset")]
    [InlineData(0x100u, 4u, 1u, 0x100u, "value")]
    [InlineData(0x100u, 4u, 2u, 0x10000u, "value")]
    public Task WriteConfig_rejects_malformed_fields(uint rid, uint offset, uint width, uint value, string field) =>
        Fails(() => Config.WriteConfig(new WriteConfigRequest { Rid = rid, Offset = offset, Width = width, Value = value }, _ctx), StatusCode.InvalidArgument, field);

    [Fact]
    public async Task Rejected_requests_leave_state_untouched()
    {
        uint before = (await Config.ReadConfig(new ReadConfigRequest { Rid = 0x100, Offset = 4, Width = 4 }, _ctx).W()).Value;
        await Fails(() => Config.WriteConfig(new WriteConfigRequest { Rid = 0x100, Offset = 4, Width = 1, Value = 0x1FF }, _ctx), StatusCode.InvalidArgument, "value");
        Assert.Equal(before, (await Config.ReadConfig(new ReadConfigRequest { Rid = 0x100, Offset = 4, Width = 4 }, _ctx).W()).Value);
    }

    [Theory]
    [InlineData(0x1000ul, 3u, "width")]
    [InlineData(0x1000ul, 16u, "width")]
    [InlineData(0x1001ul, 2u, "address")]
    [InlineData(0x1004ul, 8u, "address")]
    public Task ReadMmio_rejects_malformed_fields(ulong address, uint width, string field) =>
        Fails(() => Mmio.ReadMmio(new ReadMmioRequest { Address = address, Width = width }, _ctx), StatusCode.InvalidArgument, field);

    [Theory]
    [InlineData(0x1000ul, 0u, 0ul, "width")]
    [InlineData(0x1002ul, 4u, 0ul, "address")]
    [InlineData(0x1000ul, 2u, 0x10000ul, "value")]
    public Task WriteMmio_rejects_malformed_fields(ulong address, uint width, ulong value, string field) =>
        Fails(() => Mmio.WriteMmio(new WriteMmioRequest { Address = address, Width = width, Value = value }, _ctx), StatusCode.InvalidArgument, field);

    [Fact]
    public async Task Mmio_to_RAM_and_to_nothing()
    {
        Assert.Equal(CompletionStatus.Successful, (await Mmio.WriteMmio(new WriteMmioRequest { Address = 0x2000, Width = 8, Value = 0x1122334455667788 }, _ctx).W()).Status);
        Assert.Equal(0x55667788ul, (await Mmio.ReadMmio(new ReadMmioRequest { Address = 0x2000, Width = 4 }, _ctx).W()).Value);
        var ur = await Mmio.ReadMmio(new ReadMmioRequest { Address = 0x8000_0000, Width = 2 }, _ctx).W();
        Assert.Equal((CompletionStatus.UnsupportedRequest, 0xFFFFul), (ur.Status, ur.Value));
        Assert.Equal(CompletionStatus.UnsupportedRequest, (await Mmio.WriteMmio(new WriteMmioRequest { Address = 0x8000_0000, Width = 4, Value = 1 }, _ctx).W()).Status);
    }

    [Fact]
    public async Task ReadMemory_rejects_length_over_limit_and_outside_RAM()
    {
        await Fails(() => Memory.ReadMemory(new ReadMemoryRequest { Address = 0, Length = LimitsOptions.MemoryTransferCeiling + 1 }, _ctx), StatusCode.InvalidArgument, "length");
        await Fails(() => Memory.ReadMemory(new ReadMemoryRequest { Address = (1 << 20) - 4, Length = 8 }, _ctx), StatusCode.OutOfRange, "address");
        await Fails(() => Memory.ReadMemory(new ReadMemoryRequest { Address = ulong.MaxValue - 2, Length = 8 }, _ctx), StatusCode.OutOfRange, "address");
    }

    [Fact]
    public async Task WriteMemory_rejects_data_over_limit_and_outside_RAM_without_writing()
    {
        await Fails(() => Memory.WriteMemory(new WriteMemoryRequest { Address = 0, Data = ByteString.CopyFrom(new byte[LimitsOptions.MemoryTransferCeiling + 1]) }, _ctx), StatusCode.InvalidArgument, "data");
        await Fails(() => Memory.WriteMemory(new WriteMemoryRequest { Address = (1 << 20) - 2, Data = ByteString.CopyFrom(1, 2, 3, 4) }, _ctx), StatusCode.OutOfRange, "address");
        var tail = await Memory.ReadMemory(new ReadMemoryRequest { Address = (1 << 20) - 2, Length = 2 }, _ctx).W();
        Assert.Equal(new byte[2], tail.Data.ToByteArray());
        Assert.Equal(4u, (await Memory.WriteMemory(new WriteMemoryRequest { Address = 16, Data = ByteString.CopyFrom(9, 8, 7, 6) }, _ctx).W()).Length);
        Assert.Equal(new byte[] { 9, 8, 7, 6 }, (await Memory.ReadMemory(new ReadMemoryRequest { Address = 16, Length = 4 }, _ctx).W()).Data.ToByteArray());
    }

    [Fact]
    public async Task Transact_executes_in_order_and_reports_only_reads_failed_or_acked_writes()
    {
        var requests = new[]
        {
            new TransactRequest { Tag = 1, ConfigWrite = new ConfigWriteOp { Rid = 0x100, Offset = 0x54, Width = 4, Value = 0xFEE0_0010 } },
            new TransactRequest { Tag = 2, ConfigRead = new ConfigReadOp { Rid = 0x100, Offset = 0x54, Width = 4 } },
            new TransactRequest { Tag = 3, ConfigWrite = new ConfigWriteOp { Rid = 0x0107, Offset = 0, Width = 4, Value = 1 } },  // UR: reported
            new TransactRequest { Tag = 4, MmioWrite = new MmioWriteOp { Address = 0x100, Width = 4, Value = 7, Ack = true } },
            new TransactRequest
            {
                Batch =
                {
                    new Transaction { Tag = 5, MemoryWrite = new MemoryWriteOp { Address = 0x200, Data = ByteString.CopyFrom(1, 2) } },
                    new Transaction { Tag = 6, MemoryRead = new MemoryReadOp { Address = 0x1FF, Length = 4 } },
                    new Transaction { Tag = 7, MmioRead = new MmioReadOp { Address = 0x100, Width = 4 } },
                },
            },
        };
        var writer = new ListWriter<TransactResponse>();
        await Session.Transact(new ListReader<TransactRequest>(requests), writer, _ctx).W();
        var all = writer.Written.SelectMany(r => new[] { (r.Tag, r.Status, r.Value, r.Data) }.Concat(r.More.Select(c => (c.Tag, c.Status, c.Value, c.Data)))).ToList();
        Assert.Equal(new ulong[] { 2, 3, 4, 6, 7 }, all.Select(c => c.Tag));
        Assert.Equal(0xFEE0_0010ul, all[0].Value);
        Assert.Equal(CompletionStatus.UnsupportedRequest, all[1].Status);
        Assert.Equal(CompletionStatus.Successful, all[2].Status);
        Assert.Equal(new byte[] { 0, 1, 2, 0 }, all[3].Data.ToByteArray());
        Assert.Equal(7ul, all[4].Value);
        Assert.Equal(2, writer.Written[^1].More.Count + 1);   // one coalesced response for the batch message
    }

    [Theory]
    [InlineData("op")]
    [InlineData("batch")]
    [InlineData("config_read.width")]
    [InlineData("batch[1].mmio_write.address")]
    [InlineData("batch[0].op")]
    [InlineData("memory_read.length")]
    [InlineData("memory_write.address")]
    [InlineData("config_write.rid")]
    public async Task Transact_rejects_malformed_transactions_naming_tag_and_field(string field)
    {
        var bad = field switch
        {
            "op" => new TransactRequest { Tag = 9 },
            "batch" => Batch(_limits.MaxTransactionsPerMessage + 1),
            "config_read.width" => new TransactRequest { Tag = 9, ConfigRead = new ConfigReadOp { Rid = 0x100, Width = 3 } },
            "batch[1].mmio_write.address" => new TransactRequest
            {
                Batch =
                {
                    new Transaction { Tag = 8, MmioRead = new MmioReadOp { Address = 0, Width = 4 } },
                    new Transaction { Tag = 9, MmioWrite = new MmioWriteOp { Address = 2, Width = 4 } },
                },
            },
            "batch[0].op" => new TransactRequest { Batch = { new Transaction { Tag = 9 } } },
            "memory_read.length" => new TransactRequest { Tag = 9, MemoryRead = new MemoryReadOp { Length = LimitsOptions.MemoryTransferCeiling + 1 } },
            "memory_write.address" => new TransactRequest { Tag = 9, MemoryWrite = new MemoryWriteOp { Address = 1 << 20, Data = ByteString.CopyFrom(1) } },
            _ => new TransactRequest { Tag = 9, ConfigWrite = new ConfigWriteOp { Rid = 0x1_0000, Width = 4 } },
        };
        var writer = new ListWriter<TransactResponse>();
        var first = new TransactRequest { Tag = 1, ConfigRead = new ConfigReadOp { Rid = 0x100, Width = 4 } };
        var ex = await Assert.ThrowsAsync<RpcException>(() => Session.Transact(new ListReader<TransactRequest>([first, bad]), writer, _ctx)).W();
        Assert.Equal(field == "memory_write.address" ? StatusCode.OutOfRange : StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains(field + ":", ex.Status.Detail);
        if (field != "batch") Assert.Contains("tag", ex.Status.Detail);
        // Everything before the bad transaction executed and was reported.
        Assert.Equal(1ul, writer.Written[0].Tag);
        if (field == "batch[1].mmio_write.address") Assert.Equal(8ul, writer.Written[1].Tag);
    }

    private static TransactRequest Batch(int n)
    {
        var r = new TransactRequest();
        for (int i = 0; i < n; i++) r.Batch.Add(new Transaction { Tag = (ulong)i, ConfigRead = new ConfigReadOp { Rid = 0x100, Width = 4 } });
        return r;
    }

    [Fact]
    public async Task SubscribeInterrupts_rejects_bad_rid_and_too_many_subscribers()
    {
        var subs = new InterruptSubscribers();
        var svc = new InterruptGrpcService(_m, _limits, subs, RunningLifetime.Shutdown, NullLogger<InterruptGrpcService>.Instance);
        await Fails(() => svc.SubscribeInterrupts(new SubscribeInterruptsRequest { Rids = { 0x100, 0x10000 } }, new ListWriter<InterruptEvent>(), _ctx), StatusCode.InvalidArgument, "rids[1]");
        Assert.True(subs.TryEnter(2));
        Assert.True(subs.TryEnter(2));
        await Fails(() => svc.SubscribeInterrupts(new SubscribeInterruptsRequest(), new ListWriter<InterruptEvent>(), _ctx), StatusCode.ResourceExhausted, "subscribers");
    }

    [Fact]
    public async Task Ethernet_checks_port_and_frame_size()
    {
        var tap = new WireTap(_m);
        var eth = new EthernetGrpcService(tap, _limits, RunningLifetime.Shutdown, NullLogger<EthernetGrpcService>.Instance);
        await Fails(() => eth.InjectFrame(new InjectFrameRequest { Port = 2, Data = ByteString.CopyFrom(new byte[60]) }, _ctx), StatusCode.InvalidArgument, "port");
        await Fails(() => eth.InjectFrame(new InjectFrameRequest { Port = 0, Data = ByteString.CopyFrom(new byte[13]) }, _ctx), StatusCode.InvalidArgument, "data");
        await Fails(() => eth.InjectFrame(new InjectFrameRequest { Port = 0, Data = ByteString.CopyFrom(new byte[16385]) }, _ctx), StatusCode.InvalidArgument, "data");
        await Fails(() => eth.CaptureFrames(new CaptureFramesRequest { Port = 7 }, new ListWriter<CapturedFrame>(), _ctx), StatusCode.InvalidArgument, "port");
        using (var a = tap.TrySubscribe(0, 4, max: 1))
        {
            Assert.NotNull(a);
            Assert.Null(tap.TrySubscribe(1, 4, max: 1));
            var limited = new EthernetGrpcService(tap, new LimitsOptions { MaxCaptureSubscribers = 1 }, RunningLifetime.Shutdown, NullLogger<EthernetGrpcService>.Instance);
            await Fails(() => limited.CaptureFrames(new CaptureFramesRequest { Port = 0 }, new ListWriter<CapturedFrame>(), _ctx), StatusCode.ResourceExhausted, "subscribers");
        }
        Assert.NotNull(tap.TrySubscribe(1, 4, max: 1));   // the slot came back
        // A well-formed frame to a port whose receiver is off is dropped: data, not an error.
        var r = await eth.InjectFrame(new InjectFrameRequest { Port = 1, Data = ByteString.CopyFrom(new byte[60]) }, _ctx).W();
        Assert.Equal((false, 0u), (r.Accepted, r.Queues));
    }

    [Fact]
    public async Task Iommu_checks_rid_and_reports_identity_while_translation_is_off()
    {
        var iommu = new IommuGrpcService(_m);
        await Fails(() => iommu.TranslateAddress(new TranslateAddressRequest { Rid = 0x10000 }, _ctx), StatusCode.InvalidArgument, "rid");
        var r = await iommu.TranslateAddress(new TranslateAddressRequest { Rid = 0x100, Address = 0x1234_5000, Write = true }, _ctx).W();
        Assert.Equal((TranslationStatus.TranslationDisabled, 0x1234_5000ul, 0u, false), (r.Status, r.TranslatedAddress, r.FaultReason, r.FaultRecorded));
    }

    [Fact]
    public async Task Platform_describes_machine_lists_functions_and_resets()
    {
        var svc = new PlatformGrpcService(_m, _limits, NullLogger<PlatformGrpcService>.Instance);
        var p = await svc.GetPlatform(new GetPlatformRequest(), _ctx).W();
        Assert.Equal(_m.Ram.Path, p.RamRegions.Single().SharedFilePath);
        Assert.Equal(1ul << 20, p.RamRegions[0].Size);
        Assert.Equal(0xFED9_0000ul, p.IommuBase);
        Assert.Equal(0xFEE0_0000ul, p.MsiWindowBase);
        Assert.Equal(0x0008u, p.RootPorts.Single().Rid);
        Assert.True(p.RootPorts[0].AriForwardingSupported);
        Assert.Equal(new uint[] { 0x100, 0x101 }, p.Devices.Single().PhysicalFunctionRids);
        var list = await svc.ListFunctions(new ListFunctionsRequest(), _ctx).W();
        Assert.Equal(new uint[] { 0x0000, 0x0008, 0x0100, 0x0101 }, list.Functions.Select(f => f.Rid));
        var pf0 = list.Functions[2];
        Assert.Equal((0x8086u, 0x10C9u, 0x020000u), (pf0.VendorId, pf0.DeviceId, pf0.ClassCode));
        var bar0 = pf0.Bars.Single(b => b.Index == 0);
        Assert.Equal(128ul * 1024, bar0.Size);
        Assert.NotEqual(0ul, bar0.Address);
        Assert.True(pf0.Bars.Single(b => b.Index == 2).IsIo);
        Assert.True(pf0.Bars.Single(b => b.Index == 6).IsRom);

        // Reset undoes a change made through config space.
        await Config.WriteConfig(new WriteConfigRequest { Rid = 0x100, Offset = 0x54, Width = 4, Value = 0xFEE0_0000 }, _ctx).W();
        Assert.Equal(4u, (await svc.ResetPlatform(new ResetPlatformRequest(), _ctx).W()).Functions);
        Assert.Equal(0u, (await Config.ReadConfig(new ReadConfigRequest { Rid = 0x100, Offset = 0x54, Width = 4 }, _ctx).W()).Value);
    }
}
