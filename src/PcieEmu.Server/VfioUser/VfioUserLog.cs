using Microsoft.Extensions.Logging;

namespace PcieEmu.Server.VfioUser;

/// <summary>Log messages of the vfio-user front door (event ids 100-119).</summary>
internal static partial class VfioUserLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "vfio-user {Bdf}: listening on {Path}")]
    public static partial void Listening(ILogger logger, string bdf, string path);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "vfio-user {Bdf}: the function does not exist yet; the client waits until it appears (for a VF: until the PF driver sets VF Enable)")]
    public static partial void WaitingForFunction(ILogger logger, string bdf);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information, Message = "vfio-user {Bdf}: client attached to {Name}")]
    public static partial void Attached(ILogger logger, string bdf, string name);

    [LoggerMessage(EventId = 103, Level = LogLevel.Information, Message = "vfio-user {Bdf}: client detached after {Messages} message(s)")]
    public static partial void Detached(ILogger logger, string bdf, long messages);

    [LoggerMessage(EventId = 104, Level = LogLevel.Debug, Message = "vfio-user {Bdf}: message {Id} command {Command} rejected: errno {Errno} ({Reason})")]
    public static partial void Rejected(ILogger logger, string bdf, ushort id, ushort command, uint errno, string reason);

    [LoggerMessage(EventId = 105, Level = LogLevel.Warning, Message = "vfio-user {Bdf}: {What}")]
    public static partial void Problem(ILogger logger, string bdf, string what);

    [LoggerMessage(EventId = 107, Level = LogLevel.Error, Message = "vfio-user {Bdf}: command {Command} failed inside the server; answered EIO")]
    public static partial void HandlerFailed(ILogger logger, string bdf, ushort command, Exception exception);

    [LoggerMessage(EventId = 106, Level = LogLevel.Warning, Message = "vfio-user {Bdf}: connection ended: {Reason}")]
    public static partial void ConnectionFailed(ILogger logger, string bdf, string reason);
}
