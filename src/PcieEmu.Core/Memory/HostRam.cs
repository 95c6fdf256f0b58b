using System.IO.MemoryMappedFiles;

namespace PcieEmu.Core.Memory;

/// <summary>
/// Host RAM: a file mapped into this process (and mappable by local clients) that holds the
/// machine's physical memory from <see cref="Base"/> for <see cref="Size"/> bytes. Devices
/// never touch it directly; they go through their <see cref="DmaPort"/>.
/// </summary>
public sealed unsafe class HostRam : IDisposable
{
    private readonly FileStream _stream;
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _ptr;
    private readonly bool _deleteOnDispose;
    private bool _disposed;

    /// <summary>
    /// Maps the backing file at <paramref name="path"/>. A new file is created readable and writable
    /// by the owner only from the start (O_EXCL, mode 0600) and deleted on dispose unless
    /// <paramref name="keepFile"/>. An existing file is used as it is: never truncated (grown to
    /// <paramref name="size"/> when shorter) and never deleted. Either way the file is locked for
    /// this instance's life; a file another instance holds is refused with an <see cref="IOException"/>.
    /// </summary>
    public HostRam(string path, ulong size, bool keepFile = false, ulong baseAddress = 0)
    {
        if (size == 0 || size % 4096 != 0) throw new ArgumentException("RAM size must be a non-zero multiple of 4096", nameof(size));
        if (string.IsNullOrEmpty(path)) throw new ArgumentException("RAM file path is required", nameof(path));
        Path = System.IO.Path.GetFullPath(path);
        Size = size;
        Base = baseAddress;
        _stream = Open(Path, out bool created);
        try
        {
            if (!FileLock.TryLock(_stream.SafeFileHandle))
                throw new IOException($"RAM file {Path} is in use by another pcie-emu (it holds the file's lock); give another --ram-file");
            Created = created;
            if (_stream.Length < (long)size) _stream.SetLength((long)size);
            _file = MemoryMappedFile.CreateFromFile(_stream, null, (long)size, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: true);
        }
        catch
        {
            _stream.Dispose();
            if (created) TryDelete(Path);
            throw;
        }
        _deleteOnDispose = created && !keepFile;
        _view = _file.CreateViewAccessor(0, (long)size, MemoryMappedFileAccess.ReadWrite);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _ptr = p + _view.PointerOffset;
    }

    private static FileStream Open(string path, out bool created)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.ReadWrite };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        try
        {
            created = true;
            return new FileStream(path, options);
        }
        catch (IOException) when (File.Exists(path))
        {
            created = false;
            return new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        }
    }

    /// <summary>True when this instance created the file (and so may delete it).</summary>
    public bool Created { get; }

    /// <summary>True when a live instance holds the lock of the RAM file at <paramref name="path"/>.</summary>
    public static bool IsInUse(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        return FileLock.IsLockedByOther(fs.SafeFileHandle);
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>Default location of the RAM file: $XDG_RUNTIME_DIR, else /tmp.</summary>
    public static string DefaultPath()
    {
        string dir = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is { Length: > 0 } d && Directory.Exists(d) ? d : System.IO.Path.GetTempPath();
        return System.IO.Path.Combine(dir, $"pcie-emu-ram-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
    }

    /// <summary>Absolute path of the shared file.</summary>
    public string Path { get; }
    /// <summary>Size in bytes.</summary>
    public ulong Size { get; }
    /// <summary>Physical address of the first byte.</summary>
    public ulong Base { get; }

    /// <summary>True when [address, address+length) lies inside RAM.</summary>
    public bool Contains(ulong address, ulong length) =>
        address >= Base && length <= Size && address - Base <= Size - length;

    /// <summary>A span over RAM; the caller has checked <see cref="Contains"/>.</summary>
    public Span<byte> GetSpan(ulong address, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!Contains(address, (ulong)length)) throw new ArgumentOutOfRangeException(nameof(address), $"[0x{address:X}, +{length}) is outside RAM");
        return new Span<byte>(_ptr + (address - Base), length);
    }

    /// <summary>Copies RAM into <paramref name="destination"/>.</summary>
    public void Read(ulong address, Span<byte> destination) => GetSpan(address, destination.Length).CopyTo(destination);

    /// <summary>Copies <paramref name="source"/> into RAM.</summary>
    public void Write(ulong address, ReadOnlySpan<byte> source) => source.CopyTo(GetSpan(address, source.Length));

    /// <summary>Zeroes all of RAM (cold reset).</summary>
    public void Clear()
    {
        for (ulong off = 0; off < Size; off += 1 << 30)
            new Span<byte>(_ptr + off, (int)Math.Min(1UL << 30, Size - off)).Clear();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
        if (_deleteOnDispose) TryDelete(Path);
        _stream.Dispose();   // releases the lock after the file is gone
    }
}
