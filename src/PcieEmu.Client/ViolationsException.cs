using System.Text;
using PcieEmu.Protocol.V1;

namespace PcieEmu.Client;

/// <summary>Thrown by <see cref="PcieEmuClient.AssertNoViolationsAsync"/>: the driver broke rules of the checker.</summary>
public sealed class ViolationsException : Exception
{
    /// <summary>An exception listing <paramref name="violations"/>.</summary>
    public ViolationsException(IReadOnlyList<Violation> violations, ulong dropped = 0) : base(Describe(violations, dropped))
    {
        Violations = violations;
        Dropped = dropped;
    }

    /// <summary>A violation exception with a message only (no violations).</summary>
    public ViolationsException() : this([], 0) { }

    /// <summary>A violation exception with a message only (no violations).</summary>
    public ViolationsException(string message) : base(message) => Violations = [];

    /// <summary>A violation exception with a message and an inner exception.</summary>
    public ViolationsException(string message, Exception innerException) : base(message, innerException) => Violations = [];

    /// <summary>The violations.</summary>
    public IReadOnlyList<Violation> Violations { get; }

    /// <summary>Violations the server did not keep (over its limit).</summary>
    public ulong Dropped { get; }

    /// <summary>One line per violation: requester, rule id, severity, spec, event, what the hardware did, hint.</summary>
    public static string Describe(IReadOnlyList<Violation> violations, ulong dropped = 0)
    {
        ArgumentNullException.ThrowIfNull(violations);
        var sb = new StringBuilder();
        sb.Append(violations.Count).Append(" driver-conduct violation(s)");
        if (dropped > 0) sb.Append(" (and ").Append(dropped).Append(" not kept)");
        foreach (var v in violations)
            sb.Append('\n').Append(v.Requester).Append(' ').Append(v.Rule.Id).Append(" (").Append(v.Rule.Spec).Append("): ")
              .Append(v.Event).Append(" -> ").Append(v.Outcome).Append(". Hint: ").Append(v.Rule.Hint);
        return sb.ToString();
    }
}
