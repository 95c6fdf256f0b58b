using System.Buffers.Binary;
using System.Diagnostics;
using PcieEmu.Core.Devices;
using PcieEmu.Core.Devices.VirtioNet;
using PcieEmu.Core.Platform;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Lab;

/// <summary>
/// One model on a fresh machine with k guests: setup (outside the measurement), then the workload
/// with the accounting subscribed. The workload, in rounds of up to <c>batch</c> frames (default <see cref="DefaultBatch"/>): each
/// guest sends a batch to the wire and (k &gt; 1) a batch to the next guest with one tail write; the
/// wire sends a batch to each guest; each guest reaps what it received in one poll.
/// </summary>
internal sealed class ModelRun : IDisposable
{
    public const int DefaultBatch = 32, MaxBatch = 64;
    /// <summary>The link partner's MAC (frames to the wire go there).</summary>
    public static readonly byte[] WireMac = [0x02, 0, 0, 0, 0xEE, 0x01];

    private readonly string _ramDir;
    private readonly Machine _m;
    private readonly Vmm _vmm;
    private readonly List<IGuestDriver> _drivers = [];
    private readonly List<EmulatedNic> _nics = [];
    // How the VMM's switch delivers to guest h (emulation: its emulated NIC; paravirtual: its virtio-net).
    private readonly List<Func<ReadOnlySpan<byte>, bool>> _toGuest = [];
    private readonly List<WireFrame> _backendQueue = [];
    private HostPfDriver? _host;
    private long _wireOut, _wireOutWrong;

    public ModelRun(IoModel model, int guests)
    {
        if (guests < 1 || guests > 8) throw new ArgumentOutOfRangeException(nameof(guests), "guests must be 1..8");
        if (model == IoModel.DirectAssignment && guests != 1)
            throw new ArgumentOutOfRangeException(nameof(guests), "direct assignment gives the one PF to one guest");
        Model = model;
        _ramDir = Directory.CreateTempSubdirectory("pcie-emu-lab-").FullName;
        _m = new Machine(new MachineOptions
        {
            RamSize = Vmm.RamSize,
            RamFilePath = Path.Combine(_ramDir, "ram.bin"),
            Description = model == IoModel.Paravirtual ? MachineDescription.Parse(ParavirtualMachine(guests)) : null,
        });
        _vmm = new Vmm(_m);
        for (int g = 0; g < guests; g++) _vmm.AddGuest();
        Accounting = new IoAccounting(_m);
        _m.EthernetPorts[0].FrameTransmitted += f =>
        {
            if (f.Data.AsSpan(0, 6).SequenceEqual(WireMac)) _wireOut++; else _wireOutWrong++;
        };
        switch (model)
        {
            case IoModel.Emulation: SetupEmulation(); break;
            case IoModel.DirectAssignment: SetupDirect(); break;
            case IoModel.Sriov: SetupSriov(); break;
            case IoModel.Paravirtual: SetupParavirtual(); break;
            default: throw new ArgumentOutOfRangeException(nameof(model), $"unknown model {model}");
        }
        _vmm.EnableTranslation();
        Accounting.Drain();
        Accounting.Reset();
    }

    public IoModel Model { get; }
    public IoAccounting Accounting { get; }
    public Vmm Vmm => _vmm;
    public Machine Machine => _m;
    public long WireOut => _wireOut;
    public long Received { get; private set; }
    private int Guests => _vmm.Guests.Count;

    // ---- setups ----

    private ushort Pf => _m.PhysicalFunctions[0].Rid;

    private ulong BarAddress(ushort rid, int index) =>
        _m.SnapshotFunctions().Single(f => f.Rid == rid).Bars.Single(b => b.Index == index).Address;

    /// <summary>MSI-X vector 0 of <paramref name="rid"/> to the MSI window (data <paramref name="vector"/>), then MSI-X on.
    /// For a guest's function a VMM traps these table writes; they happen at setup, outside the measurement.</summary>
    private void EnableMsix(ushort rid, uint vector, int tableBar = 3)
    {
        ulong table = BarAddress(rid, tableBar);
        _m.WriteMmio(table, 4, Machine.MsiWindowBase);
        _m.WriteMmio(table + 4, 4, 0);
        _m.WriteMmio(table + 8, 4, vector);
        _m.WriteMmio(table + 12, 4, 0);
        _m.WriteConfig(rid, FindMsix(rid) + 2, 2, 0x8000);
    }

    /// <summary>The MSI-X capability's offset, found by walking the capability list.</summary>
    private int FindMsix(ushort rid)
    {
        for (int p = (int)(_m.ReadConfig(rid, 0x34, 1).Value & 0xFC); p != 0; p = (int)(_m.ReadConfig(rid, p + 1, 1).Value & 0xFC))
            if (_m.ReadConfig(rid, p, 1).Value == 0x11) return p;
        throw new InvalidOperationException($"function {rid:X4} has no MSI-X capability");
    }

    private void PfMsixQueue0(INicRegisters r)
    {
        r.Write(Gpie, GpieMsixMode | GpieEiame | GpiePba);
        r.Write(Ivar0, IvarValid);   // RX queue 0 -> vector 0 (TX completions are polled)
        r.Write(Eiac, 1); r.Write(Eiam, 1); r.Write(Eims, 1);
    }

    private void SetupEmulation()
    {
        SetupHostPf();
        foreach (var g in _vmm.Guests)
        {
            var nic = new EmulatedNic(_vmm, g, Switch, _host!.Flush);
            _nics.Add(nic);
            _toGuest.Add(nic.Receive);
            Accounting.TrapFunctions.Add(Vmm.EmulatedRid(g.Id));
            var d = new RingDriver(nic, RingMemory.OfGuest(g), readsCause: true);
            d.Setup();
            nic.Write(Eims, 1);
            _drivers.Add(d);
        }
    }

    /// <summary>The VMM's software switch (emulation, paravirtual): to a guest by destination MAC, else out of the host PF.</summary>
    private bool Switch(ReadOnlySpan<byte> frame)
    {
        for (int h = 0; h < _toGuest.Count; h++)
            if (frame[..6].SequenceEqual(_vmm.Guests[h].Mac)) return _toGuest[h](frame);
        _host!.Transmit(frame);
        return true;
    }

    /// <summary>The host PF as the back ends' NIC: queue 0, rings in the host region, promiscuous.</summary>
    private void SetupHostPf()
    {
        _m.WriteConfig(Pf, 0x04, 2, 0x0006);
        _vmm.AssignToHost(Pf);
        var pfRegs = new MappedBar(_m, BarAddress(Pf, 0));
        var ring = new RingDriver(pfRegs, RingMemory.OfHost(_m), readsCause: false, RingDriver.MaxRing);   // the wire's frames for up to 8 guests a round
        EnableMsix(Pf, 0x30);
        pfRegs.Write(Rctl, RctlEn | RctlSecrc | RctlUpe | RctlBam);   // the host bridges the guests: promiscuous
        pfRegs.Write(Tctl, TctlEn);
        ring.Setup();
        PfMsixQueue0(pfRegs);
        _host = new HostPfDriver(_vmm, ring);
    }

    /// <summary>The paravirtual machine: the 82576 and one virtio-net per guest, each on its own root port.</summary>
    private static string ParavirtualMachine(int guests) =>
        "{ \"rootPorts\": [ { \"device\": { \"type\": \"intel-82576\" } }"
        + string.Concat(Enumerable.Range(0, guests).Select(g => $", {{ \"device\": {{ \"type\": \"virtio-net\", \"mac\": \"{Machine.FormatMac(Vmm.GuestMac(g))}\" }} }}"))
        + " ] }";

    private void SetupParavirtual()
    {
        SetupHostPf();
        var devices = _m.Devices.Select(d => d.Device).OfType<VirtioNetDevice>().ToList();
        foreach (var g in _vmm.Guests)
        {
            var fn = devices[g.Id].Function;
            // The virtio-net device is the VMM's: its accesses to guest RAM go through the guest's domain.
            _vmm.Assign(fn.Rid, g);
            Accounting.TrapFunctions.Add(fn.Rid);
            _m.WriteConfig(fn.Rid, 0x04, 2, 0x0006);
            EnableMsix(fn.Rid, 0x40u + (uint)g.Id, VirtioNetFunction.MsixBar);
            var port = _m.EthernetPorts.Single(p => p.Function == fn);
            // The back end: what the guest's virtqueue hands out is switched after the notify returns.
            port.FrameTransmitted += _backendQueue.Add;
            _toGuest.Add(f => _vmm.Deliver(port, f));
            var d = new VirtioGuestDriver(_m, g, BarAddress(fn.Rid, VirtioNetFunction.VirtioBar));
            d.Setup();
            _drivers.Add(d);
        }
    }

    /// <summary>The paravirtual back end's pass after a notify: each frame the guest made available is switched.</summary>
    private void RunBackend()
    {
        if (_backendQueue.Count == 0) return;
        foreach (var f in _backendQueue) Switch(f.Data);
        _backendQueue.Clear();
        _host!.Flush();
    }

    private void SetupDirect()
    {
        var g = _vmm.Guests[0];
        _m.WriteConfig(Pf, 0x04, 2, 0x0006);
        _vmm.Assign(Pf, g);
        Accounting.AssignedFunctions.Add(Pf);
        var regs = new MappedBar(_m, BarAddress(Pf, 0));
        EnableMsix(Pf, 0x40);
        regs.Write(Ral0, Mac32(g.Mac)); regs.Write(Ral0 + 4, Mac16(g.Mac) | RahAv);
        regs.Write(Rctl, RctlEn | RctlSecrc | RctlBam);
        regs.Write(Tctl, TctlEn);
        var d = new RingDriver(regs, RingMemory.OfGuest(g), readsCause: false);
        d.Setup();
        PfMsixQueue0(regs);
        _drivers.Add(d);
    }

    private void SetupSriov()
    {
        int k = Guests;
        var pf = _m.PhysicalFunctions[0];
        _m.WriteConfig(Pf, 0x04, 2, 0x0006);
        _vmm.AssignToHost(Pf);
        var pfRegs = new MappedBar(_m, BarAddress(Pf, 0));
        // The host's PF driver: VFs on, VMDq with loopback, one pool per VF with the guest's MAC
        // (what it does when it answers a VF's SET_MAC mailbox request).
        pfRegs.Write(CtrlExt, CtrlExtPfrstd);
        _m.WriteConfig(Pf, 0x170, 2, (uint)k);     // SR-IOV NumVFs
        _m.WriteConfig(Pf, 0x168, 2, 0x9);         // VF Enable | VF MSE
        pfRegs.Write(Mrqc, MrqcVmdq); pfRegs.Write(Dtxswc, DtxswcLoopback);
        pfRegs.Write(Rctl, RctlEn | RctlSecrc); pfRegs.Write(Tctl, TctlEn);
        pfRegs.Write(Vfre, (1u << k) - 1); pfRegs.Write(Vfte, (1u << k) - 1);
        for (int i = 0; i < k; i++)
        {
            var g = _vmm.Guests[i];
            pfRegs.Write(Vmolr + 4 * (uint)i, VmolrAupe | VmolrBam);
            pfRegs.Write(Ral0 + 8 * (uint)(i + 1), Mac32(g.Mac));
            pfRegs.Write(Ral0 + 8 * (uint)(i + 1) + 4, Mac16(g.Mac) | (1u << i) << RahPoolShift | RahAv);
        }
        for (int i = 0; i < k; i++)
        {
            var g = _vmm.Guests[i];
            ushort vf = pf.VfRid(i);
            _m.WriteConfig(vf, 0x04, 2, 0x0004);
            _vmm.Assign(vf, g);
            Accounting.AssignedFunctions.Add(vf);
            EnableMsix(vf, 0x40u + (uint)i);
            var regs = new MappedBar(_m, BarAddress(vf, 0));
            var d = new RingDriver(regs, RingMemory.OfGuest(g), readsCause: false);
            d.Setup();
            regs.Write(Ivar0, IvarValid);
            regs.Write(Eiac, 1); regs.Write(Eiam, 1); regs.Write(Eims, 1);
            _drivers.Add(d);
        }
    }

    private static uint Mac32(byte[] mac) => BinaryPrimitives.ReadUInt32LittleEndian(mac);
    private static uint Mac16(byte[] mac) => BinaryPrimitives.ReadUInt16LittleEndian(mac.AsSpan(4));

    // ---- the workload ----

    /// <summary>Frames delivered when each guest sends and receives <paramref name="frames"/> per flow.</summary>
    public static long ExpectedFrames(int guests, int frames) => (long)guests * frames * (guests > 1 ? 3 : 2);

    /// <summary>Runs the workload: <paramref name="frames"/> frames of <paramref name="size"/> bytes per flow per guest.</summary>
    public LabRow Run(int frames, int size, int batch = DefaultBatch)
    {
        if (batch < 1 || batch > MaxBatch) throw new ArgumentOutOfRangeException(nameof(batch), $"batch must be 1..{MaxBatch}");
        if (frames < 1) throw new ArgumentOutOfRangeException(nameof(frames), "frames must be at least 1");
        if (size < 60 || size > 1514) throw new ArgumentOutOfRangeException(nameof(size), "size must be 60..1514 bytes (no FCS)");
        int k = Guests;
        var wire = new byte[size];
        long copied0 = _vmm.BytesCopied, wire0 = _wireOut, rx0 = Received;
        long injected0 = _vmm.VirtualInterrupts;
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        for (int done = 0; done < frames;)
        {
            int b = Math.Min(batch, frames - done);
            for (int g = 0; g < k; g++)
            {
                var d = _drivers[g];
                for (int i = 0; i < b; i++) Build(d.Queue(size), WireMac, _vmm.Guests[g].Mac, done + i);
                if (k > 1)
                    for (int i = 0; i < b; i++) Build(d.Queue(size), _vmm.Guests[(g + 1) % k].Mac, _vmm.Guests[g].Mac, done + i);
                d.Flush();
                RunBackend();
            }
            for (int g = 0; g < k; g++)
                for (int i = 0; i < b; i++)
                {
                    Build(wire, _vmm.Guests[g].Mac, WireMac, done + i);
                    _m.InjectFrame(0, wire);
                }
            _host?.Poll(f => Switch(f));
            for (int g = 0; g < k; g++) Received += _drivers[g].Poll();
            Accounting.Drain();
            done += b;
        }
        sw.Stop();
        var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu0;
        long delivered = (_wireOut - wire0) + (Received - rx0);
        long expected = ExpectedFrames(k, frames);
        if (delivered != expected || _wireOutWrong != 0)
            throw new InvalidOperationException($"{Model}, {k} guests: {delivered} of {expected} frames delivered ({_wireOut - wire0} to the wire, {Received - rx0} received, {_wireOutWrong} misrouted, {_nics.Sum(n => n.Dropped)} dropped by emulated NICs)");
        return new LabRow(Model, k, size, delivered, Accounting.Traps, Accounting.InterruptExits, _vmm.BytesCopied - copied0,
            Accounting.HostInterrupts, Accounting.GuestInterrupts + _vmm.VirtualInterrupts - injected0, cpu.TotalMicroseconds, sw.Elapsed.TotalSeconds);
    }

    private static void Build(Span<byte> frame, byte[] dst, byte[] src, int seq)
    {
        dst.CopyTo(frame);
        src.CopyTo(frame[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], 0x88B5);   // local experimental EtherType
        BinaryPrimitives.WriteInt32BigEndian(frame[14..], seq);
    }

    public void Dispose()
    {
        Accounting.Dispose();
        _m.Dispose();
        try { Directory.Delete(_ramDir, recursive: true); } catch (IOException) { }
    }
}
