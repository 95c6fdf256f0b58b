using System.Buffers.Binary;
using Google.Protobuf;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Client.Vtd;

/// <summary>
/// How the driver reads and writes its tables in the machine's RAM: through the mapped RAM
/// file (same host) or MemoryService calls (anywhere). Both reach the same bytes the remapping
/// unit walks.
/// </summary>
internal abstract class VtdTableMemory
{
    public abstract ValueTask Write128Async(ulong address, ulong lo, ulong hi, CancellationToken ct);
    public abstract ValueTask ZeroPageAsync(ulong address, CancellationToken ct);
    public abstract ValueTask<uint> Read32Async(ulong address, CancellationToken ct);
    /// <summary>Writes a run of 8-byte entries in one go (one call over the wire).</summary>
    public abstract ValueTask WriteEntriesAsync(ulong address, ReadOnlyMemory<ulong> values, CancellationToken ct);

    public static VtdTableMemory Mapped(RamMapping ram) => new MappedMemory(ram);
    public static VtdTableMemory Remote(PcieEmuClient client) => new RemoteMemory(client);

    private sealed class MappedMemory(RamMapping ram) : VtdTableMemory
    {
        // Volatile accesses: the unit in the server process reads the same page concurrently;
        // an 8-byte entry is written in one store, as a CPU driver writes it.
        public override ValueTask Write128Async(ulong address, ulong lo, ulong hi, CancellationToken ct)
        {
            // The present bit lives in the low half: when making an entry present, the high half
            // goes first; when clearing one, the low half does, so the unit never sees a present
            // entry with a half-written high half.
            if ((lo & 1) != 0)
            {
                Volatile.Write(ref Ref64(address + 8), hi);
                Volatile.Write(ref Ref64(address), lo);
            }
            else
            {
                Volatile.Write(ref Ref64(address), lo);
                Volatile.Write(ref Ref64(address + 8), hi);
            }
            return ValueTask.CompletedTask;
        }

        public override ValueTask ZeroPageAsync(ulong address, CancellationToken ct)
        {
            ram.GetSpan(address, VtdPageAllocator.PageSize).Clear();
            Thread.MemoryBarrier();
            return ValueTask.CompletedTask;
        }

        public override ValueTask<uint> Read32Async(ulong address, CancellationToken ct) =>
            ValueTask.FromResult(Volatile.Read(ref System.Runtime.InteropServices.MemoryMarshal.AsRef<uint>(ram.GetSpan(address, 4))));

        public override ValueTask WriteEntriesAsync(ulong address, ReadOnlyMemory<ulong> values, CancellationToken ct)
        {
            for (int i = 0; i < values.Length; i++) Volatile.Write(ref Ref64(address + 8 * (ulong)i), values.Span[i]);
            return ValueTask.CompletedTask;
        }

        private ref ulong Ref64(ulong address)
        {
            if (address % 8 != 0) throw new ArgumentException($"0x{address:X} is not 8-byte aligned", nameof(address));
            return ref System.Runtime.InteropServices.MemoryMarshal.AsRef<ulong>(ram.GetSpan(address, 8));
        }
    }

    private sealed class RemoteMemory(PcieEmuClient client) : VtdTableMemory
    {
        private async ValueTask<byte[]> ReadAsync(ulong address, int length, CancellationToken ct) =>
            await client.ReadMemoryAsync(address, length, ct).ConfigureAwait(false);

        private async ValueTask WriteAsync(ulong address, byte[] data, CancellationToken ct) =>
            await client.WriteMemoryAsync(address, data, ct).ConfigureAwait(false);

        // One MemoryService write is applied under the machine lock: the unit never sees half an entry.
        public override ValueTask Write128Async(ulong address, ulong lo, ulong hi, CancellationToken ct) =>
            WriteEntriesAsync(address, new[] { lo, hi }, ct);

        public override ValueTask WriteEntriesAsync(ulong address, ReadOnlyMemory<ulong> values, CancellationToken ct)
        {
            var b = new byte[8 * values.Length];
            for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8 * i), values.Span[i]);
            return WriteAsync(address, b, ct);
        }

        public override ValueTask ZeroPageAsync(ulong address, CancellationToken ct) => WriteAsync(address, new byte[VtdPageAllocator.PageSize], ct);

        public override async ValueTask<uint> Read32Async(ulong address, CancellationToken ct) =>
            BinaryPrimitives.ReadUInt32LittleEndian(await ReadAsync(address, 4, ct).ConfigureAwait(false));
    }
}
