using PcieEmu.Core.Registers;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// Anti-spoofing reports: WVBR (Wrong VM Behavior, 0x3554) gets the bit of the transmit queue a
/// spoofed frame came from (VF n: queue n → bit n, queue n + 8 → bit n + 8, as igb_spoof_check
/// reads it) and clears on read. A bit that goes from 0 to 1 raises ICR.DOUTSYNC (bit 28) for
/// the PF while DTXCTL.SPOOF_INT (bit 6) is set; further spoofed frames from the same queue
/// before the PF driver reads WVBR do not raise it again.
/// </summary>
public sealed class IgbSpoofReporter
{
    /// <summary>WVBR offset.</summary>
    public const uint WvbrOffset = 0x3554;
    /// <summary>ICR.DOUTSYNC (DMA out of sync, also the spoof event in IOV mode); DTXCTL.SPOOF_INT.</summary>
    public const uint IcrDoutsync = 1u << 28, DtxctlSpoofInt = 1u << 6;

    private readonly Register _wvbr, _dtxctl;
    private readonly Action<uint> _raiseIcr;

    /// <summary>Declares WVBR in a PF register map.</summary>
    public static void Declare(RegisterMapBuilder b) => b.Reg("WVBR", WvbrOffset, 0, Rc("QUEUES", 0, 16));

    internal IgbSpoofReporter(RegisterFile file, Action<uint> raiseIcr)
    {
        (_wvbr, _dtxctl) = (file["WVBR"], file["DTXCTL"]);
        _raiseIcr = raiseIcr;
    }

    /// <summary>A frame from PF queue <paramref name="queue"/> was dropped as spoofed.</summary>
    public void Report(int queue)
    {
        uint bit = 1u << queue;
        if ((_wvbr.Value & bit) != 0) return;
        _wvbr.Value |= bit;
        if ((_dtxctl.Value & DtxctlSpoofInt) != 0) _raiseIcr(IcrDoutsync);
    }
}
