using Grpc.Core;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Server.Tests.Kestrel;

/// <summary>The .NET client's session wrapper and helpers against a real server.</summary>
public sealed class ClientSessionTests
{
    [Fact]
    public async Task Session_reports_failed_posted_writes_acks_and_memory_reads()
    {
        await using var s = await TestServer.StartAsync("unix");
        await using var session = s.Client.OpenSession();
        await session.PostConfigWriteAsync(0x0107, 0x04, 2, 6).AsTask().W();            // nobody at 01:00.7: UR
        await session.PostMemoryWriteAsync(0x3000, new byte[] { 1, 2, 3 }).AsTask().W();
        var ack = await session.WriteConfigAckedAsync(0x100, 0x54, 4, 0xFEE0_0040).W();
        Assert.Equal((CompletionStatus.Successful, TransactionKind.ConfigWrite), (ack.Status, ack.Kind));
        var mem = await session.ReadMemoryAsync(0x2FFF, 5).W();
        Assert.Equal(new byte[] { 0, 1, 2, 3, 0 }, mem.Data.ToByteArray());
        var failed = await session.UnsolicitedCompletions.ReadAsync().AsTask().W();
        Assert.Equal((CompletionStatus.UnsupportedRequest, TransactionKind.ConfigWrite), (failed.Status, failed.Kind));
        Assert.Equal(1, session.FailedWrites);
        Assert.Equal(0xFEE0_0040ul, (await session.ReadConfigAsync(0x100, 0x54, 4).W()).Value);
        await session.CompleteAsync().W();
    }

    [Fact]
    public async Task Session_surfaces_the_servers_invalid_argument_to_waiting_reads()
    {
        await using var s = await TestServer.StartAsync("tcp");
        await using var session = s.Client.OpenSession();
        var good = session.QueueConfigRead(0x100, 0, 4);
        var bad = session.QueueMmioRead(0x1001, 4);
        await session.FlushAsync().W();
        Assert.Equal(0x10C98086ul, (await good.W()).Value);
        var ex = await Assert.ThrowsAsync<RpcException>(() => bad).W();
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains("mmio_read.address:", ex.Status.Detail);
    }

    [Fact]
    public async Task Capability_walks_find_what_lspci_shows()
    {
        await using var s = await TestServer.StartAsync("tcp");
        var c = s.Client;
        Assert.Equal(0x40, await c.FindCapabilityAsync(0x100, PciRegs.CapIdPm).W());
        Assert.Equal(0x50, await c.FindCapabilityAsync(0x100, PciRegs.CapIdMsi).W());
        Assert.Equal(0xA0, await c.FindCapabilityAsync(0x100, PciRegs.CapIdPcie).W());
        Assert.Equal(0, await c.FindCapabilityAsync(0x100, 0x09).W());
        Assert.Equal(0x100, await c.FindExtendedCapabilityAsync(0x100, PciRegs.ExtCapIdAer).W());
        Assert.Equal(0x140, await c.FindExtendedCapabilityAsync(0x100, PciRegs.ExtCapIdDsn).W());
        Assert.Equal(0x150, await c.FindExtendedCapabilityAsync(0x100, PciRegs.ExtCapIdAri).W());
        Assert.Equal(0, await c.FindExtendedCapabilityAsync(0x100, 0x0B).W());
        Assert.Equal(0, await c.FindCapabilityAsync(0x0300, PciRegs.CapIdPm).W());           // nobody there: all ones
        Assert.Equal(0, await c.FindExtendedCapabilityAsync(0x0300, PciRegs.ExtCapIdAer).W());
        Assert.Equal(0x40, await c.FindCapabilityAsync(0x0008, PciRegs.CapIdPcie).W());       // root port
        byte[] dump = await c.DumpConfigAsync(0x100, 256).W();
        Assert.Equal(new byte[] { 0x86, 0x80, 0xC9, 0x10 }, dump[..4]);
        Assert.Equal(await c.ReadConfig8Async(0x100, 0x34).W(), dump[0x34]);
        Assert.Equal(CompletionStatus.Successful, await c.WriteConfig8Async(0x100, 0x0C, 0x10).W());
        Assert.Equal(0x10, await c.ReadConfig8Async(0x100, 0x0C).W());
    }

    [Fact]
    public async Task Interrupt_stream_delivers_MSI_raised_after_it_opened()
    {
        await using var s = await TestServer.StartAsync("tcp");
        var c = s.Client;
        // MSI on PF0 (64-bit capability at 0x50): address 0xFEE02000, data 0x61, enable with one vector.
        Assert.Equal(0x50, await c.FindCapabilityAsync(0x100, PciRegs.CapIdMsi).W());
        await c.WriteConfig32Async(0x100, 0x54, 0xFEE0_2000).W();
        await c.WriteConfig32Async(0x100, 0x58, 0).W();
        await c.WriteConfig16Async(0x100, 0x5C, 0x61).W();
        await c.WriteConfig16Async(0x100, 0x52, 0x0001).W();
        using var stream = await c.OpenInterruptStreamAsync([0x100]).W();
        using var other = await c.OpenInterruptStreamAsync([0x101]).W();
        lock (s.Machine.SyncRoot)
        {
            s.Machine.PhysicalFunctions[1].RaiseInterrupt(0);   // PF1: INTx (nothing enabled), filtered to `other`
            s.Machine.PhysicalFunctions[0].RaiseInterrupt(0);
        }
        await using var e = stream.Events().GetAsyncEnumerator();
        Assert.True(await e.MoveNextAsync().AsTask().W());
        Assert.Equal((0x100u, InterruptKind.Msi, 0xFEE0_2000ul, 0x61u, 2u, 0x61u), (e.Current.Rid, e.Current.Kind, e.Current.Address, e.Current.Data, e.Current.Destination, e.Current.CpuVector));
        await using var o = other.Events().GetAsyncEnumerator();
        Assert.True(await o.MoveNextAsync().AsTask().W());
        Assert.Equal((0x101u, InterruptKind.Intx, 2u), (o.Current.Rid, o.Current.Kind, o.Current.Data));   // INTB
    }
}
