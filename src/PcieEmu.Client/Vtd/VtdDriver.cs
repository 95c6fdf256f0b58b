using System.Diagnostics;
using PcieEmu.Protocol.V1;
using static PcieEmu.Client.Vtd.VtdRegisters;

namespace PcieEmu.Client.Vtd;

/// <summary>
/// A small OS-style VT-d driver (legacy mode) that runs against a PcieEmu server: it builds
/// root, context and second-level tables in the machine's RAM (pages from a range the caller
/// reserves), programs the unit at <c>iommu_base</c> over MMIO (RTADDR, GCMD.SRTP, GCMD.TE,
/// polling GSTS), maps and unmaps I/O virtual address ranges per domain, invalidates the
/// context cache and the IOTLB (register-based or queued with a wait descriptor), reads and
/// clears fault records and asks <c>IommuService.TranslateAddress</c> how an address translates.
/// Tables are written through the mapped RAM file when one is given, else MemoryService.
/// The driver keeps a shadow of its own tables, so it never reads them back over the wire.
/// Not thread-safe: one caller at a time.
/// </summary>
public sealed class VtdDriver
{
    private const int EntriesPerTable = 512;
    private const ulong PteR = 1, PteW = 2, PtePs = 1UL << 7, AddrMask = 0x000F_FFFF_FFFF_F000UL;
    private const ulong Page2M = 2UL << 20;
    private const uint PersistentGcmdBits = GcmdTe | GcmdQie | (1u << 25) | (1u << 23);   // TE, QIE, IRE, CFI

    private readonly PcieEmuClient _client;
    private readonly VtdTableMemory _memory;
    private readonly Dictionary<ulong, ulong[]> _tables = [];            // second-level tables: address → entries
    private readonly Dictionary<int, ulong> _contextTables = [];         // bus → context table
    private readonly Dictionary<ushort, (ushort Did, bool PassThrough)> _contexts = [];
    private readonly Dictionary<ushort, VtdDomain> _domains = [];
    private readonly int _iotlbReg, _faultRecords, _faultRecordCount;
    private ulong _queueBase, _statusAddress;
    private int _queueEntries, _queueTail;
    private uint _waitSequence;

    private VtdDriver(PcieEmuClient client, VtdTableMemory memory, VtdPageAllocator pages, ulong registerBase, ulong cap, ulong ecap, ulong rootTable)
    {
        _client = client;
        _memory = memory;
        Pages = pages;
        RegisterBase = registerBase;
        Capability = cap;
        ExtendedCapability = ecap;
        RootTable = rootTable;
        _iotlbReg = EcapFields.IotlbRegisterOffset(ecap) + 8;
        _faultRecords = CapFields.FaultRecordOffset(cap);
        _faultRecordCount = CapFields.FaultRecordCount(cap);
    }

    /// <summary>
    /// Finds the unit (GetPlatform.iommu_base), reads VER/CAP/ECAP, and allocates an empty root
    /// table from [<paramref name="tableBase"/>, + <paramref name="tableSize"/>), a RAM range the
    /// driver owns from now on. Nothing is programmed until <see cref="EnableAsync"/>.
    /// <paramref name="ram"/>: the mapped RAM file (same host), or null to use MemoryService.
    /// </summary>
    public static async Task<VtdDriver> CreateAsync(PcieEmuClient client, ulong tableBase, ulong tableSize, RamMapping? ram = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        var pages = new VtdPageAllocator(tableBase, tableSize);
        var platform = await client.GetPlatformAsync(cancellationToken).ConfigureAwait(false);
        if (platform.IommuBase == 0) throw new InvalidOperationException("the platform has no VT-d unit (iommu_base = 0)");
        var ramRegion = platform.RamRegions.FirstOrDefault(r => tableBase >= r.Base && tableBase - r.Base < r.Size);
        if (ramRegion == null || tableBase + tableSize - ramRegion.Base > ramRegion.Size)
            throw new ArgumentOutOfRangeException(nameof(tableBase), $"table range 0x{tableBase:X}+0x{tableSize:X} is not inside RAM");
        var memory = ram != null ? VtdTableMemory.Mapped(ram) : VtdTableMemory.Remote(client);
        ulong b = platform.IommuBase;
        uint ver = (uint)await ReadMmioAsync(client, b + Ver, 4, cancellationToken).ConfigureAwait(false);
        if (ver >> 4 == 0) throw new InvalidOperationException($"VT-d VER reads 0x{ver:X}: no unit at 0x{b:X}");
        ulong cap = await ReadMmioAsync(client, b + Cap, 8, cancellationToken).ConfigureAwait(false);
        ulong ecap = await ReadMmioAsync(client, b + Ecap, 8, cancellationToken).ConfigureAwait(false);
        ulong root = pages.Allocate();
        await memory.ZeroPageAsync(root, cancellationToken).ConfigureAwait(false);
        return new VtdDriver(client, memory, pages, b, cap, ecap, root) { Version = ver };
    }

    /// <summary>Physical address of the register block.</summary>
    public ulong RegisterBase { get; }
    /// <summary>VER as read at creation.</summary>
    public uint Version { get; private init; }
    /// <summary>CAP as read at creation.</summary>
    public ulong Capability { get; }
    /// <summary>ECAP as read at creation.</summary>
    public ulong ExtendedCapability { get; }
    /// <summary>Physical address of the root table.</summary>
    public ulong RootTable { get; }
    /// <summary>The page allocator over the caller's table range.</summary>
    public VtdPageAllocator Pages { get; }
    /// <summary>How invalidations are issued now (queued after <see cref="EnableQueuedInvalidationAsync"/>).</summary>
    public VtdInvalidationMode InvalidationMode { get; private set; } = VtdInvalidationMode.Register;
    /// <summary>How long a poll (GSTS, ICC, IVT, wait status) may take before <see cref="TimeoutException"/>.</summary>
    public TimeSpan PollTimeout { get; set; } = TimeSpan.FromSeconds(5);
    /// <summary>Number of register-based or queued invalidation requests issued so far.</summary>
    public int InvalidationsIssued { get; private set; }

    // ---------------- Registers ----------------

    /// <summary>Reads a 4-byte register at <paramref name="offset"/> from the unit's base.</summary>
    public async Task<uint> ReadRegister32Async(int offset, CancellationToken cancellationToken = default) =>
        (uint)await ReadMmioAsync(_client, RegisterBase + (ulong)offset, 4, cancellationToken).ConfigureAwait(false);

    /// <summary>Reads an 8-byte register.</summary>
    public Task<ulong> ReadRegister64Async(int offset, CancellationToken cancellationToken = default) =>
        ReadMmioAsync(_client, RegisterBase + (ulong)offset, 8, cancellationToken);

    /// <summary>Writes a 4-byte register.</summary>
    public Task WriteRegister32Async(int offset, uint value, CancellationToken cancellationToken = default) =>
        WriteMmioAsync(RegisterBase + (ulong)offset, 4, value, cancellationToken);

    /// <summary>Writes an 8-byte register.</summary>
    public Task WriteRegister64Async(int offset, ulong value, CancellationToken cancellationToken = default) =>
        WriteMmioAsync(RegisterBase + (ulong)offset, 8, value, cancellationToken);

    private static async Task<ulong> ReadMmioAsync(PcieEmuClient client, ulong address, int width, CancellationToken ct)
    {
        var r = await client.ReadMmioAsync(address, width, ct).ConfigureAwait(false);
        if (r.Status != CompletionStatus.Successful) throw new InvalidOperationException($"VT-d register read at 0x{address:X} completed {r.Status}");
        return r.Value;
    }

    private async Task WriteMmioAsync(ulong address, int width, ulong value, CancellationToken ct)
    {
        var status = await _client.WriteMmioAsync(address, width, value, ct).ConfigureAwait(false);
        if (status != CompletionStatus.Successful) throw new InvalidOperationException($"VT-d register write at 0x{address:X} completed {status}");
    }

    private async Task<ulong> PollAsync(string what, Func<Task<ulong>> read, Func<ulong, bool> done, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        for (int spin = 0; ; spin++)
        {
            ulong v = await read().ConfigureAwait(false);
            if (done(v)) return v;
            if (sw.Elapsed > PollTimeout) throw new TimeoutException($"VT-d: {what} did not complete within {PollTimeout} (last value 0x{v:X})");
            if (spin > 16) await Task.Delay(1, ct).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Issues one GCMD command the way the spec asks: the persistent enables (TE, QIE, IRE, CFI)
    /// as GSTS shows them, with <paramref name="bit"/> set or cleared, then polls GSTS until the
    /// status bit follows.
    /// </summary>
    private async Task GlobalCommandAsync(uint bit, bool set, CancellationToken ct)
    {
        uint gsts = await ReadRegister32Async(Gsts, ct).ConfigureAwait(false);
        uint cmd = gsts & PersistentGcmdBits;
        cmd = set ? cmd | bit : cmd & ~bit;
        await WriteRegister32Async(Gcmd, cmd, ct).ConfigureAwait(false);
        await PollAsync($"GCMD 0x{bit:X8} → GSTS", async () => await ReadRegister32Async(Gsts, ct).ConfigureAwait(false),
            v => ((v & bit) != 0) == set, ct).ConfigureAwait(false);
    }

    // ---------------- Enable / disable ----------------

    /// <summary>
    /// Programs RTADDR with the root table, latches it (GCMD.SRTP, polls GSTS.RTPS), invalidates
    /// the context cache and IOTLB globally (required after SRTP) and turns translation on
    /// (GCMD.TE, polls GSTS.TES).
    /// </summary>
    public async Task EnableAsync(CancellationToken cancellationToken = default)
    {
        await WriteRegister64Async(Rtaddr, RootTable, cancellationToken).ConfigureAwait(false);
        await GlobalCommandAsync(GcmdSrtp, true, cancellationToken).ConfigureAwait(false);
        await InvalidateContextAsync(VtdContextGranularity.Global, cancellationToken: cancellationToken).ConfigureAwait(false);
        await InvalidateIotlbAsync(VtdIotlbGranularity.Global, cancellationToken: cancellationToken).ConfigureAwait(false);
        await GlobalCommandAsync(GcmdTe, true, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Turns translation off (GCMD.TE = 0, polls GSTS.TES).</summary>
    public Task DisableAsync(CancellationToken cancellationToken = default) => GlobalCommandAsync(GcmdTe, false, cancellationToken);

    /// <summary>
    /// Switches to queued invalidation (needs ECAP.QI): allocates a queue of 2^<paramref name="queueSizeOrder"/>
    /// pages (256 descriptors each) and a status page, programs IQA with IQT = 0, sets GCMD.QIE
    /// and polls GSTS.QIES. From then on every invalidation goes through the queue.
    /// </summary>
    public async Task EnableQueuedInvalidationAsync(int queueSizeOrder = 0, CancellationToken cancellationToken = default)
    {
        if (!EcapFields.QueuedInvalidation(ExtendedCapability)) throw new NotSupportedException("ECAP.QI = 0: the unit has no invalidation queue");
        if ((uint)queueSizeOrder > 7) throw new ArgumentOutOfRangeException(nameof(queueSizeOrder), "queueSizeOrder must be 0-7");
        if (InvalidationMode == VtdInvalidationMode.Queued) return;
        int pages = 1 << queueSizeOrder;
        _queueBase = Pages.AllocateContiguous(pages);
        for (int i = 0; i < pages; i++) await _memory.ZeroPageAsync(_queueBase + (ulong)i * VtdPageAllocator.PageSize, cancellationToken).ConfigureAwait(false);
        if (_statusAddress == 0)
        {
            _statusAddress = Pages.Allocate();
            await _memory.ZeroPageAsync(_statusAddress, cancellationToken).ConfigureAwait(false);
        }
        _queueEntries = pages * 256;
        _queueTail = 0;
        await WriteRegister64Async(Iqt, 0, cancellationToken).ConfigureAwait(false);
        await WriteRegister64Async(Iqa, _queueBase | (uint)queueSizeOrder, cancellationToken).ConfigureAwait(false);
        await GlobalCommandAsync(GcmdQie, true, cancellationToken).ConfigureAwait(false);
        InvalidationMode = VtdInvalidationMode.Queued;
    }

    /// <summary>Back to register-based invalidation: GCMD.QIE = 0 (polls GSTS.QIES); the queue pages are freed.</summary>
    public async Task DisableQueuedInvalidationAsync(CancellationToken cancellationToken = default)
    {
        if (InvalidationMode != VtdInvalidationMode.Queued) return;
        await GlobalCommandAsync(GcmdQie, false, cancellationToken).ConfigureAwait(false);
        for (int i = 0; i < _queueEntries / 256; i++) Pages.Free(_queueBase + (ulong)i * VtdPageAllocator.PageSize);
        _queueBase = 0;
        InvalidationMode = VtdInvalidationMode.Register;
    }

    // ---------------- Invalidation ----------------

    /// <summary>
    /// Invalidates context-cache entries. Register-based: returns the granularity the unit
    /// reports in CCMD.CAIG (0 = the request was ignored). Queued: returns null (the queue
    /// reports none), after the wait descriptor's status write came back.
    /// </summary>
    public async Task<VtdContextGranularity?> InvalidateContextAsync(VtdContextGranularity granularity, ushort domainId = 0, ushort sourceId = 0,
        int functionMask = 0, CancellationToken cancellationToken = default)
    {
        if (granularity is < VtdContextGranularity.Global or > VtdContextGranularity.Device) throw new ArgumentOutOfRangeException(nameof(granularity));
        if ((uint)functionMask > 3) throw new ArgumentOutOfRangeException(nameof(functionMask), "functionMask must be 0-3");
        InvalidationsIssued++;
        if (InvalidationMode == VtdInvalidationMode.Queued)
        {
            ulong lo = 1 | (ulong)granularity << 4 | (ulong)domainId << 16 | (ulong)sourceId << 32 | (ulong)functionMask << 48;
            await SubmitAsync([(lo, 0)], cancellationToken).ConfigureAwait(false);
            return null;
        }
        ulong cmd = CcmdIcc | (ulong)granularity << CcmdCirgShift | (ulong)functionMask << CcmdFmShift | (ulong)sourceId << CcmdSidShift | domainId;
        await WriteRegister64Async(Ccmd, cmd, cancellationToken).ConfigureAwait(false);
        ulong done = await PollAsync("CCMD.ICC", () => ReadRegister64Async(Ccmd, cancellationToken), v => (v & CcmdIcc) == 0, cancellationToken).ConfigureAwait(false);
        return (VtdContextGranularity)(int)((done >> CcmdCaigShift) & 3);
    }

    /// <summary>
    /// Invalidates IOTLB entries. For <see cref="VtdIotlbGranularity.Page"/>, the 2^<paramref name="addressMask"/>
    /// pages aligned at <paramref name="address"/> of <paramref name="domainId"/>. Register-based: writes IVA,
    /// then the IOTLB register with IVT (and DR/DW), polls IVT and returns IAIG (0 = ignored). Queued: returns null.
    /// </summary>
    public async Task<VtdIotlbGranularity?> InvalidateIotlbAsync(VtdIotlbGranularity granularity, ushort domainId = 0, ulong address = 0,
        int addressMask = 0, CancellationToken cancellationToken = default)
    {
        if (granularity is < VtdIotlbGranularity.Global or > VtdIotlbGranularity.Page) throw new ArgumentOutOfRangeException(nameof(granularity));
        if ((uint)addressMask > 63) throw new ArgumentOutOfRangeException(nameof(addressMask), "addressMask must be 0-63");
        if (granularity == VtdIotlbGranularity.Page && (address & ((1UL << (12 + Math.Min(addressMask, 52))) - 1)) != 0)
            throw new ArgumentException($"address 0x{address:X} is not aligned to 2^{addressMask} pages", nameof(address));
        InvalidationsIssued++;
        if (InvalidationMode == VtdInvalidationMode.Queued)
        {
            ulong lo = 2 | (ulong)granularity << 4 | 1UL << 6 | 1UL << 7 | (ulong)domainId << 16;
            ulong hi = granularity == VtdIotlbGranularity.Page ? address | (uint)addressMask : 0;
            await SubmitAsync([(lo, hi)], cancellationToken).ConfigureAwait(false);
            return null;
        }
        if (granularity == VtdIotlbGranularity.Page)
            await WriteRegister64Async(_iotlbReg - 8, address | (uint)addressMask, cancellationToken).ConfigureAwait(false);
        ulong cmd = IotlbIvt | (ulong)granularity << IotlbIirgShift | IotlbDr | IotlbDw | (ulong)domainId << IotlbDidShift;
        await WriteRegister64Async(_iotlbReg, cmd, cancellationToken).ConfigureAwait(false);
        ulong done = await PollAsync("IOTLB.IVT", () => ReadRegister64Async(_iotlbReg, cancellationToken), v => (v & IotlbIvt) == 0, cancellationToken).ConfigureAwait(false);
        return (VtdIotlbGranularity)(int)((done >> IotlbIaigShift) & 3);
    }

    /// <summary>
    /// Queued invalidation: writes <paramref name="descriptors"/> and a wait descriptor (SW: status
    /// write of a new sequence number to the driver's status page) at the tail, advances IQT, and
    /// polls the status dword. FSTS.IQE stops the wait with an <see cref="InvalidOperationException"/>.
    /// </summary>
    private async Task SubmitAsync(IReadOnlyList<(ulong Lo, ulong Hi)> descriptors, CancellationToken ct)
    {
        uint seq = ++_waitSequence;
        var all = new List<(ulong Lo, ulong Hi)>(descriptors) { (5 | 1UL << 5 | (ulong)seq << 32, _statusAddress) };
        if (all.Count >= _queueEntries) throw new InvalidOperationException("too many descriptors for the invalidation queue");
        // Wait for room: the unit consumes descriptors from IQH; keep one slot free (full = tail + 1 == head).
        await PollAsync("invalidation queue space", () => ReadRegister64Async(Iqh, ct),
            h => (int)(((int)(h >> 4) - _queueTail - 1 + _queueEntries) % _queueEntries) >= all.Count, ct).ConfigureAwait(false);
        foreach (var (lo, hi) in all)
        {
            await _memory.Write128Async(_queueBase + 16 * (ulong)_queueTail, lo, hi, ct).ConfigureAwait(false);
            _queueTail = (_queueTail + 1) % _queueEntries;
        }
        await WriteRegister64Async(Iqt, (ulong)_queueTail << 4, ct).ConfigureAwait(false);
        var sw = Stopwatch.StartNew();
        for (int spin = 0; ; spin++)
        {
            if (await _memory.Read32Async(_statusAddress, ct).ConfigureAwait(false) == seq) return;
            uint fsts = await ReadRegister32Async(Fsts, ct).ConfigureAwait(false);
            if ((fsts & FstsIqe) != 0)
            {
                ulong head = await ReadRegister64Async(Iqh, ct).ConfigureAwait(false);
                throw new InvalidOperationException($"VT-d invalidation queue error (FSTS.IQE) at descriptor {head >> 4}");
            }
            if (sw.Elapsed > PollTimeout) throw new TimeoutException($"VT-d: invalidation wait {seq} did not complete within {PollTimeout}");
            if (spin > 16) await Task.Delay(1, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Invalidates IOTLB entries of <paramref name="domain"/> covering [iova, iova + length): page-selective when CAP.PSI and the range fits MAMV, else domain-selective.</summary>
    public Task<VtdIotlbGranularity?> InvalidateRangeAsync(VtdDomain domain, ulong iova, ulong length, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (length == 0) throw new ArgumentOutOfRangeException(nameof(length));
        ulong first = iova >> 12, last = (iova + length - 1) >> 12;
        int am = 0;
        while ((first >> am) != (last >> am)) am++;
        if (CapFields.PageSelective(Capability) && am <= CapFields.Mamv(Capability))
            return InvalidateIotlbAsync(VtdIotlbGranularity.Page, domain.Id, (first >> am) << (12 + am), am, cancellationToken);
        return InvalidateIotlbAsync(VtdIotlbGranularity.Domain, domain.Id, cancellationToken: cancellationToken);
    }

    // ---------------- Domains and context entries ----------------

    /// <summary>
    /// Creates a domain with id <paramref name="domainId"/> (below 2^(4 + 2·CAP.ND)) and an empty
    /// top-level table; <paramref name="addressWidth"/> 48 (4-level) or 39 (3-level), which CAP.SAGAW must support.
    /// </summary>
    public async Task<VtdDomain> CreateDomainAsync(ushort domainId, int addressWidth = 48, CancellationToken cancellationToken = default)
    {
        if (domainId >= CapFields.DomainCount(Capability)) throw new ArgumentOutOfRangeException(nameof(domainId), $"domainId must be below {CapFields.DomainCount(Capability)} (CAP.ND)");
        if (addressWidth is not (39 or 48)) throw new ArgumentOutOfRangeException(nameof(addressWidth), "addressWidth must be 39 or 48");
        int sagawBit = addressWidth == 39 ? 1 : 2;
        if ((CapFields.Sagaw(Capability) & (1 << sagawBit)) == 0) throw new NotSupportedException($"CAP.SAGAW does not support {addressWidth}-bit tables");
        if (_domains.ContainsKey(domainId)) throw new InvalidOperationException($"domain {domainId} already exists");
        ulong top = await NewTableAsync(cancellationToken).ConfigureAwait(false);
        var d = new VtdDomain(domainId, addressWidth, top);
        _domains[domainId] = d;
        return d;
    }

    /// <summary>Attaches <paramref name="rid"/> to <paramref name="domain"/>: writes its context entry (TT = 0, AW, DID, SLPTPTR), creating the bus's context table on first use.</summary>
    public Task AttachAsync(uint rid, VtdDomain domain, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(domain);
        CheckRid(rid);
        if (!_domains.TryGetValue(domain.Id, out var own) || own != domain) throw new ArgumentException("domain was not created by this driver", nameof(domain));
        return SetContextAsync((ushort)rid, domain.Id, false, domain.RootTable | 1, domain.AwCode | (ulong)domain.Id << 8, domain, cancellationToken);
    }

    /// <summary>Attaches <paramref name="rid"/> in pass-through (TT = 10b, needs ECAP.PT): its DMA addresses go out unchanged.</summary>
    public Task AttachPassThroughAsync(uint rid, ushort domainId, CancellationToken cancellationToken = default)
    {
        CheckRid(rid);
        if (!EcapFields.PassThrough(ExtendedCapability)) throw new NotSupportedException("ECAP.PT = 0: the unit has no pass-through");
        if (domainId >= CapFields.DomainCount(Capability)) throw new ArgumentOutOfRangeException(nameof(domainId));
        return SetContextAsync((ushort)rid, domainId, true, 2UL << 2 | 1, 2UL | (ulong)domainId << 8, null, cancellationToken);
    }

    /// <summary>Clears <paramref name="rid"/>'s context entry and invalidates what the unit may hold for it: its DMA faults from now on.</summary>
    public async Task DetachAsync(uint rid, CancellationToken cancellationToken = default)
    {
        CheckRid(rid);
        if (!_contexts.ContainsKey((ushort)rid)) throw new InvalidOperationException($"{PciAddress.Format(rid)} is not attached");
        await ClearContextAsync((ushort)rid, cancellationToken).ConfigureAwait(false);
    }

    private static void CheckRid(uint rid)
    {
        if (rid > 0xFFFF) throw new ArgumentOutOfRangeException(nameof(rid), $"rid 0x{rid:X} is not a 16-bit routing ID");
    }

    private async Task SetContextAsync(ushort rid, ushort did, bool passThrough, ulong lo, ulong hi, VtdDomain? domain, CancellationToken ct)
    {
        if (_contexts.ContainsKey(rid)) await ClearContextAsync(rid, ct).ConfigureAwait(false);
        int bus = rid >> 8;
        if (!_contextTables.TryGetValue(bus, out ulong table))
        {
            table = Pages.Allocate();
            await _memory.ZeroPageAsync(table, ct).ConfigureAwait(false);
            await _memory.Write128Async(RootTable + 16 * (ulong)bus, table | 1, 0, ct).ConfigureAwait(false);
            _contextTables[bus] = table;
        }
        await _memory.Write128Async(table + 16 * (ulong)(rid & 0xFF), lo, hi, ct).ConfigureAwait(false);
        _contexts[rid] = (did, passThrough);
        domain?.DeviceSet.Add(rid);
        // With CAP.CM = 0 a not-present entry is never cached: nothing to invalidate. CM = 1 caches them.
        if (CapFields.CachingMode(Capability))
        {
            await InvalidateContextAsync(VtdContextGranularity.Device, 0, rid, 0, ct).ConfigureAwait(false);
            await InvalidateIotlbAsync(VtdIotlbGranularity.Domain, 0, cancellationToken: ct).ConfigureAwait(false);
        }
    }

    private async Task ClearContextAsync(ushort rid, CancellationToken ct)
    {
        var (did, _) = _contexts[rid];
        await _memory.Write128Async(_contextTables[rid >> 8] + 16 * (ulong)(rid & 0xFF), 0, 0, ct).ConfigureAwait(false);
        _contexts.Remove(rid);
        if (_domains.TryGetValue(did, out var d)) d.DeviceSet.Remove(rid);
        // A present entry went away: device-selective context invalidation, then the domain's IOTLB entries.
        await InvalidateContextAsync(VtdContextGranularity.Device, did, rid, 0, ct).ConfigureAwait(false);
        await InvalidateIotlbAsync(VtdIotlbGranularity.Domain, did, cancellationToken: ct).ConfigureAwait(false);
    }

    // ---------------- Mapping ----------------

    private async Task<ulong> NewTableAsync(CancellationToken ct)
    {
        ulong t = Pages.Allocate();
        await _memory.ZeroPageAsync(t, ct).ConfigureAwait(false);
        _tables[t] = new ulong[EntriesPerTable];
        return t;
    }

    /// <summary>Bytes one entry at <paramref name="level"/> covers.</summary>
    private static ulong Span(int level) => 1UL << (12 + 9 * (level - 1));

    private static int Index(ulong iova, int level) => (int)(iova >> (12 + 9 * (level - 1))) & 0x1FF;

    /// <summary>
    /// Maps [<paramref name="iova"/>, + <paramref name="length"/>) of <paramref name="domain"/> to
    /// physical [<paramref name="physical"/>, + length) with <paramref name="access"/>. All three
    /// 4 KiB aligned. With <paramref name="largePages"/> (and CAP.SLLPS 2 MiB) 2 MiB-aligned
    /// stretches use 2 MiB leaves. Mapping over an existing mapping throws (unmap first). New
    /// entries were not present, so no invalidation is needed (CAP.CM = 0; with CM = 1 the range
    /// is invalidated). Leaf entries of one table are written in one go.
    /// </summary>
    public async Task MapAsync(VtdDomain domain, ulong iova, ulong physical, ulong length, VtdAccess access = VtdAccess.ReadWrite,
        bool largePages = false, CancellationToken cancellationToken = default)
    {
        CheckRange(domain, iova, length);
        if (physical % VtdPageAllocator.PageSize != 0) throw new ArgumentException($"physical 0x{physical:X} is not 4 KiB aligned", nameof(physical));
        if ((physical + length - 1) > AddrMask) throw new ArgumentOutOfRangeException(nameof(physical), "physical range beyond 52 bits");
        if ((access & VtdAccess.ReadWrite) == 0 || (access & ~VtdAccess.ReadWrite) != 0) throw new ArgumentOutOfRangeException(nameof(access), "access must be Read, Write or ReadWrite");
        bool use2M = largePages && CapFields.LargePage2M(Capability);
        ulong perm = (ulong)access;
        var writes = new SortedDictionary<ulong, ulong>();
        // Check the whole range first so a refused map changes nothing.
        for (ulong off = 0; off < length;)
        {
            var (table, idx, level) = Lookup(domain, iova + off);
            if (table != 0 && _tables[table][idx] != 0)
                throw new InvalidOperationException($"IOVA 0x{iova + off:X} of domain {domain.Id} is already mapped");
            off += Span(level) - ((iova + off) & (Span(level) - 1));   // skip what one missing entry covers
        }
        for (ulong off = 0; off < length;)
        {
            ulong va = iova + off, pa = physical + off;
            bool big = use2M && va % Page2M == 0 && pa % Page2M == 0 && length - off >= Page2M;
            int leafLevel = big ? 2 : 1;
            ulong table = domain.RootTable;
            for (int level = domain.Levels; level > leafLevel; level--)
            {
                int i = Index(va, level);
                ulong e = _tables[table][i];
                if (e == 0)
                {
                    ulong next = await NewTableAsync(cancellationToken).ConfigureAwait(false);
                    e = next | PteR | PteW;
                    _tables[table][i] = e;
                    writes[table + 8 * (ulong)i] = e;
                }
                table = e & AddrMask;
            }
            if (big && _tables[table][Index(va, 2)] != 0)
            {
                // A 4 KiB table already hangs here: map this stretch with 4 KiB pages.
                big = false;
                leafLevel = 1;
                table = _tables[table][Index(va, 2)] & AddrMask;
            }
            int idx = Index(va, leafLevel);
            ulong pte = pa | perm | (big ? PtePs : 0);
            _tables[table][idx] = pte;
            writes[table + 8 * (ulong)idx] = pte;
            off += big ? Page2M : VtdPageAllocator.PageSize;
        }
        await FlushWritesAsync(writes, cancellationToken).ConfigureAwait(false);
        domain.MappedBytes += length;
        if (CapFields.CachingMode(Capability)) await InvalidateRangeAsync(domain, iova, length, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Unmaps [<paramref name="iova"/>, + <paramref name="length"/>): clears the leaf entries
    /// (a 2 MiB leaf only when the range covers all of it), then, unless <paramref name="invalidate"/>
    /// is false, invalidates the IOTLB for the range. Without the invalidation the unit keeps
    /// using cached translations: the bug a driver must be able to hit. Returns the bytes that were mapped.
    /// </summary>
    public async Task<ulong> UnmapAsync(VtdDomain domain, ulong iova, ulong length, bool invalidate = true, CancellationToken cancellationToken = default)
    {
        CheckRange(domain, iova, length);
        var writes = new SortedDictionary<ulong, ulong>();
        ulong unmapped = 0;
        for (ulong off = 0; off < length;)
        {
            ulong va = iova + off;
            var (table, idx, level) = Lookup(domain, va);
            ulong step = Span(level);
            if (table != 0 && _tables[table][idx] != 0)
            {
                if (level == 2 && (va % Page2M != 0 || length - off < Page2M))
                    throw new InvalidOperationException($"IOVA 0x{va:X} lies in a 2 MiB page of domain {domain.Id}: unmap all of it");
                _tables[table][idx] = 0;
                writes[table + 8 * (ulong)idx] = 0;
                unmapped += step;
            }
            off += step - (va & (step - 1));
        }
        await FlushWritesAsync(writes, cancellationToken).ConfigureAwait(false);
        domain.MappedBytes -= unmapped;
        if (invalidate && unmapped > 0) await InvalidateRangeAsync(domain, iova, length, cancellationToken).ConfigureAwait(false);
        return unmapped;
    }

    /// <summary>Walks the driver's shadow of <paramref name="domain"/>'s tables: the physical address <paramref name="iova"/> maps to now, or null.</summary>
    public ulong? Resolve(VtdDomain domain, ulong iova)
    {
        ArgumentNullException.ThrowIfNull(domain);
        var (table, idx, level) = Lookup(domain, iova);
        if (table == 0) return null;
        ulong e = _tables[table][idx];
        if (e == 0) return null;
        ulong size = level == 2 ? Page2M : VtdPageAllocator.PageSize;
        return (e & AddrMask & ~(size - 1)) + (iova & (size - 1));
    }

    /// <summary>(leaf table, index, level) for iova; table 0 when an intermediate table is missing; stops at a 2 MiB leaf.</summary>
    private (ulong Table, int Index, int Level) Lookup(VtdDomain domain, ulong iova)
    {
        ulong table = domain.RootTable;
        for (int level = domain.Levels; level > 1; level--)
        {
            int i = Index(iova, level);
            ulong e = _tables[table][i];
            if (e == 0) return level == 2 ? (table, i, 2) : (0, 0, level);
            if ((e & PtePs) != 0) return (table, i, level);
            table = e & AddrMask;
        }
        return (table, Index(iova, 1), 1);
    }

    private void CheckRange(VtdDomain domain, ulong iova, ulong length)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (!_domains.TryGetValue(domain.Id, out var own) || own != domain) throw new ArgumentException("domain was not created by this driver", nameof(domain));
        if (iova % VtdPageAllocator.PageSize != 0) throw new ArgumentException($"iova 0x{iova:X} is not 4 KiB aligned", nameof(iova));
        if (length == 0 || length % VtdPageAllocator.PageSize != 0) throw new ArgumentException("length must be a non-zero multiple of 4 KiB", nameof(length));
        ulong limit = 1UL << domain.AddressWidth;
        if (iova >= limit || length > limit - iova) throw new ArgumentOutOfRangeException(nameof(iova), $"[0x{iova:X}, +0x{length:X}) is beyond the domain's {domain.AddressWidth}-bit address width");
    }

    private async Task FlushWritesAsync(SortedDictionary<ulong, ulong> writes, CancellationToken ct)
    {
        // Contiguous entries go out as one write. Order does not matter to the unit: a zero
        // entry is not present, and a table is linked only after NewTableAsync zeroed it.
        var run = new List<ulong>();
        ulong start = 0;
        foreach (var (addr, value) in writes)
        {
            if (run.Count > 0 && addr == start + 8 * (ulong)run.Count && run.Count < EntriesPerTable) { run.Add(value); continue; }
            if (run.Count > 0) await _memory.WriteEntriesAsync(start, run.ToArray(), ct).ConfigureAwait(false);
            run.Clear();
            run.Add(value);
            start = addr;
        }
        if (run.Count > 0) await _memory.WriteEntriesAsync(start, run.ToArray(), ct).ConfigureAwait(false);
    }

    // ---------------- Faults ----------------

    /// <summary>Reads FSTS and every fault recording register; returns the status and the records with F = 1.</summary>
    public async Task<VtdFaultState> ReadFaultsAsync(CancellationToken cancellationToken = default)
    {
        uint fsts = await ReadRegister32Async(Fsts, cancellationToken).ConfigureAwait(false);
        var list = new List<VtdFault>();
        for (int i = 0; i < _faultRecordCount; i++)
        {
            int off = _faultRecords + 16 * i;
            ulong hi = await ReadRegister64Async(off + 8, cancellationToken).ConfigureAwait(false);
            if ((hi & (1UL << 63)) == 0) continue;
            ulong lo = await ReadRegister64Async(off, cancellationToken).ConfigureAwait(false);
            list.Add(new VtdFault(i, (ushort)hi, (byte)(hi >> 32), (hi & (1UL << 62)) != 0, lo & ~0xFFFUL));
        }
        return new VtdFaultState(fsts, list);
    }

    /// <summary>Clears every pending record (writes 1 to F) and FSTS.PFO; returns the records it cleared.</summary>
    public async Task<IReadOnlyList<VtdFault>> ClearFaultsAsync(CancellationToken cancellationToken = default)
    {
        var state = await ReadFaultsAsync(cancellationToken).ConfigureAwait(false);
        foreach (var f in state.Records)
            await WriteRegister32Async(_faultRecords + 16 * f.Index + 12, 0x8000_0000, cancellationToken).ConfigureAwait(false);
        if (state.Overflow) await WriteRegister32Async(Fsts, FstsPfo, cancellationToken).ConfigureAwait(false);
        return state.Records;
    }

    /// <summary>
    /// Programs the fault-event message (FEDATA, FEADDR, FEUADDR) and FECTL.IM: with
    /// <paramref name="unmask"/> the unit sends <paramref name="data"/> to <paramref name="address"/>
    /// (an MSI address in 0xFEE0_0000-0xFEEF_FFFF reaches the interrupt stream) when a fault is recorded.
    /// </summary>
    public async Task ConfigureFaultEventAsync(ulong address, uint data, bool unmask = true, CancellationToken cancellationToken = default)
    {
        if ((address & 3) != 0) throw new ArgumentException("address must be dword aligned", nameof(address));
        if (data > 0xFFFF) throw new ArgumentOutOfRangeException(nameof(data), "FEDATA holds 16 bits");
        await WriteRegister32Async(Fedata, data, cancellationToken).ConfigureAwait(false);
        await WriteRegister32Async(Feaddr, (uint)address, cancellationToken).ConfigureAwait(false);
        await WriteRegister32Async(Feuaddr, (uint)(address >> 32), cancellationToken).ConfigureAwait(false);
        await WriteRegister32Async(Fectl, unmask ? 0 : EctlIm, cancellationToken).ConfigureAwait(false);
    }

    // ---------------- Probe ----------------

    /// <summary>
    /// Asks the unit how a DMA from <paramref name="rid"/> to <paramref name="iova"/> translates now
    /// (IommuService.TranslateAddress). Without <paramref name="dryRun"/> it fills the caches and
    /// records a fault exactly as that DMA would.
    /// </summary>
    public Task<TranslateAddressResponse> ProbeAsync(uint rid, ulong iova, bool write = false, bool dryRun = false,
        CancellationToken cancellationToken = default) =>
        _client.TranslateAddressAsync(rid, iova, write, dryRun, cancellationToken);
}
