using PcieEmu.Core.Registers;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// The software/firmware semaphores of an 82576 port: SWSM (SMBI, the software semaphore a read
/// takes; SWESMBI, the software/firmware semaphore) and SW_FW_SYNC (one software and one firmware
/// bit per shared resource: NVM, PHY 0, PHY 1, MAC CSRs). No firmware runs on the emulated part,
/// so the firmware bits stay 0 and software always wins.
/// <para>
/// SMBI latches on read: the first read returns it clear and sets it, so exactly one reader
/// sees 0 until software writes it back to 0 (igb_get_hw_semaphore / igb_put_hw_semaphore).
/// </para>
/// </summary>
public sealed class IgbSemaphores
{
    /// <summary>SWSM and SW_FW_SYNC offsets.</summary>
    public const uint SwsmOffset = 0x5B50, SwFwSyncOffset = 0x5B5C;
    /// <summary>SWSM bits.</summary>
    public const uint SwsmSmbi = 1u << 0, SwsmSwesmbi = 1u << 1;
    /// <summary>SW_FW_SYNC software bits (firmware bits are these shifted left by 16).</summary>
    public const uint SwFwEeprom = 1u << 0, SwFwPhy0 = 1u << 1, SwFwPhy1 = 1u << 2, SwFwMacCsr = 1u << 3;

    private readonly Register _swsm;

    /// <summary>Declares SWSM and SW_FW_SYNC in a PF register map.</summary>
    public static void Declare(RegisterMapBuilder b) => b
        .Reg("SWSM", SwsmOffset, 0, Rw("SMBI", 0), Rw("SWESMBI", 1), Ro("WMNG", 2))
        .Reg("SW_FW_SYNC", SwFwSyncOffset, 0, Rw("SW_EEP_SM", 0), Rw("SW_PHY_SM0", 1), Rw("SW_PHY_SM1", 2), Rw("SW_MAC_CSR_SM", 3),
            Ro("FW_EEP_SM", 16), Ro("FW_PHY_SM0", 17), Ro("FW_PHY_SM1", 18), Ro("FW_MAC_CSR_SM", 19));

    internal IgbSemaphores(RegisterFile file)
    {
        _swsm = file["SWSM"];
        file.OnRead("SWSM", ReadSwsm);
    }

    // The value before the read; the read itself takes SMBI.
    private uint ReadSwsm()
    {
        uint v = _swsm.Value;
        _swsm.Value = v | SwsmSmbi;
        return v;
    }
}
