using System.Globalization;

namespace PcieEmu.Drivers;

/// <summary>A tiny "--name value" / "--flag" command-line reader with errors that name the option.</summary>
public sealed class Args
{
    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public Args(IEnumerable<string> args, IEnumerable<string> flags)
    {
        var flagSet = flags.ToHashSet(StringComparer.Ordinal);
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string a = list[i];
            if (!a.StartsWith("--", StringComparison.Ordinal)) { Positional.Add(a); continue; }
            if (flagSet.Contains(a)) { Add(a, "true"); continue; }
            if (i + 1 >= list.Count) throw new ArgumentException($"{a} needs a value");
            Add(a, list[++i]);
        }
    }

    public List<string> Positional { get; } = [];

    private void Add(string k, string v)
    {
        if (!_values.TryGetValue(k, out var l)) _values[k] = l = [];
        l.Add(v);
    }

    public bool Flag(string name) { _used.Add(name); return _values.ContainsKey(name); }

    public string? String(string name) { _used.Add(name); return _values.TryGetValue(name, out var l) ? l[^1] : null; }

    public IReadOnlyList<string> All(string name) { _used.Add(name); return _values.TryGetValue(name, out var l) ? l : []; }

    public int Int(string name, int def, int min = int.MinValue, int max = int.MaxValue)
    {
        string? s = String(name);
        if (s == null) return def;
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) || v < min || v > max)
            throw new ArgumentException($"{name}: '{s}' is not an integer in [{min}, {max}]");
        return v;
    }

    public ulong Address(string name, ulong def)
    {
        string? s = String(name);
        if (s == null) return def;
        bool hex = s.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        if (!ulong.TryParse(hex ? s[2..] : s, hex ? NumberStyles.HexNumber : NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong v))
            throw new ArgumentException($"{name}: '{s}' is not a number (decimal or 0x hex)");
        return v;
    }

    /// <summary>Throws when an option was given that nothing asked for (a typo).</summary>
    public void CheckUnknown()
    {
        var unknown = _values.Keys.Where(k => !_used.Contains(k)).ToList();
        if (unknown.Count > 0) throw new ArgumentException($"unknown option(s): {string.Join(", ", unknown)}");
    }
}

/// <summary>Line output that a test (or a person) can follow: flushed at once.</summary>
public static class Log
{
    private static readonly Lock Gate = new();

    public static void Line(string text)
    {
        lock (Gate)
        {
            Console.Out.WriteLine(text);
            Console.Out.Flush();
        }
    }
}

/// <summary>The drivers' exit statuses: 0 done, 2 bad arguments (the message names the option), 130 interrupted (Ctrl+C), 1 any other failure.</summary>
public static class DriverMain
{
    public static async Task<int> RunAsync(string name, Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            Console.Error.WriteLine($"{name}: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is OperationCanceledException or Grpc.Core.RpcException { StatusCode: Grpc.Core.StatusCode.Cancelled })
        {
            Console.Error.WriteLine($"{name}: interrupted");
            return 130;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"{name}: FAILED: {e}");
            return 1;
        }
    }
}
