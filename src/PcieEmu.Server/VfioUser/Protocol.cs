using System.Buffers.Binary;

namespace PcieEmu.Server.VfioUser;

/// <summary>vfio-user commands (the numbers are the protocol's).</summary>
internal enum VfioUserCommand : ushort
{
    Version = 1,
    DmaMap = 2,
    DmaUnmap = 3,
    DeviceGetInfo = 4,
    GetRegionInfo = 5,
    GetRegionIoFds = 6,
    GetIrqInfo = 7,
    SetIrqs = 8,
    RegionRead = 9,
    RegionWrite = 10,
    DmaRead = 11,
    DmaWrite = 12,
    DeviceReset = 13,
    DirtyPages = 14,
    RegionWriteMulti = 15,
}

/// <summary>Wire constants of vfio-user (and of the VFIO structures it carries). Little-endian throughout.</summary>
internal static class VfioUserWire
{
    /// <summary>Every message starts with this header: id u16, command u16, size u32 (header included), flags u32, error u32.</summary>
    public const int HeaderSize = 16;

    /// <summary>Header flags: the low nibble is the type (0 request, 1 reply).</summary>
    public const uint TypeMask = 0xF, TypeRequest = 0, TypeReply = 1, NoReply = 0x10, Error = 0x20;

    /// <summary>Protocol version this server speaks (QEMU 10.x offers 0.0).</summary>
    public const ushort Major = 0, Minor = 0;

    /// <summary>Largest data payload of a region or DMA message we accept and announce.</summary>
    public const int MaxDataTransfer = 1 << 20;
    /// <summary>Most descriptors one message may carry (announced as max_msg_fds).</summary>
    public const int MaxMessageFds = 16;
    /// <summary>Largest message: a REGION_WRITE of <see cref="MaxDataTransfer"/> bytes plus headers, with slack.</summary>
    public const int MaxMessageSize = HeaderSize + 16 + MaxDataTransfer;

    /// <summary>VFIO PCI region indexes: BAR0-5, ROM, config, VGA.</summary>
    public const int RegionRom = 6, RegionConfig = 7, RegionVga = 8, RegionCount = 9;
    /// <summary>VFIO PCI interrupt indexes: INTx, MSI, MSI-X, error, request.</summary>
    public const int IrqIntx = 0, IrqMsi = 1, IrqMsix = 2, IrqErr = 3, IrqReq = 4, IrqCount = 5;

    /// <summary>vfio_device_info flags.</summary>
    public const uint DeviceFlagReset = 1, DeviceFlagPci = 2;
    /// <summary>vfio_region_info flags.</summary>
    public const uint RegionFlagRead = 1, RegionFlagWrite = 2, RegionFlagMmap = 4, RegionFlagCaps = 8;
    /// <summary>vfio_irq_info flags.</summary>
    public const uint IrqInfoEventFd = 1, IrqInfoMaskable = 2, IrqInfoAutomasked = 4, IrqInfoNoResize = 8;
    /// <summary>vfio_irq_set flags: one data type and one action.</summary>
    public const uint IrqDataNone = 1, IrqDataBool = 2, IrqDataEventFd = 4, IrqActionMask = 8, IrqActionUnmask = 0x10, IrqActionTrigger = 0x20;
    /// <summary>DMA_MAP flags (access the device may make) and DMA_UNMAP flags.</summary>
    public const uint DmaRead = 1, DmaWrite = 2, DmaUnmapGetDirtyBitmap = 1, DmaUnmapAll = 2;

    /// <summary>Linux errno values carried in error replies.</summary>
    public const uint EPERM = 1, ENOENT = 2, EIO = 5, E2BIG = 7, EBADF = 9, EFAULT = 14, EBUSY = 16, EEXIST = 17, ENODEV = 19,
        EINVAL = 22, ENOSPC = 28, ENOSYS = 38, ENOTSUP = 95;
}

/// <summary>A vfio-user message header.</summary>
internal readonly record struct VfioUserHeader(ushort Id, ushort Command, uint Size, uint Flags, uint Error)
{
    /// <summary>Decodes the first 16 bytes of <paramref name="b"/>.</summary>
    public static VfioUserHeader Read(ReadOnlySpan<byte> b) => new(
        BinaryPrimitives.ReadUInt16LittleEndian(b),
        BinaryPrimitives.ReadUInt16LittleEndian(b[2..]),
        BinaryPrimitives.ReadUInt32LittleEndian(b[4..]),
        BinaryPrimitives.ReadUInt32LittleEndian(b[8..]),
        BinaryPrimitives.ReadUInt32LittleEndian(b[12..]));

    /// <summary>Encodes into the first 16 bytes of <paramref name="b"/>.</summary>
    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(b, Id);
        BinaryPrimitives.WriteUInt16LittleEndian(b[2..], Command);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], Size);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], Error);
    }

    /// <summary>The message type (low nibble of the flags).</summary>
    public uint Type => Flags & VfioUserWire.TypeMask;
}
