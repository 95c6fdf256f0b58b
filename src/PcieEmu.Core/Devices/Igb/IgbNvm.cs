using PcieEmu.Core.Registers;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// The 82576's NVM (the SPI EEPROM both ports share) and its register interface: EECD (presence,
/// size, auto-read done, request/grant) and EERD (word reads that complete with DONE).
/// <para>
/// The image holds the LAN0 MAC address in words 0-2 (the LAN1 port uses it with the least
/// significant bit of the last byte inverted, as the 82576 derives it), the PCI IDs, an empty
/// alternate-MAC pointer, and the checksum word 0x3F that makes words 0x00-0x3F sum to 0xBABA
/// (what igb_validate_nvm_checksum checks).
/// </para>
/// </summary>
public sealed class IgbNvm
{
    /// <summary>EECD (EEPROM/flash control) and EERD (EEPROM read) offsets.</summary>
    public const uint EecdOffset = 0x0010, EerdOffset = 0x0014;

    /// <summary>EECD bits: request (6), grant (7), present (8), auto-read done (9); FWE 5:4 = 01 (flash writes disabled).</summary>
    public const uint EecdReq = 1u << 6, EecdGnt = 1u << 7, EecdPres = 1u << 8, EecdAutoRd = 1u << 9, EecdFweDisabled = 1u << 4;
    /// <summary>EECD.EE_SIZE (bits 14:11): words = 1 &lt;&lt; (EE_SIZE + 6).</summary>
    public const int EecdSizeShift = 11;
    /// <summary>EE_SIZE of the emulated part: 2, 256 words (4 Kbit).</summary>
    public const int EecdSize = 2;
    /// <summary>EECD after reset: present, flash writes disabled, size, and the auto-read from the NVM done.</summary>
    public const uint EecdReset = EecdFweDisabled | EecdPres | EecdAutoRd | EecdSize << EecdSizeShift;

    /// <summary>EEMNGCTL offset and its per-port configuration-done bits (18 port 0, 19 port 1), set once the
    /// NVM's configuration has been loaded (igb_get_cfg_done_82575 polls them after a PHY reset).</summary>
    public const uint EemngctlOffset = 0x1010, CfgDonePort0 = 1u << 18, CfgDonePort1 = 1u << 19;

    /// <summary>EERD bits: START (0), DONE (1), address 15:2, data 31:16.</summary>
    public const uint EerdStart = 1u << 0, EerdDone = 1u << 1;
    /// <summary>EERD address and data shifts.</summary>
    public const int EerdAddrShift = 2, EerdDataShift = 16;

    /// <summary>Words in the NVM.</summary>
    public const int Words = 1 << (EecdSize + 6);
    /// <summary>Word offsets in the image (igb's NVM map).</summary>
    public const int WordCompat = 0x03, WordIdLed = 0x04, WordVersion = 0x05, WordPba0 = 0x08, WordPba1 = 0x09,
        WordInitControl1 = 0x0A, WordSubsystemId = 0x0B, WordSubsystemVendor = 0x0C, WordDeviceId = 0x0D, WordVendorId = 0x0E,
        WordInitControl2 = 0x0F, WordAltMacPointer = 0x37, WordChecksum = 0x3F;
    /// <summary>The sum words 0x00-0x3F must have.</summary>
    public const ushort ChecksumSum = 0xBABA;

    private readonly ushort[] _image;
    private readonly Register _eecd, _eerd;

    /// <summary>Declares EECD and EERD in a PF register map.</summary>
    public static void Declare(RegisterMapBuilder b) => b
        .Reg("EECD", EecdOffset, EecdReset, Rw("SK", 0), Rw("CS", 1), Rw("DI", 2), Ro("DO", 3), Rw("FWE", 4, 2), Rw("EE_REQ", 6),
            Ro("EE_GNT", 7), Ro("EE_PRES", 8), Ro("AUTO_RD", 9), Ro("EE_ADDR_SIZE", 10), Ro("EE_SIZE", 11, 4))
        .Reg("EERD", EerdOffset, 0, Sc("START", 0), Ro("DONE", 1), Rw("ADDR", 2, 14), Ro("DATA", 16, 16))
        .Reg("EEMNGCTL", EemngctlOffset, CfgDonePort0 | CfgDonePort1, Ro("CFG_DONE0", 18), Ro("CFG_DONE1", 19));

    /// <summary>The NVM of an 82576 whose LAN0 address is <paramref name="lan0Mac"/>, wired to <paramref name="file"/>.</summary>
    internal IgbNvm(RegisterFile file, ReadOnlySpan<byte> lan0Mac)
    {
        _image = BuildImage(lan0Mac);
        (_eecd, _eerd) = (file["EECD"], file["EERD"]);
        file.OnWrite("EECD", (_, _, _, _) => Grant());
        file.OnWrite("EERD", (_, _, w, _) => { if ((w & EerdStart) != 0) Read(); });
    }

    /// <summary>The image (words).</summary>
    public ReadOnlySpan<ushort> Image => _image;

    /// <summary>The MAC address port <paramref name="port"/> loads from the NVM: LAN1 inverts bit 0 of the last byte.</summary>
    public static byte[] PortMac(ReadOnlySpan<byte> lan0Mac, int port)
    {
        var mac = lan0Mac.ToArray();
        if (port == 1) mac[5] ^= 1;
        return mac;
    }

    /// <summary>Builds the image: MAC words 0-2 (little-endian byte pairs), IDs, checksum.</summary>
    public static ushort[] BuildImage(ReadOnlySpan<byte> lan0Mac)
    {
        var w = new ushort[Words];
        for (int i = 0; i < 3; i++) w[i] = (ushort)(lan0Mac[2 * i] | lan0Mac[2 * i + 1] << 8);
        w[WordIdLed] = 0xFFFF;                     // "use the default LED settings"
        w[WordVersion] = 0x1080;                   // image version 1.8.0
        (w[WordPba0], w[WordPba1]) = (0xE437, 0x0900);
        w[WordSubsystemId] = Igb82576.SubsystemId;
        w[WordSubsystemVendor] = Igb82576.VendorIntel;
        w[WordDeviceId] = Igb82576.PfDeviceId;
        w[WordVendorId] = Igb82576.VendorIntel;
        w[WordAltMacPointer] = 0xFFFF;             // no alternate MAC address block
        for (int i = WordChecksum + 1; i < Words; i++) w[i] = 0xFFFF;   // unprogrammed
        ushort sum = 0;
        for (int i = 0; i < WordChecksum; i++) sum += w[i];
        w[WordChecksum] = (ushort)(ChecksumSum - sum);
        return w;
    }

    // No firmware competes for the NVM: EE_GNT follows EE_REQ.
    private void Grant() => _eecd.Value = (_eecd.Value & ~EecdGnt) | ((_eecd.Value & EecdReq) != 0 ? EecdGnt : 0);

    // An EERD read completes at once: DATA holds the word, DONE is set (addresses wrap at the NVM size).
    private void Read()
    {
        uint addr = (_eerd.Value >> EerdAddrShift) & 0x3FFF;
        ushort data = _image[addr % Words];
        _eerd.Value = (_eerd.Value & 0xFFFCu & ~EerdStart) | EerdDone | (uint)data << EerdDataShift;
    }
}
