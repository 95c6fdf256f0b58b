using System.Buffers.Binary;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Devices.Igb;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Core.Tests.Devices.Igb;

/// <summary>A driver's-eye view of the NIC in tests: register access through the machine's MMIO
/// path, rings in RAM, a PF driver's VMDq setup.</summary>
internal sealed class NicRig : IDisposable
{
    public const ushort Pf0 = 0x0100;
    public const int SriovCap = 0x160, MsixCap = 0x70, PcieCap = 0xA0;
    public readonly Machine M;
    public readonly IgbPhysicalFunction Pf;
    public IgbPort Nic => Pf.Nic;
    public readonly ulong PfBar0, PfBar3;
    private ulong _nextRam = 0x10_0000;

    private readonly bool _ownsMachine = true;

    public NicRig(int vfs = 0, MachineOptions? options = null, TimeProvider? time = null) : this(TestMachine.Create(options, time), vfs) { }

    /// <summary>A rig on an existing machine (not disposed by the rig), allocating RAM from <paramref name="ramStart"/>.</summary>
    public NicRig(Machine m, int vfs, ulong ramStart, bool ownsMachine) : this(m, vfs)
    {
        _nextRam = ramStart;
        _ownsMachine = ownsMachine;
    }

    private NicRig(Machine m, int vfs)
    {
        M = m;
        Pf = (IgbPhysicalFunction)M.PhysicalFunctions[0];
        PfBar0 = Pf.BarWindow(Pf.Bars[0]).Base;
        PfBar3 = Pf.BarWindow(Pf.Bars.First(b => b.Index == 3)).Base;
        if (vfs > 0) EnableVfs(vfs);
    }

    public void EnableVfs(int n)
    {
        M.Write(Pf0, SriovCap + 0x10, 2, (uint)n);
        M.Write(Pf0, SriovCap + 0x08, 2, 0x9);
        for (int i = 0; i < n; i++) M.Write(VfRid(i), 0x04, 2, 0x4);   // VF Bus Master Enable
    }

    public ushort VfRid(int i) => Pf.VfRid(i);
    public IgbVirtualFunction Vf(int i) => (IgbVirtualFunction)Pf.VirtualFunctions[i];
    public ulong VfBar0(int i) => Pf.VfBarWindow(Pf.Sriov!.Parameters.VfBars[0], i).Base;
    public ulong VfBar3(int i) => Pf.VfBarWindow(Pf.Sriov!.Parameters.VfBars[1], i).Base;

    public uint PfRead(uint off) => R(PfBar0 + off);
    public void PfWrite(uint off, uint v) => W(PfBar0 + off, v);
    public uint VfRead(int i, uint off) => R(VfBar0(i) + off);
    public void VfWrite(int i, uint off, uint v) => W(VfBar0(i) + off, v);

    public uint R(ulong a, int width = 4)
    {
        var r = M.ReadMmio(a, width);
        Assert.Equal(CompletionStatus.Successful, r.Status);
        return (uint)r.Value;
    }

    public void W(ulong a, ulong v, int width = 4) => Assert.Equal(CompletionStatus.Successful, M.WriteMmio(a, width, v));

    /// <summary>Next free RAM address (everything below it from the start was handed out).</summary>
    public ulong NextRam => _nextRam;

    public ulong Alloc(int bytes)
    {
        ulong a = _nextRam;
        _nextRam += (ulong)((bytes + 0xFFF) & ~0xFFF);
        return a;
    }

    public byte[] ReadRam(ulong a, int n)
    {
        var b = new byte[n];
        M.ReadMemory(a, b);
        return b;
    }

    public static byte[] Mac(int i) => [0x02, 0x00, 0x00, 0x00, 0x10, (byte)i];

    /// <summary>PF driver setup for SR-IOV: VMDq, loopback, one RAR entry per VF (entry i+1 → pool i),
    /// VMOLR accept untagged + broadcast, pools enabled, MAC of the PF in RAR0 with its pool.</summary>
    public void SetupVmdq(int vfs)
    {
        PfWrite(CtrlExt, CtrlExtPfrstd);
        PfWrite(Mrqc, MrqcVmdq);
        PfWrite(Dtxswc, DtxswcLoopback);
        PfWrite(Rctl, RctlEn | RctlBam | RctlSecrc);
        PfWrite(Tctl, TctlEn);
        PfWrite(Mbvfimr, 0xFF);
        uint pools = 0;
        for (int i = 0; i <= vfs; i++)
        {
            PfWrite(Vmolr + 4u * (uint)i, VmolrAupe | VmolrBam);
            pools |= 1u << i;
        }
        PfWrite(Vfre, pools);
        PfWrite(Vfte, pools);
        // RAR0 keeps the PF MAC; give it the PF pool (after the VFs).
        PfWrite(Ral0 + 4, PfRead(Ral0 + 4) | (1u << (RahPoolShift + vfs)));
        for (int i = 0; i < vfs; i++) SetRar(i + 1, Mac(i), 1u << i);
    }

    public void SetRar(int n, byte[] mac, uint pools)
    {
        uint off = Ral0 + 8u * (uint)n;
        PfWrite(off, BinaryPrimitives.ReadUInt32LittleEndian(mac));
        PfWrite(off + 4, BinaryPrimitives.ReadUInt16LittleEndian(mac.AsSpan(4)) | pools << RahPoolShift | RahAv);
    }

    /// <summary>A ring as a driver sets it up.</summary>
    public sealed class Ring(NicRig rig, Func<uint, uint> read, Action<uint, uint> write, uint block, int count, ulong ringBase, bool tx)
    {
        public readonly ulong Base = ringBase;
        public readonly int Count = count;
        public readonly ulong[] Buffers = new ulong[count];
        public uint Tail;
        public uint Reg(uint off) => block + off;
        public uint Head => read(block + (tx ? Tdh : Rdh));
        public void WriteTail(uint t) { Tail = t; write(block + (tx ? Tdt : Rdt), t); }
        public ulong DescAddr(uint i) => Base + 16 * i;
        /// <summary>RX: re-arms descriptors from the current tail up to <paramref name="newTail"/> (the
        /// device's write-back overwrote their buffer addresses), then writes RDT.</summary>
        public void Replenish(uint newTail)
        {
            for (uint i = Tail; i != newTail; i = (i + 1) % (uint)Count)
            {
                var d = new byte[16];
                BinaryPrimitives.WriteUInt64LittleEndian(d, Buffers[i]);
                rig.M.WriteMemory(DescAddr(i), d);
            }
            WriteTail(newTail);
        }
        public byte[] Desc(uint i) => rig.ReadRam(DescAddr(i), 16);
    }

    /// <summary>Sets up a TX ring: block = queue register block in the function's BAR0.</summary>
    public Ring SetupTx(Func<uint, uint> read, Action<uint, uint> write, uint block, int count = 64)
    {
        ulong b = Alloc(count * 16);
        var ring = new Ring(this, read, write, block, count, b, tx: true);
        write(block + Tdbal, (uint)b);
        write(block + Tdbah, (uint)(b >> 32));
        write(block + Tdlen, (uint)count * 16);
        write(block + Tdh, 0);
        write(block + Tdt, 0);
        write(block + Txdctl, QueueEnable);
        for (int i = 0; i < count; i++) ring.Buffers[i] = Alloc(2048);
        return ring;
    }

    /// <summary>Sets up an RX ring with 2 KiB buffers, advanced one-buffer or legacy descriptors,
    /// and gives the device <paramref name="post"/> descriptors.</summary>
    public Ring SetupRx(Func<uint, uint> read, Action<uint, uint> write, uint block, int count = 64, int post = -1, bool legacy = false)
    {
        ulong b = Alloc(count * 16);
        var ring = new Ring(this, read, write, block, count, b, tx: false);
        write(block + Rdbal, (uint)b);
        write(block + Rdbah, (uint)(b >> 32));
        write(block + Rdlen, (uint)count * 16);
        write(block + Srrctl, 2 | (legacy ? 0 : 1u << 25));
        write(block + Rdh, 0);
        write(block + Rdt, 0);
        write(block + Rxdctl, QueueEnable);
        for (int i = 0; i < count; i++)
        {
            ring.Buffers[i] = Alloc(2048);
            var d = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(d, ring.Buffers[i]);
            M.WriteMemory(ring.DescAddr((uint)i), d);
        }
        ring.WriteTail((uint)(post < 0 ? count - 1 : post));
        return ring;
    }

    public Ring VfTx(int vf, int q = 0) => SetupTx(o => VfRead(vf, o), (o, v) => VfWrite(vf, o, v), TxLegacy + 0x100u * (uint)q);
    public Ring VfRx(int vf, int q = 0, int count = 64, int post = -1) => SetupRx(o => VfRead(vf, o), (o, v) => VfWrite(vf, o, v), RxLegacy + 0x100u * (uint)q, count, post);
    public Ring PfTx(int q, int count = 64) => SetupTx(PfRead, PfWrite, TxQueues + 0x40u * (uint)q, count);
    public Ring PfRx(int q, int count = 64, int post = -1, bool legacy = false) => SetupRx(PfRead, PfWrite, RxQueues + 0x40u * (uint)q, count, post, legacy);

    /// <summary>Posts one frame as an advanced data descriptor (EOP|IFCS|RS) at the tail and optionally writes TDT.</summary>
    public void PostAdv(Ring tx, ReadOnlySpan<byte> frame, bool kick = true, uint extraCmd = 0)
    {
        uint i = tx.Tail;
        M.WriteMemory(tx.Buffers[i], frame);
        var d = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(d, tx.Buffers[i]);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), (uint)frame.Length | 0x0030_0000 | 0x0100_0000 | 0x0200_0000 | 0x0800_0000 | 0x2000_0000 | extraCmd);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(12), (uint)frame.Length << 14);
        M.WriteMemory(tx.DescAddr(i), d);
        uint next = (uint)((i + 1) % tx.Count);
        if (kick) tx.WriteTail(next); else tx.Tail = next;
    }

    /// <summary>Posts one frame as a legacy descriptor (EOP|IFCS|RS).</summary>
    public void PostLegacy(Ring tx, ReadOnlySpan<byte> frame, byte extraCmd = 0, ushort vlan = 0)
    {
        uint i = tx.Tail;
        M.WriteMemory(tx.Buffers[i], frame);
        var d = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(d, tx.Buffers[i]);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(8), (ushort)frame.Length);
        d[11] = (byte)(0x01 | 0x02 | 0x08 | extraCmd);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(14), vlan);
        M.WriteMemory(tx.DescAddr(i), d);
        tx.WriteTail((uint)((i + 1) % tx.Count));
    }

    public static byte[] Frame(byte[] dst, byte[] src, int length = 64, byte fill = 0xA5)
    {
        var f = new byte[length];
        dst.CopyTo(f, 0);
        src.CopyTo(f, 6);
        f[12] = 0x08; f[13] = 0x00;
        for (int i = 14; i < length; i++) f[i] = (byte)(fill + i);
        return f;
    }

    public static readonly byte[] Broadcast = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

    /// <summary>Enables MSI-X on a function and points vector v at 0xFEE00000 with data 0x40+v, unmasked.</summary>
    public void EnableMsix(ushort rid, ulong bar3, int vectors)
    {
        for (int v = 0; v < vectors; v++)
        {
            W(bar3 + 16u * (uint)v, 0xFEE0_0000);
            W(bar3 + 16u * (uint)v + 8, 0x40u + (uint)v);
            W(bar3 + 16u * (uint)v + 12, 0);
        }
        M.Write(rid, MsixCap + 2, 2, 0x8000);
    }

    public static List<InterruptEvent> Drain(InterruptSubscription s)
    {
        var l = new List<InterruptEvent>();
        while (s.Reader.TryRead(out var e)) l.Add(e);
        return l;
    }

    public void Dispose()
    {
        if (_ownsMachine) M.Dispose();
    }
}
