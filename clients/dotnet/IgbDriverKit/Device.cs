using PcieEmu.Client;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Drivers;

/// <summary>Counts the gRPC calls a driver makes (unary calls; streams count once when opened).</summary>
public static class GrpcCounter
{
    private static long _calls;
    public static long Calls => Interlocked.Read(ref _calls);
    public static void Count() => Interlocked.Increment(ref _calls);
}

/// <summary>A 32-bit register window (a BAR) reached through MmioService, one unary call per access.</summary>
public sealed class RegisterBar(PcieEmuClient client, ulong baseAddress, string name)
{
    public ulong Base { get; } = baseAddress;
    public string Name { get; } = name;

    public async Task<uint> ReadAsync(uint offset, CancellationToken ct)
    {
        GrpcCounter.Count();
        var r = await client.ReadMmioAsync(Base + offset, 4, ct);
        if (r.Status != CompletionStatus.Successful)
            throw new InvalidOperationException($"{Name}+0x{offset:X}: read completed with {r.Status}");
        return (uint)r.Value;
    }

    public async Task WriteAsync(uint offset, uint value, CancellationToken ct)
    {
        GrpcCounter.Count();
        var status = await client.WriteMmio32Async(Base + offset, value, ct);
        if (status != CompletionStatus.Successful)
            throw new InvalidOperationException($"{Name}+0x{offset:X}: write completed with {status}");
    }

    /// <summary>Polls <paramref name="offset"/> until <paramref name="done"/> holds; returns the last value.</summary>
    public async Task<uint> PollAsync(uint offset, Func<uint, bool> done, TimeSpan timeout, string what, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            uint v = await ReadAsync(offset, ct);
            if (done(v)) return v;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{Name}: timed out waiting for {what} (last 0x{v:X8})");
            await Task.Delay(1, ct);
        }
    }
}

/// <summary>Finding functions and their BARs, config helpers, MSI-X setup.</summary>
public static class Functions
{
    public static async Task<Function> FindAsync(PcieEmuClient client, uint rid, CancellationToken ct)
    {
        GrpcCounter.Count();
        return (await client.ListFunctionsAsync(ct)).FirstOrDefault(f => f.Rid == rid)
            ?? throw new InvalidOperationException($"no function answers at {PciAddress.Format(rid)}");
    }

    /// <summary>Waits until the PF has at least <paramref name="index"/>+1 VFs and returns VF <paramref name="index"/>.</summary>
    public static async Task<Function> WaitForVfAsync(PcieEmuClient client, uint pfRid, int index, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            GrpcCounter.Count();
            var vfs = (await client.ListFunctionsAsync(ct)).Where(f => f.IsVirtual && f.PhysicalFunctionRid == pfRid).OrderBy(f => f.Rid).ToList();
            if (vfs.Count > index) return vfs[index];
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"{PciAddress.Format(pfRid)} has {vfs.Count} VFs; VF {index} did not appear (is the PF driver running?)");
            await Task.Delay(50, ct);
        }
    }

    public static ulong BarAddress(Function f, uint index) =>
        f.Bars.FirstOrDefault(b => b.Index == index && b.Address != 0)?.Address
            ?? throw new InvalidOperationException($"{f.Bdf}: BAR{index} is not assigned");

    public static async Task SetCommandBitsAsync(PcieEmuClient client, uint rid, ushort bits, CancellationToken ct)
    {
        GrpcCounter.Count();
        ushort cmd = await client.ReadConfig16Async(rid, Cfg.Command, ct);
        GrpcCounter.Count();
        var st = await client.WriteConfig16Async(rid, Cfg.Command, (ushort)(cmd | bits), ct);
        if (st != CompletionStatus.Successful) throw new InvalidOperationException($"{PciAddress.Format(rid)}: command write completed with {st}");
    }

    /// <summary>
    /// Programs MSI-X table entries 0..vectors-1 in the table BAR (address in the MSI window, data
    /// = <paramref name="firstCpuVector"/> + n, unmasked) and sets MSI-X Enable.
    /// </summary>
    public static async Task EnableMsixAsync(PcieEmuClient client, uint rid, RegisterBar table, int vectors, uint msiBase, uint firstCpuVector, CancellationToken ct)
    {
        GrpcCounter.Count();
        int cap = await client.FindCapabilityAsync(rid, PciRegs.CapIdMsix, ct);
        if (cap == 0) throw new InvalidOperationException($"{PciAddress.Format(rid)} has no MSI-X capability");
        GrpcCounter.Count();
        ushort control = await client.ReadConfig16Async(rid, cap + Cfg.MsixControl, ct);
        int size = (control & 0x7FF) + 1;
        if (vectors > size) throw new InvalidOperationException($"{PciAddress.Format(rid)}: MSI-X table has {size} entries, {vectors} wanted");
        for (uint v = 0; v < vectors; v++)
        {
            await table.WriteAsync(16 * v + 0, msiBase, ct);
            await table.WriteAsync(16 * v + 4, 0, ct);
            await table.WriteAsync(16 * v + 8, firstCpuVector + v, ct);
            await table.WriteAsync(16 * v + 12, 0, ct);
        }
        GrpcCounter.Count();
        await client.WriteConfig16Async(rid, cap + Cfg.MsixControl, (ushort)((control | Cfg.MsixEnable) & ~Cfg.MsixFunctionMask), ct);
    }
}
