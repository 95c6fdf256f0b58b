using System.Buffers.Binary;
using PcieEmu.Core.AddressSpace;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Devices.VirtioNet;
using PcieEmu.Core.Interrupts;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;
using static PcieEmu.Core.Devices.VirtioNet.VirtioRegs;

namespace PcieEmu.Core.Tests.Devices.VirtioNet;

/// <summary>
/// A small virtio-net driver written from the virtio 1.2 spec, in the order Linux's
/// virtio_pci_modern and virtio_net use: it finds the vendor capabilities by walking the
/// capability list, resets the device, negotiates, sets up the queues (size, MSI-X vector
/// read back, addresses, then enable for all), and sets DRIVER_OK. The device sits on a root
/// port of its own (secondary bus 5) that the machine does not route to: config and BAR
/// accesses go to the function directly, under the machine lock, as the MMIO path would.
/// Rings and buffers are in RAM, written and read as the CPU would (not through the device).
/// </summary>
internal sealed class VirtioTestDriver : IDisposable
{
    public const byte Bus = 5;
    public const ulong MsiBase = 0xFEE0_0000;
    private ulong _next;
    private readonly Dictionary<byte, (int Bar, uint Offset, uint Length, int CapOffset)> _caps = [];

    public VirtioTestDriver(VirtioNetOptions? options = null, Machine? machine = null, ulong allocBase = 0x10_0000)
    {
        M = machine ?? TestMachine.Create();
        _ownsMachine = machine == null;
        Port = new RootPort(M, Bdf.Rid(0, 2, 0), new HeaderIds(0x8086, 0x3C04, 0x07, 0x060400), portNumber: 2);
        Port.WriteConfig(0x18, 4, 0x00_05_05_00);   // primary 0, secondary 5, subordinate 5
        Dev = new VirtioNetFunction(M, Port, options ?? new VirtioNetOptions(), ethernetPort: 2);
        Interrupts = M.Interrupts.Subscribe(null, 4096);
        _next = allocBase;
        Dev.FrameTransmitted += f => Sent.Add(f);
    }

    /// <summary>Drives <paramref name="device"/>, already placed in <paramref name="machine"/> by its description
    /// and enumerated by firmware, the way a guest would: config space through config routing
    /// (<see cref="Machine.ReadConfig"/>) and the BARs through MMIO at the addresses firmware gave them.</summary>
    public VirtioTestDriver(Machine machine, VirtioNetFunction device, ulong allocBase = 0x10_0000)
    {
        M = machine;
        Port = null!;
        Dev = device;
        _routed = true;
        Interrupts = M.Interrupts.Subscribe(null, 4096);
        _next = allocBase;
        Dev.FrameTransmitted += f => Sent.Add(f);
    }

    private readonly bool _routed;

    private readonly bool _ownsMachine;
    public Machine M { get; }
    public RootPort Port { get; }
    public VirtioNetFunction Dev { get; }
    public InterruptSubscription Interrupts { get; }
    public List<WireFrame> Sent { get; } = [];
    public ushort Rid => Dev.Rid;
    public ulong Features { get; private set; }
    public List<DriverRing> Queues { get; } = [];
    public uint NotifyMultiplier { get; private set; }

    public void Dispose()
    {
        Interrupts.Dispose();
        if (_ownsMachine) M.Dispose();
    }

    // ---------- memory (the CPU's view of RAM) ----------
    public ulong Alloc(int bytes, int align = 4096)
    {
        _next = (_next + (ulong)align - 1) & ~((ulong)align - 1);
        ulong a = _next;
        _next += (ulong)bytes;
        M.WriteMemory(a, new byte[bytes]);
        return a;
    }

    public byte[] ReadRam(ulong a, int n) { var b = new byte[n]; M.ReadMemory(a, b); return b; }
    public void WriteRam(ulong a, ReadOnlySpan<byte> b) => M.WriteMemory(a, b);
    public ushort R16(ulong a) => BinaryPrimitives.ReadUInt16LittleEndian(ReadRam(a, 2));
    public ulong R64(ulong a) => BinaryPrimitives.ReadUInt64LittleEndian(ReadRam(a, 8));
    public uint R32(ulong a) => BinaryPrimitives.ReadUInt32LittleEndian(ReadRam(a, 4));
    public void W16(ulong a, ushort v) { var b = new byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); WriteRam(a, b); }
    public void W32(ulong a, uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); WriteRam(a, b); }
    public void W64(ulong a, ulong v) { var b = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); WriteRam(a, b); }

    // ---------- config space and BARs ----------
    public uint Cfg(int off, int width = 4)
    {
        if (_routed) return M.Read(Dev.Rid, off, width);
        lock (M.SyncRoot) return Dev.ReadConfig(off, width);
    }

    public void SetCfg(int off, int width, uint v)
    {
        if (_routed) { M.Write(Dev.Rid, off, width, v); return; }
        lock (M.SyncRoot) Dev.WriteConfig(off, width, v);
    }

    private IMmioRegion Bar(int i) => _routed ? new RoutedBar(M, Dev, i) : Dev.GetBarRegion(i);

    /// <summary>A BAR reached through the machine's MMIO path at the address firmware assigned.</summary>
    private sealed class RoutedBar(Machine m, VirtioNetFunction dev, int index) : IMmioRegion
    {
        private ulong Base => dev.BarWindow(dev.Bars.Single(b => b.Index == index)).Base;
        public ulong Read(ulong offset, int width)
        {
            var r = m.ReadMmio(Base + offset, width);
            Assert.Equal(CompletionStatus.Successful, r.Status);
            return r.Value;
        }
        public void Write(ulong offset, int width, ulong value) =>
            Assert.Equal(CompletionStatus.Successful, m.WriteMmio(Base + offset, width, value));
    }

    private ulong ReadStruct(byte type, uint off, int width)
    {
        var c = _caps[type];
        if (_routed) return Bar(c.Bar).Read(c.Offset + off, width);
        lock (M.SyncRoot) return Bar(c.Bar).Read(c.Offset + off, width);
    }

    private void WriteStruct(byte type, uint off, int width, ulong v)
    {
        var c = _caps[type];
        if (_routed) { Bar(c.Bar).Write(c.Offset + off, width, v); return; }
        lock (M.SyncRoot) Bar(c.Bar).Write(c.Offset + off, width, v);
    }

    public ulong Common(int off, int width) => ReadStruct(CfgCommon, (uint)off, width);
    public void SetCommon(int off, int width, ulong v) => WriteStruct(CfgCommon, (uint)off, width, v);
    public byte Status => (byte)Common(DeviceStatus, 1);
    public byte ReadIsr() => (byte)ReadStruct(CfgIsr, 0, 1);
    public ulong DeviceCfg(int off, int width) => ReadStruct(CfgDevice, (uint)off, width);

    /// <summary>Walks the standard capability list and records every virtio vendor capability by cfg_type
    /// (the first of each type, as the spec tells drivers to prefer).</summary>
    public IReadOnlyDictionary<byte, (int Bar, uint Offset, uint Length, int CapOffset)> FindCapabilities()
    {
        int p = (int)Cfg(0x34, 1);
        int guard = 0;
        while (p != 0 && guard++ < 48)
        {
            if (Cfg(p, 1) == CapVendor)
            {
                byte type = (byte)Cfg(p + 3, 1);
                if (!_caps.ContainsKey(type))
                    _caps[type] = ((int)Cfg(p + 4, 1), Cfg(p + 8), Cfg(p + 12), p);
                if (type == CfgNotify) NotifyMultiplier = Cfg(p + 16);
            }
            p = (int)Cfg(p + 1, 1);
        }
        return _caps;
    }

    // ---------- MSI-X ----------
    /// <summary>Bus Master + Memory Space, MSI-X enabled, entry v: address MsiBase, data 0x100 + v, unmasked.</summary>
    public void EnableMsix()
    {
        SetCfg(0x04, 2, 0x0006);
        int cap = FindCap(0x11);
        int n = (int)(Cfg(cap + 2, 2) & 0x7FF) + 1;
        var table = Bar((int)(Cfg(cap + 4) & 7));
        uint tableOff = Cfg(cap + 4) & ~7u;
        lock (M.SyncRoot)
            for (int v = 0; v < n; v++)
            {
                table.Write(tableOff + (ulong)v * 16, 4, MsiBase);
                table.Write(tableOff + (ulong)v * 16 + 4, 4, 0);
                table.Write(tableOff + (ulong)v * 16 + 8, 4, 0x100u + (uint)v);
                table.Write(tableOff + (ulong)v * 16 + 12, 4, 0);
            }
        SetCfg(cap + 2, 2, 0x8000);
    }

    public int FindCap(int id)
    {
        int p = (int)Cfg(0x34, 1);
        while (p != 0) { if (Cfg(p, 1) == id) return p; p = (int)Cfg(p + 1, 1); }
        return 0;
    }

    /// <summary>Drains interrupt messages and returns their MSI-X vectors (data - 0x100).</summary>
    public List<int> Vectors()
    {
        var list = new List<int>();
        while (Interrupts.Reader.TryRead(out var e)) if (e.Kind == InterruptKind.Msix) list.Add((int)(e.Data - 0x100));
        return list;
    }

    // ---------- bring-up (virtio 1.2 §3.1.1, Linux's order) ----------
    public void Reset()
    {
        SetCommon(DeviceStatus, 1, 0);
        // The reset is complete when device_status reads 0 (§4.1.4.3.2).
        for (int i = 0; i < 100 && Status != 0; i++) { }
        Assert.Equal(0, Status);
    }

    public void AddStatus(byte bits) => SetCommon(DeviceStatus, 1, (ulong)(Status | bits));

    public ulong DeviceFeatures()
    {
        SetCommon(DeviceFeatureSelect, 4, 0);
        ulong lo = Common(DeviceFeature, 4);
        SetCommon(DeviceFeatureSelect, 4, 1);
        return lo | Common(DeviceFeature, 4) << 32;
    }

    public void WriteDriverFeatures(ulong f)
    {
        SetCommon(DriverFeatureSelect, 4, 0);
        SetCommon(DriverFeature, 4, (uint)f);
        SetCommon(DriverFeatureSelect, 4, 1);
        SetCommon(DriverFeature, 4, (uint)(f >> 32));
    }

    /// <summary>Reset, ACKNOWLEDGE, DRIVER, features; returns whether FEATURES_OK stuck.</summary>
    public bool Negotiate(ulong wanted)
    {
        FindCapabilities();
        Reset();
        AddStatus(StatusAcknowledge);
        AddStatus(StatusDriver);
        ulong offered = DeviceFeatures();
        Features = wanted & offered | (wanted & ~offered);   // a test may ask for what is not offered
        WriteDriverFeatures(Features);
        AddStatus(StatusFeaturesOk);
        return (Status & StatusFeaturesOk) != 0;
    }

    /// <summary>Sets up queue <paramref name="index"/> of <paramref name="size"/> (Linux's setup_vq order) without enabling it.</summary>
    public DriverRing SetupQueue(int index, int size, bool packed, ushort vector)
    {
        SetCommon(QueueSelect, 2, (ulong)index);
        int max = (int)Common(QueueSize, 2);
        Assert.True(max >= size, $"queue {index}: max size {max} < {size}");
        SetCommon(QueueSize, 2, (ulong)size);
        var ring = new DriverRing(this, index, size, packed, (Features & Bit(FEventIdx)) != 0);
        SetCommon(QueueDesc, 8, ring.Desc);
        SetCommon(QueueDriver, 4, ring.Driver);          // 64-bit fields as two 32-bit halves, as Linux does
        SetCommon(QueueDriver + 4, 4, ring.Driver >> 32);
        SetCommon(QueueDevice, 8, ring.Device);
        SetCommon(QueueMsixVector, 2, vector);
        Assert.Equal(vector, (ushort)Common(QueueMsixVector, 2));
        ring.NotifyOff = (uint)Common(QueueNotifyOff, 2);
        return ring;
    }

    public void EnableQueue(int index)
    {
        SetCommon(QueueSelect, 2, (ulong)index);
        SetCommon(QueueEnable, 2, 1);
    }

    /// <summary>The full bring-up to DRIVER_OK: every queue (rx/tx pairs, then control) with its own vector.</summary>
    public void BringUp(ulong features, int size = 64, bool packed = false)
    {
        Assert.True(Negotiate(features), Dev.LastFeaturesRefusal);
        EnableMsix();
        SetCommon(ConfigMsixVector, 2, 0);
        Assert.Equal(0, (int)Common(ConfigMsixVector, 2));
        int n = (int)Common(NumQueues, 2);
        Queues.Clear();
        for (int i = 0; i < n; i++) Queues.Add(SetupQueue(i, size, packed, (ushort)(i + 1)));
        for (int i = 0; i < n; i++) EnableQueue(i);
        AddStatus(StatusDriverOk);
        Assert.Equal(StatusAcknowledge | StatusDriver | StatusFeaturesOk | StatusDriverOk, Status);
    }

    public void Kick(DriverRing r)
    {
        var c = _caps[CfgNotify];
        lock (M.SyncRoot) Bar(c.Bar).Write(c.Offset + r.NotifyOff * NotifyMultiplier, 2, (ulong)r.Index);
    }

    // ---------- network helpers ----------
    public static byte[] Mac(byte last) => [0x02, 0, 0, 0, 0x77, last];

    /// <summary>An IPv4/UDP frame of <paramref name="length"/> bytes between two hosts and ports.</summary>
    public static byte[] Frame(byte[] dst, byte[] src, int length = 64, byte srcIp = 1, byte dstIp = 2, ushort srcPort = 5000, ushort dstPort = 5001)
    {
        var f = new byte[length];
        dst.CopyTo(f, 0);
        src.CopyTo(f, 6);
        f[12] = 0x08;
        f[14] = 0x45; BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(16), (ushort)(length - 14));
        f[22] = 64; f[23] = 17;
        f[26] = 10; f[29] = srcIp; f[30] = 10; f[33] = dstIp;
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(34), srcPort);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(36), dstPort);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(38), (ushort)(length - 34));
        for (int i = 42; i < length; i++) f[i] = (byte)i;
        return f;
    }

    /// <summary>Transmits <paramref name="frame"/> on <paramref name="tx"/>: a 12-byte header and the frame in one buffer
    /// (or two descriptors, or an indirect table).</summary>
    public ushort Send(DriverRing tx, byte[] frame, bool split = false, bool indirect = false, byte[]? header = null)
    {
        var pkt = new byte[NetHdrSize + frame.Length];
        (header ?? new byte[NetHdrSize]).CopyTo(pkt, 0);
        frame.CopyTo(pkt, NetHdrSize);
        ulong buf = Alloc(pkt.Length, 16);
        WriteRam(buf, pkt);
        var segs = split
            ? new[] { (buf, (uint)NetHdrSize, false), (buf + NetHdrSize, (uint)frame.Length, false) }
            : new[] { (buf, (uint)pkt.Length, false) };
        ushort id = tx.Add(segs, indirect);
        if (tx.KickNeeded()) Kick(tx);
        return id;
    }

    /// <summary>Posts <paramref name="count"/> receive buffers of <paramref name="size"/> bytes on <paramref name="rx"/>.</summary>
    public List<ulong> PostRx(DriverRing rx, int count, int size = 2048)
    {
        var list = new List<ulong>();
        for (int i = 0; i < count; i++)
        {
            ulong b = Alloc(size, 16);
            list.Add(b);
            rx.Add([(b, (uint)size, true)], indirect: false, cookie: b);
        }
        if (rx.KickNeeded()) Kick(rx);
        return list;
    }
}

/// <summary>The driver's side of one virtqueue, split or packed (virtio 1.2 §2.7, §2.8).</summary>
internal sealed class DriverRing
{
    private readonly VirtioTestDriver _d;
    private readonly bool _eventIdx;
    private readonly Stack<ushort> _freeIds = new();
    private readonly Dictionary<ushort, (int RingCount, ulong Cookie)> _inFlight = [];
    // split
    private ushort _availIdx, _lastUsed, _freeHead, _kickedAt;
    private int _numFree;
    // packed
    private ushort _nextAvail, _lastUsedPos;
    private bool _availWrap = true, _usedWrap = true;

    public DriverRing(VirtioTestDriver d, int index, int size, bool packed, bool eventIdx)
    {
        _d = d; Index = index; Size = size; Packed = packed; _eventIdx = eventIdx;
        if (packed)
        {
            Desc = d.Alloc(16 * size, 16);
            Driver = d.Alloc(4, 4);
            Device = d.Alloc(4, 4);
            for (int i = size - 1; i >= 0; i--) _freeIds.Push((ushort)i);
        }
        else
        {
            Desc = d.Alloc(16 * size, 16);
            Driver = d.Alloc(6 + 2 * size, 2);
            Device = d.Alloc(6 + 8 * size, 4);
            // Free list through next fields.
            for (int i = 0; i < size; i++) d.W16(Desc + (ulong)i * 16 + 14, (ushort)(i + 1));
            _numFree = size;
        }
    }

    public int Index { get; }
    public int Size { get; }
    public bool Packed { get; }
    public ulong Desc { get; }
    public ulong Driver { get; }
    public ulong Device { get; }
    public uint NotifyOff { get; set; }
    public ushort AvailIdx => _availIdx;

    private void WriteDesc(ulong at, ulong addr, uint len, ushort flags, ushort nextOrId)
    {
        var b = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(b, addr);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), len);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(12), Packed ? nextOrId : flags);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(14), Packed ? flags : nextOrId);
        _d.WriteRam(at, b);
    }

    /// <summary>Makes a buffer available; returns its id (split: head index; packed: buffer id).</summary>
    public ushort Add((ulong Addr, uint Len, bool Write)[] segs, bool indirect, ulong cookie = 0)
    {
        if (indirect)
        {
            ulong table = _d.Alloc(16 * segs.Length, 16);
            for (int i = 0; i < segs.Length; i++)
            {
                ushort f = (ushort)(segs[i].Write ? VirtioRegs.DescWrite : 0);
                if (!Packed && i + 1 < segs.Length) f |= VirtioRegs.DescNext;
                var b = new byte[16];
                BinaryPrimitives.WriteUInt64LittleEndian(b, segs[i].Addr);
                BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), segs[i].Len);
                if (Packed) BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(14), f);
                else { BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(12), f); BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(14), (ushort)(i + 1)); }
                _d.WriteRam(table + (ulong)i * 16, b);
            }
            return AddRaw([(table, (uint)(16 * segs.Length), false)], VirtioRegs.DescIndirect, cookie);
        }
        return AddRaw(segs, 0, cookie);
    }

    private ushort AddRaw((ulong Addr, uint Len, bool Write)[] segs, ushort extra, ulong cookie)
    {
        if (!Packed)
        {
            Assert.True(_numFree >= segs.Length, "ring full");
            ushort head = _freeHead, i = head, last = head;
            for (int k = 0; k < segs.Length; k++)
            {
                ushort next = _d.R16(Desc + (ulong)i * 16 + 14);
                ushort f = (ushort)((segs[k].Write ? VirtioRegs.DescWrite : 0) | extra | (k + 1 < segs.Length ? VirtioRegs.DescNext : 0));
                WriteDesc(Desc + (ulong)i * 16, segs[k].Addr, segs[k].Len, f, k + 1 < segs.Length ? next : (ushort)0);
                last = i;
                i = next;
                _ = last;
            }
            _freeHead = i;
            _numFree -= segs.Length;
            _inFlight[head] = (segs.Length, cookie);
            _d.W16(Driver + 4 + (ulong)(_availIdx % Size) * 2, head);
            _availIdx++;
            _d.W16(Driver + 2, _availIdx);
            return head;
        }
        ushort id = _freeIds.Pop();
        ushort start = _nextAvail;
        bool startWrap = _availWrap;
        ushort firstFlags = 0;
        for (int k = 0; k < segs.Length; k++)
        {
            ushort f = (ushort)((segs[k].Write ? VirtioRegs.DescWrite : 0) | extra | (k + 1 < segs.Length ? VirtioRegs.DescNext : 0));
            f |= (ushort)(_availWrap ? VirtioRegs.DescAvail : VirtioRegs.DescUsed);
            ulong at = Desc + (ulong)_nextAvail * 16;
            if (k == 0) { firstFlags = f; WriteDesc(at, segs[k].Addr, segs[k].Len, (ushort)(startWrap ? VirtioRegs.DescUsed : VirtioRegs.DescAvail), id); }
            else WriteDesc(at, segs[k].Addr, segs[k].Len, f, id);
            if (++_nextAvail == Size) { _nextAvail = 0; _availWrap = !_availWrap; }
        }
        // The first descriptor's flags last, so the device sees the whole chain at once (§2.8.21).
        _d.W16(Desc + (ulong)start * 16 + 14, firstFlags);
        _inFlight[id] = (segs.Length, cookie);
        _availIdx++;
        return id;
    }

    /// <summary>Whether the device wants a notification for what was added since the last kick.</summary>
    public bool KickNeeded()
    {
        ushort old = _kickedAt, now = _availIdx;
        _kickedAt = now;
        if (!Packed)
        {
            if (_eventIdx)
            {
                ushort ev = _d.R16(Device + 4 + (ulong)Size * 8);
                return (ushort)(now - ev - 1) < (ushort)(now - old);
            }
            return (_d.R16(Device) & VirtioRegs.UsedNoNotify) == 0;
        }
        ushort flags = (ushort)(_d.R16(Device + 2) & 3);
        if (flags == VirtioRegs.EventFlagsDisable) return false;
        if (flags == VirtioRegs.EventFlagsEnable) return true;
        return true;   // DESC: a simple driver kicks anyway
    }

    /// <summary>Used buffers since the last call: (id, len, cookie).</summary>
    public List<(ushort Id, uint Len, ulong Cookie)> Used()
    {
        var list = new List<(ushort, uint, ulong)>();
        if (!Packed)
        {
            ushort usedIdx = _d.R16(Device + 2);
            while (_lastUsed != usedIdx)
            {
                ulong e = Device + 4 + (ulong)(_lastUsed % Size) * 8;
                ushort id = (ushort)_d.R32(e);
                uint len = _d.R32(e + 4);
                var (n, cookie) = _inFlight[id];
                _inFlight.Remove(id);
                // Return the chain to the free list.
                ushort tail = id;
                for (int k = 1; k < n; k++) tail = _d.R16(Desc + (ulong)tail * 16 + 14);
                _d.W16(Desc + (ulong)tail * 16 + 14, _freeHead);
                _freeHead = id;
                _numFree += n;
                list.Add((id, len, cookie));
                _lastUsed++;
            }
            return list;
        }
        while (true)
        {
            ulong at = Desc + (ulong)_lastUsedPos * 16;
            ushort flags = _d.R16(at + 14);
            bool avail = (flags & VirtioRegs.DescAvail) != 0, used = (flags & VirtioRegs.DescUsed) != 0;
            if (avail != _usedWrap || used != _usedWrap) break;
            ushort id = _d.R16(at + 12);
            uint len = _d.R32(at + 8);
            var (n, cookie) = _inFlight[id];
            _inFlight.Remove(id);
            _freeIds.Push(id);
            list.Add((id, len, cookie));
            int next = _lastUsedPos + n;
            if (next >= Size) { next -= Size; _usedWrap = !_usedWrap; }
            _lastUsedPos = (ushort)next;
        }
        return list;
    }

    /// <summary>EVENT_IDX: interrupt me when used index passes <paramref name="idx"/> (split used_event).</summary>
    public void SetUsedEvent(ushort idx) => _d.W16(Driver + 4 + (ulong)Size * 2, idx);

    /// <summary>Split without EVENT_IDX: VIRTQ_AVAIL_F_NO_INTERRUPT.</summary>
    public void SetNoInterrupt(bool on) => _d.W16(Driver, (ushort)(on ? VirtioRegs.AvailNoInterrupt : 0));

    /// <summary>Packed driver event suppression: flags and (for DESC) offset with wrap.</summary>
    public void SetDriverEvent(ushort flags, ushort offWrap = 0) { _d.W16(Driver, offWrap); _d.W16(Driver + 2, flags); }

    public ushort UsedIdx => _d.R16(Device + 2);
    public ushort AvailEvent => _d.R16(Device + 4 + (ulong)Size * 8);
    public ushort LastUsed => _lastUsed;
}
