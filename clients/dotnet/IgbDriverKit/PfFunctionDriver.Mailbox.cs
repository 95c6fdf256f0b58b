namespace PcieEmu.Drivers;

/// <summary>
/// The PF driver's answers to its VFs' mailbox messages, following the Linux igb PF driver's
/// policy (message ids and layouts in igb-82576.md "Mailbox messages"; docs/nic.md has the table):
/// a VF is clear to send (CTS) once its VF_RESET was served, and until then every other message
/// is NACKed without CTS; a served message is answered with one word, the request word with
/// CTS and ACK or NACK; VF_RESET is answered with exactly VF_RESET|ACK and the MAC (3 words).
/// </summary>
public sealed partial class PfFunctionDriver
{
    /// <summary>Additional unicast filters the VFs share: the table less the PF's default entry, 3 entries igb keeps for the PF's own filters and one per VF.</summary>
    private int SharedFilterSlots => Regs.RarEntries - (1 + 3 + numVfs);
    /// <summary>The largest VF_SET_LPE size igb programs (MAX_JUMBO_FRAME_SIZE, 0x2600); larger requests are clamped.</summary>
    public const int MaxJumboFrameSize = 0x2600;

    private readonly bool[] _cts = new bool[numVfs];
    private readonly ushort[][] _mcHashes = [.. Enumerable.Range(0, numVfs).Select(_ => Array.Empty<ushort>())];
    private readonly int[] _mcCount = new int[numVfs];   // as the VF sent it (more than 30 means multicast promiscuous)
    private readonly bool[] _mcPromisc = new bool[numVfs];
    private readonly uint[] _mta = new uint[Regs.MtaWords];   // what the MTA holds (zero after the device reset in ProbeAsync)
    private readonly Dictionary<int, (int Vf, byte[] Mac)> _ucFilters = [];   // RAR index → owner
    private readonly uint[] _vlvf = new uint[Regs.VlvfEntries];
    private readonly uint[] _vfta = new uint[Regs.VftaWords];
    private readonly Dictionary<string, int> _served = [];

    private async Task HandleRequestAsync(int vf, CancellationToken ct)
    {
        var mbx = new PfMailbox(_bar0, vf, timeout);
        var msg = await mbx.ReadRequestAsync(MbxMsg.Words, ct);
        // A word that already carries ACK or NACK is a message already answered: nothing to do.
        if ((msg[0] & (MbxMsg.Ack | MbxMsg.Nack)) != 0) return;
        if (msg[0] == MbxMsg.VfReset)
        {
            await ServeResetAsync(vf, mbx, ct);
            return;
        }
        string name = Name(msg[0]);
        if (!_cts[vf])
        {
            await mbx.SendAsync(new uint[] { msg[0] | MbxMsg.Nack }, ct);
            _nacks++;
            Log.Line($"PF: VF {vf} {name} before VF_RESET -> NACK (not clear to send)");
            return;
        }
        (bool ok, string detail) = (msg[0] & MbxMsg.TypeMask) switch
        {
            MbxMsg.VfSetMacAddr => await SetMacAddrAsync(vf, msg, ct),
            MbxMsg.VfSetMulticast => await SetMulticastAsync(vf, msg, ct),
            MbxMsg.VfSetLpe => await SetLpeAsync(vf, msg[1], ct),
            MbxMsg.VfSetVlan => await SetVlanAsync(vf, msg, ct),
            MbxMsg.VfSetPromisc => await SetPromiscAsync(vf, msg[0], ct),
            _ => (false, "unknown message"),
        };
        await mbx.SendAsync(new uint[] { msg[0] | MbxMsg.Cts | (ok ? MbxMsg.Ack : MbxMsg.Nack) }, ct);
        if (ok) _served[name] = _served.GetValueOrDefault(name) + 1;
        else _nacks++;
        Log.Line($"PF: VF {vf} {name}{detail} -> {(ok ? "ACK" : "NACK")}");
    }

    private static string Name(uint word) => (word & MbxMsg.TypeMask) switch
    {
        MbxMsg.VfReset => "VF_RESET",
        MbxMsg.VfSetMacAddr => (word & MbxMsg.InfoMask) switch
        {
            0 => "VF_SET_MAC_ADDR",
            MbxMsg.MacFilterClr => "VF_SET_MAC_ADDR|MAC_FILTER_CLR",
            MbxMsg.MacFilterAdd => "VF_SET_MAC_ADDR|MAC_FILTER_ADD",
            _ => $"VF_SET_MAC_ADDR|info 0x{(word & MbxMsg.InfoMask) >> MbxMsg.InfoShift:X2}",
        },
        MbxMsg.VfSetMulticast => "VF_SET_MULTICAST",
        MbxMsg.VfSetVlan => "VF_SET_VLAN",
        MbxMsg.VfSetLpe => "VF_SET_LPE",
        MbxMsg.VfSetPromisc => "VF_SET_PROMISC",
        _ => $"message 0x{word:X8}",
    };

    /// <summary>What igb undoes when a VF resets (VFLR or VF_RESET): CTS, its multicast hashes
    /// and flags, its VLANs (VLAN 0 only, tag stripping off), VMOLR back to AUPE|BAM, its
    /// additional unicast filters.</summary>
    private async Task ResetVfStateAsync(int vf, CancellationToken ct)
    {
        _cts[vf] = false;
        _mcHashes[vf] = [];
        _mcCount[vf] = 0;
        _mcPromisc[vf] = false;
        await RemoveUnicastFiltersAsync(vf, ct);
        for (int i = 0; i < Regs.VlvfEntries; i++)
            if ((_vlvf[i] & 1u << (Regs.VlvfPoolSelShift + vf)) != 0) await VlanPoolAsync((int)(_vlvf[i] & Regs.VlvfVlanIdMask), vf, add: false, ct);
        await VlanPoolAsync(0, vf, add: true, ct);
        uint vmolr = await _bar0.ReadAsync(VmolrOf(vf), ct);
        vmolr = (vmolr | Regs.VmolrAupe | Regs.VmolrBam) & ~Regs.VmolrStrVlan;
        await _bar0.WriteAsync(VmolrOf(vf), vmolr, ct);
        await WriteMulticastFiltersAsync(ct);
    }

    private static uint VmolrOf(int pool) => Regs.Vmolr + 4u * (uint)pool;

    private async Task ServeResetAsync(int vf, PfMailbox mbx, CancellationToken ct)
    {
        await ResetVfStateAsync(vf, ct);
        await SetVfMacAsync(vf, _vfMacs[vf], ct);
        await _bar0.WriteAsync(Regs.Vfte, await _bar0.ReadAsync(Regs.Vfte, ct) | 1u << vf, ct);
        await _bar0.WriteAsync(Regs.Vfre, await _bar0.ReadAsync(Regs.Vfre, ct) | 1u << vf, ct);
        _cts[vf] = true;
        var mac = _vfMacs[vf];
        // Exactly VF_RESET|ACK and the MAC (3 words), as Linux igb replies: igbvf compares the whole
        // word and fails the reset ("PF still in reset state") when any other bit, CTS included, is set.
        await mbx.SendAsync(new uint[] { MbxMsg.VfReset | MbxMsg.Ack, Mac.Low(mac), Mac.High(mac) }, ct);
        _resets++;
        Log.Line($"PF: VF {vf} VF_RESET -> ACK, MAC {Mac.Format(mac)} in RAR[{VfRar(vf)}] pool {vf}");
    }

    /// <summary>VF_SET_MAC_ADDR: without a sub-command the VF's own address (its RAR entry); with
    /// MAC_FILTER_ADD an additional unicast filter for its pool from the shared entries; with
    /// MAC_FILTER_CLR its additional filters removed.</summary>
    private async Task<(bool, string)> SetMacAddrAsync(int vf, uint[] msg, CancellationToken ct)
    {
        uint info = msg[0] & MbxMsg.InfoMask;
        var mac = Mac.FromRegisters(msg[1], msg[2]);
        switch (info)
        {
            case 0:
                if (!Mac.IsValidUnicast(mac)) return (false, $" {Mac.Format(mac)} (not a unicast address)");
                _vfMacs[vf] = mac;
                await SetVfMacAsync(vf, mac, ct);
                _setMacs++;
                return (true, $" {Mac.Format(mac)}");
            case MbxMsg.MacFilterClr:
            {
                // igbvf sends this with no address. (Linux igb since 5.16 checks the address before
                // the sub-command and so NACKs this very message without clearing anything; igbvf
                // ignores the answer. Clearing, as the sub-command asks, is what igb meant.)
                int removed = await RemoveUnicastFiltersAsync(vf, ct);
                return (true, $" ({removed} removed)");
            }
            case MbxMsg.MacFilterAdd:
            {
                if (!Mac.IsValidUnicast(mac)) return (false, $" {Mac.Format(mac)} (not a unicast address)");
                if (_ucFilters.Count >= SharedFilterSlots) return (false, $" {Mac.Format(mac)} (no space: {SharedFilterSlots} filters shared by the VFs are in use)");
                // The lowest free entry after the PF's (entry 0), below the VFs' own entries at the top.
                int index = Enumerable.Range(1, Regs.RarEntries - numVfs - 1).First(i => !_ucFilters.ContainsKey(i));
                _ucFilters[index] = (vf, mac);
                uint ral = Regs.Ral(index);
                await _bar0.WriteAsync(ral + 4, 0, ct);
                await _bar0.WriteAsync(ral, Mac.Low(mac), ct);
                await _bar0.WriteAsync(ral + 4, Mac.High(mac) | Regs.RahAv | 1u << (Regs.RahPoolShift + vf), ct);
                return (true, $" {Mac.Format(mac)} in RAR[{index}] pool {vf}");
            }
            default:
                return (false, " (unknown sub-command)");
        }
    }

    /// <summary>Invalidates the VF's additional unicast filters (their RAR entries); returns how many.</summary>
    private async Task<int> RemoveUnicastFiltersAsync(int vf, CancellationToken ct)
    {
        var mine = _ucFilters.Where(e => e.Value.Vf == vf).Select(e => e.Key).ToList();
        foreach (int index in mine)
        {
            await _bar0.WriteAsync(Regs.Ral(index) + 4, 0, ct);
            _ucFilters.Remove(index);
        }
        return mine.Count;
    }

    /// <summary>VF_SET_MULTICAST: bits 23:16 count the 16-bit hashes from word 1 on (at most 30
    /// are kept; more than 30 makes the pool multicast promiscuous).</summary>
    private async Task<(bool, string)> SetMulticastAsync(int vf, uint[] msg, CancellationToken ct)
    {
        int n = (int)((msg[0] & MbxMsg.InfoMask) >> MbxMsg.InfoShift);
        var hashes = new ushort[Math.Min(n, MbxMsg.MaxMulticastHashes)];
        for (int i = 0; i < hashes.Length; i++) hashes[i] = (ushort)(msg[1 + i / 2] >> (16 * (i % 2)));
        _mcCount[vf] = n;
        _mcHashes[vf] = hashes;
        await WriteMulticastFiltersAsync(ct);
        return (true, $" {n} hash(es) {string.Join(',', hashes.Select(h => $"0x{h:X3}"))}");
    }

    /// <summary>
    /// igb's rebuild after any multicast change: the MTA holds the union of every VF's hashes
    /// (the PF joins no groups), and each VF pool gets VMOLR.MPME (more than 30 groups, or
    /// multicast promiscuous), else ROMPE when it has hashes, else neither.
    /// </summary>
    private async Task WriteMulticastFiltersAsync(CancellationToken ct)
    {
        var mta = new uint[Regs.MtaWords];
        for (int vf = 0; vf < numVfs; vf++)
        {
            uint vmolr = await _bar0.ReadAsync(VmolrOf(vf), ct);
            uint want = vmolr & ~(Regs.VmolrRompe | Regs.VmolrMpme);
            if (_mcCount[vf] > MbxMsg.MaxMulticastHashes || _mcPromisc[vf]) want |= Regs.VmolrMpme;
            else if (_mcCount[vf] > 0)
            {
                want |= Regs.VmolrRompe;
                foreach (ushort h in _mcHashes[vf]) mta[h >> 5 & (Regs.MtaWords - 1)] |= 1u << (h & 31);
            }
            if (want != vmolr) await _bar0.WriteAsync(VmolrOf(vf), want, ct);
        }
        for (int i = 0; i < Regs.MtaWords; i++)
            if (mta[i] != _mta[i])
            {
                await _bar0.WriteAsync(Regs.Mta + 4u * (uint)i, mta[i], ct);
                _mta[i] = mta[i];
            }
    }

    /// <summary>VF_SET_LPE: word 1 is the largest frame the VF takes; VMOLR.RLPML of its pool gets it (at most <see cref="MaxJumboFrameSize"/>) and VMOLR.LPE is set.</summary>
    private async Task<(bool, string)> SetLpeAsync(int vf, uint size, CancellationToken ct)
    {
        uint rlpml = Math.Min(size, MaxJumboFrameSize);
        uint vmolr = await _bar0.ReadAsync(VmolrOf(vf), ct);
        await _bar0.WriteAsync(VmolrOf(vf), vmolr & ~Regs.VmolrRlpmlMask | rlpml | Regs.VmolrLpe, ct);
        return (true, $" {size}" + (rlpml != size ? $" (RLPML {rlpml})" : "") + " VMOLR.LPE");
    }

    /// <summary>VF_SET_PROMISC: multicast promiscuous (VMOLR.MPME) with the MULTICAST flag, the
    /// VF's hashes again without it; any other flag is not supported (NACK, after the change).</summary>
    private async Task<(bool, string)> SetPromiscAsync(int vf, uint word, CancellationToken ct)
    {
        _mcPromisc[vf] = (word & MbxMsg.PromiscMulticast) != 0;
        uint vmolr = await _bar0.ReadAsync(VmolrOf(vf), ct);
        if ((vmolr & Regs.VmolrRope) != 0) await _bar0.WriteAsync(VmolrOf(vf), vmolr & ~Regs.VmolrRope, ct);
        await WriteMulticastFiltersAsync(ct);
        uint other = word & MbxMsg.InfoMask & ~MbxMsg.PromiscMulticast;
        string what = _mcPromisc[vf] ? " multicast" : " off";
        return other != 0 ? (false, $"{what} (flags 0x{other >> MbxMsg.InfoShift:X2} not supported)") : (true, what);
    }

    /// <summary>VF_SET_VLAN: bits 23:16 non-zero adds VLAN word 1 (bits 11:0) to the VF's pool,
    /// zero removes it (removing VLAN 0 is ignored); NACK when no VLVF entry is free. Tag
    /// stripping (VMOLR.STRVLAN) is on for any VLAN other than 0.</summary>
    private async Task<(bool, string)> SetVlanAsync(int vf, uint[] msg, CancellationToken ct)
    {
        bool add = (msg[0] & MbxMsg.InfoMask) != 0;
        int vid = (int)(msg[1] & Regs.VlvfVlanIdMask);
        string detail = $" {(add ? "add" : "remove")} {vid}";
        if (vid == 0 && !add) return (true, detail + " (VLAN 0 stays)");
        if (!await VlanPoolAsync(vid, vf, add, ct)) return (false, detail + $" (all {Regs.VlvfEntries - 1} VLVF entries in use)");
        uint vmolr = await _bar0.ReadAsync(VmolrOf(vf), ct);
        uint want = vid != 0 ? vmolr | Regs.VmolrStrVlan : vmolr & ~Regs.VmolrStrVlan;
        if (want != vmolr) await _bar0.WriteAsync(VmolrOf(vf), want, ct);
        return (true, detail);
    }

    /// <summary>
    /// Adds or removes pool <paramref name="vf"/> in VLAN <paramref name="vid"/>'s VLVF entry
    /// (VLAN 0 always uses entry 0; others the entry holding the VLAN, else the highest free one)
    /// and keeps VFTA in step. False when no entry is free.
    /// </summary>
    private async Task<bool> VlanPoolAsync(int vid, int vf, bool add, CancellationToken ct)
    {
        int slot = vid == 0 ? 0 : -1;
        for (int i = Regs.VlvfEntries - 1; i > 0 && slot < 0; i--)
            if ((_vlvf[i] & Regs.VlvfVlanIdEnable) != 0 && (_vlvf[i] & Regs.VlvfVlanIdMask) == vid) slot = i;
        if (slot < 0 && add)
            for (int i = Regs.VlvfEntries - 1; i > 0 && slot < 0; i--)
                if (_vlvf[i] == 0) slot = i;
        if (slot < 0) return !add;
        uint pool = 1u << (Regs.VlvfPoolSelShift + vf);
        uint bits = add ? _vlvf[slot] | pool | (uint)vid | Regs.VlvfVlanIdEnable : _vlvf[slot] & ~pool;
        if ((bits & 0xFFu << Regs.VlvfPoolSelShift) == 0) bits = 0;   // no pool left: the entry is freed
        int word = vid / 32;
        uint vfta = bits != 0 ? _vfta[word] | 1u << (vid % 32) : _vfta[word] & ~(1u << (vid % 32));
        if (vfta != _vfta[word]) { _vfta[word] = vfta; await _bar0.WriteAsync(Regs.Vfta + 4u * (uint)word, vfta, ct); }
        if (bits != _vlvf[slot]) { _vlvf[slot] = bits; await _bar0.WriteAsync(Regs.Vlvf + 4u * (uint)slot, bits, ct); }
        return true;
    }
}
