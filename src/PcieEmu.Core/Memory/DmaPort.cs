namespace PcieEmu.Core.Memory;

/// <summary>Result of translating one DMA address (VT-d §3.6 outcome).</summary>
/// <param name="Ok">True when the access may proceed.</param>
/// <param name="Address">Host physical address the IOVA maps to.</param>
/// <param name="Contiguous">Bytes from <paramref name="Address"/> that stay inside the same mapping (≥ 1).</param>
/// <param name="FaultReason">VT-d fault reason when not <paramref name="Ok"/> (0 when the fault was not a remapping fault).</param>
public readonly record struct DmaTranslation(bool Ok, ulong Address, ulong Contiguous, byte FaultReason)
{
    /// <summary>A translation that maps the address to itself for the rest of its 4 KiB page.</summary>
    public static DmaTranslation Identity(ulong address) => new(true, address, 4096 - (address & 0xFFF), 0);
}

/// <summary>Translates device DMA addresses: the DMA remapping unit, or identity when none is on.</summary>
public interface IDmaRemapper
{
    /// <summary>Translates <paramref name="iova"/> for a request from <paramref name="sourceId"/>.
    /// When <paramref name="record"/> is true a fault is recorded as hardware would.</summary>
    DmaTranslation Translate(ushort sourceId, ulong iova, bool write, bool record = true);

    /// <summary>Translates the start of an access of <paramref name="length"/> bytes at <paramref name="iova"/>
    /// (faults recorded as by <see cref="Translate"/>). A remapper may return a
    /// <see cref="DmaTranslation.Contiguous"/> that spans several pages when they map to adjacent
    /// frames, exactly as translating them one by one would; the default translates one page.</summary>
    DmaTranslation TranslateRange(ushort sourceId, ulong iova, ulong length, bool write) => Translate(sourceId, iova, write);
}

/// <summary>No remapping: every address maps to itself.</summary>
public sealed class IdentityRemapper : IDmaRemapper
{
    /// <summary>The shared instance.</summary>
    public static readonly IdentityRemapper Instance = new();
    /// <inheritdoc/>
    public DmaTranslation Translate(ushort sourceId, ulong iova, bool write, bool record = true) => DmaTranslation.Identity(iova);
}

/// <summary>Why a DMA stopped.</summary>
public enum DmaStatus
{
    /// <summary>All bytes moved.</summary>
    Ok,
    /// <summary>The function's Bus Master Enable is clear: it may not issue requests.</summary>
    BusMasterDisabled,
    /// <summary>The remapping unit refused the access (see <see cref="DmaResult.FaultReason"/>).</summary>
    TranslationFault,
    /// <summary>The (translated) address is not RAM: the request completed as Unsupported Request.</summary>
    UnsupportedRequest,
}

/// <summary>Outcome of a DMA: bytes moved before it stopped, and why it stopped.</summary>
public readonly record struct DmaResult(DmaStatus Status, int BytesMoved, byte FaultReason = 0, ulong FaultAddress = 0)
{
    /// <summary>True when the whole transfer completed.</summary>
    public bool Ok => Status == DmaStatus.Ok;
}

/// <summary>
/// The only way a device reaches host memory. A port belongs to one requester (its routing
/// ID is computed when the request is made, so it follows bus renumbering). Each access
/// checks Bus Master Enable, is translated by the remapping unit page by page (a run of pages
/// that map to adjacent frames is moved as one piece), is split where translations end, and
/// lands in RAM. A fault or an access outside RAM aborts the rest of the transfer.
/// When the machine has an <see cref="IDmaMemory"/> for the requester's routing ID
/// (<see cref="Platform.Machine.SetDmaMemory"/>), the access goes to that memory instead of
/// the remapping unit and RAM: a function assigned to a virtual machine reaches the VM's memory.
/// </summary>
public sealed class DmaPort
{
    private readonly Func<ushort> _rid;
    private readonly Func<bool> _busMaster;
    private readonly Platform.Machine _machine;

    private readonly Action? _onUnsupported;
    private ulong _firstHost;   // host address of the last transfer's first byte (for the event path)

    internal DmaPort(Platform.Machine machine, Func<ushort> rid, Func<bool> busMasterEnabled, Action? onUnsupportedCompletion = null)
    {
        _machine = machine; _rid = rid; _busMaster = busMasterEnabled; _onUnsupported = onUnsupportedCompletion;
    }

    /// <summary>Routing ID that requests from this port carry now.</summary>
    public ushort RequesterId => _rid();

    /// <summary>Reads device-visible memory at <paramref name="address"/> into <paramref name="destination"/>;
    /// <paramref name="purpose"/> says what the device reads (shown in the trace).</summary>
    public DmaResult Read(ulong address, Span<byte> destination, DmaPurpose purpose = default) =>
        Traced(address, destination.Length, false, Transfer(address, destination, default, write: false), purpose);

    /// <summary>Writes <paramref name="source"/> to device-visible memory at <paramref name="address"/>;
    /// <paramref name="purpose"/> says what the device writes (shown in the trace).</summary>
    public DmaResult Write(ulong address, ReadOnlySpan<byte> source, DmaPurpose purpose = default) =>
        Traced(address, source.Length, true, Transfer(address, default, source, write: true), purpose);

    /// <summary>An interrupt message (MSI/MSI-X vector <paramref name="vector"/>) whose address is not in the
    /// MSI window: an ordinary memory write, which the event path marks as the message it is.</summary>
    internal DmaResult WriteMessage(ulong address, ReadOnlySpan<byte> source, Interrupts.InterruptKind kind, uint vector) =>
        Traced(address, source.Length, true, Transfer(address, default, source, write: true), default, kind, vector);

    /// <summary>An interrupt message the function could not send because Bus Master Enable is clear.</summary>
    internal void NoteBlockedMessage(ulong address, Interrupts.InterruptKind kind, uint vector) =>
        Traced(address, 4, true, new DmaResult(DmaStatus.BusMasterDisabled, 0), default, kind, vector);

    private DmaResult Traced(ulong iova, int length, bool write, DmaResult r, DmaPurpose purpose, Interrupts.InterruptKind? message = null, uint vector = 0)
    {
        var bus = _machine.Events;
        bool routine = r.Ok && message == null;   // a successful DMA changes nothing the checker follows
        if (routine ? bus.WantsRoutine(Events.EventKind.Dma) : bus.Wants(Events.EventKind.Dma))
            bus.Publish(new Events.DmaEvent(_rid(), write, iova, r.Status == DmaStatus.BusMasterDisabled || (r.BytesMoved == 0 && !r.Ok) ? 0 : _firstHost, length, r)
            {
                IsRoutine = routine, Message = message, Vector = vector, Purpose = purpose,
            });
        return r;
    }

    private DmaResult Transfer(ulong address, Span<byte> dst, ReadOnlySpan<byte> src, bool write)
    {
        int length = write ? src.Length : dst.Length;
        if (!_busMaster()) return new DmaResult(DmaStatus.BusMasterDisabled, 0);
        ushort rid = _rid();
        if (_machine.DmaMemoryFor(rid) is { } memory)
        {
            _firstHost = address;   // the function's own memory (a VM's): its addresses are not translated here
            var r = write ? memory.Write(address, src) : memory.Read(address, dst);
            // As for RAM: a read nobody backs completes UR to the requester; a write is posted.
            if (!r.Ok && !write) _onUnsupported?.Invoke();
            return r;
        }
        var remapper = _machine.Remapper;
        var ram = _machine.Ram;
        int done = 0;
        while (done < length)
        {
            ulong iova = address + (ulong)done;
            var t = remapper.TranslateRange(rid, iova, (ulong)(length - done), write);
            if (!t.Ok)
            {
                // A blocked read completes UR to the requester (VT-d §7.1); a write is posted: no completion.
                if (!write) _onUnsupported?.Invoke();
                return new DmaResult(DmaStatus.TranslationFault, done, t.FaultReason, iova);
            }
            int chunk = (int)Math.Min((ulong)(length - done), Math.Max(1UL, t.Contiguous));
            if (done == 0) _firstHost = t.Address;
            if (!ram.Contains(t.Address, (ulong)chunk))
            {
                if (!write) _onUnsupported?.Invoke();
                return new DmaResult(DmaStatus.UnsupportedRequest, done, 0, iova);
            }
            if (write) src.Slice(done, chunk).CopyTo(ram.GetSpan(t.Address, chunk));
            else ram.GetSpan(t.Address, chunk).CopyTo(dst.Slice(done, chunk));
            done += chunk;
        }
        return new DmaResult(DmaStatus.Ok, done);
    }
}
