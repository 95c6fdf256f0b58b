using System.Buffers;
using System.IO.MemoryMappedFiles;

namespace PcieEmu.Client;

/// <summary>
/// The machine's RAM file mapped into this process: the same bytes the emulated devices DMA to.
/// Physical address <see cref="Base"/> is offset 0 of the file.
/// </summary>
public sealed unsafe class RamMapping : IDisposable
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _ptr;
    private bool _disposed;

    /// <summary>Maps <paramref name="path"/> (size bytes, holding physical addresses from <paramref name="baseAddress"/>).</summary>
    public RamMapping(string path, ulong baseAddress, ulong size)
    {
        if (size == 0 || size > long.MaxValue) throw new ArgumentOutOfRangeException(nameof(size));
        Path = path;
        Base = baseAddress;
        Size = size;
        _file = MemoryMappedFile.CreateFromFile(new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite),
            null, (long)size, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
        _view = _file.CreateViewAccessor(0, (long)size, MemoryMappedFileAccess.ReadWrite);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _ptr = p + _view.PointerOffset;
    }

    /// <summary>Path of the mapped file.</summary>
    public string Path { get; }
    /// <summary>Physical address of the first byte.</summary>
    public ulong Base { get; }
    /// <summary>Size in bytes.</summary>
    public ulong Size { get; }

    /// <summary>A span over physical addresses [address, address + length).</summary>
    public Span<byte> GetSpan(ulong address, int length) => new(Pointer(address, length), length);

    /// <summary>A <see cref="Memory{T}"/> over [address, address + length) (valid while this mapping lives).</summary>
    public Memory<byte> GetMemory(ulong address, int length) => new Manager(Pointer(address, length), length).Memory;

    private byte* Pointer(ulong address, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (length < 0 || address < Base || (ulong)length > Size || address - Base > Size - (ulong)length)
            throw new ArgumentOutOfRangeException(nameof(address), $"[0x{address:X}, +{length}) is outside RAM");
        return _ptr + (address - Base);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }

    private sealed class Manager(byte* pointer, int length) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => new(pointer, length);
        public override MemoryHandle Pin(int elementIndex = 0) => new(pointer + elementIndex);
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
    }
}
