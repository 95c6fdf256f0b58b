using System.Buffers.Binary;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Events;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Platform;

namespace PcieEmu.Lab;

/// <summary>A guest: a window of host RAM that is its guest-physical 0..<see cref="Size"/>, its MAC,
/// and the VT-d domain a function assigned to it translates through.</summary>
internal sealed class Guest(Machine machine, int id, ulong hostBase, ulong size, byte[] mac)
{
    public int Id { get; } = id;
    public ulong HostBase { get; } = hostBase;
    public ulong Size { get; } = size;
    public byte[] Mac { get; } = mac;
    /// <summary>VT-d domain id (0 is the host's).</summary>
    public ushort DomainId => (ushort)(Id + 1);

    /// <summary>The guest CPU's view of its own RAM (second-level/EPT translation: host = base + gpa).</summary>
    public Span<byte> Memory(ulong gpa, int length)
    {
        if (gpa + (ulong)length > Size) throw new ArgumentOutOfRangeException(nameof(gpa), $"guest {Id}: 0x{gpa:X}+{length} is outside its RAM");
        return machine.Ram.GetSpan(HostBase + gpa, length);
    }

    public uint Read32(ulong gpa) => BinaryPrimitives.ReadUInt32LittleEndian(Memory(gpa, 4));
    public void Write32(ulong gpa, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Memory(gpa, 4), v);
    public ulong Read64(ulong gpa) => BinaryPrimitives.ReadUInt64LittleEndian(Memory(gpa, 8));
    public void Write64(ulong gpa, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Memory(gpa, 8), v);
}

/// <summary>
/// The lab's VMM, kept small on purpose. It owns the guests' RAM windows and their VT-d domains
/// (root and context tables, 4-level second-level tables), receives what a VMM traps (accesses to
/// the devices it emulates, published on the machine's event path like any BAR access), and runs
/// the back ends, whose only data-path action is <see cref="Copy"/>: the one place software
/// copies frame bytes, so the one place they are counted.
/// </summary>
internal sealed class Vmm
{
    /// <summary>Each guest's RAM window.</summary>
    public const ulong GuestRamSize = 0x0040_0000;
    /// <summary>The host's own DMA region (its PF driver's rings and buffers) and the first guest window.</summary>
    public const ulong HostRegionBase = 0x0080_0000, HostRegionSize = 0x0040_0000, FirstGuestBase = 0x0100_0000;
    private const ulong PageTableBase = 0x0400_0000, PageTableEnd = 0x0600_0000;
    /// <summary>RAM the lab's machine needs.</summary>
    public const ulong RamSize = 0x0600_0000;

    private readonly Dictionary<int, ulong> _domainRoots = [];
    private readonly Dictionary<int, ulong> _contextTables = [];
    private ulong _nextPage = PageTableBase, _root;

    public Vmm(Machine machine)
    {
        Machine = machine;
        _root = Page();
    }

    public Machine Machine { get; }
    public List<Guest> Guests { get; } = [];

    /// <summary>Frame bytes copied by software (the VMM's back ends and the host driver's bridge).</summary>
    public long BytesCopied { get; private set; }

    /// <summary>The RID of guest <paramref name="g"/>'s emulated NIC: bus 0xFF, which no port decodes, so it never aliases a machine function.</summary>
    public static ushort EmulatedRid(int g) => (ushort)(0xFF00 | (g << 3));

    public Guest AddGuest()
    {
        int id = Guests.Count;
        var g = new Guest(Machine, id, FirstGuestBase + (ulong)id * GuestRamSize, GuestRamSize, GuestMac(id));
        Guests.Add(g);
        return g;
    }

    /// <summary>Guest <paramref name="g"/>'s MAC: 02:00:00:00:10:gg (locally administered).</summary>
    public static byte[] GuestMac(int g) => [0x02, 0, 0, 0, 0x10, (byte)(g + 1)];

    /// <summary>Interrupts the VMM injected into guests for the devices it emulates in software.</summary>
    public long VirtualInterrupts { get; private set; }

    /// <summary>Copies frame bytes in software and counts them.</summary>
    public void Copy(ReadOnlySpan<byte> from, Span<byte> to)
    {
        from.CopyTo(to);
        BytesCopied += from.Length;
    }

    /// <summary>The paravirtual back end hands <paramref name="frame"/> to a guest's virtio-net: the device
    /// model (VMM software) writes it into the guest's receive buffer, a software copy counted here.</summary>
    public bool Deliver(PcieEmu.Core.Devices.IEthernetPort port, ReadOnlySpan<byte> frame)
    {
        BytesCopied += frame.Length;
        return port.InjectFrame(frame) > 0;
    }

    /// <summary>The VMM injects an interrupt into a guest (an emulated device's; no interrupt message exists for it).</summary>
    public void InjectInterrupt() => VirtualInterrupts++;

    /// <summary>A trapped guest access to a device the VMM emulates, published on the machine's event path
    /// as the MMIO transaction it is (the function being the VMM's, at <see cref="EmulatedRid"/>).</summary>
    public void Trap(ushort rid, string function, bool write, uint offset, ulong value, string? register)
    {
        if (Machine.Events.Wants(EventKind.Mmio))
            Machine.Events.Publish(new MmioAccessEvent(rid, write, EmulatedBarGpa + offset, 0, offset, 4, value, 0, register) { Function = function });
    }

    /// <summary>Where the VMM places its emulated NIC's BAR 0 in each guest's physical address space.</summary>
    public const ulong EmulatedBarGpa = 0xFEBC_0000;

    // ---- VT-d: one domain per guest (gpa -> its window) and the host's (identity on its region) ----

    /// <summary>Puts <paramref name="rid"/> in <paramref name="guest"/>'s domain: its DMA addresses are guest-physical.</summary>
    public void Assign(ushort rid, Guest guest) => Context(rid, guest.DomainId, DomainRoot(guest.DomainId, 0, guest.HostBase, guest.Size));

    /// <summary>Puts <paramref name="rid"/> in the host's domain: identity on the host region.</summary>
    public void AssignToHost(ushort rid) => Context(rid, 0x7F, DomainRoot(0x7F, HostRegionBase, HostRegionBase, HostRegionSize));

    /// <summary>Points the VT-d unit at the root table and turns translation on.</summary>
    public void EnableTranslation()
    {
        ulong b = Machine.Options.IommuBase;
        Machine.WriteMmio(b + (ulong)VtdRegs.Rtaddr, 8, _root);
        Machine.WriteMmio(b + (ulong)VtdRegs.Gcmd, 4, VtdRegs.GcmdSrtp);
        Machine.WriteMmio(b + (ulong)VtdRegs.Gcmd, 4, VtdRegs.GcmdTe);
        if (!Machine.Iommu.TranslationEnabled) throw new InvalidOperationException("VT-d translation did not turn on");
    }

    private void Context(ushort rid, ushort domain, ulong slptRoot)
    {
        int bus = rid >> 8;
        if (!_contextTables.TryGetValue(bus, out ulong ct))
        {
            ct = Page();
            _contextTables[bus] = ct;
            WriteQ(_root + (ulong)bus * 16, ct | 1);
        }
        ulong entry = ct + (ulong)(rid & 0xFF) * 16;
        WriteQ(entry + 8, 2UL | (ulong)domain << 8);    // AW = 2: 4-level, 48-bit
        WriteQ(entry, slptRoot | 1);                    // present, translation type 0 (untranslated requests)
    }

    private ulong DomainRoot(int domain, ulong iovaBase, ulong hostBase, ulong size)
    {
        if (_domainRoots.TryGetValue(domain, out ulong top)) return top;
        top = Page();
        _domainRoots[domain] = top;
        for (ulong off = 0; off < size; off += 4096)
        {
            ulong iova = iovaBase + off, table = top;
            for (int level = 4; level > 1; level--)
            {
                ulong slot = table + ((iova >> (12 + 9 * (level - 1))) & 511) * 8;
                ulong pte = ReadQ(slot);
                if ((pte & 3) == 0) { pte = Page() | 3; WriteQ(slot, pte); }
                table = pte & 0x000F_FFFF_FFFF_F000;
            }
            WriteQ(table + ((iova >> 12) & 511) * 8, (hostBase + off) | 3);
        }
        return top;
    }

    private ulong Page()
    {
        ulong p = _nextPage;
        if (p >= PageTableEnd) throw new InvalidOperationException("VT-d table area exhausted");
        _nextPage += 4096;
        Machine.Ram.GetSpan(p, 4096).Clear();
        return p;
    }

    private ulong ReadQ(ulong a) => BinaryPrimitives.ReadUInt64LittleEndian(Machine.Ram.GetSpan(a, 8));
    private void WriteQ(ulong a, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Machine.Ram.GetSpan(a, 8), v);
}
