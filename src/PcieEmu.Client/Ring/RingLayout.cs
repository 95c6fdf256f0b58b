using System.Runtime.InteropServices;

namespace PcieEmu.Client.Ring;

/// <summary>
/// The shared-memory ring's file layout (SessionService.OpenRing; docs/protocol.md, "Shared-memory
/// ring"): a 512-byte header, the submission slots, the completion slots, then the data area. All
/// little-endian; indices are free-running 32-bit counters (slot = index &amp; (entries - 1)).
/// </summary>
public static class RingLayout
{
    /// <summary>Header magic at offset 0: the bytes "PCIERING".</summary>
    public const ulong Magic = 0x474E495245494350;
    /// <summary>Layout version at offset 8.</summary>
    public const uint Version = 1;
    /// <summary>Header offsets: version (u32).</summary>
    public const int VersionOffset = 0x08;
    /// <summary>Submission slot count (u32).</summary>
    public const int SubmissionEntriesOffset = 0x0C;
    /// <summary>Completion slot count (u32).</summary>
    public const int CompletionEntriesOffset = 0x10;
    /// <summary>Data area size (u32).</summary>
    public const int DataSizeOffset = 0x14;
    /// <summary>Offset of submission slot 0 (u32).</summary>
    public const int SubmissionOffsetOffset = 0x18;
    /// <summary>Offset of completion slot 0 (u32).</summary>
    public const int CompletionOffsetOffset = 0x1C;
    /// <summary>Offset of the data area (u32).</summary>
    public const int DataOffsetOffset = 0x20;
    /// <summary>Ring state (u32, server-written): 0 open, 1 closed (nothing more is consumed or completed).</summary>
    public const int StateOffset = 0x24;
    /// <summary>Submission tail (u32, client-written): the index of the next slot the client fills; the server's futex word.</summary>
    public const int SubmissionTailOffset = 0x40;
    /// <summary>Server sleeping flag (u32, server-written): 1 while the server sleeps (or is about to) on the submission tail's futex.</summary>
    public const int ServerSleepingOffset = 0x44;
    /// <summary>Submission head (u32, server-written): entries before it have been consumed; their slots and data may be reused.</summary>
    public const int SubmissionHeadOffset = 0x80;
    /// <summary>Completion tail (u32, server-written): the index of the next completion; the client's futex word.</summary>
    public const int CompletionTailOffset = 0xC0;
    /// <summary>Client sleeping flag (u32, client-written): 1 asks the server to wake the completion tail's futex after its next completion.</summary>
    public const int ClientSleepingOffset = 0xC4;
    /// <summary>Completion head (u32, client-written): completions before it have been read; their slots may be reused.</summary>
    public const int CompletionHeadOffset = 0x100;
    /// <summary>Header size; submission slot 0 follows it.</summary>
    public const int HeaderSize = 0x200;
    /// <summary>Bytes per submission slot.</summary>
    public const int SubmissionEntrySize = 64;
    /// <summary>Bytes per completion slot.</summary>
    public const int CompletionEntrySize = 32;
    /// <summary>Flags bit 0 of a write: ask for a completion even when it succeeds.</summary>
    public const byte FlagAck = 1;
}

/// <summary>Status of a ring completion: the PCIe completion statuses (as CompletionStatus), then what a gRPC call would have answered with an error.</summary>
public enum RingStatus : ushort
{
    /// <summary>Never written by the server.</summary>
    Unspecified = 0,
    /// <summary>Successful Completion.</summary>
    Successful = 1,
    /// <summary>Unsupported Request (reads return all ones).</summary>
    UnsupportedRequest = 2,
    /// <summary>Completer Abort.</summary>
    CompleterAbort = 3,
    /// <summary>Configuration Request Retry Status.</summary>
    ConfigurationRetry = 4,
    /// <summary>The entry is malformed (INVALID_ARGUMENT); the completion's field names what; nothing executed.</summary>
    InvalidArgument = 0x100,
    /// <summary>A memory entry outside RAM (OUT_OF_RANGE); nothing executed.</summary>
    OutOfRange = 0x101,
}

/// <summary>The submission field a rejected entry's completion names.</summary>
public enum RingField : byte
{
    /// <summary>No field (the entry was not rejected).</summary>
    None = 0,
    /// <summary>op.</summary>
    Op = 1,
    /// <summary>flags.</summary>
    Flags = 2,
    /// <summary>rid.</summary>
    Rid = 3,
    /// <summary>offset.</summary>
    Offset = 4,
    /// <summary>width.</summary>
    Width = 5,
    /// <summary>address.</summary>
    Address = 6,
    /// <summary>value.</summary>
    Value = 7,
    /// <summary>data_offset.</summary>
    DataOffset = 8,
    /// <summary>length.</summary>
    Length = 9,
    /// <summary>A reserved byte that is not zero.</summary>
    Reserved = 10,
}

/// <summary>Operation codes of submission entries (the same numbers as TransactionKind).</summary>
public enum RingOp : byte
{
    /// <summary>Config read.</summary>
    ConfigRead = 1,
    /// <summary>Config write.</summary>
    ConfigWrite = 2,
    /// <summary>Memory-space read (MMIO or RAM).</summary>
    MmioRead = 3,
    /// <summary>Memory-space write.</summary>
    MmioWrite = 4,
    /// <summary>RAM block read into the data area.</summary>
    MemoryRead = 5,
    /// <summary>RAM block write from the data area.</summary>
    MemoryWrite = 6,
}

/// <summary>One submission slot (64 bytes). Fields an op does not use must be zero.</summary>
[StructLayout(LayoutKind.Explicit, Size = RingLayout.SubmissionEntrySize)]
internal struct RingSubmission
{
    [FieldOffset(0x00)] public ulong Tag;
    [FieldOffset(0x08)] public byte Op;
    [FieldOffset(0x09)] public byte Flags;
    [FieldOffset(0x0A)] public ushort Rid;
    [FieldOffset(0x0C)] public ushort Offset;
    [FieldOffset(0x0E)] public byte Width;
    [FieldOffset(0x0F)] public byte Reserved0;
    [FieldOffset(0x10)] public ulong Address;
    [FieldOffset(0x18)] public ulong Value;
    [FieldOffset(0x20)] public uint DataOffset;
    [FieldOffset(0x24)] public uint Length;
    [FieldOffset(0x28)] public ulong Reserved1;
    [FieldOffset(0x30)] public ulong Reserved2;
    [FieldOffset(0x38)] public ulong Reserved3;
}

/// <summary>One completion slot (32 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = RingLayout.CompletionEntrySize)]
internal struct RingCompletionEntry
{
    [FieldOffset(0x00)] public ulong Tag;
    [FieldOffset(0x08)] public ulong Value;
    [FieldOffset(0x10)] public byte Kind;
    [FieldOffset(0x11)] public byte Field;
    [FieldOffset(0x12)] public ushort Status;
    [FieldOffset(0x14)] public uint Length;
    [FieldOffset(0x18)] public ulong Reserved;
}
