using System.Buffers.Binary;
using System.Globalization;
using System.Text.RegularExpressions;
using PcieEmu.Client;
using PcieEmu.Client.Vtd;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Drivers.Tests;

/// <summary>
/// The example drivers with <c>--iommu</c>: the PF driver (the host) enables VT-d, a domain per
/// VF, each VF's RAM area mapped at the IOVA window; the VF drivers program IOVAs. One VF's
/// window is left unmapped: its DMA faults with its routing ID, nothing is written back, the
/// other VFs keep working, and once the host maps the window a second TDT write sends the frame.
/// </summary>
public sealed class IommuDriverTests
{
    private const string VfBMac = "02:aa:bb:cc:dd:01";
    // The test's own VT-d driver only reads fault records and probes translations; its (unused)
    // root table page sits between the PF driver's tables and the VF areas.
    private const ulong ProbeTableBase = 0x00C0_0000, ProbeTableSize = 0x1_0000;

    private sealed record Ready(ushort Rid, string Mac, ulong Tx, ulong Rx, ulong IovaTx, ulong IovaRx);

    private static ulong Hex(string line, string key) =>
        ulong.Parse(Regex.Match(line, $@"\b{key}=0x([0-9A-F]+)").Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    private static Ready ParseReady(string line) => new(
        (ushort)Hex(line, "rid"), Regex.Match(line, "mac=([0-9a-f:]{17})").Groups[1].Value,
        Hex(line, "tx"), Hex(line, "rx"), Hex(line, "iova_tx"), Hex(line, "iova_rx"));

    private static async Task<byte[]> ReadRamAsync(PcieEmuClient c, ulong address, int length) =>
        (await c.Memory.ReadMemoryAsync(new ReadMemoryRequest { Address = address, Length = (uint)length }).ResponseAsync.W()).Data.ToByteArray();

    [Fact]
    public async Task VfRingsThroughTheIommu_UnmappedRingFaultsWithItsRid_WorksAfterTheHostMapsIt()
    {
        await using var server = await Server.StartAsync();
        var client = server.Client;

        // The host: 3 VFs, VT-d on, VF 2 attached to its domain with nothing mapped.
        using var pf = new DriverProcess("PfDriver", server.Target, stdin: true, "--vfs", "3", "--iommu", "--iommu-unmapped", "2");
        await pf.WaitForLineAsync("PF READY vfs=3");
        Assert.Contains($"PF IOMMU MAPPED vf=0", pf.Output);
        Assert.Contains($"PF IOMMU MAPPED vf=1", pf.Output);
        Assert.True(Regex.IsMatch(pf.Output, @"PF IOMMU vf=2 rid=\S+ domain=3: window left unmapped"), pf.Output);
        Assert.DoesNotContain("MAPPED vf=2", pf.Output);
        var iommu = await VtdDriver.CreateAsync(client, ProbeTableBase, ProbeTableSize).W();
        Assert.Empty((await iommu.ReadFaultsAsync().W()).Records);

        // VF B: rings at IOVAs of its window; the IOMMU maps them to the physical area.
        using var vfB = new DriverProcess("VfDriver", server.Target, "--vf", "1", "--iommu", "--set-mac", VfBMac, "--receive", "3", "--timeout", "55");
        var b = ParseReady(await vfB.WaitForLineAsync("READY vf=1"));
        Assert.Equal(Layout.DefaultRamBase(1), b.Tx);
        Assert.Equal(Layout.DefaultIovaBase, b.IovaTx);
        Assert.Equal(b.Rx - b.Tx, b.IovaRx - b.IovaTx);
        Assert.NotEqual(b.Rx, b.IovaRx);
        var probe = await iommu.ProbeAsync(b.Rid, b.IovaRx + 0x10, dryRun: true).W();
        Assert.Equal((TranslationStatus.Ok, b.Rx + 0x10), (probe.Status, probe.TranslatedAddress));

        // VF A → VF B through both VFs' mappings.
        using (var vfA = new DriverProcess("VfDriver", server.Target, "--vf", "0", "--iommu", "--to", VfBMac))
        {
            Assert.True(await vfA.WaitForExitAsync() == 0, vfA.Output);
            Assert.Contains("TX done frames=1", vfA.Output);
        }
        var rx1 = await vfB.WaitForLinesAsync("RX ", 1);
        Assert.Contains("idx=0 len=64 status=0x3 dst=" + VfBMac, rx1[0]);

        // VF C's window is not mapped: its TX descriptor fetch faults.
        using var vfC = new DriverProcess("VfDriver", server.Target, stdin: true, "--vf", "2", "--iommu", "--to", VfBMac, "--kick-on-stdin", "--timeout", "55");
        var c = ParseReady(await vfC.WaitForLineAsync("READY vf=2"));
        await vfC.WaitForLineAsync("TX kicked frames=1");   // the device ran the queue before the write completed
        var faults = await iommu.ReadFaultsAsync().W();
        var fault = Assert.Single(faults.Records, f => f.SourceId == c.Rid);
        Assert.True(fault.IsRead, fault.ToString());
        Assert.Equal(c.IovaTx & ~0xFFFUL, fault.Address & ~0xFFFUL);
        Assert.DoesNotContain(faults.Records, f => f.SourceId != c.Rid);
        // Nothing written back: descriptor 0 (at its physical address) still as the driver wrote it, TDH still 0.
        var desc = await ReadRamAsync(client, c.Tx, 16);
        Assert.InRange(BinaryPrimitives.ReadUInt64LittleEndian(desc), Layout.DefaultIovaBase, Layout.DefaultIovaBase + Layout.RamAreaSize - 1);   // buffer address: an IOVA
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(desc.AsSpan(12)) & Regs.TxdStatDd);
        var vfCFn = (await client.ListFunctionsAsync().W()).Single(f => f.Rid == c.Rid);
        ulong vfCBar0 = vfCFn.Bars.Single(x => x.Index == 0).Address;
        Assert.Equal(0UL, (await client.Mmio.ReadMmioAsync(new ReadMmioRequest { Address = vfCBar0 + Regs.VfTxQueue0 + Regs.Tdh, Width = 4 }).ResponseAsync.W()).Value);
        Assert.DoesNotContain("TX done", vfC.Output);

        // The other VFs keep working: VF A → VF B again.
        using (var vfA = new DriverProcess("VfDriver", server.Target, "--vf", "0", "--iommu", "--to", VfBMac))
            Assert.True(await vfA.WaitForExitAsync() == 0, vfA.Output);
        await vfB.WaitForLinesAsync("RX ", 2);
        Assert.DoesNotContain((await iommu.ReadFaultsAsync().W()).Records, f => f.SourceId != c.Rid);

        // The host reports the fault (FRCD read and cleared), maps VF C's window; VF C rings the doorbell again.
        await pf.SendLineAsync("faults");
        await pf.WaitForLineAsync("PF IOMMU FAULTS");
        Assert.Contains($"PF IOMMU FAULT rid={PciAddress.Format(c.Rid)} reason=0x", pf.Output);
        Assert.Empty((await iommu.ReadFaultsAsync().W()).Records);
        await pf.SendLineAsync("map 2");
        await pf.WaitForLineAsync("PF IOMMU MAPPED vf=2");
        await vfC.SendLineAsync("kick");
        Assert.True(await vfC.WaitForExitAsync() == 0, vfC.Output);
        Assert.Contains("TX done frames=1", vfC.Output);
        Assert.True(await vfB.WaitForExitAsync() == 0, vfB.Output);
        var rx = vfB.Lines.Where(l => l.StartsWith("RX ", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, rx.Count);
        Assert.Contains(rx, l => l.Contains($"idx=2 len=64 status=0x3 dst={VfBMac} src={c.Mac}", StringComparison.Ordinal));
        Assert.Empty((await iommu.ReadFaultsAsync().W()).Records);

        // The frames landed at physical addresses: VF B's descriptor 2 (re-armed) carries an IOVA
        // buffer address; the bytes are at the physical address that IOVA maps to.
        var rxDesc = await ReadRamAsync(client, b.Rx + 2 * 16, 16);
        ulong bufIova = BinaryPrimitives.ReadUInt64LittleEndian(rxDesc);
        Assert.InRange(bufIova, Layout.DefaultIovaBase, Layout.DefaultIovaBase + Layout.RamAreaSize - 1);
        var data = await ReadRamAsync(client, b.Rx + (bufIova - b.IovaRx), 12);
        Assert.Equal(VfBMac, Drivers.Mac.Format(data));
        Assert.Equal(c.Mac, Drivers.Mac.Format(data.AsSpan(6)));
        Assert.Contains("COUNTERS gprc=3 ", vfB.Output);
    }

    [Fact]
    public async Task RxAreaMappedReadOnly_BufferWriteFaultsNothingWrittenBack_ReceivesAfterTheHostMapsItReadWrite()
    {
        const string VfDMac = "02:aa:bb:cc:dd:0d";
        await using var server = await Server.StartAsync();
        var client = server.Client;
        using var pf = new DriverProcess("PfDriver", server.Target, stdin: true, "--vfs", "2", "--iommu", "--iommu-readonly", "1");
        await pf.WaitForLineAsync("PF READY vfs=2");
        Assert.Contains("PF IOMMU MAPPED vf=1 ", pf.Output);
        Assert.Contains("access=r\n", pf.Output + "\n");
        var iommu = await VtdDriver.CreateAsync(client, ProbeTableBase, ProbeTableSize).W();

        using var vfD = new DriverProcess("VfDriver", server.Target, "--vf", "1", "--iommu", "--set-mac", VfDMac, "--receive", "1", "--timeout", "55");
        var d = ParseReady(await vfD.WaitForLineAsync("READY vf=1"));

        // VF A's frame to VF D: A's TX completes (its own mapping is read/write); D's descriptor
        // fetch (a read) works, the buffer write faults and the frame is dropped.
        using (var vfA = new DriverProcess("VfDriver", server.Target, "--vf", "0", "--iommu", "--to", VfDMac))
        {
            Assert.True(await vfA.WaitForExitAsync() == 0, vfA.Output);
            Assert.Contains("TX done frames=1", vfA.Output);
        }
        var faults = (await iommu.ReadFaultsAsync().W()).Records;
        var fault = Assert.Single(faults);
        Assert.Equal(d.Rid, fault.SourceId);
        Assert.False(fault.IsRead, fault.ToString());
        var desc = await ReadRamAsync(client, d.Rx, 16);
        ulong bufIova = BinaryPrimitives.ReadUInt64LittleEndian(desc);
        Assert.Equal(bufIova & ~0xFFFUL, fault.Address & ~0xFFFUL);   // the buffer of descriptor 0
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(desc.AsSpan(8)) & Regs.RxdStatDd);   // not written back
        Assert.NotEqual(VfDMac, Drivers.Mac.Format(await ReadRamAsync(client, d.Rx + (bufIova - d.IovaRx), 6)));   // no frame bytes either
        var vfDFn = (await client.ListFunctionsAsync().W()).Single(f => f.Rid == d.Rid);
        ulong bar0 = vfDFn.Bars.Single(x => x.Index == 0).Address;
        Assert.Equal(0UL, (await client.Mmio.ReadMmioAsync(new ReadMmioRequest { Address = bar0 + Regs.VfRxQueue0 + Regs.Rdh, Width = 4 }).ResponseAsync.W()).Value);
        Assert.DoesNotContain("RX ", vfD.Output);

        // The host maps D's window read/write (unmap, IOTLB invalidation, map); the next frame lands.
        await pf.SendLineAsync("map 1");
        Assert.EndsWith("access=rw", (await pf.WaitForLinesAsync("PF IOMMU MAPPED vf=1 ", 2))[1]);
        using (var vfA = new DriverProcess("VfDriver", server.Target, "--vf", "0", "--iommu", "--to", VfDMac))
            Assert.True(await vfA.WaitForExitAsync() == 0, vfA.Output);
        Assert.True(await vfD.WaitForExitAsync() == 0, vfD.Output);
        var rx = Assert.Single(vfD.Lines, l => l.StartsWith("RX ", StringComparison.Ordinal));
        Assert.Contains($"idx=0 len=64 status=0x3 dst={VfDMac}", rx);
        Assert.Equal(VfDMac, Drivers.Mac.Format(await ReadRamAsync(client, d.Rx + (bufIova - d.IovaRx), 6)));
        Assert.Single((await iommu.ReadFaultsAsync().W()).Records);   // no new fault
    }
}
