using PcieEmu.Core.Registers;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// The 82576's internal copper PHY (IGP3 family, PHY ID 0x02A80390 as igb's e1000_defines.h names
/// it; igb drives it as e1000_phy_igp_3) at MDIO address 1, reached through MDIC. The link
/// partner is always there and autonegotiates 1000BASE-T full duplex: the link is up unless the
/// PHY is powered down (BMCR.PDOWN) or held in reset (CTRL.PHY_RST).
/// <para>
/// An MDIC access completes at once: READY is set with the data (reads); an access to another
/// MDIO address sets ERROR. MDIC.I raises ICR.MDAC at completion.
/// </para>
/// </summary>
public sealed class IgbPhy
{
    /// <summary>MDIC offset.</summary>
    public const uint MdicOffset = 0x0020;
    /// <summary>MDIC bits: data 15:0, register 20:16, PHY address 25:21, op 27:26 (1 write, 2 read), READY 28, I 29, ERROR 30.</summary>
    public const uint MdicReady = 1u << 28, MdicInterrupt = 1u << 29, MdicError = 1u << 30, MdicOpWrite = 1u << 26, MdicOpRead = 2u << 26;
    /// <summary>MDIC field shifts.</summary>
    public const int MdicRegShift = 16, MdicPhyShift = 21, MdicOpShift = 26;
    /// <summary>ICR.MDAC: MDI access complete.</summary>
    public const uint IcrMdac = 1u << 9;
    /// <summary>CTRL.PHY_RST (bit 31): the PHY is held in reset while set.</summary>
    public const uint CtrlPhyRst = 1u << 31;

    /// <summary>The PHY's MDIO address.</summary>
    public const int Address = 1;
    /// <summary>PHY identifier (PHYID1:PHYID2 without the revision) and revision.</summary>
    public const uint PhyId = 0x02A8_0390, Revision = 1;

    /// <summary>IEEE registers (page 0) and IGP registers.</summary>
    public const int Bmcr = 0x00, Bmsr = 0x01, PhyId1 = 0x02, PhyId2 = 0x03, Anar = 0x04, Anlpar = 0x05, Aner = 0x06,
        GbCtrl = 0x09, GbStatus = 0x0A, ExtStatus = 0x0F, PortConfig = 0x10, PortStatus = 0x11, PortCtrl = 0x12,
        PowerMgmt = 0x19, PageSelect = 0x1F;
    /// <summary>BMCR bits.</summary>
    public const ushort BmcrReset = 0x8000, BmcrLoopback = 0x4000, BmcrSpeed1000 = 0x0040, BmcrAnEnable = 0x1000,
        BmcrPowerDown = 0x0800, BmcrRestartAn = 0x0200, BmcrFullDuplex = 0x0100;
    /// <summary>BMSR bits: link status (2), autonegotiation complete (5).</summary>
    public const ushort BmsrLinkStatus = 0x0004, BmsrAnComplete = 0x0020;
    /// <summary>BMSR abilities: extended capability, autonegotiation ability, preamble suppression, extended status, 10/100 modes.</summary>
    public const ushort BmsrAbilities = 0x0001 | 0x0008 | 0x0040 | 0x0100 | 0x0800 | 0x1000 | 0x2000 | 0x4000;
    /// <summary>IGP port status: 1000 Mb/s, link up, full duplex.</summary>
    public const ushort PortStatusUp = 0xC000 | 0x0400 | 0x0200;

    private static readonly (int Reg, ushort Value)[] ResetValues =
    [
        (Bmcr, BmcrSpeed1000 | BmcrFullDuplex | BmcrAnEnable),
        (Anar, 0x0DE1),          // 802.3, 10/100 half and full, pause, asymmetric pause
        (GbCtrl, 0x0300),        // advertise 1000BASE-T half and full
        (PortConfig, 0x0120),
        (PowerMgmt, 0x008D),
    ];

    private readonly ushort[] _page0 = new ushort[32];
    private readonly Dictionary<int, ushort> _paged = [];
    private readonly Register _mdic, _ctrl;
    private readonly Action<uint> _raiseIcr;
    private bool _anComplete = true;

    /// <summary>Declares MDIC in a PF register map.</summary>
    public static void Declare(RegisterMapBuilder b) => b
        .Reg("MDIC", MdicOffset, 0, Rw("DATA", 0, 16), Rw("REGADD", 16, 5), Rw("PHYADD", 21, 5), Rw("OP", 26, 2),
            Ro("READY", 28), Rw("I", 29), Ro("E", 30));

    internal IgbPhy(RegisterFile file, Action<uint> raiseIcr)
    {
        _raiseIcr = raiseIcr;
        (_mdic, _ctrl) = (file["MDIC"], file["CTRL"]);
        file.OnWrite("MDIC", (_, _, _, _) => Access());
        file.OnWrite("CTRL", (_, old, _, _) =>
        {
            bool was = (old & CtrlPhyRst) != 0, now = (_ctrl.Value & CtrlPhyRst) != 0;
            if (was != now) { if (now) Reset(); LinkMaybeChanged(!was, !now); }
        });
        Reset();
    }

    /// <summary>True when the PHY reports link: powered, out of reset, autonegotiation done.</summary>
    public bool LinkUp => (_page0[Bmcr] & BmcrPowerDown) == 0 && (_ctrl.Value & CtrlPhyRst) == 0 && _anComplete;

    /// <summary>PHY power-on / hardware reset: every register to its default.</summary>
    public void Reset()
    {
        Array.Clear(_page0);
        _paged.Clear();
        foreach (var (reg, value) in ResetValues) _page0[reg] = value;
        _anComplete = true;
    }

    /// <summary>Reads PHY register <paramref name="reg"/> (0-31) in the current IGP page.</summary>
    public ushort Read(int reg)
    {
        reg &= 0x1F;
        int page = _page0[PageSelect] >> 5;
        if (page != 0 && reg is >= 0x10 and < PageSelect) return _paged.GetValueOrDefault(page << 5 | reg);
        bool up = LinkUp;
        return reg switch
        {
            Bmsr => (ushort)(BmsrAbilities | (up ? BmsrLinkStatus : 0) | (_anComplete ? BmsrAnComplete : 0)),
            PhyId1 => (ushort)(PhyId >> 16),
            PhyId2 => (ushort)(PhyId & 0xFFF0 | Revision),
            Anlpar => (ushort)(_anComplete ? 0x45E1 : 0),   // partner: ack, pause, 10/100 half and full, 802.3
            Aner => (ushort)(_anComplete ? 0x0001 : 0),     // partner can autonegotiate
            GbStatus => (ushort)(up ? 0x3C00 : 0),          // local and remote receiver OK, partner 1000BASE-T half and full
            ExtStatus => 0x3000,                            // 1000BASE-T half and full capable
            PortStatus => up ? PortStatusUp : (ushort)0,
            _ => _page0[reg],
        };
    }

    /// <summary>Writes PHY register <paramref name="reg"/> (0-31) in the current IGP page.</summary>
    public void Write(int reg, ushort value)
    {
        reg &= 0x1F;
        int page = _page0[PageSelect] >> 5;
        if (page != 0 && reg is >= 0x10 and < PageSelect) { _paged[page << 5 | reg] = value; return; }
        bool before = LinkUp;
        switch (reg)
        {
            case Bmcr:
                if ((value & BmcrReset) != 0)
                {
                    // Software reset: the control register goes back to its default (self-clearing).
                    _page0[Bmcr] = ResetValues[0].Value;
                    break;
                }
                // RESTART_AN self-clears; with the partner always present autonegotiation completes at once.
                _page0[Bmcr] = (ushort)(value & ~BmcrRestartAn);
                _anComplete = true;
                break;
            case Bmsr or PhyId1 or PhyId2 or Anlpar or Aner or GbStatus or ExtStatus or PortStatus:
                break;   // read-only
            default:
                _page0[reg] = value;
                break;
        }
        LinkMaybeChanged(before, LinkUp);
    }

    private void LinkMaybeChanged(bool before, bool after)
    {
        if (before != after) _raiseIcr(IgbRegs.IcrLsc);
    }

    // One MDIC transaction, completed at once.
    private void Access()
    {
        uint v = _mdic.Value;
        uint op = v & (3u << MdicOpShift);
        int phy = (int)(v >> MdicPhyShift) & 0x1F, reg = (int)(v >> MdicRegShift) & 0x1F;
        if (op is not (MdicOpRead or MdicOpWrite)) return;   // no transaction: READY/ERROR keep the last one's result
        v &= ~(MdicReady | MdicError);
        if (phy != Address || (_ctrl.Value & CtrlPhyRst) != 0) v |= MdicError;
        else if (op == MdicOpRead) v = (v & 0xFFFF_0000) | Read(reg);
        else Write(reg, (ushort)v);
        _mdic.Value = v | MdicReady;
        if ((v & MdicInterrupt) != 0) _raiseIcr(IcrMdac);
    }
}
