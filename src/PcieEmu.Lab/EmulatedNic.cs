using System.Buffers.Binary;
using static PcieEmu.Core.Devices.Igb.IgbRegs;

namespace PcieEmu.Lab;

/// <summary>
/// The NIC the VMM emulates for a guest in the emulation model: the igb queue registers the guest
/// driver uses, implemented in VMM software. Every guest access is a trap (published on the event
/// path by <see cref="Vmm.Trap"/>). A TDT write makes the VMM walk the guest's descriptors and copy
/// each frame out of guest RAM, to the host PF's ring or into another guest; received frames are
/// copied into the guest's buffers and signalled by a virtual interrupt (EICR read-to-clear, vector
/// auto-masked until the guest writes EIMS).
/// </summary>
internal sealed class EmulatedNic : INicRegisters
{
    private readonly Vmm _vmm;
    private readonly Guest _guest;
    private readonly Func<ReadOnlySpan<byte>, bool> _transmit;
    private readonly Action _transmitted;
    private readonly Dictionary<uint, uint> _regs = [];
    private readonly ushort _rid;
    private readonly string _name;
    private uint _tdh, _rdh, _eicr, _eims;

    /// <param name="vmm">The VMM.</param>
    /// <param name="guest">The guest whose NIC this is.</param>
    /// <param name="transmit">The VMM's switch: takes a frame from guest RAM (copying it) and returns
    /// false when nobody took it.</param>
    /// <param name="transmitted">Called after a TDT write's frames went through the switch (the back end kicks the host NIC).</param>
    public EmulatedNic(Vmm vmm, Guest guest, Func<ReadOnlySpan<byte>, bool> transmit, Action transmitted)
    {
        _vmm = vmm; _guest = guest; _transmit = transmit; _transmitted = transmitted;
        _rid = Vmm.EmulatedRid(guest.Id);
        _name = $"VM{guest.Id}.emulated-nic";
    }

    /// <summary>Frames dropped for want of a receive buffer.</summary>
    public long Dropped { get; private set; }

    public uint Read(uint offset)
    {
        uint v = offset switch
        {
            Eicr => _eicr,
            Eims => _eims,
            TxLegacy + Tdh => _tdh,
            RxLegacy + Rdh => _rdh,
            _ => _regs.GetValueOrDefault(offset),
        };
        if (offset == Eicr) _eicr = 0;   // read to clear
        _vmm.Trap(_rid, _name, false, offset, v, offset == Eicr ? "EICR" : null);
        return v;
    }

    public void Write(uint offset, uint value)
    {
        _vmm.Trap(_rid, _name, true, offset, value, offset switch { TxLegacy + Tdt => "TDT", RxLegacy + Rdt => "RDT", Eims => "EIMS", _ => null });
        switch (offset)
        {
            case Eims: _eims |= value; Signal(); break;
            case Eimc: _eims &= ~value; break;
            case TxLegacy + Tdt: _regs[offset] = value % TxLength; Transmit(); break;
            default: _regs[offset] = value; break;
        }
    }

    private ulong TxBase => _regs.GetValueOrDefault(TxLegacy + Tdbal) | (ulong)_regs.GetValueOrDefault(TxLegacy + Tdbah) << 32;
    private ulong RxBase => _regs.GetValueOrDefault(RxLegacy + Rdbal) | (ulong)_regs.GetValueOrDefault(RxLegacy + Rdbah) << 32;

    private uint TxLength => Math.Max(1, _regs.GetValueOrDefault(TxLegacy + Tdlen) / 16);
    private uint RxLength => Math.Max(1, _regs.GetValueOrDefault(RxLegacy + Rdlen) / 16);

    private void Transmit()
    {
        uint tail = _regs[TxLegacy + Tdt];
        while (_tdh != tail)
        {
            ulong d = TxBase + _tdh * 16UL;
            ulong buffer = _guest.Read64(d);
            int length = (int)(_guest.Read32(d + 8) & 0xFFFF);
            _transmit(_guest.Memory(buffer, length));
            _guest.Write32(d + 12, 1);    // DD
            _tdh = (_tdh + 1) % TxLength;
        }
        _transmitted();
    }

    /// <summary>The VMM delivers <paramref name="frame"/> to this guest: copied into its next receive buffer.</summary>
    public bool Receive(ReadOnlySpan<byte> frame)
    {
        if (_rdh == _regs.GetValueOrDefault(RxLegacy + Rdt)) { Dropped++; return false; }
        ulong d = RxBase + _rdh * 16UL;
        ulong buffer = _guest.Read64(d);
        _vmm.Copy(frame, _guest.Memory(buffer, frame.Length));
        var wb = _guest.Memory(d, 16);
        wb.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(wb[8..], 0x3);   // DD | EOP
        BinaryPrimitives.WriteUInt16LittleEndian(wb[12..], (ushort)frame.Length);
        _rdh = (_rdh + 1) % RxLength;
        _eicr |= 1;
        Signal();
        return true;
    }

    // Injects the virtual interrupt once per unmasked cause; the guest masks by not re-enabling
    // (this emulated NIC auto-masks like igb's EIAM so one batch gets one injection).
    private void Signal()
    {
        if ((_eicr & _eims & 1) == 0) return;
        _vmm.InjectInterrupt();
        _eims &= ~1u;
    }
}

/// <summary>
/// The host's driver for the PF's queue 0 (emulation's and paravirtualisation's back-end NIC):
/// rings and buffers in the host region, promiscuous, MSI-X vector 0 for receive. The bridge
/// code copies each outgoing frame into a TX buffer (<see cref="Vmm.Copy"/>), and hands each
/// received frame to the VMM's switch.
/// </summary>
internal sealed class HostPfDriver
{
    private readonly Vmm _vmm;
    private readonly RingDriver _ring;
    private int _pending;

    public HostPfDriver(Vmm vmm, RingDriver ring) { _vmm = vmm; _ring = ring; }

    /// <summary>Copies <paramref name="frame"/> into the next TX buffer (sent at <see cref="Flush"/>).</summary>
    public void Transmit(ReadOnlySpan<byte> frame)
    {
        _vmm.Copy(frame, _ring.Queue(frame.Length));
        _pending++;
    }

    /// <summary>One TDT write for what <see cref="Transmit"/> queued (none when nothing is queued).</summary>
    public void Flush()
    {
        if (_pending == 0) return;
        _ring.Flush();
        _pending = 0;
    }

    /// <summary>The host's interrupt handler and NAPI poll: each received frame to <paramref name="deliver"/>.</summary>
    public int Poll(Action<ReadOnlySpan<byte>> deliver) => _ring.Poll(deliver);
}
