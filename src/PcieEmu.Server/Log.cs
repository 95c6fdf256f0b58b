using Microsoft.Extensions.Logging;

namespace PcieEmu.Server;

/// <summary>Source-generated log messages with stable event ids.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Machine ready: RAM {RamSize} bytes at {RamFile} (keep: {Keep}), {Functions} functions")]
    public static partial void MachineReady(ILogger logger, ulong ramSize, string ramFile, bool keep, int functions);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Listening on {Endpoint}")]
    public static partial void Listening(ILogger logger, string endpoint);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Shut down; RAM file {RamFile} {Disposition}")]
    public static partial void ShutDown(ILogger logger, string ramFile, string disposition);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "Rejected {Method}: {Field}: {Reason}")]
    public static partial void Rejected(ILogger logger, string method, string field, string reason);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "Platform reset")]
    public static partial void PlatformReset(ILogger logger);

    [LoggerMessage(EventId = 6, Level = LogLevel.Debug, Message = "Interrupt subscriber {Peer} joined ({Filter})")]
    public static partial void SubscriberJoined(ILogger logger, string peer, string filter);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "Interrupt subscriber {Peer} fell behind and was cut off after missing {Missed} event(s)")]
    public static partial void SubscriberOverflow(ILogger logger, string peer, long missed);

    [LoggerMessage(EventId = 8, Level = LogLevel.Information, Message = "Port {Port} wire traffic is captured to {Path}")]
    public static partial void PcapFile(ILogger logger, int port, string path);

    [LoggerMessage(EventId = 30, Level = LogLevel.Warning, Message = "Packet capture {Path} fell behind: {Missed} frame(s) dropped ({Total} in all)")]
    public static partial void PcapDropped(ILogger logger, string path, long missed, long total);

    [LoggerMessage(EventId = 31, Level = LogLevel.Error, Message = "Packet capture {Path} stopped: {Reason} (the machine goes on)")]
    public static partial void PcapFailed(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 12, Level = LogLevel.Warning, Message = "Capture subscriber {Peer} of port {Port} fell behind and was cut off after missing {Missed} frame(s)")]
    public static partial void CaptureOverflow(ILogger logger, string peer, int port, long missed);

    [LoggerMessage(EventId = 9, Level = LogLevel.Debug, Message = "Session {Peer} ended after {Transactions} transactions")]
    public static partial void SessionEnded(ILogger logger, string peer, long transactions);

    [LoggerMessage(EventId = 11, Level = LogLevel.Debug, Message = "Session {Peer} reset by the client after {Transactions} transactions")]
    public static partial void SessionAborted(ILogger logger, string peer, long transactions);

    [LoggerMessage(EventId = 10, Level = LogLevel.Warning, Message = "Removed stale Unix socket {Path}")]
    public static partial void StaleSocket(ILogger logger, string path);

    [LoggerMessage(EventId = 13, Level = LogLevel.Warning, Message = "Malformed request to {Method}: {Reason} (answered INVALID_ARGUMENT; {Suppressed} more since the last such line)")]
    public static partial void MalformedRequest(ILogger logger, string method, string reason, long suppressed);

    [LoggerMessage(EventId = 14, Level = LogLevel.Warning, Message = "Removed the RAM file {Path} ({Bytes} bytes) of a server that is gone")]
    public static partial void StaleRamFile(ILogger logger, string path, long bytes);

    [LoggerMessage(EventId = 15, Level = LogLevel.Warning, Message = "Listening on {Endpoint}, which is not a loopback address (--allow-remote): other machines can reach this server")]
    public static partial void RemoteListen(ILogger logger, string endpoint);

    [LoggerMessage(EventId = 20, Level = LogLevel.Debug, Message = "Trace subscriber {Peer} joined (kinds {Kinds}, functions {Filter})")]
    public static partial void TraceSubscriberJoined(ILogger logger, string peer, string kinds, string filter);

    [LoggerMessage(EventId = 21, Level = LogLevel.Information, Message = "Recording the trace to {Path}")]
    public static partial void TraceRecording(ILogger logger, string path);

    [LoggerMessage(EventId = 22, Level = LogLevel.Error, Message = "Trace recording to {Path} stopped: {Reason} (the machine goes on)")]
    public static partial void TraceRecordingFailed(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 50, Level = LogLevel.Information, Message = "Web view: {Url}")]
    public static partial void WebView(ILogger logger, string url);

    [LoggerMessage(EventId = 51, Level = LogLevel.Warning, Message = "The web view listens on {Endpoint}, which is not a loopback address (--allow-remote): other machines can reach it")]
    public static partial void WebViewRemote(ILogger logger, string endpoint);

    [LoggerMessage(EventId = 52, Level = LogLevel.Debug, Message = "Ring opened for {Peer}: {Path}")]
    public static partial void RingOpened(ILogger logger, string peer, string path);

    [LoggerMessage(EventId = 53, Level = LogLevel.Debug, Message = "Ring of {Peer} closed after {Entries} entries")]
    public static partial void RingClosed(ILogger logger, string peer, long entries);
}
