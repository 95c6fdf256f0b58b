using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace PcieEmu.Server.Hosting;

/// <summary>Marks every connection a listener accepts with a key, so a request can tell which listener it came in on.</summary>
internal static class ListenerMark
{
    /// <summary>Puts <paramref name="key"/> on every connection of <paramref name="listener"/>.</summary>
    public static void Mark(ListenOptions listener, object key)
    {
        ArgumentNullException.ThrowIfNull(listener);
        listener.Use(next => connection =>
        {
            connection.Items[key] = key;
            return next(connection);
        });
    }

    /// <summary>Whether the request's connection carries <paramref name="key"/>.</summary>
    public static bool Has(HttpContext context, object key) =>
        context.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(key, out var mark) == true && ReferenceEquals(mark, key);
}
