using System.Buffers.Binary;
using Google.Protobuf;
using PcieEmu.Client;
using PcieEmu.Client.Vtd;
using PcieEmu.Protocol.V1;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>
/// The client's VT-d driver against a real server (Kestrel on TCP and on a Unix socket), its
/// tables written through MemoryService or through the mapped RAM file.
/// </summary>
public sealed class VtdDriverTests
{
    // 16 MiB of RAM in the test server: tables in [8 MiB, 10 MiB), data below.
    private const ulong TableBase = 8 << 20, TableSize = 2 << 20;
    private const ulong FaultMsiAddress = 0xFEE0_3000;

    /// <summary>(transport, tables through the mapped RAM file).</summary>
    public static TheoryData<string, bool> Setups => new() { { "tcp", false }, { "unix", true }, { "unix", false } };

    private sealed class Rig : IAsyncDisposable
    {
        public required TestServer Server;
        public required VtdDriver Driver;
        public RamMapping? Ram;
        public PcieEmuClient C => Server.Client;

        public static async Task<Rig> StartAsync(string transport, bool localRam)
        {
            var s = await TestServer.StartAsync(transport);
            var ram = localRam ? await s.Client.MapRamAsync().W() : null;
            var d = await VtdDriver.CreateAsync(s.Client, TableBase, TableSize, ram).W();
            return new Rig { Server = s, Driver = d, Ram = ram };
        }

        public async Task<byte[]> ReadRamAsync(ulong address, int length) =>
            (await C.Memory.ReadMemoryAsync(new ReadMemoryRequest { Address = address, Length = (uint)length }, deadline: T.Deadline).W()).Data.ToByteArray();

        public Task WriteRamAsync(ulong address, byte[] data) =>
            C.Memory.WriteMemoryAsync(new WriteMemoryRequest { Address = address, Data = ByteString.CopyFrom(data) }, deadline: T.Deadline).W();

        public async ValueTask DisposeAsync()
        {
            Ram?.Dispose();
            await Server.DisposeAsync();
        }
    }

    private static void AssertTranslated(TranslateAddressResponse r, ulong expected)
    {
        Assert.True(r.Status == TranslationStatus.Ok, $"status {r.Status}, fault 0x{r.FaultReason:X}");
        Assert.Equal(expected, r.TranslatedAddress);
    }

    private static void AssertFault(TranslateAddressResponse r, uint reason, bool recorded = true) =>
        Assert.Equal((TranslationStatus.Fault, reason, recorded), (r.Status, r.FaultReason, r.FaultRecorded));

    private static async Task<InterruptEvent> NextAsync(InterruptStream stream)
    {
        using var cts = new CancellationTokenSource(T.Timeout);
        await using var e = stream.Events(cts.Token).GetAsyncEnumerator(cts.Token);
        Assert.True(await e.MoveNextAsync().AsTask().W());
        return e.Current;
    }

    [Theory]
    [MemberData(nameof(Setups))]
    public async Task Mapped_range_of_a_VF_translates_and_an_unmapped_address_faults_with_the_fault_event(string transport, bool localRam)
    {
        await using var rig = await Rig.StartAsync(transport, localRam);
        var d = rig.Driver;
        Assert.Equal(0x10u, d.Version);
        var vfs = await rig.C.EnableSriovAsync(0x100, 2, settle: TimeSpan.Zero).W();
        ushort vf = (ushort)vfs[1];

        // Before TE the unit passes addresses through untouched.
        var off = await d.ProbeAsync(vf, 0x1234_5000).W();
        Assert.Equal((TranslationStatus.TranslationDisabled, 0x1234_5000ul), (off.Status, off.TranslatedAddress));

        var dom = await d.CreateDomainAsync(1).W();
        await d.AttachAsync(vf, dom).W();
        await d.MapAsync(dom, 0x1000_0000, 0x40_0000, 0x4000).W();
        await d.MapAsync(dom, 0x2000_0000, 0x50_0000, 0x1000, VtdAccess.Read).W();
        await d.EnableAsync().W();
        Assert.Equal(VtdRegisters.GcmdTe | VtdRegisters.GcmdSrtp, await d.ReadRegister32Async(VtdRegisters.Gsts).W() & (VtdRegisters.GcmdTe | VtdRegisters.GcmdSrtp));
        Assert.Equal(d.RootTable, await d.ReadRegister64Async(VtdRegisters.Rtaddr).W());
        await d.ConfigureFaultEventAsync(FaultMsiAddress, 0x55).W();
        using var events = await rig.C.OpenInterruptStreamAsync([0]).W();

        AssertTranslated(await d.ProbeAsync(vf, 0x1000_1234).W(), 0x40_1234);
        AssertTranslated(await d.ProbeAsync(vf, 0x1000_3FF8, write: true).W(), 0x40_3FF8);
        AssertTranslated(await d.ProbeAsync(vf, 0x2000_0010).W(), 0x50_0010);
        Assert.Empty((await d.ReadFaultsAsync().W()).Records);

        // One page past the mapping: read not permitted (the PTE is not present).
        AssertFault(await d.ProbeAsync(vf, 0x1000_4008).W(), 6);
        var state = await d.ReadFaultsAsync().W();
        Assert.True(state.Pending);
        var f = Assert.Single(state.Records);
        Assert.Equal((vf, (byte)6, true, 0x1000_4000ul), (f.SourceId, f.Reason, f.IsRead, f.Address));
        Assert.Equal(f.Index, state.FaultRecordIndex);
        var ev = await NextAsync(events).W();
        Assert.Equal((0u, InterruptKind.IommuFault, FaultMsiAddress, 0x55u, 0u, 3u, 0x55u),
            (ev.Rid, ev.Kind, ev.Address, ev.Data, ev.Vector, ev.Destination, ev.CpuVector));

        // Cleared, the next fault (a write to a read-only page) is recorded and signalled again.
        Assert.Single(await d.ClearFaultsAsync().W());
        var clear = await d.ReadFaultsAsync().W();
        Assert.Equal((false, 0), (clear.Pending, clear.Records.Count));
        AssertFault(await d.ProbeAsync(vf, 0x2000_0010, write: true).W(), 5);
        f = Assert.Single((await d.ReadFaultsAsync().W()).Records);
        Assert.Equal((vf, (byte)5, false, 0x2000_0000ul), (f.SourceId, f.Reason, f.IsRead, f.Address));
        ev = await NextAsync(events).W();
        Assert.Equal((InterruptKind.IommuFault, 0x55u), (ev.Kind, ev.Data));

        // The other VF has no context entry yet: context not present.
        AssertFault(await d.ProbeAsync(vfs[0], 0x1000_0000).W(), 2);
        rig.Server.AssertNoErrors();
    }

    public static TheoryData<string, bool, bool> StaleSetups => new()
    {
        { "tcp", false, false }, { "tcp", false, true }, { "unix", true, false }, { "unix", true, true },
    };

    [Theory]
    [MemberData(nameof(StaleSetups))]
    public async Task A_stale_translation_stays_until_the_driver_invalidates(string transport, bool localRam, bool queued)
    {
        await using var rig = await Rig.StartAsync(transport, localRam);
        var d = rig.Driver;
        ushort vf = (ushort)(await rig.C.EnableSriovAsync(0x101, 1, settle: TimeSpan.Zero).W())[0];
        var dom = await d.CreateDomainAsync(7).W();
        await d.AttachAsync(vf, dom).W();
        await d.MapAsync(dom, 0x8000_0000, 0x30_0000, 0x2000).W();
        await d.EnableAsync().W();
        if (queued)
        {
            await d.EnableQueuedInvalidationAsync().W();
            Assert.NotEqual(0u, await d.ReadRegister32Async(VtdRegisters.Gsts).W() & VtdRegisters.GcmdQie);
        }
        Assert.Equal(queued ? VtdInvalidationMode.Queued : VtdInvalidationMode.Register, d.InvalidationMode);

        AssertTranslated(await d.ProbeAsync(vf, 0x8000_1010).W(), 0x30_1010);      // fills the IOTLB
        // Remap the second page elsewhere without telling the unit.
        Assert.Equal(0x1000ul, await d.UnmapAsync(dom, 0x8000_1000, 0x1000, invalidate: false).W());
        await d.MapAsync(dom, 0x8000_1000, 0x60_0000, 0x1000).W();
        Assert.Equal(0x60_0010ul, d.Resolve(dom, 0x8000_1010));
        AssertTranslated(await d.ProbeAsync(vf, 0x8000_1010).W(), 0x30_1010);      // stale
        AssertTranslated(await d.ProbeAsync(vf, 0x8000_1010, dryRun: true).W(), 0x30_1010);

        var reported = await d.InvalidateRangeAsync(dom, 0x8000_1000, 0x1000).W();
        Assert.Equal(queued ? null : VtdIotlbGranularity.Page, reported);
        AssertTranslated(await d.ProbeAsync(vf, 0x8000_1010).W(), 0x60_0010);
        AssertTranslated(await d.ProbeAsync(vf, 0x8000_0010).W(), 0x30_0010);

        // Unmapped without invalidation: still reachable; unmapped with it: gone.
        await d.UnmapAsync(dom, 0x8000_0000, 0x1000, invalidate: false).W();
        AssertTranslated(await d.ProbeAsync(vf, 0x8000_0010).W(), 0x30_0010);
        await d.UnmapAsync(dom, 0x8000_1000, 0x1000).W();
        AssertFault(await d.ProbeAsync(vf, 0x8000_1010).W(), 6);
        AssertTranslated(await d.ProbeAsync(vf, 0x8000_0010).W(), 0x30_0010);      // page-selective left page 0
        var dr = await d.InvalidateIotlbAsync(VtdIotlbGranularity.Domain, dom.Id).W();
        Assert.Equal(queued ? null : VtdIotlbGranularity.Domain, dr);
        AssertFault(await d.ProbeAsync(vf, 0x8000_0010).W(), 6);

        // Detaching clears the context entry and invalidates it: the context is gone at once.
        await d.DetachAsync(vf).W();
        AssertFault(await d.ProbeAsync(vf, 0x8000_0010).W(), 2);
        if (queued)
        {
            Assert.Equal(await d.ReadRegister64Async(VtdRegisters.Iqt).W(), await d.ReadRegister64Async(VtdRegisters.Iqh).W());
            Assert.False((await d.ReadFaultsAsync().W()).QueueError);
            await d.DisableQueuedInvalidationAsync().W();
            Assert.Equal(0u, await d.ReadRegister32Async(VtdRegisters.Gsts).W() & VtdRegisters.GcmdQie);
            Assert.Equal(VtdContextGranularity.Global, await d.InvalidateContextAsync(VtdContextGranularity.Global).W());
        }
        rig.Server.AssertNoErrors();
    }

    [Theory]
    [InlineData("tcp", false)]
    [InlineData("unix", true)]
    public async Task Two_VFs_of_different_PFs_live_in_different_domains(string transport, bool localRam)
    {
        await using var rig = await Rig.StartAsync(transport, localRam);
        var d = rig.Driver;
        ushort a = (ushort)(await rig.C.EnableSriovAsync(0x100, 2, settle: TimeSpan.Zero).W())[0];
        ushort b = (ushort)(await rig.C.EnableSriovAsync(0x101, 2, settle: TimeSpan.Zero).W())[1];
        Assert.NotEqual(a, b);
        var da = await d.CreateDomainAsync(1).W();
        var db = await d.CreateDomainAsync(2, addressWidth: 39).W();
        await d.AttachAsync(a, da).W();
        await d.AttachAsync(b, db).W();
        await d.MapAsync(da, 0x10_0000, 0x20_0000, 0x1000).W();
        await d.MapAsync(db, 0x10_0000, 0x21_0000, 0x1000).W();
        await d.MapAsync(db, 0x40_0000, 0x22_0000, 0x1000).W();
        // A 2 MiB page in domain 1 (iova and frame 2 MiB aligned).
        await d.MapAsync(da, 0x4000_0000, 0x60_0000 - 0x20_0000, 0x20_0000, largePages: true).W();
        await d.EnableAsync().W();

        AssertTranslated(await d.ProbeAsync(a, 0x10_0abc).W(), 0x20_0abc);
        AssertTranslated(await d.ProbeAsync(b, 0x10_0abc).W(), 0x21_0abc);
        AssertTranslated(await d.ProbeAsync(b, 0x40_0008, write: true).W(), 0x22_0008);
        AssertTranslated(await d.ProbeAsync(a, 0x4019_8765).W(), 0x59_8765);
        AssertFault(await d.ProbeAsync(a, 0x40_0008).W(), 6);                       // only in b's domain
        AssertFault(await d.ProbeAsync(b, 0x80_0000_0000).W(), 4);                  // beyond b's 39 bits
        var faults = (await d.ReadFaultsAsync().W()).Records;
        Assert.Equal([(a, (byte)6), (b, (byte)4)], faults.Select(f => (f.SourceId, f.Reason)).ToArray());

        // Unmapping the 2 MiB page needs the whole page.
        await Assert.ThrowsAsync<InvalidOperationException>(() => d.UnmapAsync(da, 0x4000_0000, 0x1000)).W();
        await Assert.ThrowsAsync<InvalidOperationException>(() => d.MapAsync(db, 0x10_0000, 0x23_0000, 0x1000)).W();

        // Invalidating domain 2 does not touch domain 1's stale entry; domain 1 does.
        await d.UnmapAsync(da, 0x10_0000, 0x1000, invalidate: false).W();
        await d.InvalidateIotlbAsync(VtdIotlbGranularity.Domain, db.Id).W();
        AssertTranslated(await d.ProbeAsync(a, 0x10_0abc).W(), 0x20_0abc);
        await d.InvalidateIotlbAsync(VtdIotlbGranularity.Domain, da.Id).W();
        AssertFault(await d.ProbeAsync(a, 0x10_0abc).W(), 6);
        AssertTranslated(await d.ProbeAsync(b, 0x10_0abc).W(), 0x21_0abc);
        Assert.Equal(0x20_0000ul, await d.UnmapAsync(da, 0x4000_0000, 0x20_0000).W());
        AssertFault(await d.ProbeAsync(a, 0x4019_8765).W(), 6);
        rig.Server.AssertNoErrors();
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("unix")]
    public async Task Pass_through_and_missing_root_or_context_entries(string transport)
    {
        await using var rig = await Rig.StartAsync(transport, false);
        var d = rig.Driver;
        ushort vf = (ushort)(await rig.C.EnableSriovAsync(0x100, 1, settle: TimeSpan.Zero).W())[0];
        await d.AttachPassThroughAsync(vf, 9).W();
        await d.EnableAsync().W();
        var r = await d.ProbeAsync(vf, 0x3_2100_0123, write: true).W();
        Assert.Equal((TranslationStatus.PassThrough, 0x3_2100_0123ul), (r.Status, r.TranslatedAddress));
        // Pass-through still may not reach the interrupt range.
        AssertFault(await d.ProbeAsync(vf, 0xFEE0_0000, write: true).W(), 0xE);
        await d.ClearFaultsAsync().W();
        // Same bus, no context entry: 2. A bus without a root entry: 1.
        AssertFault(await d.ProbeAsync((ushort)(vf ^ 0x40), 0x1000).W(), 2);
        await d.ClearFaultsAsync().W();
        AssertFault(await d.ProbeAsync(0x0500, 0x1000).W(), 1);
        // Replacing pass-through by a translated domain takes effect at once (the driver invalidates).
        var dom = await d.CreateDomainAsync(3).W();
        await d.AttachAsync(vf, dom).W();
        await d.ClearFaultsAsync().W();
        AssertFault(await d.ProbeAsync(vf, 0x3_2100_0123).W(), 6);
        rig.Server.AssertNoErrors();
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("unix")]
    public async Task Dry_run_faults_leave_no_record_and_no_pending_event(string transport)
    {
        await using var rig = await Rig.StartAsync(transport, transport == "unix");
        var d = rig.Driver;
        ushort vf = (ushort)(await rig.C.EnableSriovAsync(0x101, 1, settle: TimeSpan.Zero).W())[0];
        var dom = await d.CreateDomainAsync(4).W();
        await d.AttachAsync(vf, dom).W();
        await d.EnableAsync().W();
        // FECTL.IM stays set (reset value): a recorded fault shows as FECTL.IP.
        Assert.Equal(VtdRegisters.EctlIm, await d.ReadRegister32Async(VtdRegisters.Fectl).W());

        AssertFault(await d.ProbeAsync(vf, 0x7000, dryRun: true).W(), 6, recorded: false);
        AssertFault(await d.ProbeAsync(vf, 0x7000, write: true, dryRun: true).W(), 5, recorded: false);
        var state = await d.ReadFaultsAsync().W();
        Assert.Equal((0u, 0), (state.Status, state.Records.Count));
        Assert.Equal(VtdRegisters.EctlIm, await d.ReadRegister32Async(VtdRegisters.Fectl).W());

        AssertFault(await d.ProbeAsync(vf, 0x7000).W(), 6);
        Assert.Single((await d.ReadFaultsAsync().W()).Records);
        Assert.Equal(VtdRegisters.EctlIm | VtdRegisters.EctlIp, await d.ReadRegister32Async(VtdRegisters.Fectl).W());
        // Unmasking sends the held message.
        using var events = await rig.C.OpenInterruptStreamAsync([0]).W();
        await d.ConfigureFaultEventAsync(FaultMsiAddress, 0x77).W();
        var ev = await NextAsync(events).W();
        Assert.Equal((InterruptKind.IommuFault, FaultMsiAddress, 0x77u), (ev.Kind, ev.Address, ev.Data));
        Assert.Equal(0u, await d.ReadRegister32Async(VtdRegisters.Fectl).W());
        rig.Server.AssertNoErrors();
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("unix")]
    public async Task Register_based_invalidation_reports_the_granularity_the_unit_used(string transport)
    {
        await using var rig = await Rig.StartAsync(transport, transport == "unix");
        var d = rig.Driver;
        ushort vf = (ushort)(await rig.C.EnableSriovAsync(0x100, 1, settle: TimeSpan.Zero).W())[0];
        var dom = await d.CreateDomainAsync(2).W();
        await d.AttachAsync(vf, dom).W();
        // 64 pages in one call: a single run of leaf entries.
        await d.MapAsync(dom, 0x100_0000, 0x40_0000, 64 * 0x1000).W();
        await d.EnableAsync().W();
        Assert.Equal(VtdContextGranularity.Global, await d.InvalidateContextAsync(VtdContextGranularity.Global).W());
        Assert.Equal(VtdContextGranularity.Domain, await d.InvalidateContextAsync(VtdContextGranularity.Domain, dom.Id).W());
        Assert.Equal(VtdContextGranularity.Device, await d.InvalidateContextAsync(VtdContextGranularity.Device, dom.Id, vf, 3).W());
        Assert.Equal(VtdIotlbGranularity.Global, await d.InvalidateIotlbAsync(VtdIotlbGranularity.Global).W());
        Assert.Equal(VtdIotlbGranularity.Domain, await d.InvalidateIotlbAsync(VtdIotlbGranularity.Domain, dom.Id).W());
        // AM = 19 is above CAP.MAMV (18): the unit falls back to domain-selective and says so.
        Assert.Equal(VtdIotlbGranularity.Domain, await d.InvalidateIotlbAsync(VtdIotlbGranularity.Page, dom.Id, 0, 19).W());

        for (ulong p = 0; p < 64; p++) AssertTranslated(await d.ProbeAsync(vf, 0x100_0000 + p * 0x1000 + 8).W(), 0x40_0008 + p * 0x1000);
        // Unmap 16 pages in the middle without invalidating, then one page-selective request with
        // AM = 4 covering exactly them: the neighbours stay cached and mapped.
        await d.UnmapAsync(dom, 0x101_0000, 16 * 0x1000, invalidate: false).W();
        AssertTranslated(await d.ProbeAsync(vf, 0x101_F008).W(), 0x41_F008);
        Assert.Equal(VtdIotlbGranularity.Page, await d.InvalidateRangeAsync(dom, 0x101_0000, 16 * 0x1000).W());
        AssertFault(await d.ProbeAsync(vf, 0x101_0008).W(), 6);
        await d.ClearFaultsAsync().W();
        AssertFault(await d.ProbeAsync(vf, 0x101_F008).W(), 6);
        AssertTranslated(await d.ProbeAsync(vf, 0x100_F008).W(), 0x40_F008);
        AssertTranslated(await d.ProbeAsync(vf, 0x102_0008).W(), 0x42_0008);
        Assert.Equal(48 * 0x1000ul, dom.MappedBytes);
        rig.Server.AssertNoErrors();
    }

    [Fact]
    public async Task A_queue_error_stops_queued_invalidation_with_an_error_naming_the_head()
    {
        await using var rig = await Rig.StartAsync("unix", true);
        var d = rig.Driver;
        await d.EnableAsync().W();
        await d.EnableQueuedInvalidationAsync().W();
        Assert.Null(await d.InvalidateIotlbAsync(VtdIotlbGranularity.Global).W());
        // Someone writes a tail beyond the 256-entry queue: the unit sets IQE and stops.
        await d.WriteRegister64Async(VtdRegisters.Iqt, 300 << 4).W();
        Assert.True((await d.ReadFaultsAsync().W()).QueueError);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => d.InvalidateContextAsync(VtdContextGranularity.Global)).W();
        Assert.Contains("FSTS.IQE", ex.Message);
    }

    [Theory]
    [InlineData("tcp", false)]
    [InlineData("unix", true)]
    public async Task Bad_driver_calls_are_refused_with_the_field_named(string transport, bool localRam)
    {
        await using var rig = await Rig.StartAsync(transport, localRam);
        var d = rig.Driver;
        var dom = await d.CreateDomainAsync(1, 39).W();
        Assert.Equal("iova", (await Assert.ThrowsAsync<ArgumentException>(() => d.MapAsync(dom, 0x1001, 0, 0x1000)).W()).ParamName);
        Assert.Equal("physical", (await Assert.ThrowsAsync<ArgumentException>(() => d.MapAsync(dom, 0x1000, 0x10, 0x1000)).W()).ParamName);
        Assert.Equal("length", (await Assert.ThrowsAsync<ArgumentException>(() => d.MapAsync(dom, 0x1000, 0, 0)).W()).ParamName);
        Assert.Equal("iova", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => d.MapAsync(dom, 1UL << 39, 0, 0x1000)).W()).ParamName);
        Assert.Equal("access", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => d.MapAsync(dom, 0, 0, 0x1000, VtdAccess.None)).W()).ParamName);
        Assert.Equal("addressWidth", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => d.CreateDomainAsync(2, 57)).W()).ParamName);
        await Assert.ThrowsAsync<InvalidOperationException>(() => d.CreateDomainAsync(1)).W();
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => VtdDriver.CreateAsync(rig.C, 15 << 20, 2 << 20)).W();
        await Assert.ThrowsAsync<ArgumentException>(() => VtdDriver.CreateAsync(rig.C, 0x1234, 0x1000)).W();
        // A refused overlapping map changes nothing.
        await d.MapAsync(dom, 0x2000, 0x40_0000, 0x1000).W();
        await Assert.ThrowsAsync<InvalidOperationException>(() => d.MapAsync(dom, 0x1000, 0x50_0000, 0x3000)).W();
        Assert.Null(d.Resolve(dom, 0x1000));
        Assert.Equal(0x40_0000ul, d.Resolve(dom, 0x2000));
        Assert.Equal(0ul, await d.UnmapAsync(dom, 0x10_0000, 0x1000).W());
    }

    [Theory]
    [InlineData("tcp", false)]
    [InlineData("unix", true)]
    public async Task Nic_TX_of_a_VF_faults_on_an_unmapped_ring_and_transmits_once_it_is_mapped(string transport, bool localRam)
    {
        await using var rig = await Rig.StartAsync(transport, localRam);
        var c = rig.C;
        var d = rig.Driver;
        ushort vf = (ushort)(await c.EnableSriovAsync(0x100, 2, settle: TimeSpan.Zero).W())[1];
        var functions = await c.ListFunctionsAsync().W();
        ulong pfBar0 = functions.Single(f => f.Rid == 0x100).Bars.Single(b => b.Index == 0).Address;
        ulong vfBar0 = functions.Single(f => f.Rid == vf).Bars.Single(b => b.Index == 0).Address;
        Assert.Equal(CompletionStatus.Successful, await c.WriteConfig16Async(vf, 0x04, 0x0004).W());   // VF Bus Master Enable

        async Task W(ulong address, uint value) =>
            Assert.Equal(CompletionStatus.Successful, (await c.Mmio.WriteMmioAsync(new WriteMmioRequest { Address = address, Width = 4, Value = value }, deadline: T.Deadline).W()).Status);
        async Task<uint> R(ulong address) => (uint)(await c.Mmio.ReadMmioAsync(new ReadMmioRequest { Address = address, Width = 4 }, deadline: T.Deadline).W()).Value;

        // PF driver: reset done, VMDq, transmit on, both VF pools may transmit.
        await W(pfBar0 + CtrlExt, CtrlExtPfrstd);
        await W(pfBar0 + Mrqc, MrqcVmdq);
        await W(pfBar0 + Tctl, TctlEn);
        await W(pfBar0 + Vfte, 0b11);

        // VT-d: the VF's buffer is mapped, its descriptor ring is not (yet).
        const ulong RingPhys = 0x20_0000, BufPhys = 0x21_0000, RingIova = 0x1_0000_0000, BufIova = 0x1_0004_0000;
        var dom = await d.CreateDomainAsync(5).W();
        await d.AttachAsync(vf, dom).W();
        await d.MapAsync(dom, BufIova, BufPhys, 0x1000, VtdAccess.Read).W();
        await d.EnableAsync().W();
        await d.ConfigureFaultEventAsync(FaultMsiAddress, 0x66).W();
        using var events = await c.OpenInterruptStreamAsync([0]).W();

        var frame = new byte[64];
        new byte[] { 0x02, 0, 0, 0, 0x99, 0x01, 0x02, 0, 0, 0, 0x10, 0x01, 0x08, 0x00 }.CopyTo(frame, 0);
        for (int i = 14; i < frame.Length; i++) frame[i] = (byte)i;
        await rig.WriteRamAsync(BufPhys, frame);
        var desc = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(desc, BufIova);
        BinaryPrimitives.WriteUInt16LittleEndian(desc.AsSpan(8), (ushort)frame.Length);
        desc[11] = 0x01 | 0x02 | 0x08;   // EOP | IFCS | RS
        await rig.WriteRamAsync(RingPhys, desc);

        using var cts = new CancellationTokenSource(T.Timeout);
        using var capture = c.Ethernet.CaptureFrames(new CaptureFramesRequest { Port = 0 }, cancellationToken: cts.Token);
        await capture.ResponseHeadersAsync.W();

        // VF driver: TX queue 0 (VF BAR0 0x3800) at the ring's IOVA.
        ulong q = vfBar0 + TxLegacy;
        await W(q + Tdbal, unchecked((uint)RingIova));
        await W(q + Tdbah, (uint)(RingIova >> 32));
        await W(q + Tdlen, 64 * 16);
        await W(q + Tdh, 0);
        await W(q + Tdt, 0);
        await W(q + Txdctl, QueueEnable);
        await W(q + Tdt, 1);

        Assert.Equal(0u, await R(q + Tdh));                                   // the fetch faulted: nothing consumed
        var fault = Assert.Single((await d.ReadFaultsAsync().W()).Records);
        Assert.Equal((vf, (byte)6, true, RingIova), (fault.SourceId, fault.Reason, fault.IsRead, fault.Address));
        var ev = await NextAsync(events).W();                                 // the unit's fault event
        Assert.Equal((0u, InterruptKind.IommuFault, 0x66u), (ev.Rid, ev.Kind, ev.Data));

        // The driver maps its ring (not present → present: no invalidation needed) and kicks again.
        await d.MapAsync(dom, RingIova, RingPhys, 0x1000).W();
        await d.ClearFaultsAsync().W();
        await W(q + Tdt, 1);
        Assert.True(await capture.ResponseStream.MoveNext(cts.Token).W());
        Assert.Equal(frame, capture.ResponseStream.Current.Data.ToByteArray());  // the first frame on the wire is this one
        Assert.Equal(1u, await R(q + Tdh));
        Assert.Equal(1, (await rig.ReadRamAsync(RingPhys + 12, 1))[0] & 1);   // DD written back through the mapping
        Assert.Empty((await d.ReadFaultsAsync().W()).Records);
        rig.Server.AssertNoErrors();
    }
}
