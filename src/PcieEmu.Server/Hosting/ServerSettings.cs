namespace PcieEmu.Server.Hosting;

/// <summary>Request limits (configuration section "Limits").</summary>
public sealed class LimitsOptions
{
    /// <summary>
    /// Largest message the server sends: 4 MiB, the receive limit of a default-configured gRPC
    /// client. Every reply fits in it: a Transact message whose completions could need more is refused up front.
    /// </summary>
    public const int MessageLimit = 4 << 20;

    /// <summary>
    /// Hard ceiling of <see cref="MaxMemoryTransfer"/>: 4 MiB - 64 KiB = 4,128,768 bytes, so a maximal
    /// read plus its envelope (and the completions of a full Transact message) stays under <see cref="MessageLimit"/>.
    /// </summary>
    public const int MemoryTransferCeiling = MessageLimit - 64 * 1024;

    /// <summary>Largest ReadMemory length / WriteMemory data (bytes), and the most a Transact message may read in total; at most <see cref="MemoryTransferCeiling"/>.</summary>
    public int MaxMemoryTransfer { get; set; } = MemoryTransferCeiling;
    /// <summary>Largest number of transactions in one TransactRequest.</summary>
    public int MaxTransactionsPerMessage { get; set; } = 1024;
    /// <summary>Events each interrupt subscriber may have queued before it is cut off.</summary>
    public int InterruptQueueCapacity { get; set; } = 1024;
    /// <summary>Largest number of concurrent interrupt subscribers.</summary>
    public int MaxInterruptSubscribers { get; set; } = 64;
    /// <summary>Frames each CaptureFrames subscriber may have queued before it is cut off.</summary>
    public int CaptureQueueCapacity { get; set; } = 4096;
    /// <summary>Largest number of concurrent CaptureFrames subscribers.</summary>
    public int MaxCaptureSubscribers { get; set; } = 16;
    /// <summary>Events each trace subscriber may have queued before it loses events (and gets a gap event).</summary>
    public int TraceQueueCapacity { get; set; } = 8192;
    /// <summary>Largest number of concurrent trace subscribers.</summary>
    public int MaxTraceSubscribers { get; set; } = 16;
    /// <summary>Events the driver-conduct checker may have queued before it loses events (and records CHECKER.EVENTS_LOST).</summary>
    public int CheckerQueueCapacity { get; set; } = 65536;
    /// <summary>Violations the checker keeps; later ones are only counted.</summary>
    public int MaxViolations { get; set; } = 10000;
    /// <summary>Largest number of shared-memory rings (SessionService.OpenRing) open at once.</summary>
    public int MaxRings { get; set; } = 16;
    /// <summary>Largest number of connections the direct gRPC loop serves at once per server (each has a thread); more are refused with GOAWAY.</summary>
    public int MaxDirectConnections { get; set; } = 512;

    /// <summary>Checks the values; throws <see cref="ArgumentException"/> naming the bad one.</summary>
    public void Validate()
    {
        if (MaxMemoryTransfer is < 1 or > MemoryTransferCeiling) throw new ArgumentException($"MaxMemoryTransfer must be 1..{MemoryTransferCeiling}", nameof(MaxMemoryTransfer));
        if (MaxTransactionsPerMessage is < 1 or > 65536) throw new ArgumentException("MaxTransactionsPerMessage must be 1..65536", nameof(MaxTransactionsPerMessage));
        if (InterruptQueueCapacity is < 1 or > 1 << 20) throw new ArgumentException("InterruptQueueCapacity must be 1..1048576", nameof(InterruptQueueCapacity));
        if (MaxInterruptSubscribers is < 1 or > 4096) throw new ArgumentException("MaxInterruptSubscribers must be 1..4096", nameof(MaxInterruptSubscribers));
        if (CaptureQueueCapacity is < 1 or > 1 << 20) throw new ArgumentException("CaptureQueueCapacity must be 1..1048576", nameof(CaptureQueueCapacity));
        if (MaxCaptureSubscribers is < 1 or > 1024) throw new ArgumentException("MaxCaptureSubscribers must be 1..1024", nameof(MaxCaptureSubscribers));
        if (TraceQueueCapacity is < 1 or > 1 << 20) throw new ArgumentException("TraceQueueCapacity must be 1..1048576", nameof(TraceQueueCapacity));
        if (MaxTraceSubscribers is < 1 or > 1024) throw new ArgumentException("MaxTraceSubscribers must be 1..1024", nameof(MaxTraceSubscribers));
        if (CheckerQueueCapacity is < 1 or > 1 << 22) throw new ArgumentException("CheckerQueueCapacity must be 1..4194304", nameof(CheckerQueueCapacity));
        if (MaxViolations is < 1 or > 1 << 20) throw new ArgumentException("MaxViolations must be 1..1048576", nameof(MaxViolations));
        if (MaxRings is < 1 or > 256) throw new ArgumentException("MaxRings must be 1..256", nameof(MaxRings));
        if (MaxDirectConnections is < 1 or > 65536) throw new ArgumentException("MaxDirectConnections must be 1..65536", nameof(MaxDirectConnections));
    }
}

/// <summary>What <c>pcie-emu serve</c> was asked for on its command line.</summary>
public sealed class ServeSettings
{
    /// <summary>Endpoints (<c>unix:///path</c>, <c>tcp://host:port</c>); empty = the defaults.</summary>
    public IList<string> Listen { get; init; } = [];
    /// <summary>The private runtime directory (default socket, default RAM file); null = <c>Endpoints.DefaultRuntimeDirectory()</c>.</summary>
    public string? RuntimeDirectory { get; init; }
    /// <summary>Allow non-loopback TCP addresses.</summary>
    public bool AllowRemote { get; init; }
    /// <summary>Where the TCP token is written (<c>--token-file</c>); null = <see cref="PcieEmu.Client.Endpoints.DefaultTokenPath"/>.</summary>
    public string? TokenFile { get; init; }
    /// <summary>Whether TCP needs the token (<c>--tcp-auth token|none</c>).</summary>
    public TcpAuthMode TcpAuth { get; init; } = TcpAuthMode.Token;
    /// <summary>A JSON file with "Machine" and "Limits" sections (layered over appsettings.json).</summary>
    public string? ConfigFile { get; init; }
    /// <summary>A JSON machine description (<c>--machine</c>, docs/machine.md); null = the embedded default.</summary>
    public string? MachineFile { get; init; }
    /// <summary>Directory for packet captures: each port's wire traffic goes to pcie-emu-port&lt;N&gt;.pcapng there (pcapng, written live).</summary>
    public string? PcapDirectory { get; init; }
    /// <summary>Functions served over vfio-user: <c>BDF=SOCKET</c> each (e.g. <c>02:10.0=/tmp/pcie-emu/vf0.sock</c>).</summary>
    public IList<string> VfioUser { get; init; } = [];
    /// <summary>File to record the trace to (--trace), or null.</summary>
    public string? TraceFile { get; init; }
    /// <summary>The web view's endpoint (<c>--web</c>: <c>tcp://HOST:PORT</c>, or <c>off</c>); null = off (the command line defaults it to <see cref="PcieEmu.Server.Web.WebSettings.DefaultTarget"/>).</summary>
    public string? Web { get; init; }
    /// <summary>Run the driver-conduct checker (on unless <c>--check off</c>).</summary>
    public bool Check { get; init; } = true;
    /// <summary>Configuration keys set from the command line (highest precedence), e.g. "Machine:RamSize".</summary>
    public IDictionary<string, string?> Overrides { get; init; } = new Dictionary<string, string?>();
    /// <summary>Read appsettings.json next to the executable (tests turn it off).</summary>
    public bool UseAppSettings { get; init; } = true;
    /// <summary>Read PCIEEMU_* environment variables (tests turn it off).</summary>
    public bool UseEnvironment { get; init; } = true;
}

/// <summary>A configuration error of <c>pcie-emu serve</c>: printed, exit code 2.</summary>
public sealed class ServeConfigurationException(string message) : Exception(message);
