using Grpc.Core;
using Microsoft.Extensions.Logging;
using PcieEmu.Core.Checker;
using PcieEmu.Core.Events;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;
using PcieEmu.Protocol.V1;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Services;

/// <summary>Counts live trace subscribers against <see cref="LimitsOptions.MaxTraceSubscribers"/>.</summary>
public sealed class TraceSubscribers
{
    private int _count;

    /// <summary>Takes a slot if fewer than <paramref name="max"/> are taken.</summary>
    public bool TryEnter(int max)
    {
        if (Interlocked.Increment(ref _count) <= max) return true;
        Interlocked.Decrement(ref _count);
        return false;
    }

    /// <summary>Releases a slot.</summary>
    public void Exit() => Interlocked.Decrement(ref _count);
}

/// <summary>
/// TraceService: a thin translation of the machine's event path. Each subscriber is a Core
/// subscription with its own bounded queue; when it falls behind it loses events and receives a
/// gap event with the count (the machine never waits for it).
/// </summary>
internal sealed class TraceGrpcService(Machine machine, LimitsOptions limits, TraceSubscribers subscribers, ServerChecker checker,
    ILogger<TraceGrpcService> logger)
    : TraceService.TraceServiceBase
{
    /// <summary>Filter kind names, in documentation order.</summary>
    public static readonly IReadOnlyList<(string Name, EventKinds Kinds)> KindNames =
    [
        ("config", EventKinds.Config), ("mmio", EventKinds.Mmio), ("dma", EventKinds.Dma), ("msi", EventKinds.Msi),
        ("iommu", EventKinds.Iommu), ("frame", EventKinds.Frame | EventKinds.FrameDrop), ("lifecycle", EventKinds.Lifecycle),
    ];

    /// <summary>Checks a filter; throws INVALID_ARGUMENT naming the bad field.</summary>
    public static (EventKinds Kinds, HashSet<ushort>? Rids) ParseFilter(TraceFilter filter)
    {
        ArgumentNullException.ThrowIfNull(filter);
        HashSet<ushort>? rids = null;
        for (int i = 0; i < filter.Rids.Count; i++)
        {
            if (!Bdf.TryParse(filter.Rids[i], out ushort rid))
                throw RpcErrors.Invalid($"rids[{i}]", $"'{filter.Rids[i]}' is not a bus:device.function (e.g. 01:10.0)");
            (rids ??= []).Add(rid);
        }
        var kinds = filter.Kinds.Count == 0 ? EventKinds.All : EventKinds.None;
        for (int i = 0; i < filter.Kinds.Count; i++)
        {
            string k = filter.Kinds[i];
            int at = -1;
            for (int j = 0; j < KindNames.Count; j++) if (KindNames[j].Name == k) at = j;
            if (at < 0) throw RpcErrors.Invalid($"kinds[{i}]", $"unknown kind '{k}' (kinds: {string.Join(", ", KindNames.Select(n => n.Name))})");
            kinds |= KindNames[at].Kinds;
        }
        return (kinds, rids);
    }

    /// <inheritdoc/>
    public override async Task Subscribe(TraceFilter request, IServerStreamWriter<TraceEvent> responseStream, ServerCallContext context)
    {
        var (kinds, rids) = ParseFilter(request);
        if (!subscribers.TryEnter(limits.MaxTraceSubscribers))
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"subscribers: already {limits.MaxTraceSubscribers} trace subscribers (the limit)"));
        try
        {
            using var sub = machine.Events.Subscribe(kinds, rids == null ? null : e => rids.Contains(e.Rid), limits.TraceQueueCapacity);
            if (logger.IsEnabled(LogLevel.Debug))
            {
                string k = kinds.ToString(), f = rids == null ? "all" : string.Join(',', rids.Select(Bdf.Format));
                Log.TraceSubscriberJoined(logger, context.Peer, k, f);
            }
            await context.WriteResponseHeadersAsync([]).ConfigureAwait(false);
            var reader = sub.Reader;
            while (await reader.WaitToReadAsync(context.CancellationToken).ConfigureAwait(false))
            {
                while (reader.TryRead(out var ev))
                    await responseStream.WriteAsync(ToProto(ev), context.CancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The client went away.
        }
        finally
        {
            subscribers.Exit();
        }
    }

    private DriverChecker Checker => checker.Checker
        ?? throw new RpcException(new Status(StatusCode.FailedPrecondition, "check: the driver-conduct checker is off (serve --check off)"));

    /// <summary>Checks a violation filter; throws INVALID_ARGUMENT naming the bad field.</summary>
    public static (HashSet<string>? Rules, HashSet<ushort>? Rids) ParseFilter(GetViolationsRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        HashSet<string>? rules = null;
        for (int i = 0; i < request.RuleIds.Count; i++)
        {
            if (Rules.Find(request.RuleIds[i]) == null)
                throw RpcErrors.Invalid($"rule_ids[{i}]", $"unknown rule '{request.RuleIds[i]}' (see `pcie-emu check --rules`)");
            (rules ??= []).Add(request.RuleIds[i]);
        }
        HashSet<ushort>? rids = null;
        for (int i = 0; i < request.Rids.Count; i++)
        {
            if (!Bdf.TryParse(request.Rids[i], out ushort rid))
                throw RpcErrors.Invalid($"rids[{i}]", $"'{request.Rids[i]}' is not a bus:device.function (e.g. 01:10.0)");
            (rids ??= []).Add(rid);
        }
        return (rules, rids);
    }

    /// <inheritdoc/>
    public override Task<GetViolationsResponse> GetViolations(GetViolationsRequest request, ServerCallContext context)
    {
        var (rules, rids) = ParseFilter(request);
        var c = Checker;
        var reply = new GetViolationsResponse();
        foreach (var v in c.Violations())
        {
            if (v.Sequence <= request.AfterSequence) continue;
            if (rules != null && !rules.Contains(v.Rule.Id)) continue;
            if (rids != null && !rids.Contains(v.Rid)) continue;
            reply.Violations.Add(ToProto(v));
        }
        reply.Dropped = (ulong)c.Dropped;
        return Task.FromResult(reply);
    }

    /// <inheritdoc/>
    public override Task<ClearViolationsResponse> ClearViolations(ClearViolationsRequest request, ServerCallContext context) =>
        Task.FromResult(new ClearViolationsResponse { Cleared = (uint)Checker.Clear() });

    /// <summary>A rule of the catalogue as the wire carries it.</summary>
    public static CheckerRule ToProto(Rule r)
    {
        ArgumentNullException.ThrowIfNull(r);
        return new CheckerRule { Id = r.Id, Severity = (ViolationSeverity)((int)r.Severity + 1), Spec = r.Spec, Text = r.Text, Hint = r.Hint };
    }

    /// <summary>A violation as the wire carries it.</summary>
    public static Protocol.V1.Violation ToProto(Core.Checker.Violation v)
    {
        ArgumentNullException.ThrowIfNull(v);
        return new Protocol.V1.Violation
        {
            Sequence = v.Sequence, Rule = ToProto(v.Rule), Rid = v.Rid, Requester = Bdf.Format(v.Rid), TimestampNs = v.TimestampNs,
            EventSequence = v.EventSequence, Event = v.Event, Outcome = v.Outcome,
        };
    }

    /// <summary>Core event to proto: the structured fields plus the decoded line body.</summary>
    public static TraceEvent ToProto(MachineEvent e)
    {
        var p = new TraceEvent
        {
            Sequence = e.Sequence,
            TimestampNs = e.TimestampNs,
            Rid = e.Rid,
            Kind = e.Kind == EventKind.FrameDrop ? TraceKind.Frame : (TraceKind)((int)e.Kind + 1),
            Token = TraceFormat.Token(e),
            Text = TraceFormat.Body(e),
        };
        switch (e)
        {
            case ConfigAccessEvent c:
                p.Write = c.IsWrite; p.Address = (ulong)c.Offset; p.Value = c.Value; p.Length = (uint)c.Width; p.Register = c.Register;
                break;
            case MmioAccessEvent m:
                p.Write = m.IsWrite; p.Address = m.Address; p.Value = m.Value; p.Length = (uint)m.Width; p.Register = m.Register ?? "";
                break;
            case DmaEvent d:
                p.Write = d.IsWrite; p.Address = d.Iova; p.Translated = d.Translated; p.Length = (uint)d.Length;
                break;
            case InterruptMessageEvent i:
                p.Write = true; p.Address = i.Interrupt.Address; p.Value = i.Interrupt.Data; p.Length = 4;
                break;
            case IommuFaultEvent f:
                p.Write = f.IsWrite; p.Address = f.Iova;
                break;
            case FrameEvent fr:
                p.Write = fr.Direction != FrameDirection.FromWire; p.Length = (uint)fr.Frame.Data.Length;
                break;
            case FrameDropEvent x:
                p.Length = (uint)x.Length;
                break;
            case GapEvent g:
                p.Missed = (ulong)g.Missed;
                break;
        }
        return p;
    }
}
