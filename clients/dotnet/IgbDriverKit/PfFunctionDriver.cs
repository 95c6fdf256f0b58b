using PcieEmu.Client;
using PcieEmu.Client.Vtd;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Drivers;

/// <summary>The PF driver's state: its BARs, its VFs' MAC addresses, counts of handled requests.</summary>
public sealed partial class PfFunctionDriver(PcieEmuClient client, ushort pfRid, int numVfs, bool ari, bool poll, TimeSpan timeout)
{
    private RegisterBar _bar0 = null!;
    private byte[] _pfMac = [];
    private readonly byte[][] _vfMacs = new byte[numVfs][];
    private IReadOnlyList<uint> _vfRids = [];
    private int _resets, _setMacs, _nacks, _flrs, _interrupts, _polls;

    private VtdDriver? _iommu;
    private readonly Dictionary<int, VtdDomain> _domains = [];

    /// <summary>
    /// With a value, the PF driver plays the host that owns the IOMMU: after enabling the VFs it
    /// enables VT-d translation, gives each VF (its routing ID) its own domain and maps the VF's
    /// RAM area at the IOVA window of <see cref="Layout"/> (read/write), except for the VFs listed
    /// in <see cref="IommuOptions.Unmapped"/> (attached, nothing mapped: their DMA faults until
    /// <see cref="MapVfWindowAsync"/>) and <see cref="IommuOptions.ReadOnly"/> (mapped read-only:
    /// descriptor fetches work, the device's writes fault).
    /// </summary>
    public IommuOptions? Iommu { get; init; }

    public IReadOnlyList<uint> VfRids => _vfRids;
    public IReadOnlyList<byte[]> VfMacs => _vfMacs;
    public int ResetsServed => _resets;

    private int PfPool => numVfs;   // the PF uses the pool after its VFs (igb)
    private static int VfRar(int vf) => Regs.RarEntries - 1 - vf;   // VF entries from the top of the table (igb)

    public async Task ProbeAsync(CancellationToken ct)
    {
        var pf = await Functions.FindAsync(client, pfRid, ct);
        _bar0 = new RegisterBar(client, Functions.BarAddress(pf, 0), $"{pf.Bdf} BAR0");
        var bar3 = new RegisterBar(client, Functions.BarAddress(pf, 3), $"{pf.Bdf} BAR3");
        await Functions.SetCommandBitsAsync(client, pfRid, Cfg.CommandMemory | Cfg.CommandBusMaster, ct);

        // VFs left enabled by an earlier run go first (Linux refuses to re-enable; a driver starting
        // over disables them).
        int sriov = await client.FindExtendedCapabilityAsync(pfRid, PciRegs.ExtCapIdSriov, ct);
        if (sriov == 0) throw new InvalidOperationException($"{pf.Bdf} has no SR-IOV capability");
        if ((await client.ReadConfig16Async(pfRid, sriov + PciRegs.SriovControl, ct) & PciRegs.SriovCtlVfEnable) != 0)
        {
            Log.Line("PF: VFs were enabled; disabling them first");
            await client.DisableSriovAsync(pfRid, cancellationToken: ct);
        }

        // Device reset: CTRL.RST self-clears; every register returns to its reset value and the
        // VF mailboxes show RSTI until CTRL_EXT.PFRSTD.
        await _bar0.WriteAsync(Regs.Ctrl, Regs.CtrlRst, ct);
        await _bar0.PollAsync(Regs.Ctrl, v => (v & Regs.CtrlRst) == 0, timeout, "CTRL.RST to clear", ct);
        _pfMac = Mac.FromRegisters(await _bar0.ReadAsync(Regs.Ral0, ct), await _bar0.ReadAsync(Regs.Ral0 + 4, ct));
        Log.Line($"PF {pf.Bdf}: reset done, MAC {Mac.Format(_pfMac)}, STATUS 0x{await _bar0.ReadAsync(Regs.Status, ct):X8}");

        _vfRids = await client.EnableSriovAsync(pfRid, numVfs, ari, cancellationToken: ct);
        Log.Line($"PF: enabled {numVfs} VFs (ARI {(ari ? "on" : "off")}): {string.Join(' ', _vfRids.Select(r => PciAddress.Format(r)))}");
        if (Iommu is { } io) await SetUpIommuAsync(io, ct);
        for (int vf = 0; vf < numVfs; vf++)
            _vfMacs[vf] = [0x02, _pfMac[1], _pfMac[2], _pfMac[3], _pfMac[4], (byte)(0x10 + vf)];   // locally administered, derived from the port MAC

        // VMDq with loopback between pools. VF pools receive and transmit only after their
        // VF_RESET has been served (VFRE/VFTE), as igb does.
        uint vfMask = (1u << numVfs) - 1;
        await _bar0.WriteAsync(Regs.Mrqc, Regs.MrqcVmdq, ct);
        await _bar0.WriteAsync(Regs.VtCtl, (uint)PfPool << Regs.VtCtlDefPoolShift, ct);
        await _bar0.WriteAsync(Regs.Dtxswc, Regs.DtxswcLoopback | vfMask, ct);   // loopback + MAC anti-spoofing for the VF pools
        await _bar0.WriteAsync(Regs.Vmolr + 4u * (uint)PfPool, Regs.VmolrAupe | Regs.VmolrBam, ct);
        await _bar0.WriteAsync(Regs.Ral0 + 4, Mac.High(_pfMac) | Regs.RahAv | 1u << (Regs.RahPoolShift + PfPool), ct);
        await _bar0.WriteAsync(Regs.Vfre, 1u << PfPool, ct);
        await _bar0.WriteAsync(Regs.Vfte, 1u << PfPool, ct);
        await _bar0.WriteAsync(Regs.Rctl, Regs.RctlEn | Regs.RctlBam | Regs.RctlSecrc, ct);
        await _bar0.WriteAsync(Regs.Tctl, Regs.TctlEn | Regs.TctlPsp, ct);

        // Mailbox interrupt: MSI-X vector 0 carries the "other" causes (ICR.VMMB).
        if (!poll)
        {
            var platform = await client.GetPlatformAsync(ct);
            await Functions.EnableMsixAsync(client, pfRid, bar3, 1, (uint)platform.MsiWindowBase, 0x30, ct);
            await _bar0.WriteAsync(Regs.Gpie, Regs.GpieMsixMode | Regs.GpieEiame | Regs.GpiePba | Regs.GpieNsicr, ct);
            await _bar0.WriteAsync(Regs.IvarMisc, (Regs.IvarValid | 0) << 8, ct);   // byte 1: "other" causes → vector 0 (byte 0 is the TCP timer)
            await _bar0.WriteAsync(Regs.Eiac, 1, ct);
            await _bar0.WriteAsync(Regs.Eims, 1, ct);
            await _bar0.WriteAsync(Regs.Ims, Regs.IcrVmmb, ct);
        }
        await _bar0.WriteAsync(Regs.Mbvfimr, vfMask, ct);

        // Tell the VFs the PF is ready: RSTI clears, RSTD sets in every VF mailbox.
        await _bar0.WriteAsync(Regs.CtrlExt, await _bar0.ReadAsync(Regs.CtrlExt, ct) | Regs.CtrlExtPfrstd, ct);
        Log.Line($"PF READY vfs={numVfs} rids={string.Join(',', _vfRids.Select(r => PciAddress.Format(r)))} macs={string.Join(',', _vfMacs.Select(m => Mac.Format(m)))} mode={(poll ? "poll" : "msix")}");
    }

    /// <summary>VT-d on: a domain per VF (DID = n + 1, 48-bit), its rid attached, its window mapped (unless listed as unmapped), then translation enabled.</summary>
    private async Task SetUpIommuAsync(IommuOptions io, CancellationToken ct)
    {
        _iommu = await VtdDriver.CreateAsync(client, Layout.IommuTableBase, Layout.IommuTableSize, io.Ram, ct);
        for (int vf = 0; vf < numVfs; vf++)
        {
            var domain = await _iommu.CreateDomainAsync((ushort)(vf + 1), 48, ct);
            await _iommu.AttachAsync(_vfRids[vf], domain, ct);
            _domains[vf] = domain;
            if (io.ReadOnly.Contains(vf)) await MapVfWindowAsync(vf, VtdAccess.Read, ct);
            else if (!io.Unmapped.Contains(vf)) await MapVfWindowAsync(vf, VtdAccess.ReadWrite, ct);
            else Log.Line($"PF IOMMU vf={vf} rid={PciAddress.Format(_vfRids[vf])} domain={domain.Id}: window left unmapped");
        }
        await _iommu.EnableAsync(ct);
        Log.Line($"PF IOMMU translation on: {numVfs} domains, tables at 0x{Layout.IommuTableBase:X}");
    }

    /// <summary>
    /// Maps VF <paramref name="vf"/>'s RAM area at its IOVA window in its domain with
    /// <paramref name="access"/>; a window already mapped is unmapped first (the IOTLB entries for it invalidated).
    /// </summary>
    public async Task MapVfWindowAsync(int vf, VtdAccess access, CancellationToken ct)
    {
        if (_iommu == null || Iommu == null) throw new InvalidOperationException("the IOMMU is not in use (--iommu)");
        if (vf < 0 || vf >= numVfs) throw new ArgumentOutOfRangeException(nameof(vf), $"VF {vf}: this PF has {numVfs} VFs");
        var domain = _domains[vf];
        ulong phys = Layout.DefaultRamBase(vf);
        if (_iommu.Resolve(domain, Iommu.IovaBase) != null) await _iommu.UnmapAsync(domain, Iommu.IovaBase, Layout.RamAreaSize, cancellationToken: ct);
        await _iommu.MapAsync(domain, Iommu.IovaBase, phys, Layout.RamAreaSize, access, largePages: true, cancellationToken: ct);
        Log.Line($"PF IOMMU MAPPED vf={vf} rid={PciAddress.Format(_vfRids[vf])} domain={domain.Id} iova=0x{Iommu.IovaBase:X} phys=0x{phys:X} len=0x{Layout.RamAreaSize:X} access={(access == VtdAccess.ReadWrite ? "rw" : "r")}");
    }

    /// <summary>Prints the pending DMA remapping faults (FRCD records) and clears them.</summary>
    public async Task ReportFaultsAsync(CancellationToken ct)
    {
        if (_iommu == null) throw new InvalidOperationException("the IOMMU is not in use (--iommu)");
        var faults = await _iommu.ClearFaultsAsync(ct);
        foreach (var f in faults)
            Log.Line($"PF IOMMU FAULT rid={PciAddress.Format(f.SourceId)} reason=0x{f.Reason:X2} {(f.IsRead ? "read" : "write")} addr=0x{f.Address:X}");
        Log.Line($"PF IOMMU FAULTS {faults.Count}");
    }

    public async Task ServeAsync(CancellationToken stop)
    {
        using var wake = new SemaphoreSlim(0);
        Task? irqTask = null;
        using var irqStop = CancellationTokenSource.CreateLinkedTokenSource(stop);
        if (!poll)
        {
            GrpcCounter.Count();
            var stream = await client.OpenInterruptStreamAsync([pfRid], stop).WaitAsync(timeout, stop);
            irqTask = Task.Run(async () =>
            {
                using (stream)
                {
                    await foreach (var e in stream.Events(irqStop.Token))
                        if (e.Kind == InterruptKind.Msix && e.Vector == 0) { Interlocked.Increment(ref _interrupts); wake.Release(); }
                }
            }, irqStop.Token);
        }
        try
        {
            while (!stop.IsCancellationRequested)
            {
                // Interrupt-driven, with a slow poll as a safety net (and the only source with --poll).
                bool woke = await wake.WaitAsync(poll ? TimeSpan.FromMilliseconds(5) : TimeSpan.FromMilliseconds(250), stop);
                if (!woke) _polls++;
                await ServiceAsync(stop);
            }
        }
        // Stopping cancels whatever call is in flight (an RpcException with status Cancelled).
        catch (Exception e) when (stop.IsCancellationRequested && e is OperationCanceledException or Grpc.Core.RpcException { StatusCode: Grpc.Core.StatusCode.Cancelled }) { }
        finally
        {
            await irqStop.CancelAsync();
            if (irqTask != null)
                try { await irqTask.WaitAsync(timeout, CancellationToken.None); } catch (Exception e) when (e is OperationCanceledException or Grpc.Core.RpcException or TimeoutException) { }
        }
    }

    /// <summary>The mailbox interrupt handler: ICR (read clears), VF resets (VFLRE), then requests and acks (MBVFICR).</summary>
    private async Task ServiceAsync(CancellationToken ct)
    {
        if (!poll) await _bar0.ReadAsync(Regs.Icr, ct);
        await ServiceResetEventsAsync(ct);
        uint icr = await _bar0.ReadAsync(Regs.Mbvficr, ct);
        if (icr == 0) return;
        await _bar0.WriteAsync(Regs.Mbvficr, icr, ct);   // clear first so a new request is not lost
        // A VF resets (CTRL.RST sets its VFLRE bit) before it sends VF_RESET. A reset that landed
        // after the VFLRE read above is visible now that its message is: serve it first, or it would
        // undo (clear CTS of) the VF_RESET this pass is about to answer.
        await ServiceResetEventsAsync(ct);
        for (int vf = 0; vf < numVfs; vf++)
            if ((icr & 1u << vf) != 0) await HandleRequestAsync(vf, ct);
    }

    /// <summary>VF reset events (VFLRE, write 1 to clear): igb's VF reset event for each.</summary>
    private async Task ServiceResetEventsAsync(CancellationToken ct)
    {
        uint vflre = await _bar0.ReadAsync(Regs.Vflre, ct);
        if (vflre == 0) return;
        await _bar0.WriteAsync(Regs.Vflre, vflre, ct);
        for (int vf = 0; vf < numVfs; vf++)
            if ((vflre & 1u << vf) != 0)
            {
                _flrs++;
                await ResetVfStateAsync(vf, ct);
                Log.Line($"PF: VF {vf} reset (VFLRE); its pool stays off until it sends VF_RESET");
            }
    }

    private async Task SetVfMacAsync(int vf, byte[] mac, CancellationToken ct)
    {
        uint ral = Regs.Ral(VfRar(vf));
        await _bar0.WriteAsync(ral + 4, 0, ct);   // invalidate while the low half changes
        await _bar0.WriteAsync(ral, Mac.Low(mac), ct);
        await _bar0.WriteAsync(ral + 4, Mac.High(mac) | Regs.RahAv | 1u << (Regs.RahPoolShift + vf), ct);
    }

    public void PrintSummary() =>
        Log.Line($"PF DONE resets={_resets} set_mac={_setMacs} nacks={_nacks} vflr={_flrs} interrupts={_interrupts} polls={_polls} grpc_calls={GrpcCounter.Calls}" +
            string.Concat(_served.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => $" {e.Key}={e.Value}")));
}

/// <summary>The PF driver's IOMMU settings: the VFs' IOVA window base, the mapped RAM file for the tables, VFs left unmapped, VFs mapped read-only.</summary>
public sealed record IommuOptions(ulong IovaBase, RamMapping? Ram, IReadOnlySet<int> Unmapped, IReadOnlySet<int> ReadOnly);
