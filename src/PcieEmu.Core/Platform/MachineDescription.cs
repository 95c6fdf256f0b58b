using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using PcieEmu.Core.Devices;

namespace PcieEmu.Core.Platform;

/// <summary>A machine description that cannot be built: <see cref="Entry"/> names the offending entry
/// (<c>rootPorts[1].switch.downstreamPorts[0].device.totalVfs</c>); the message starts with it.</summary>
public sealed class MachineDescriptionException(string entry, string problem) : Exception($"{entry}: {problem}")
{
    /// <summary>The offending entry's path in the description.</summary>
    public string Entry => entry;
    /// <summary>What is wrong with it.</summary>
    public string Problem => problem;
}

/// <summary>A device on a port: its registered type and its options (an instance of the type's options record).</summary>
/// <param name="Type">The registered type name ("intel-82576").</param>
/// <param name="Options">The type's options record; null means every option at its default.</param>
public sealed record DeviceDescription(string Type, object? Options = null)
{
    /// <summary>The L2 segment each of the device's Ethernet ports joins, in port order (null: the port is on no
    /// segment); null or shorter than the device's ports leaves the rest unconnected. JSON: <c>"segment": "lan0"</c>
    /// (the first port) or <c>"segment": ["lan0", null]</c>.</summary>
    public IReadOnlyList<string?>? Segments { get; init; }

    /// <summary>The description key that names segments on a device (not an option of any device type).</summary>
    public const string SegmentKey = "segment";

    internal static bool IsSegmentName(string? name) =>
        name is { Length: > 0 and <= 32 } && char.IsAsciiLetterOrDigit(name[0]) && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');
}

/// <summary>A switch: an upstream port on the link above and downstream ports on its internal bus.</summary>
public sealed record SwitchDescription
{
    /// <summary>The downstream ports, each with a device, another switch, or nothing (an empty slot).</summary>
    public IReadOnlyList<PortDescription> DownstreamPorts { get; init; } = [];
}

/// <summary>A root port or a switch downstream port and what is on its link.</summary>
public sealed record PortDescription
{
    /// <summary>Device number: on bus 0 for a root port (1-31; 0 is the host bridge), on the switch's
    /// internal bus for a downstream port (0-31). Null takes the lowest free number (root ports from 1).</summary>
    public int? Slot { get; init; }
    /// <summary>The device on the port's link, or null.</summary>
    public DeviceDescription? Device { get; init; }
    /// <summary>A switch on the port's link, or null (not both a device and a switch).</summary>
    public SwitchDescription? Switch { get; init; }
}

/// <summary>
/// What the machine is made of beyond the root complex: its root ports, each with a device or a
/// switch. JSON form: docs/machine.md (schema docs/machine.schema.json). <see cref="Default"/> is the
/// machine PcieEmu builds unless told otherwise.
/// </summary>
public sealed record MachineDescription
{
    /// <summary>Root ports, in order (slots assigned in this order when not given).</summary>
    public IReadOnlyList<PortDescription> RootPorts { get; init; } = [];

    /// <summary>The embedded default description's JSON text.</summary>
    public static string DefaultJson { get; } = ReadDefault();

    /// <summary>The default machine: one root port at 00:01.0 with a dual-port 82576 (8 VFs per PF).</summary>
    public static MachineDescription Default { get; } = Parse(DefaultJson);

    /// <summary>One root port (00:01.0) with one device of <paramref name="type"/> (options null: its defaults).</summary>
    public static MachineDescription WithDevice(string type, object? options = null) =>
        new() { RootPorts = [new PortDescription { Slot = 1, Device = new DeviceDescription(type, options) }] };

    private static string ReadDefault()
    {
        using var s = typeof(MachineDescription).Assembly.GetManifestResourceStream("PcieEmu.Core.default-machine.json")
            ?? throw new InvalidOperationException("the default machine description is not embedded");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>Reads the description in file <paramref name="path"/>; throws <see cref="MachineDescriptionException"/>.</summary>
    public static MachineDescription Load(string path, DeviceRegistry? registry = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MachineDescriptionException(path, e.Message);
        }
        return Parse(text, registry);
    }

    /// <summary>Parses a JSON description and checks it (keys, types, slots, device options); throws
    /// <see cref="MachineDescriptionException"/> naming the offending entry.</summary>
    public static MachineDescription Parse(string json, DeviceRegistry? registry = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        registry ??= DeviceRegistry.Default;
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new MachineDescriptionException("(description)", $"not valid JSON: {e.Message}");
        }
        var top = Object(root, "(description)");
        Keys(top, "(description)", "$schema", "rootPorts");
        var ports = Array(top["rootPorts"], "rootPorts", required: true);
        var d = new MachineDescription { RootPorts = [.. ports.Select((p, i) => ReadPort(p, $"rootPorts[{i}]", registry))] };
        d.Validate(registry);
        return d;
    }

    private static PortDescription ReadPort(JsonNode? node, string path, DeviceRegistry registry)
    {
        var o = Object(node, path);
        Keys(o, path, "slot", "device", "switch");
        int? slot = null;
        if (o["slot"] is { } s)
        {
            if (s.GetValueKind() != JsonValueKind.Number || !s.AsValue().TryGetValue(out int v))
                throw new MachineDescriptionException(path + ".slot", $"must be an integer (was {s.ToJsonString()})");
            slot = v;
        }
        DeviceDescription? device = null;
        if (o["device"] is { } dn)
        {
            var dobj = Object(dn, path + ".device");
            if (dobj["type"] is not { } t || t.GetValueKind() != JsonValueKind.String)
                throw new MachineDescriptionException(path + ".device", $"needs \"type\" (one of: {string.Join(", ", registry.Names)})");
            var type = registry.Get(t.GetValue<string>(), path + ".device.type");
            var options = new JsonObject();
            foreach (var (k, v) in dobj)
                if (k is not ("type" or DeviceDescription.SegmentKey)) options[k] = v?.DeepClone();
            device = new DeviceDescription(type.Name, type.ReadOptions(options, path + ".device"))
            {
                Segments = dobj[DeviceDescription.SegmentKey] is { } seg ? ReadSegments(seg, path + ".device.segment") : null,
            };
        }
        SwitchDescription? sw = null;
        if (o["switch"] is { } sn)
        {
            var sobj = Object(sn, path + ".switch");
            Keys(sobj, path + ".switch", "downstreamPorts");
            var dps = Array(sobj["downstreamPorts"], path + ".switch.downstreamPorts", required: true);
            sw = new SwitchDescription { DownstreamPorts = [.. dps.Select((p, i) => ReadPort(p, $"{path}.switch.downstreamPorts[{i}]", registry))] };
        }
        return new PortDescription { Slot = slot, Device = device, Switch = sw };
    }

    private static string?[] ReadSegments(JsonNode node, string path)
    {
        if (node.GetValueKind() == JsonValueKind.String) return [node.GetValue<string>()];
        if (node is JsonArray a)
            return [.. a.Select((n, i) => n is null ? null
                : n.GetValueKind() == JsonValueKind.String ? n.GetValue<string>()
                : throw new MachineDescriptionException($"{path}[{i}]", $"must be a segment name or null (was {n.ToJsonString()})"))];
        throw new MachineDescriptionException(path, $"must be a segment name or an array of them, one per Ethernet port (was {node.ToJsonString()})");
    }

    private static JsonObject Object(JsonNode? node, string path) => node as JsonObject
        ?? throw new MachineDescriptionException(path, $"must be an object (was {node?.ToJsonString() ?? "null"})");

    private static JsonArray Array(JsonNode? node, string path, bool required)
    {
        if (node is null && required) throw new MachineDescriptionException(path, "is required (an array)");
        return node as JsonArray ?? throw new MachineDescriptionException(path, $"must be an array (was {node?.ToJsonString() ?? "null"})");
    }

    private static void Keys(JsonObject o, string path, params string[] allowed)
    {
        foreach (var (k, _) in o)
            if (System.Array.IndexOf(allowed, k) < 0)
                throw new MachineDescriptionException(path, $"unknown key '{k}' (keys: {string.Join(", ", allowed)})");
    }

    /// <summary>Checks what can be checked without building: at least one root port, slots in range and
    /// unique, no port with both a device and a switch, switches with 1-32 downstream ports, known types,
    /// valid options. Bus numbers and BAR space are checked when the machine is built (<see cref="Machine"/>).</summary>
    public void Validate(DeviceRegistry? registry = null)
    {
        registry ??= DeviceRegistry.Default;
        if (RootPorts is null || RootPorts.Count == 0) throw new MachineDescriptionException("rootPorts", "needs at least one root port");
        AssignSlots(RootPorts, "rootPorts", first: 1);
        for (int i = 0; i < RootPorts.Count; i++) ValidatePort(RootPorts[i], $"rootPorts[{i}]", registry);
    }

    private static void ValidatePort(PortDescription p, string path, DeviceRegistry registry)
    {
        if (p is null) throw new MachineDescriptionException(path, "must be an object");
        if (p.Device != null && p.Switch != null)
            throw new MachineDescriptionException(path, "has both \"device\" and \"switch\": a link holds one of them");
        if (p.Device is { } d)
        {
            var type = registry.Get(d.Type, path + ".device.type");
            type.Validate(d.Options ?? type.DefaultOptions(), path + ".device");
            for (int i = 0; i < (d.Segments?.Count ?? 0); i++)
                if (d.Segments![i] is { } name && !DeviceDescription.IsSegmentName(name))
                    throw new MachineDescriptionException(d.Segments.Count == 1 ? path + ".device.segment" : $"{path}.device.segment[{i}]",
                        $"'{name}' is not a segment name (1-32 letters, digits, '-', '_', '.'; starting with a letter or digit)");
        }
        if (p.Switch is { } s)
        {
            string sp = path + ".switch.downstreamPorts";
            if (s.DownstreamPorts is null || s.DownstreamPorts.Count is 0 or > 32)
                throw new MachineDescriptionException(sp, $"needs 1..32 downstream ports (was {s.DownstreamPorts?.Count ?? 0})");
            AssignSlots(s.DownstreamPorts, sp, first: 0);
            for (int i = 0; i < s.DownstreamPorts.Count; i++) ValidatePort(s.DownstreamPorts[i], $"{sp}[{i}]", registry);
        }
    }

    /// <summary>The device numbers of <paramref name="ports"/> in order: given ones checked (range,
    /// duplicates), missing ones the lowest free from <paramref name="first"/>.</summary>
    internal static int[] AssignSlots(IReadOnlyList<PortDescription> ports, string path, int first)
    {
        var slots = new int[ports.Count];
        var taken = new Dictionary<int, int>();
        for (int i = 0; i < ports.Count; i++)
        {
            if (ports[i]?.Slot is not { } s) continue;
            if (s < first || s > 31)
                throw new MachineDescriptionException($"{path}[{i}].slot", $"must be in {first}..31 (was {s})" + (first == 1 && s == 0 ? ": 00:00.0 is the host bridge" : ""));
            if (taken.TryGetValue(s, out int other))
                throw new MachineDescriptionException($"{path}[{i}].slot", string.Create(CultureInfo.InvariantCulture, $"duplicate slot {s}: {path}[{other}] has it"));
            taken[s] = i;
        }
        int next = first;
        for (int i = 0; i < ports.Count; i++)
        {
            if (ports[i]?.Slot is { } s) { slots[i] = s; continue; }
            while (taken.ContainsKey(next)) next++;
            if (next > 31) throw new MachineDescriptionException($"{path}[{i}]", "no free slot left (device numbers end at 31)");
            slots[i] = next;
            taken[next] = i;
        }
        return slots;
    }
}
