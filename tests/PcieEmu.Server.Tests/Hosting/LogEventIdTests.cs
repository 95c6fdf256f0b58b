using System.Reflection;
using Microsoft.Extensions.Logging;
using PcieEmu.Server.Hosting;

namespace PcieEmu.Server.Tests.Hosting;

/// <summary>Log event ids are stable and mean one thing: operators filter and alert on them.</summary>
public sealed class LogEventIdTests
{
    [Fact]
    public void Every_log_message_of_the_server_has_its_own_event_id()
    {
        var messages = typeof(ServerHost).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            .Select(m => (Method: $"{m.DeclaringType!.Name}.{m.Name}", Attribute: m.GetCustomAttribute<LoggerMessageAttribute>()))
            .Where(x => x.Attribute != null)
            .ToList();
        Assert.True(messages.Count > 20, $"found only {messages.Count} [LoggerMessage] methods");
        var clashes = messages.GroupBy(x => x.Attribute!.EventId).Where(g => g.Count() > 1)
            .Select(g => $"{g.Key}: {string.Join(", ", g.Select(x => x.Method))}").ToList();
        Assert.True(clashes.Count == 0, "event ids used twice: " + string.Join("; ", clashes));
    }
}
