using System.Buffers.Binary;
using System.Globalization;
using System.Text.RegularExpressions;
using PcieEmu.Lab;

namespace PcieEmu.Drivers.Tests;

/// <summary>
/// The I/O-model lab's SR-IOV model with its guests as separate processes (docs/iomodels.md): the
/// example PF driver is the host's, answering mailbox requests; two VF driver processes are the
/// guests, each on its VF over gRPC; the lab's accounting watches the server machine's event path.
/// Guest A sends N frames to guest B and N to the wire; the link partner sends N to guest B.
/// </summary>
public sealed class IoModelLabProcessTests
{
    private const int N = 8;
    private const string GuestB = "02:00:00:00:10:02", WireMac = "02:00:00:00:ee:01";

    [Fact]
    public async Task SriovModel_GuestsAsSeparateDriverProcesses_CountedOnTheServersEventPath()
    {
        await using var server = await Server.StartAsync();
        using var stop = new CancellationTokenSource(T.Timeout);
        using var pf = new DriverProcess("PfDriver", server.Target, "--vfs", "2");
        await pf.WaitForLineAsync("PF READY vfs=2");

        // The measurement starts before the guests do: the lab's accounting on the server's event
        // path, and, to check it against the protocol, the interrupt stream.
        using var accounting = new IoAccounting(server.Machine);
        var irqStream = await server.Client.OpenInterruptStreamAsync(null, stop.Token).W();
        var interrupts = new List<Protocol.V1.InterruptEvent>();
        var irqTask = Task.Run(async () =>
        {
            try { await foreach (var e in irqStream.Events(stop.Token)) lock (interrupts) interrupts.Add(e); }
            catch (Exception e) when (e is OperationCanceledException or Grpc.Core.RpcException) { }
        });
        try
        {
            string n = N.ToString(CultureInfo.InvariantCulture);
            using var guestB = new DriverProcess("VfDriver", server.Target, "--vf", "1", "--set-mac", GuestB, "--receive", (2 * N).ToString(CultureInfo.InvariantCulture), "--timeout", "50");
            accounting.AssignedFunctions.Add(Rid(await guestB.WaitForLineAsync("READY vf=1")));
            using var guestA = new DriverProcess("VfDriver", server.Target, "--vf", "0", "--to", GuestB, "--count", n, "--to-wire", n, "--wire-mac", WireMac);
            accounting.AssignedFunctions.Add(Rid(await guestA.WaitForLineAsync("READY vf=0")));
            accounting.Drain();

            var frame = new byte[64];
            Mac.Parse(GuestB).CopyTo(frame, 0);
            Mac.Parse(WireMac).CopyTo(frame, 6);
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x88B5);
            for (int i = 0; i < N; i++)
            {
                BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(14), 1000 + i);
                Assert.Equal(1, await server.Client.InjectFrameAsync(0, frame, stop.Token).W());
                accounting.Drain();
            }
            var exits = Task.WhenAll(guestA.WaitForExitAsync(), guestB.WaitForExitAsync());
            while (!exits.IsCompleted)
            {
                accounting.Drain();
                await Task.WhenAny(exits, Task.Delay(20));
            }
            Assert.True((await exits).All(c => c == 0), guestA.Output + "\n" + guestB.Output);
            accounting.Drain();

            // Every frame delivered: N to the wire and N to B from A, N to B from the wire.
            Assert.Contains($"TX done frames={2 * N}", guestA.Output);
            Assert.Equal(2 * N, guestB.Lines.Count(l => l.StartsWith("RX ", StringComparison.Ordinal)));

            // SR-IOV: no VMM on the path. Nothing was trapped (no emulated device), the guests' register
            // accesses reached their VFs directly, and each interrupt of a guest's VF is an interrupt exit,
            // exactly the ones the interrupt stream reports; the host's PF took the mailbox interrupts.
            Assert.Equal(0, accounting.MmioTraps);
            Assert.True(accounting.UntrappedMmio > 0);
            Assert.True(accounting.InterruptExits >= 1, "guest B took no interrupt");
            Assert.Equal(accounting.InterruptExits, accounting.GuestInterrupts);
            Assert.True(accounting.HostInterrupts >= 2, $"{accounting.HostInterrupts} PF interrupts for two VF resets");
            var deadline = DateTime.UtcNow + T.Timeout;
            while (true)
            {
                int seen;
                lock (interrupts) seen = interrupts.Count(e => accounting.AssignedFunctions.Contains((ushort)e.Rid));
                if (seen == accounting.InterruptExits) break;
                Assert.True(DateTime.UtcNow < deadline, $"interrupt stream: {seen} VF interrupts, accounting: {accounting.InterruptExits}");
                await Task.Delay(10);
            }
        }
        finally
        {
            await stop.CancelAsync();
            await irqTask.W();
            irqStream.Dispose();
        }
    }

    private static ushort Rid(string ready) =>
        ushort.Parse(Regex.Match(ready, "rid=0x([0-9A-F]{4})").Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
}
