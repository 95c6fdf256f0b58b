using PcieEmu.Core.Registers;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// A VF's own statistics registers in its BAR0 (VFGPRC, VFGORC, VFGPTC, VFGOTC, VFMPRC and the
/// loopback counters VFGPRLBC, VFGORLBC, VFGPTLBC, VFGOTLBC), resolved once when the VF's register
/// file is built so the per-frame path counts through typed handles, never by register name.
/// Octet counts include the 4-byte FCS, as the hardware counts them.
/// </summary>
internal sealed class IgbVfStats(RegisterFile vf)
{
    private readonly Register _gprc = vf["GPRC"], _gorc = vf["GORC"], _mprc = vf["MPRC"];
    private readonly Register _gprlbc = vf["GPRLBC"], _gorlbc = vf["GORLBC"];
    private readonly Register _gptc = vf["GPTC"], _gotc = vf["GOTC"];
    private readonly Register _gptlbc = vf["GPTLBC"], _gotlbc = vf["GOTLBC"];

    /// <summary>Counts a frame the VF transmitted; <paramref name="local"/> when the switch delivered it to another pool.</summary>
    public void Transmitted(uint octets, bool local)
    {
        _gptc.Value++; _gotc.Value += octets;
        if (local) { _gptlbc.Value++; _gotlbc.Value += octets; }
    }

    /// <summary>Counts a frame the VF received; <paramref name="fromWire"/> false for a frame another pool sent (loopback).</summary>
    public void Received(uint octets, bool multicast, bool fromWire)
    {
        _gprc.Value++; _gorc.Value += octets;
        if (multicast) _mprc.Value++;
        if (!fromWire) { _gprlbc.Value++; _gorlbc.Value += octets; }
    }
}
