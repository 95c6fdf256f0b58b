using System.Buffers.Binary;
using System.Threading.Channels;
using PcieEmu.Client;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Drivers;

/// <summary>
/// An igbvf-style VF driver: Bus Master and MSI-X on, reset through the mailbox (CTRL.RST,
/// RSTD, VF_RESET → MAC), optional VF_SET_MAC_ADDR, one TX and one RX ring in a RAM area of the
/// mapped RAM file (DMA addresses = physical by default; with <paramref name="dmaBase"/> the area
/// is addressed by the device at that IOVA window, which the host mapped in the IOMMU), interrupts from the
/// interrupt stream (RX on vector 0, TX on 1, mailbox on 2; EICR read in the handler).
/// </summary>
public sealed class VfFunctionDriver(PcieEmuClient client, Function vf, RamMapping ram, ulong ramStart, ulong ramSize, TimeSpan timeout, ulong? dmaBase = null) : IDisposable
{
    public const uint VectorRx = 0, VectorTx = 1, VectorMailbox = 2;
    private readonly RegisterBar _bar0 = new(client, Functions.BarAddress(vf, 0), $"{vf.Bdf} BAR0");
    private readonly RegisterBar _bar3 = new(client, Functions.BarAddress(vf, 3), $"{vf.Bdf} BAR3");
    private InterruptStream? _stream;
    private Task? _irqTask;
    private readonly CancellationTokenSource _irqStop = new();
    private readonly Channel<InterruptEvent> _irqs = Channel.CreateUnbounded<InterruptEvent>();
    private int _kickRequested;

    public Function Function { get; } = vf;
    public byte[] Mac { get; private set; } = [];
    public TxRing? Tx { get; private set; }
    public RxRing? Rx { get; private set; }
    public long Interrupts { get; private set; }
    public RegisterBar Bar0 => _bar0;

    /// <summary>Bus Master, MSI-X (3 vectors), the interrupt subscription.</summary>
    public async Task EnableAsync(bool interrupts, CancellationToken ct)
    {
        await Functions.SetCommandBitsAsync(client, Function.Rid, Cfg.CommandBusMaster, ct);
        if (!interrupts) return;
        var platform = await client.GetPlatformAsync(ct);
        await Functions.EnableMsixAsync(client, Function.Rid, _bar3, 3, (uint)platform.MsiWindowBase, 0x40, ct);
        GrpcCounter.Count();
        _stream = await client.OpenInterruptStreamAsync([Function.Rid], ct).WaitAsync(timeout, ct);
        var stream = _stream;
        _irqTask = Task.Run(async () =>
        {
            try
            {
                await foreach (var e in stream.Events(_irqStop.Token)) await _irqs.Writer.WriteAsync(e, _irqStop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or Grpc.Core.RpcException) { }
            finally { _irqs.Writer.TryComplete(); }
        }, CancellationToken.None);
    }

    /// <summary>igbvf's reset_hw: CTRL.RST, wait for the PF (RSTI clear, RSTD), VF_RESET, read the MAC from the reply.</summary>
    public async Task ResetAsync(CancellationToken ct)
    {
        var mbx = await FunctionResetAsync(ct);
        var reply = await mbx.RequestAsync([MbxMsg.VfReset], 3, ct);
        if (reply[0] != (MbxMsg.VfReset | MbxMsg.Ack)) throw new InvalidOperationException($"VF_RESET reply 0x{reply[0]:X8} is not VF_RESET|ACK (igbvf accepts nothing else)");
        Mac = PcieEmu.Drivers.Mac.FromRegisters(reply[1], reply[2]);
        if (!PcieEmu.Drivers.Mac.IsValidUnicast(Mac)) throw new InvalidOperationException($"the PF gave MAC {PcieEmu.Drivers.Mac.Format(Mac)}");
    }

    /// <summary>The VF's own reset (CTRL.RST) and the wait for RSTD, without the VF_RESET message.</summary>
    public async Task<VfMailbox> FunctionResetAsync(CancellationToken ct)
    {
        var mbx = new VfMailbox(_bar0, timeout);
        await _bar0.WriteAsync(Regs.Ctrl, Regs.CtrlRst, ct);
        await mbx.WaitResetDoneAsync(ct);
        return mbx;
    }

    /// <summary>VF_SET_MAC_ADDR: asks the PF to use <paramref name="mac"/> for this VF.</summary>
    public async Task SetMacAsync(byte[] mac, CancellationToken ct)
    {
        var mbx = new VfMailbox(_bar0, timeout);
        await mbx.RequestAsync([MbxMsg.VfSetMacAddr, PcieEmu.Drivers.Mac.Low(mac), PcieEmu.Drivers.Mac.High(mac)], 1, ct);
        Mac = mac;
    }

    /// <summary>
    /// igbvf's multicast update: VF_SET_MULTICAST with the count (at most 30) in bits 23:16 and
    /// one 16-bit MTA hash per group (destination bytes 4-5, multicast offset 0) from word 1 on.
    /// Returns the PF's reply word.
    /// </summary>
    public async Task<uint> SetMulticastAsync(IReadOnlyList<byte[]> groups, CancellationToken ct)
    {
        int n = Math.Min(groups.Count, MbxMsg.MaxMulticastHashes);
        var msg = new uint[MbxMsg.Words];
        msg[0] = MbxMsg.VfSetMulticast | (uint)n << MbxMsg.InfoShift;
        for (int i = 0; i < n; i++) msg[1 + i / 2] |= (uint)MulticastHash(groups[i]) << (16 * (i % 2));
        return (await new VfMailbox(_bar0, timeout).ExchangeAsync(msg, 1, ct))[0];
    }

    /// <summary>The 12-bit MTA hash of a group address as igbvf computes it (128 MTA words, multicast offset 0).</summary>
    public static ushort MulticastHash(ReadOnlySpan<byte> group) => (ushort)((group[4] >> 4 | group[5] << 4) & 0xFFF);

    /// <summary>igbvf's set_rlpml: VF_SET_LPE with the largest frame it takes (MTU + 14 + 4 + a VLAN tag). Returns the reply word.</summary>
    public async Task<uint> SetLpeAsync(uint maxFrame, CancellationToken ct) =>
        (await new VfMailbox(_bar0, timeout).ExchangeAsync([MbxMsg.VfSetLpe, maxFrame], 1, ct))[0];

    /// <summary>igbvf's set_uc_addr: VF_SET_MAC_ADDR with MAC_FILTER_CLR (no address) or MAC_FILTER_ADD and an address. Returns the reply word.</summary>
    public async Task<uint> SetUnicastFilterAsync(uint subCommand, byte[]? mac, CancellationToken ct) =>
        (await new VfMailbox(_bar0, timeout).ExchangeAsync(
            [MbxMsg.VfSetMacAddr | subCommand, mac == null ? 0 : PcieEmu.Drivers.Mac.Low(mac), mac == null ? 0 : PcieEmu.Drivers.Mac.High(mac)], 1, ct))[0];

    /// <summary>igbvf's set_vfta: VF_SET_VLAN, bit 16 set to add, the VLAN id in word 1. Returns the reply word.</summary>
    public async Task<uint> SetVlanAsync(ushort vid, bool add, CancellationToken ct) =>
        (await new VfMailbox(_bar0, timeout).ExchangeAsync([MbxMsg.VfSetVlan | (add ? 1u << MbxMsg.InfoShift : 0), vid], 1, ct))[0];

    /// <summary>VF_SET_PROMISC with the given flags (e.g. <see cref="MbxMsg.PromiscMulticast"/>). Returns the reply word.</summary>
    public async Task<uint> SetPromiscAsync(uint flags, CancellationToken ct) =>
        (await new VfMailbox(_bar0, timeout).ExchangeAsync([MbxMsg.VfSetPromisc | flags], 1, ct))[0];

    /// <summary>Any message (1-16 words); returns the reply's first <paramref name="replyWords"/> words.</summary>
    public Task<uint[]> ExchangeAsync(uint[] words, int replyWords, CancellationToken ct) =>
        new VfMailbox(_bar0, timeout).ExchangeAsync(words, replyWords, ct);

    /// <summary>Rings (queue 0) and interrupt routing: IVAR RX0 → 0, TX0 → 1, mailbox → 2; RX and mailbox unmasked, RX auto-masked.</summary>
    public async Task SetupRingsAsync(int txCount, int rxCount, bool interrupts, CancellationToken ct)
    {
        var area = new RamArea(ram, ramStart, ramSize, dmaBase);
        Tx = new TxRing(_bar0, Regs.VfTxQueue0, area, txCount);
        Rx = new RxRing(_bar0, Regs.VfRxQueue0, area, rxCount);
        await Tx.ConfigureAsync(ct);
        await Rx.ConfigureAsync(ct);
        await _bar0.WriteAsync(Regs.Ivar0, (Regs.IvarValid | VectorRx) | (Regs.IvarValid | VectorTx) << 8, ct);
        await _bar0.WriteAsync(Regs.IvarMisc, Regs.IvarValid | VectorMailbox, ct);
        await _bar0.WriteAsync(Regs.Eitr0, 0, ct);
        await _bar0.WriteAsync(Regs.Eiac, 0, ct);
        await _bar0.WriteAsync(Regs.Eiam, 1u << (int)VectorRx, ct);
        await _bar0.WriteAsync(Regs.Eimc, 0x7, ct);
        if (interrupts) await _bar0.WriteAsync(Regs.Eims, 1u << (int)VectorRx | 1u << (int)VectorMailbox, ct);
    }

    /// <summary>Posts frames, one tail write for all, and waits until every descriptor is written back (DD).</summary>
    public async Task SendAsync(IReadOnlyList<byte[]> frames, CancellationToken ct)
    {
        var tx = Tx ?? throw new InvalidOperationException("rings are not set up");
        foreach (var f in frames)
            if (!tx.Post(f)) throw new InvalidOperationException("TX ring full");
        long target = tx.Completed + frames.Count;
        await tx.KickAsync(ct);
        Log.Line($"TX kicked frames={frames.Count} tdt={tx.Tail}");
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            tx.Reclaim();
            if (tx.Completed >= target) return;
            if (Interlocked.Exchange(ref _kickRequested, 0) != 0)
            {
                await tx.KickAsync(ct);   // the same tail again: the queue retries the descriptors it has not done
                Log.Line($"TX kicked again tdt={tx.Tail} tdh={await tx.ReadHeadAsync(ct)}");
            }
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"TX: {target - tx.Completed} descriptor(s) not written back (TDH {await tx.ReadHeadAsync(ct)}, tail {tx.Tail})");
            await Task.Delay(1, ct);
        }
    }

    /// <summary>Asks a waiting <see cref="SendAsync"/> to write TDT once more (e.g. after the host fixed the IOMMU mapping).</summary>
    public void RequestKick() => Interlocked.Exchange(ref _kickRequested, 1);

    /// <summary>
    /// Waits for an interrupt (or <paramref name="pollInterval"/> as a fallback), reads EICR and
    /// harvests the RX ring, re-arms it (RDT) and re-enables the auto-masked RX vector.
    /// </summary>
    public async Task<(List<RxFrame> Frames, uint Eicr, bool Interrupted)> WaitReceiveAsync(TimeSpan pollInterval, CancellationToken ct)
    {
        var rx = Rx ?? throw new InvalidOperationException("rings are not set up");
        var frames = rx.Harvest();
        if (frames.Count > 0) { await rx.RefillAsync(ct); return (frames, 0, false); }
        bool interrupted = false;
        using (var wait = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            wait.CancelAfter(pollInterval);
            try
            {
                if (_stream != null && await _irqs.Reader.WaitToReadAsync(wait.Token))
                    while (_irqs.Reader.TryRead(out var e)) { Interrupts++; interrupted = true; Log.Line($"IRQ vf={Function.Bdf} vector={e.Vector} data=0x{e.Data:X} seq={e.Sequence}"); }
                else if (_stream == null) await Task.Delay(pollInterval, ct);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested) { }
        }
        uint eicr = 0;
        if (interrupted)
        {
            eicr = await _bar0.ReadAsync(Regs.Eicr, ct);   // read clears: the causes this interrupt stands for
            Log.Line($"EICR vf={Function.Bdf} 0x{eicr:X}");
        }
        frames = rx.Harvest();
        if (frames.Count > 0) await rx.RefillAsync(ct);
        if (interrupted) await _bar0.WriteAsync(Regs.Eims, 1u << (int)VectorRx, ct);   // re-arm the auto-masked RX vector
        return (frames, eicr, interrupted);
    }

    /// <summary>The VF's statistics (free-running counters).</summary>
    public async Task<IReadOnlyList<(string Name, uint Value)>> CountersAsync(CancellationToken ct)
    {
        var regs = new (string, uint)[]
        {
            ("gprc", Regs.VfGprc), ("gptc", Regs.VfGptc), ("gorc", Regs.VfGorc), ("gotc", Regs.VfGotc), ("mprc", Regs.VfMprc),
            ("gprlbc", Regs.VfGprlbc), ("gptlbc", Regs.VfGptlbc), ("gorlbc", Regs.VfGorlbc), ("gotlbc", Regs.VfGotlbc),
        };
        var list = new List<(string, uint)>();
        foreach (var (n, off) in regs) list.Add((n, await _bar0.ReadAsync(off, ct)));
        return list;
    }

    public static string Describe(RxFrame f)
    {
        var d = f.Data;
        uint seq = d.Length >= 18 ? BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(14)) : 0;
        return $"idx={f.Index} len={f.Length} status=0x{f.StatusError:X} dst={PcieEmu.Drivers.Mac.Format(d)} src={PcieEmu.Drivers.Mac.Format(d.AsSpan(6))} seq={seq}";
    }

    public void Dispose()
    {
        _irqStop.Cancel();
        try { _irqTask?.Wait(timeout); } catch (AggregateException) { }
        _stream?.Dispose();
        _irqStop.Dispose();
    }
}
