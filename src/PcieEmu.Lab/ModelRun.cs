using System.Buffers.Binary;
using System.Diagnostics;
using PcieEmu.Core.Platform;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Lab;

/// <summary>
/// One model on a fresh machine with k guests: setup (outside the measurement), then the workload
/// with the accounting subscribed. The workload, in rounds of up to <see cref="Batch"/> frames: each
/// guest sends a batch to the wire and (k &gt; 1) a batch to the next guest with one tail write; the
/// wire sends a batch to each guest; each guest reaps what it received in one poll.
/// </summary>
internal sealed class ModelRun : IDisposable
{
    public const int Batch = 32;
    /// <summary>The link partner's MAC (frames to the wire go there).</summary>
    public static readonly byte[] WireMac = [0x02, 0, 0, 0, 0xEE, 0x01];
    private const int MsixControl = 0x72;

    private readonly string _ramDir;
    private readonly Machine _m;
    private readonly Vmm _vmm;
    private readonly List<RingDriver> _drivers = [];
    private readonly List<EmulatedNic> _nics = [];
    private HostPfDriver? _host;
    private long _wireOut, _wireOutWrong;

    public ModelRun(IoModel model, int guests)
    {
        if (guests < 1 || guests > 8) throw new ArgumentOutOfRangeException(nameof(guests), "guests must be 1..8");
        if (model == IoModel.DirectAssignment && guests != 1)
            throw new ArgumentOutOfRangeException(nameof(guests), "direct assignment gives the one PF to one guest");
        Model = model;
        _ramDir = Directory.CreateTempSubdirectory("pcie-emu-lab-").FullName;
        _m = new Machine(new MachineOptions { RamSize = Vmm.RamSize, RamFilePath = Path.Combine(_ramDir, "ram.bin") });
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
            default: throw new NotSupportedException($"model {model} is not built yet");
        }
        _vmm.EnableTranslation();
        Accounting.Drain();
        Accounting.Reset();
    }

    public IoModel Model { get; }
    public IoAccounting Accounting { get; }
    public Vmm Vmm => _vmm;
    public long WireOut => _wireOut;
    public long Received { get; private set; }
    private int Guests => _vmm.Guests.Count;

    // ---- setups ----

    private ushort Pf => _m.PhysicalFunctions[0].Rid;

    private ulong BarAddress(ushort rid, int index) =>
        _m.SnapshotFunctions().Single(f => f.Rid == rid).Bars.Single(b => b.Index == index).Address;

    /// <summary>MSI-X vector 0 of <paramref name="rid"/> to the MSI window (data <paramref name="vector"/>), then MSI-X on.
    /// For a guest's function a VMM traps these table writes; they happen at setup, outside the measurement.</summary>
    private void EnableMsix(ushort rid, uint vector)
    {
        ulong table = BarAddress(rid, 3);
        _m.WriteMmio(table, 4, Machine.MsiWindowBase);
        _m.WriteMmio(table + 4, 4, 0);
        _m.WriteMmio(table + 8, 4, vector);
        _m.WriteMmio(table + 12, 4, 0);
        _m.WriteConfig(rid, MsixControl, 2, 0x8000);
    }

    private void PfMsixQueue0(INicRegisters r)
    {
        r.Write(Gpie, GpieMsixMode | GpieEiame | GpiePba);
        r.Write(Ivar0, IvarValid);   // RX queue 0 -> vector 0 (TX completions are polled)
        r.Write(Eiac, 1); r.Write(Eiam, 1); r.Write(Eims, 1);
    }

    private void SetupEmulation()
    {
        _m.WriteConfig(Pf, 0x04, 2, 0x0006);
        _vmm.AssignToHost(Pf);
        var pfRegs = new MappedBar(_m, BarAddress(Pf, 0));
        var ring = new RingDriver(pfRegs, RingMemory.OfHost(_m), readsCause: false);
        EnableMsix(Pf, 0x30);
        pfRegs.Write(Rctl, RctlEn | RctlSecrc | RctlUpe | RctlBam);   // the host bridges the guests: promiscuous
        pfRegs.Write(Tctl, TctlEn);
        ring.Setup();
        PfMsixQueue0(pfRegs);
        _host = new HostPfDriver(_vmm, ring);
        foreach (var g in _vmm.Guests)
        {
            var nic = new EmulatedNic(_vmm, g, Switch, _host.Flush);
            _nics.Add(nic);
            Accounting.TrapFunctions.Add(Vmm.EmulatedRid(g.Id));
            var d = new RingDriver(nic, RingMemory.OfGuest(g), readsCause: true);
            d.Setup();
            nic.Write(Eims, 1);
            _drivers.Add(d);
        }
    }

    /// <summary>The VMM's software switch (emulation): to a guest by destination MAC, else out of the host PF.</summary>
    private bool Switch(ReadOnlySpan<byte> frame)
    {
        for (int h = 0; h < _nics.Count; h++)
            if (frame[..6].SequenceEqual(_vmm.Guests[h].Mac)) return _nics[h].Receive(frame);
        _host!.Transmit(frame);
        return true;
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
    public LabRow Run(int frames, int size)
    {
        if (frames < 1) throw new ArgumentOutOfRangeException(nameof(frames), "frames must be at least 1");
        if (size < 60 || size > 1514) throw new ArgumentOutOfRangeException(nameof(size), "size must be 60..1514 bytes (no FCS)");
        int k = Guests;
        var wire = new byte[size];
        long copied0 = _vmm.BytesCopied, wire0 = _wireOut, rx0 = Received;
        long injected0 = _nics.Sum(n => n.Injected);
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        for (int done = 0; done < frames;)
        {
            int b = Math.Min(Batch, frames - done);
            for (int g = 0; g < k; g++)
            {
                var d = _drivers[g];
                for (int i = 0; i < b; i++) Build(d.Queue(size), WireMac, _vmm.Guests[g].Mac, done + i);
                if (k > 1)
                    for (int i = 0; i < b; i++) Build(d.Queue(size), _vmm.Guests[(g + 1) % k].Mac, _vmm.Guests[g].Mac, done + i);
                d.Flush();
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
            Accounting.Interrupts, _nics.Sum(n => n.Injected) - injected0, cpu.TotalMicroseconds, sw.Elapsed.TotalSeconds);
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
