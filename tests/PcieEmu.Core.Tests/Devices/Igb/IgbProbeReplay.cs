namespace PcieEmu.Core.Tests.Devices.Igb;

/// <summary>
/// The register sequence of the Linux igb driver's probe and bring-up of an 82576 port, replayed
/// through a BAR0 read/write pair (offsets, bits and polling loops from the driver sources:
/// igb_get_hw_semaphore, igb_acquire_swfw_sync_82575, igb_acquire_nvm, igb_read_nvm_eerd,
/// igb_validate_nvm_checksum, igb_get_phy_id, igb_disable_pcie_master, igb_reset_hw_82575,
/// igb_get_auto_rd_done, igb_phy_hw_reset, igb_get_cfg_done_82575, igb_copper_link_autoneg,
/// igb_phy_has_link). Every register is named by its datasheet offset here, not by the
/// emulator's constants, so the replay checks the emulator rather than echoing it. A step that
/// would make the driver give up throws with the driver's reason.
/// </summary>
internal sealed class IgbProbeReplay(Func<uint, uint> read, Action<uint, uint> write, int port)
{
    // Register offsets (e1000_regs.h).
    public const uint CTRL = 0x0000, STATUS = 0x0008, EECD = 0x0010, EERD = 0x0014, CTRL_EXT = 0x0018, MDIC = 0x0020,
        ICR = 0x00C0, IMC = 0x00D8, RCTL = 0x0100, TCTL = 0x0400, EEMNGCTL = 0x1010, SWSM = 0x5B50, SW_FW_SYNC = 0x5B5C,
        RAL0 = 0x5400, RAH0 = 0x5404;

    private const int Attempts = 2000;   // every polling loop of the driver is bounded

    private uint R(uint off) => read(off);
    private void W(uint off, uint v) => write(off, v);

    private void Poll(string what, Func<bool> done)
    {
        for (int i = 0; i < Attempts; i++) if (done()) return;
        throw new InvalidOperationException(what);
    }

    // igb_get_hw_semaphore: wait for SMBI clear (the read takes it), then take SWESMBI.
    public void GetHwSemaphore()
    {
        Poll("Driver can't access device - SMBI bit is set.", () => (R(SWSM) & 1) == 0);
        Poll("Driver can't access the NVM", () =>
        {
            W(SWSM, R(SWSM) | 2);
            return (R(SWSM) & 2) != 0;
        });
    }

    // igb_put_hw_semaphore
    public void PutHwSemaphore() => W(SWSM, R(SWSM) & ~3u);

    // igb_acquire_swfw_sync_82575
    public void AcquireSwFw(uint mask)
    {
        Poll("Driver can't access resource, SW_FW_SYNC timeout.", () =>
        {
            GetHwSemaphore();
            uint sync = R(SW_FW_SYNC);
            if ((sync & (mask | mask << 16)) == 0)
            {
                W(SW_FW_SYNC, sync | mask);
                PutHwSemaphore();
                return true;
            }
            PutHwSemaphore();
            return false;
        });
    }

    // igb_release_swfw_sync_82575
    public void ReleaseSwFw(uint mask)
    {
        GetHwSemaphore();
        W(SW_FW_SYNC, R(SW_FW_SYNC) & ~mask);
        PutHwSemaphore();
    }

    // igb_acquire_nvm_82575 / igb_release_nvm_82575
    public void AcquireNvm()
    {
        AcquireSwFw(1);
        W(EECD, R(EECD) | 1u << 6);
        Poll("Could not acquire NVM grant", () => (R(EECD) & 1u << 7) != 0);
    }

    public void ReleaseNvm()
    {
        W(EECD, R(EECD) & ~(1u << 6));
        ReleaseSwFw(1);
    }

    // igb_read_nvm_eerd: one word per START, poll DONE, data in 31:16.
    public ushort ReadNvm(int word)
    {
        W(EERD, (uint)word << 2 | 1);
        uint v = 0;
        Poll($"NVM read of word 0x{word:X} never completed", () => ((v = R(EERD)) & 2) != 0);
        return (ushort)(v >> 16);
    }

    // igb_init_nvm_params_82575: size from EECD.EE_SIZE.
    public int NvmWords()
    {
        uint eecd = R(EECD);
        if ((eecd & 1u << 8) == 0) throw new InvalidOperationException("NVM not present (EECD.PRES clear)");
        int size = (int)((eecd & 0x7800) >> 11) + 6;
        return 1 << Math.Min(size, 15);
    }

    // igb_validate_nvm_checksum
    public ushort ValidateChecksum()
    {
        AcquireNvm();
        ushort sum = 0;
        for (int i = 0; i <= 0x3F; i++) sum += ReadNvm(i);
        ReleaseNvm();
        if (sum != 0xBABA) throw new InvalidOperationException($"The NVM Checksum Is Not Valid (sum 0x{sum:X4})");
        return sum;
    }

    public byte[] NvmMac()
    {
        var mac = new byte[6];
        for (int i = 0; i < 3; i++)
        {
            ushort w = ReadNvm(i);
            (mac[2 * i], mac[2 * i + 1]) = ((byte)w, (byte)(w >> 8));
        }
        return mac;
    }

    // igb_read_phy_reg_mdic / igb_write_phy_reg_mdic (PHY address 1).
    public ushort ReadPhy(int reg, int phyAddr = 1)
    {
        W(MDIC, (uint)reg << 16 | (uint)phyAddr << 21 | 2u << 26);
        uint v = 0;
        Poll("MDI Read did not complete", () => ((v = R(MDIC)) & 1u << 28) != 0);
        if ((v & 1u << 30) != 0) throw new InvalidOperationException("MDI Error");
        return (ushort)v;
    }

    public void WritePhy(int reg, ushort data)
    {
        W(MDIC, data | (uint)reg << 16 | 1u << 21 | 1u << 26);
        uint v = 0;
        Poll("MDI Write did not complete", () => ((v = R(MDIC)) & 1u << 28) != 0);
        if ((v & 1u << 30) != 0) throw new InvalidOperationException("MDI Error");
    }

    private uint PhyMask => port == 0 ? 2u : 4u;

    // igb_get_phy_id
    public uint PhyId()
    {
        AcquireSwFw(PhyMask);
        uint id = (uint)ReadPhy(2) << 16 | ReadPhy(3);
        ReleaseSwFw(PhyMask);
        return id;
    }

    // igb_disable_pcie_master
    public void DisablePcieMaster()
    {
        W(CTRL, R(CTRL) | 1u << 2);
        Poll("Master requests are pending.", () => (R(STATUS) & 1u << 19) == 0);
    }

    // igb_reset_hw_82575 up to igb_get_auto_rd_done.
    public void ResetHw()
    {
        DisablePcieMaster();
        W(IMC, 0xFFFF_FFFF);
        W(RCTL, 0);
        W(TCTL, 1u << 3);
        R(STATUS);
        W(CTRL, R(CTRL) | 1u << 26);
        Poll("Auto Read Done did not complete", () => (R(EECD) & 1u << 9) != 0);
        W(IMC, 0xFFFF_FFFF);
        R(ICR);
    }

    // igb_phy_hw_reset, then igb_get_cfg_done_82575.
    public void PhyHwReset()
    {
        AcquireSwFw(PhyMask);
        W(CTRL, R(CTRL) | 1u << 31);
        W(CTRL, R(CTRL) & ~(1u << 31));
        ReleaseSwFw(PhyMask);
        uint done = port == 0 ? 1u << 18 : 1u << 19;
        Poll("MNG configuration cycle has not completed.", () => (R(EEMNGCTL) & done) != 0);
    }

    // igb_setup_copper_link_82575 + igb_copper_link_autoneg + igb_phy_has_link.
    public void SetupCopperLink()
    {
        uint ctrl = R(CTRL);
        W(CTRL, (ctrl | 1u << 6) & ~(1u << 11 | 1u << 12));   // SLU, clear FRCSPD/FRCDPX
        WritePhy(4, 0x0DE1);                                  // advertise 10/100 + pause
        WritePhy(9, 0x0300);                                  // advertise 1000 half/full
        WritePhy(0, (ushort)(ReadPhy(0) | 0x1000 | 0x0200));  // autoneg enable + restart
        Poll("Auto-negotiation did not complete", () => (ReadPhy(1) & 0x20) != 0);
        Poll("PHY reports no link", () => { ReadPhy(1); return (ReadPhy(1) & 0x4) != 0; });
        Poll("MAC reports no link", () => (R(STATUS) & 2) != 0);
    }

    public const uint RXCSUM = 0x5000, MRQC = 0x5818, VFTA = 0x5600, RETA = 0x5C00, RSSRK = 0x5C80;

    /// <summary>
    /// igb_configure's receive-side register programming for a port without VFs: VLAN filter table
    /// cleared with VID 0 allowed (igb_clear_vfta, igb_vlan_rx_add_vid), RSS over
    /// <paramref name="queues"/> queues (igb_setup_mrqc: RSSRK from the key, RETA entry n → n mod
    /// queues, RXCSUM.PCSD, MRQC = RSS for IPv4/IPv6 with TCP), igb_setup_rctl + igb_set_rx_mode
    /// (EN, BAM, SECRC, VFE). Every write is read back as the driver's register test would.
    /// </summary>
    public void Configure(int queues, ReadOnlySpan<byte> rssKey)
    {
        void Set(uint off, uint v, uint mask = 0xFFFF_FFFF)
        {
            W(off, v);
            uint got = R(off);
            if ((got & mask) != (v & mask)) throw new InvalidOperationException($"register 0x{off:X} reads 0x{got:X8} after writing 0x{v:X8}");
        }
        for (uint i = 0; i < 128; i++) Set(VFTA + 4 * i, 0);
        Set(VFTA, 1);                                                       // VID 0
        for (int j = 0; j < 10; j++)
            Set(RSSRK + 4u * (uint)j, (uint)(rssKey[4 * j] | rssKey[4 * j + 1] << 8 | rssKey[4 * j + 2] << 16 | rssKey[4 * j + 3] << 24));
        for (int j = 0; j < 32; j++)
        {
            uint v = 0;
            for (int k = 0; k < 4; k++) v |= (uint)((4 * j + k) % queues) << (8 * k);
            Set(RETA + 4u * (uint)j, v);
        }
        Set(RXCSUM, R(RXCSUM) | 1u << 13);
        Set(MRQC, 2u | 1u << 16 | 1u << 17 | 1u << 20 | 1u << 21);
        Set(RCTL, 1u << 1 | 1u << 15 | 1u << 26 | 1u << 18);
    }

    /// <summary>The whole probe and bring-up; returns the MAC the driver ends up with (RAL0/RAH0).</summary>
    public (byte[] NvmMac, byte[] RarMac, uint PhyId) Probe()
    {
        ResetHw();
        int words = NvmWords();
        if (words < 0x40) throw new InvalidOperationException($"NVM of {words} words is too small");
        ValidateChecksum();
        AcquireNvm();
        var nvmMac = NvmMac();
        ReleaseNvm();
        uint phyId = PhyId();
        PhyHwReset();
        SetupCopperLink();
        uint ral = R(RAL0), rah = R(RAH0);
        if ((rah & 1u << 31) == 0) throw new InvalidOperationException("RAH0.AV clear: no MAC address loaded");
        byte[] rar = [(byte)ral, (byte)(ral >> 8), (byte)(ral >> 16), (byte)(ral >> 24), (byte)rah, (byte)(rah >> 8)];
        return (nvmMac, rar, phyId);
    }
}
