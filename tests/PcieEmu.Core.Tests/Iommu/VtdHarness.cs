using System.Buffers.Binary;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Iommu;
using PcieEmu.Core.Memory;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;

namespace PcieEmu.Core.Tests.Iommu;

/// <summary>
/// A machine plus a tiny in-test VT-d "driver": allocates zeroed 4 KiB pages in RAM, writes
/// root, context and second-level entries by hand, and programs the unit over MMIO.
/// </summary>
internal sealed class VtdHarness : IDisposable
{
    public const ulong TablesBase = 0x10_0000;      // tables from 1 MiB
    public const ulong DataBase = 0x80_0000;        // data from 8 MiB (RAM is 16 MiB)
    public const ulong FaultMsiAddress = 0xFEE0_0000, InvMsiAddress = 0xFEE0_1000;

    private ulong _next;
    private readonly Dictionary<int, ulong> _contextTables = [];
    private readonly bool _ownsMachine;

    public VtdHarness(MachineOptions? options = null) : this(TestMachine.Create(options), TablesBase, ownsMachine: true) { }

    /// <summary>A driver for the unit of an existing machine, allocating tables from <paramref name="tablesBase"/>.</summary>
    public VtdHarness(Machine machine, ulong tablesBase, bool ownsMachine = false)
    {
        M = machine;
        _ownsMachine = ownsMachine;
        _next = tablesBase;
        RootTable = AllocPage();
        Interrupts = M.Interrupts.Subscribe(null, 1024);
    }

    public Machine M { get; }
    public VtdUnit Unit => M.Iommu;
    public ulong RootTable { get; }
    public InterruptSubscription Interrupts { get; }
    public ulong IommuBase => M.Options.IommuBase;

    public void Dispose() { Interrupts.Dispose(); if (_ownsMachine) M.Dispose(); }

    // ---------- memory ----------
    public ulong AllocPage()
    {
        ulong p = _next;
        _next += 4096;
        M.WriteMemory(p, new byte[4096]);
        return p;
    }

    public void WriteQ(ulong address, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        M.WriteMemory(address, b);
    }

    public ulong ReadQ(ulong address)
    {
        Span<byte> b = stackalloc byte[8];
        M.ReadMemory(address, b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public uint ReadD(ulong address)
    {
        Span<byte> b = stackalloc byte[4];
        M.ReadMemory(address, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    // ---------- registers ----------
    public ulong Reg(int offset, int width = 4)
    {
        var r = M.ReadMmio(IommuBase + (ulong)offset, width);
        Assert.Equal(CompletionStatus.Successful, r.Status);
        return r.Value;
    }

    public void SetReg(int offset, int width, ulong value) =>
        Assert.Equal(CompletionStatus.Successful, M.WriteMmio(IommuBase + (ulong)offset, width, value));

    public uint Gsts => (uint)Reg(VtdRegs.Gsts);
    public uint Fsts => (uint)Reg(VtdRegs.Fsts);

    /// <summary>Persistent GCMD bits as a driver keeps them (TE, QIE).</summary>
    private uint _gcmd;

    public void Command(uint oneShot) => SetReg(VtdRegs.Gcmd, 4, _gcmd | oneShot);

    public void SetPersistent(uint bit, bool on)
    {
        _gcmd = on ? _gcmd | bit : _gcmd & ~bit;
        SetReg(VtdRegs.Gcmd, 4, _gcmd);
    }

    /// <summary>RTADDR, SRTP, TE: translation on with this harness's root table.</summary>
    public void Enable()
    {
        SetReg(VtdRegs.Rtaddr, 8, RootTable);
        Command(VtdRegs.GcmdSrtp);
        Assert.NotEqual(0u, Gsts & VtdRegs.GcmdSrtp);
        SetPersistent(VtdRegs.GcmdTe, true);
        Assert.NotEqual(0u, Gsts & VtdRegs.GcmdTe);
    }

    public void UnmaskFaultEvents(uint data = 0x41)
    {
        SetReg(VtdRegs.Fedata, 4, data);
        SetReg(VtdRegs.Feaddr, 4, FaultMsiAddress);
        SetReg(VtdRegs.Feuaddr, 4, 0);
        SetReg(VtdRegs.Fectl, 4, 0);
    }

    // ---------- tables ----------
    public ulong ContextTable(int bus)
    {
        if (_contextTables.TryGetValue(bus, out ulong ct)) return ct;
        ct = AllocPage();
        _contextTables[bus] = ct;
        WriteQ(RootTable + (ulong)bus * 16, ct | 1);
        return ct;
    }

    /// <summary>Writes the context entry of <paramref name="rid"/> (creating the bus's context table).</summary>
    public void SetContext(ushort rid, ulong slptptr, ushort did, int aw = 2, int tt = 0, bool fpd = false, bool present = true, ulong extraLo = 0, ulong extraHi = 0)
    {
        ulong ct = ContextTable(rid >> 8);
        ulong lo = slptptr | (ulong)(uint)tt << 2 | (fpd ? 2UL : 0) | (present ? 1UL : 0) | extraLo;
        ulong hi = (uint)aw | (ulong)did << 8 | extraHi;
        WriteQ(ct + (ulong)(rid & 0xFF) * 16, lo);
        WriteQ(ct + (ulong)(rid & 0xFF) * 16 + 8, hi);
    }

    /// <summary>A new domain: a fresh top-level table; the context of <paramref name="rid"/> points at it.</summary>
    public ulong NewDomain(ushort rid, ushort did, int aw = 2, bool fpd = false)
    {
        ulong top = AllocPage();
        SetContext(rid, top, did, aw, fpd: fpd);
        return top;
    }

    /// <summary>Maps one page (level 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB) under <paramref name="top"/>,
    /// creating intermediate tables (R|W) as needed.</summary>
    public ulong Map(ulong top, ulong iova, ulong hpa, bool read = true, bool write = true, int pageLevel = 1, int levels = 4)
    {
        ulong table = top;
        for (int level = levels; level > pageLevel; level--)
        {
            ulong pteAddr = table + ((iova >> (3 + 9 * level)) & 511) * 8;
            ulong pte = ReadQ(pteAddr);
            if ((pte & 3) == 0)
            {
                pte = AllocPage() | 3;
                WriteQ(pteAddr, pte);
            }
            table = pte & 0x000F_FFFF_FFFF_F000;
        }
        ulong leafAddr = table + ((iova >> (3 + 9 * pageLevel)) & 511) * 8;
        WriteQ(leafAddr, hpa | (read ? 1UL : 0) | (write ? 2UL : 0) | (pageLevel > 1 ? 1UL << 7 : 0));
        return leafAddr;
    }

    /// <summary>Address of the leaf entry for <paramref name="iova"/> at <paramref name="level"/> (tables must exist).</summary>
    public ulong EntryAddress(ulong top, ulong iova, int level, int levels = 4)
    {
        ulong table = top;
        for (int l = levels; l > level; l--)
            table = ReadQ(table + ((iova >> (3 + 9 * l)) & 511) * 8) & 0x000F_FFFF_FFFF_F000;
        return table + ((iova >> (3 + 9 * level)) & 511) * 8;
    }

    // ---------- DMA ----------
    public PciFunction Function(ushort rid) => M.AllFunctions().Single(f => f.Rid == rid);

    public DmaResult DmaRead(ushort rid, ulong iova, Span<byte> dst)
    {
        lock (M.SyncRoot) return Function(rid).Dma.Read(iova, dst);
    }

    public DmaResult DmaWrite(ushort rid, ulong iova, ReadOnlySpan<byte> src)
    {
        lock (M.SyncRoot) return Function(rid).Dma.Write(iova, src);
    }

    /// <summary>Reads 8 bytes by DMA as <paramref name="rid"/>; asserts success.</summary>
    public ulong DmaRead64(ushort rid, ulong iova)
    {
        Span<byte> b = stackalloc byte[8];
        var r = DmaRead(rid, iova, b);
        Assert.True(r.Ok, $"DMA read failed: {r}");
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public DmaResult TryDmaRead(ushort rid, ulong iova) => DmaRead(rid, iova, new byte[8]);
    public DmaResult TryDmaWrite(ushort rid, ulong iova) => DmaWrite(rid, iova, new byte[8]);

    // ---------- queued invalidation ----------
    public ulong Queue { get; private set; }

    public void EnableQueue(int qs = 0)
    {
        Queue = AllocPage();
        for (int i = 1; i < (1 << qs); i++) AllocPage();
        SetReg(VtdRegs.Iqt, 8, 0);
        SetReg(VtdRegs.Iqa, 8, Queue | (uint)qs);
        SetPersistent(VtdRegs.GcmdQie, true);
        Assert.NotEqual(0u, Gsts & VtdRegs.GcmdQie);
    }

    /// <summary>Appends descriptors at the tail and rings IQT.</summary>
    public void Submit(params (ulong Lo, ulong Hi)[] descriptors)
    {
        ulong tail = Reg(VtdRegs.Iqt, 8) >> 4;
        ulong entries = 256UL << (int)(Reg(VtdRegs.Iqa, 8) & 7);
        foreach (var (lo, hi) in descriptors)
        {
            WriteQ(Queue + tail * 16, lo);
            WriteQ(Queue + tail * 16 + 8, hi);
            tail = (tail + 1) % entries;
        }
        SetReg(VtdRegs.Iqt, 8, tail << 4);
    }

    public static (ulong, ulong) ContextDesc(int g, ushort did = 0, ushort sid = 0, int fm = 0) =>
        (1UL | (ulong)(uint)g << 4 | (ulong)did << 16 | (ulong)sid << 32 | (ulong)(uint)fm << 48, 0);

    public static (ulong, ulong) IotlbDesc(int g, ushort did = 0, ulong addr = 0, int am = 0) =>
        (2UL | (ulong)(uint)g << 4 | (ulong)did << 16, addr | (uint)am);

    public static (ulong, ulong) WaitDesc(bool sw, bool iflag, uint data = 0, ulong addr = 0) =>
        (5UL | (iflag ? 1UL << 4 : 0) | (sw ? 1UL << 5 : 0) | (ulong)data << 32, addr);

    public List<InterruptEvent> DrainInterrupts()
    {
        var list = new List<InterruptEvent>();
        while (Interrupts.Reader.TryRead(out var e)) list.Add(e);
        return list;
    }

    public DmaTestEngine Engine(ushort rid) => new(Function(rid));

    /// <summary>Enables <paramref name="n"/> VFs of the PF at <paramref name="pf"/> by config writes.</summary>
    public void EnableVfs(ushort pf, int n)
    {
        M.Write(pf, 0x160 + 0x10, 2, (uint)n);
        M.Write(pf, 0x160 + 0x08, 2, 0x9);   // VF Enable | VF MSE
    }
}
