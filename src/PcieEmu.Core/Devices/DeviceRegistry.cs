using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using PcieEmu.Core.Platform;

namespace PcieEmu.Core.Devices;

/// <summary>A registered device type: its name, its options type and its factory.</summary>
public sealed class DeviceType
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowReadingFromString,
    };

    private readonly Func<DeviceContext, object, IPcieDevice> _create;

    internal DeviceType(string name, Type optionsType, Func<DeviceContext, object, IPcieDevice> create)
    {
        Name = name;
        OptionsType = optionsType;
        _create = create;
        OptionKeys = [.. optionsType.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && p.GetIndexParameters().Length == 0)
            .Select(p => JsonNamingPolicy.CamelCase.ConvertName(p.Name))];
    }

    /// <summary>The type name used in descriptions ("type": "...").</summary>
    public string Name { get; }
    /// <summary>The options record (public init properties, camelCase keys in JSON).</summary>
    public Type OptionsType { get; }
    /// <summary>The option keys a description may give, in declaration order.</summary>
    public IReadOnlyList<string> OptionKeys { get; }

    /// <summary>Default options (every key at its default).</summary>
    public object DefaultOptions() => Activator.CreateInstance(OptionsType)!;

    /// <summary>Reads options from <paramref name="options"/> (the device object without "type");
    /// throws <see cref="MachineDescriptionException"/> naming <paramref name="path"/> and the key.</summary>
    public object ReadOptions(JsonObject options, string path)
    {
        ArgumentNullException.ThrowIfNull(options);
        foreach (var (key, _) in options)
            if (!OptionKeys.Contains(key, StringComparer.Ordinal))
                throw new MachineDescriptionException(path, $"unknown key '{key}' for type '{Name}' (keys: type, {string.Join(", ", OptionKeys)})");
        object value;
        try
        {
            value = options.Deserialize(OptionsType, Json) ?? DefaultOptions();
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
        {
            string where = e is JsonException { Path: { Length: > 2 } p } ? path + p[1..] : path;
            throw new MachineDescriptionException(where, $"bad value for '{Name}' option: {e.Message.Split(". Path:")[0]}");
        }
        Validate(value, path);
        return value;
    }

    /// <summary>Checks <paramref name="options"/> with the options type's own rules, naming the option in camelCase.</summary>
    public void Validate(object options, string path)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!OptionsType.IsInstanceOfType(options))
            throw new MachineDescriptionException(path, $"options of '{Name}' must be a {OptionsType.Name} (was {options.GetType().Name})");
        if (options is not IDeviceOptions v) return;
        try { v.Validate(); }
        catch (ArgumentException e)
        {
            string key = e.ParamName is { Length: > 0 } p ? "." + JsonNamingPolicy.CamelCase.ConvertName(p) : "";
            string message = e.ParamName != null ? e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal) : e.Message;
            throw new MachineDescriptionException(path + key, message);
        }
    }

    internal IPcieDevice Create(DeviceContext context, object options) => _create(context, options);
}

/// <summary>
/// Device types by name. A new device type plugs in with one line in
/// <see cref="DeviceTypes.RegisterBuiltIns"/> (name, options record, factory): Machine, the
/// description reader, the server and the CLI need nothing else.
/// </summary>
public sealed class DeviceRegistry
{
    private readonly Dictionary<string, DeviceType> _types = new(StringComparer.Ordinal);

    /// <summary>The built-in device types.</summary>
    public static DeviceRegistry Default { get; } = CreateBuiltIn().Freeze();

    /// <summary>A new registry holding the built-in types (add your own with <see cref="Register{TOptions}"/>).</summary>
    public static DeviceRegistry CreateBuiltIn()
    {
        var r = new DeviceRegistry();
        DeviceTypes.RegisterBuiltIns(r);
        return r;
    }

    /// <summary>Registers <paramref name="name"/>: descriptions name it in "type"; its other keys are
    /// <typeparamref name="TOptions"/>'s properties in camelCase; <paramref name="factory"/> builds it on a port.</summary>
    public DeviceRegistry Register<TOptions>(string name, Func<DeviceContext, TOptions, IPcieDevice> factory) where TOptions : class, new()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(factory);
        if (_frozen)
            throw new InvalidOperationException("the default registry is fixed; register on DeviceRegistry.CreateBuiltIn()");
        if (!_types.TryAdd(name, new DeviceType(name, typeof(TOptions), (c, o) => factory(c, (TOptions)o))))
            throw new ArgumentException($"device type '{name}' is already registered", nameof(name));
        return this;
    }

    private bool _frozen;

    /// <summary>Registered type names, sorted.</summary>
    public IReadOnlyList<string> Names => [.. _types.Keys.Order(StringComparer.Ordinal)];

    /// <summary>The type called <paramref name="name"/>, or null.</summary>
    public DeviceType? Find(string name) => _types.GetValueOrDefault(name);

    /// <summary>The type called <paramref name="name"/>; throws <see cref="MachineDescriptionException"/> naming <paramref name="path"/>.</summary>
    public DeviceType Get(string name, string path) => Find(name)
        ?? throw new MachineDescriptionException(path, $"unknown device type '{name}' (known: {string.Join(", ", Names)})");

    internal DeviceRegistry Freeze()
    {
        _frozen = true;
        return this;
    }
}
