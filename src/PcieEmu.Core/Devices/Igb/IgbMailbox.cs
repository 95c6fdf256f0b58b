using PcieEmu.Core.Registers;
using static PcieEmu.Core.Devices.Igb.IgbRegs;
using static PcieEmu.Core.Registers.FieldSpec;

namespace PcieEmu.Core.Devices.Igb;

/// <summary>
/// The PF-VF mailboxes (igb-82576.md "Mailbox"): per pool the PF side P2VMAILBOX, the VF side
/// VFMAILBOX in the VF's BAR0 and 16 shared VMBMEM dwords; MBVFICR (VF requests and acks),
/// MBVFIMR (which pools may interrupt the PF) and VFLRE (VF resets). The buffer lock (PFU/VFU)
/// is taken by whoever sets its bit while the other side does not hold it; STS/ACK from the PF
/// raise PFSTS/PFACK and the VF's mailbox interrupt, REQ/ACK from the VF set MBVFICR and VMMB.
/// Reset indications: RSTI while the PF has not finished its reset (CTRL_EXT.PFRSTD), RSTD after.
/// </summary>
internal sealed class IgbMailbox
{
    private readonly Register[] _p2v = new Register[Pools];
    private readonly Register[] _vfmb;
    private readonly Register _mbvficr, _mbvfimr, _vflre;
    private readonly Action<uint> _pfOtherCause;
    private readonly Action<int> _vfOtherCause;
    private bool _pfResetDone;

    /// <summary>Declares the PF side in a PF register map: VMBMEM (16 dwords per pool), P2VMAILBOX,
    /// MBVFICR, MBVFIMR (every pool may interrupt at reset) and VFLRE.</summary>
    public static void Declare(RegisterMapBuilder b) => b
        .Array("VMBMEM", Vmbmem, Pools * MailboxWords, 4, 0, Rw("DATA", 0, 32))
        .Array("P2VMAILBOX", P2vMailbox, Pools, 4, 0, Sc("STS", 0), Sc("ACK", 1), Ro("VFU", 2), Rw("PFU", 3), Sc("RVFU", 4))
        .Reg("MBVFICR", Mbvficr, 0, W1c("VFREQ", 0, 8), W1c("VFACK", 16, 8))
        .Reg("MBVFIMR", Mbvfimr, IgbRegisterMaps.AllPools, Rw("VFIM", 0, 8))
        .Reg("VFLRE", Vflre, 0, W1c("VFLE", 0, 8));

    /// <param name="pf">The PF register file.</param>
    /// <param name="vfs">The VF register files (one per pool that has a VF).</param>
    /// <param name="pfOtherCause">Raises ICR causes (VMMB) for the PF.</param>
    /// <param name="vfOtherCause">Raises the mailbox interrupt of a pool's VF.</param>
    public IgbMailbox(RegisterFile pf, IReadOnlyList<RegisterFile> vfs, Action<uint> pfOtherCause, Action<int> vfOtherCause)
    {
        (_mbvficr, _mbvfimr, _vflre) = (pf["MBVFICR"], pf["MBVFIMR"], pf["VFLRE"]);
        _pfOtherCause = pfOtherCause;
        _vfOtherCause = vfOtherCause;
        for (int p = 0; p < Pools; p++)
        {
            int pool = p;
            _p2v[p] = pf[$"P2VMAILBOX[{p}]"];
            pf.OnWrite(_p2v[p].Name, (_, _, w, _) => PfWrite(pool, w));
        }
        _vfmb = new Register[vfs.Count];
        for (int i = 0; i < vfs.Count; i++)
        {
            int pool = i;
            _vfmb[i] = vfs[i]["VFMAILBOX"];
            vfs[i].OnWrite("VFMAILBOX", (_, _, w, _) => VfWrite(pool, w));
        }
    }

    /// <summary>Device reset: the VFs see RSTI until the PF driver sets CTRL_EXT.PFRSTD.</summary>
    public void DeviceReset() => _pfResetDone = false;

    /// <summary>CTRL_EXT.PFRSTD: every VF mailbox goes from RSTI to RSTD.</summary>
    public void PfResetDone()
    {
        _pfResetDone = true;
        foreach (var mb in _vfmb) mb.Value = (mb.Value & ~VfmbRsti) | VfmbRstd;
    }

    /// <summary>A VF reset: its mailbox shows RSTD (RSTI while the PF is in reset), the PF side clears.</summary>
    public void VfReset(int pool)
    {
        _vfmb[pool].Value = _pfResetDone ? VfmbRstd : VfmbRsti;
        _p2v[pool].Value = 0;
    }

    /// <summary>Tells the PF a VF reset: VFLRE records it and the PF gets VMMB (if MBVFIMR lets the pool interrupt).</summary>
    public void SignalVfReset(int pool)
    {
        _vflre.Value |= 1u << pool;
        SignalVmmb(pool);
    }

    private void SignalVmmb(int pool)
    {
        if ((_mbvfimr.Value & (1u << pool)) != 0) _pfOtherCause(IcrVmmb);
    }

    private void PfWrite(int pool, uint written)
    {
        var p2v = _p2v[pool];
        var vfmb = pool < _vfmb.Length ? _vfmb[pool] : null;
        // PFU: the PF may take the buffer only while the VF does not hold it.
        if ((p2v.Value & P2vPfu) != 0 && (p2v.Value & P2vVfu) != 0) p2v.Value &= ~P2vPfu;
        if ((written & P2vRvfu) != 0)
        {
            p2v.Value &= ~P2vVfu;
            if (vfmb != null) vfmb.Value &= ~VfmbVfu;
        }
        if (vfmb == null) return;
        vfmb.Value = (vfmb.Value & ~VfmbPfu) | ((p2v.Value & P2vPfu) != 0 ? VfmbPfu : 0);
        uint sig = 0;
        if ((written & P2vSts) != 0) sig |= VfmbPfsts;
        if ((written & P2vAck) != 0) sig |= VfmbPfack;
        if (sig == 0) return;
        vfmb.Value |= sig;
        _vfOtherCause(pool);
    }

    private void VfWrite(int pool, uint written)
    {
        var vfmb = _vfmb[pool];
        var p2v = _p2v[pool];
        if ((vfmb.Value & VfmbVfu) != 0 && (p2v.Value & P2vPfu) != 0) vfmb.Value &= ~VfmbVfu;
        p2v.Value = (p2v.Value & ~P2vVfu) | ((vfmb.Value & VfmbVfu) != 0 ? P2vVfu : 0);
        uint icr = 0;
        if ((written & VfmbReq) != 0) icr |= 1u << pool;
        if ((written & VfmbAck) != 0) icr |= 1u << (16 + pool);
        if (icr == 0) return;
        _mbvficr.Value |= icr;
        SignalVmmb(pool);
    }
}
