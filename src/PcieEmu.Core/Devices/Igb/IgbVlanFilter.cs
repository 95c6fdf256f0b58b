using System.Buffers.Binary;
using PcieEmu.Core.Registers;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// The 82576's VLAN block: the 4096-bit VLAN filter table (VFTA), the 32 pool VLAN filters (VLVF:
/// VLAN ID, pool bits, enable) and the per-pool transmit VLAN insertion (VMVIR), with RCTL.VFE
/// (VLAN filter enable) and VET (the 802.1Q ether type).
/// <para>
/// Receive: with RCTL.VFE set, a tagged frame whose VID is clear in VFTA is dropped; in VMDq mode
/// it may only reach the pools of the enabled VLVF entries for its VID. Untagged frames are
/// judged by the pools' VMOLR.AUPE elsewhere. Transmit (VMDq): VMVIR.VLANA 01 tags every frame of
/// the pool with VMVIR's VLAN (replacing the descriptor's), 10 never tags, 00 follows the descriptor.
/// VLAN anti-spoofing (DTXSWC 15:8): a pool may only send tags of VLANs whose VLVF entry holds it.
/// </para>
/// </summary>
public sealed class IgbVlanFilter
{
    /// <summary>VFTA (128 dwords), VLVF (32), VMVIR (8) offsets.</summary>
    public const uint VftaOffset = 0x5600, VlvfOffset = 0x5D00, VmvirOffset = 0x3700;
    /// <summary>Entries.</summary>
    public const int VftaEntries = 128, VlvfEntries = 32;
    /// <summary>RCTL.VFE (VLAN filter enable).</summary>
    public const uint RctlVfe = 1u << 18;
    /// <summary>VLVF fields: VLAN ID 11:0, pool select 19:12, LVLAN 20, VLAN ID enable 31.</summary>
    public const uint VlvfVidMask = 0xFFF, VlvfLvlan = 1u << 20, VlvfEnable = 1u << 31;
    /// <summary>VLVF pool select shift.</summary>
    public const int VlvfPoolShift = 12;
    /// <summary>VMVIR: port VLAN tag 15:0; VLANA 31:30 (00 descriptor, 01 always insert VMVIR's, 10 never insert).</summary>
    public const uint VmvirVlanaDefault = 1u << 30, VmvirVlanaNever = 2u << 30, VmvirVlanaMask = 3u << 30;

    private readonly Register[] _vfta = new Register[VftaEntries], _vlvf = new Register[VlvfEntries], _vmvir = new Register[IgbRegs.Pools];
    private readonly Register _rctl, _vet;

    /// <summary>Declares VFTA, VLVF and VMVIR in a PF register map.</summary>
    public static void Declare(RegisterMapBuilder b) => b
        .Array("VFTA", VftaOffset, VftaEntries, 4, 0, Rw("BITS", 0, 32))
        .Array("VLVF", VlvfOffset, VlvfEntries, 4, 0, Rw("VLAN_ID", 0, 12), Rw("POOLSEL", 12, 8), Rw("LVLAN", 20), Rw("VIEN", 31))
        .Array("VMVIR", VmvirOffset, IgbRegs.Pools, 4, 0, Rw("PORT_VLAN", 0, 16), Rw("VLANA", 30, 2));

    internal IgbVlanFilter(RegisterFile file)
    {
        for (int i = 0; i < VftaEntries; i++) _vfta[i] = file[$"VFTA[{i}]"];
        for (int i = 0; i < VlvfEntries; i++) _vlvf[i] = file[$"VLVF[{i}]"];
        for (int i = 0; i < IgbRegs.Pools; i++) _vmvir[i] = file[$"VMVIR[{i}]"];
        (_rctl, _vet) = (file["RCTL"], file["VET"]);
    }

    /// <summary>True when <paramref name="frame"/> carries a tag with the ether type in VET; <paramref name="vid"/> is its VLAN ID.</summary>
    public bool TryGetVid(ReadOnlySpan<byte> frame, out int vid)
    {
        vid = 0;
        if (frame.Length < 18 || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != (ushort)_vet.Value) return false;
        vid = BinaryPrimitives.ReadUInt16BigEndian(frame[14..]) & 0xFFF;
        return true;
    }

    /// <summary>
    /// The pools a received frame may reach as far as VLANs are concerned (all bits set when VLAN
    /// filtering is off or the frame is untagged); 0 = drop.
    /// </summary>
    public uint ReceivePools(ReadOnlySpan<byte> frame, bool vmdq)
    {
        if ((_rctl.Value & RctlVfe) == 0 || !TryGetVid(frame, out int vid)) return uint.MaxValue;
        if ((_vfta[vid >> 5].Value & (1u << (vid & 31))) == 0) return 0;
        return vmdq ? VlvfPools(vid) : uint.MaxValue;
    }

    /// <summary>Pools of the enabled VLVF entries for <paramref name="vid"/>.</summary>
    public uint VlvfPools(int vid)
    {
        uint pools = 0;
        foreach (var r in _vlvf)
        {
            uint v = r.Value;
            if ((v & VlvfEnable) != 0 && (v & VlvfVidMask) == (uint)vid) pools |= v >> VlvfPoolShift & 0xFF;
        }
        return pools;
    }

    /// <summary>Transmit tagging of pool <paramref name="pool"/> (VMDq): VMVIR may force or forbid the tag.</summary>
    public void TransmitTag(int pool, ref bool vle, ref ushort vlan)
    {
        uint v = _vmvir[pool].Value;
        switch (v & VmvirVlanaMask)
        {
            case VmvirVlanaDefault: vle = true; vlan = (ushort)v; break;
            case VmvirVlanaNever: vle = false; break;
        }
    }

    /// <summary>VLAN anti-spoofing: a tagged frame from <paramref name="pool"/> whose VLAN's VLVF entry does not hold the pool.</summary>
    public bool VlanSpoofed(int pool, ReadOnlySpan<byte> frame) =>
        TryGetVid(frame, out int vid) && (VlvfPools(vid) & (1u << pool)) == 0;
}
