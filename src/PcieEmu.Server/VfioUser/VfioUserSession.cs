using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using PcieEmu.Core.Config;
using PcieEmu.Core.Config.Capabilities;
using PcieEmu.Core.Platform;
using PcieEmu.Core.Topology;

namespace PcieEmu.Server.VfioUser;

/// <summary>
/// One client connection: a dedicated thread reads a message with blocking recvmsg, handles it with
/// one Core call per transaction (no thread-pool hop, no lock of its own around Core) and writes the
/// reply with sendmsg. A malformed message gets an error reply and the session goes on; only the
/// peer closing the socket (or the server stopping) ends it.
/// </summary>
internal sealed class VfioUserSession : IDisposable
{
    private readonly Machine _machine;
    private readonly ushort _rid;
    private readonly string _bdf;
    private readonly Socket _socket;
    private readonly int _fd;
    private readonly ILogger _logger;
    private readonly VmMemory _memory;
    private readonly InterruptRelay _irqs;
    private readonly byte[] _header = new byte[VfioUserWire.HeaderSize];
    private readonly byte[] _body = new byte[VfioUserWire.MaxMessageSize];
    private readonly byte[] _reply = new byte[VfioUserWire.MaxMessageSize];
    private readonly List<int> _fds = new(VfioUserWire.MaxMessageFds);
    private ConfigView? _view;
    private bool _fdsTruncated;
    private Timer? _presence;
    private int _gone;
    private long _messages;
    private volatile bool _stopping;

    public VfioUserSession(Machine machine, ushort rid, Socket socket, ILogger logger)
    {
        _machine = machine;
        _rid = rid;
        _bdf = Bdf.Format(rid);
        _socket = socket;
        _fd = (int)socket.SafeHandle.DangerousGetHandle();
        _logger = logger;
        _irqs = new InterruptRelay(machine.Interrupts, logger, _bdf);
        _memory = new VmMemory(a => VfioUserLog.Problem(logger, _bdf,
            $"device DMA at 0x{a:X} hit a region the client mapped without a file descriptor; DMA by message is not supported, the access completed as Unsupported Request (give the VM memory-backend-memfd,share=on)"));
    }

    /// <summary>Messages handled so far.</summary>
    public long Messages => Interlocked.Read(ref _messages);

    /// <summary>Asks the session to end: the blocked read returns.</summary>
    public void Stop()
    {
        _stopping = true;
        try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
    }

    /// <summary>Serves the connection until the peer closes it or <see cref="Stop"/> is called.</summary>
    public void Run()
    {
        try
        {
            var function = WaitForFunction();
            if (function == null) return;
            _view = new ConfigView(_machine, function);
            _machine.SetDmaMemory(_rid, _memory);
            _irqs.Follow(_rid);
            _irqs.Resize(VfioUserWire.IrqIntx, 1);
            _irqs.Resize(VfioUserWire.IrqMsix, function.MsixVectors);
            _irqs.Resize(VfioUserWire.IrqErr, 1);
            _irqs.Resize(VfioUserWire.IrqReq, 1);
            VfioUserLog.Attached(_logger, _bdf, function.Name);
            _presence = new Timer(_ => WatchPresence(), null, PresencePeriod, PresencePeriod);
            while (!_stopping && ServeOne()) Interlocked.Increment(ref _messages);
            VfioUserLog.Detached(_logger, _bdf, Messages);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // An emulator bug must not take the server (and so the VM) down: log it, end this session.
            VfioUserLog.ConnectionFailed(_logger, _bdf, ex.ToString());
        }
        finally
        {
            _presence?.Dispose();
            _machine.SetDmaMemory(_rid, null);
            DisarmMsix();
        }
    }

    private static readonly TimeSpan PresencePeriod = TimeSpan.FromMilliseconds(100);

    // When the function goes away under the client (the PF driver clears VF Enable), a host's vfio-pci
    // asks its user to release the device through the request (REQ) eventfd; do the same, once per
    // disappearance.
    private void WatchPresence()
    {
        bool present = _machine.DescribeFunction(_rid) != null;
        if (present) { Volatile.Write(ref _gone, 0); return; }
        if (Interlocked.Exchange(ref _gone, 1) != 0) return;
        VfioUserLog.Problem(_logger, _bdf, "the function went away (VF Enable cleared?); asking the client to release it (REQ eventfd)");
        _irqs.Signal(VfioUserWire.IrqReq, 0);
    }

    private FunctionDescription? WaitForFunction()
    {
        bool logged = false;
        while (!_stopping)
        {
            if (_machine.DescribeFunction(_rid) is { } f) return f;
            if (!logged) { VfioUserLog.WaitingForFunction(_logger, _bdf); logged = true; }
            Thread.Sleep(50);
        }
        return null;
    }

    // ---------------------------------------------------------------- framing

    private bool ServeOne()
    {
        _fds.Clear();
        _fdsTruncated = false;
        int got = ReadExact(_header, collectFds: true);
        if (got <= 0) return false;
        if (got < VfioUserWire.HeaderSize) return false;   // peer closed mid-header
        var h = VfioUserHeader.Read(_header);
        try
        {
            if (h.Size < VfioUserWire.HeaderSize)
                return Fail(h, VfioUserWire.EINVAL, $"size {h.Size} is smaller than the 16-byte header");
            int bodyLength = (int)Math.Min(h.Size - VfioUserWire.HeaderSize, int.MaxValue);
            if (h.Size > VfioUserWire.MaxMessageSize)
            {
                if (!Drain(h.Size - (uint)VfioUserWire.HeaderSize)) return false;
                return Fail(h, VfioUserWire.E2BIG, $"size {h.Size} exceeds the largest message ({VfioUserWire.MaxMessageSize})");
            }
            if (bodyLength > 0 && ReadExact(_body.AsSpan(0, bodyLength), collectFds: true) < bodyLength) return false;
            if (_fdsTruncated)
                return Fail(h, VfioUserWire.EINVAL, $"more than {VfioUserWire.MaxMessageFds} file descriptors (the extra ones were closed)");
            if (h.Type != VfioUserWire.TypeRequest)
                return Fail(h, VfioUserWire.EINVAL, h.Type == VfioUserWire.TypeReply ? "unsolicited reply (no request of the server is outstanding)" : $"unknown message type {h.Type}");
            var body = _body.AsSpan(0, bodyLength);
            uint err;
            int replyLength;
            string? reason;
            try
            {
                err = Dispatch(h, body, out replyLength, out reason);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // An emulator bug: say so loudly, answer EIO and keep serving (a client such as QEMU
                // aborts when its server goes away mid-session).
                VfioUserLog.HandlerFailed(_logger, _bdf, h.Command, ex);
                err = VfioUserWire.EIO;
                replyLength = 0;
                reason = ex.Message;
            }
            if (err != 0) return Fail(h, err, reason ?? "error");
            if ((h.Flags & VfioUserWire.NoReply) != 0) return true;
            return SendReply(h, 0, replyLength);
        }
        finally
        {
            foreach (int fd in _fds) UnixFd.Close(fd);   // descriptors a handler kept were taken out of the list
            _fds.Clear();
        }
    }

    private bool Fail(VfioUserHeader h, uint errno, string reason)
    {
        VfioUserLog.Rejected(_logger, _bdf, h.Id, h.Command, errno, reason);
        return SendReply(h, errno, 0);
    }

    private bool SendReply(VfioUserHeader request, uint errno, int payload)
    {
        var reply = new VfioUserHeader(request.Id, request.Command, (uint)(VfioUserWire.HeaderSize + payload),
            VfioUserWire.TypeReply | (errno != 0 ? VfioUserWire.Error : 0), errno);
        reply.Write(_reply);
        if (UnixFd.SendAll(_fd, _reply.AsSpan(0, VfioUserWire.HeaderSize + payload), default, out int e)) return true;
        if (!_stopping) VfioUserLog.ConnectionFailed(_logger, _bdf, $"send failed (errno {e})");
        return false;
    }

    // Reads exactly buffer.Length bytes; returns the count read (less on end of stream), -1 on error.
    private int ReadExact(Span<byte> buffer, bool collectFds)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = UnixFd.Receive(_fd, buffer[done..], _fds, collectFds ? VfioUserWire.MaxMessageFds : 0, out bool truncated, out int errno);
            _fdsTruncated |= truncated;
            if (n < 0)
            {
                if (errno == UnixFd.EAGAIN) { UnixFd.WaitReadable(_fd); continue; }
                if (!_stopping) VfioUserLog.ConnectionFailed(_logger, _bdf, $"receive failed (errno {errno})");
                return -1;
            }
            if (n == 0) return done;
            done += n;
        }
        return done;
    }

    private bool Drain(uint count)
    {
        while (count > 0)
        {
            int n = ReadExact(_body.AsSpan(0, (int)Math.Min(count, (uint)_body.Length)), collectFds: true);
            if (n <= 0) return false;
            count -= (uint)n;
        }
        return true;
    }

    private int TakeFd(int i)
    {
        int fd = _fds[i];
        _fds.RemoveAt(i);
        return fd;
    }

    // ---------------------------------------------------------------- commands

    private uint Dispatch(VfioUserHeader h, Span<byte> body, out int replyLength, out string? reason)
    {
        replyLength = 0;
        reason = null;
        var cmd = (VfioUserCommand)h.Command;
        if (_fds.Count > 0 && cmd is not (VfioUserCommand.DmaMap or VfioUserCommand.SetIrqs))
        {
            reason = $"{_fds.Count} unexpected file descriptor(s)";
            return VfioUserWire.EINVAL;
        }
        var payload = _reply.AsSpan(VfioUserWire.HeaderSize);
        switch (cmd)
        {
            case VfioUserCommand.Version: return Version(body, payload, out replyLength, out reason);
            case VfioUserCommand.DmaMap: return DmaMap(body, out reason);
            case VfioUserCommand.DmaUnmap: return DmaUnmap(body, payload, out replyLength, out reason);
            case VfioUserCommand.DeviceGetInfo: return DeviceInfo(body, payload, out replyLength, out reason);
            case VfioUserCommand.GetRegionInfo: return RegionInfo(body, payload, out replyLength, out reason);
            case VfioUserCommand.GetIrqInfo: return IrqInfo(body, payload, out replyLength, out reason);
            case VfioUserCommand.SetIrqs: return SetIrqs(body, out reason);
            case VfioUserCommand.RegionRead: return RegionRead(body, payload, out replyLength, out reason);
            case VfioUserCommand.RegionWrite: return RegionWrite(body, payload, out replyLength, out reason);
            case VfioUserCommand.DeviceReset: return Reset(body, out reason);
            default:
                reason = $"command {h.Command} is not supported";
                return VfioUserWire.ENOSYS;
        }
    }

    private static uint BadSize(string command, int got, string expected, out string reason)
    {
        reason = $"{command}: payload of {got} byte(s), expected {expected}";
        return VfioUserWire.EINVAL;
    }

    private static ReadOnlySpan<byte> CapabilitiesJson => Encoding.UTF8.GetBytes(
        $"{{\"capabilities\":{{\"max_msg_fds\":{VfioUserWire.MaxMessageFds},\"max_data_xfer_size\":{VfioUserWire.MaxDataTransfer},\"pgsizes\":4096,\"max_dma_maps\":{VmMemory.MaxRegions}}}}}");

    private static uint Version(ReadOnlySpan<byte> body, Span<byte> reply, out int length, out string? reason)
    {
        length = 0;
        reason = null;
        if (body.Length < 4) return BadSize("VERSION", body.Length, "at least 4 (major, minor, capabilities)", out reason!);
        ushort major = BinaryPrimitives.ReadUInt16LittleEndian(body);
        if (major != VfioUserWire.Major) { reason = $"VERSION: major {major} is not supported (this server speaks {VfioUserWire.Major}.{VfioUserWire.Minor})"; return VfioUserWire.ENOTSUP; }
        var json = body[4..];
        int nul = json.IndexOf((byte)0);
        if (nul >= 0) json = json[..nul];
        if (json.Length > 0)
        {
            try { using var _ = JsonDocument.Parse(json.ToArray()); }
            catch (JsonException) { reason = "VERSION: capabilities are not valid JSON"; return VfioUserWire.EINVAL; }
        }
        BinaryPrimitives.WriteUInt16LittleEndian(reply, VfioUserWire.Major);
        BinaryPrimitives.WriteUInt16LittleEndian(reply[2..], VfioUserWire.Minor);
        var caps = CapabilitiesJson;
        caps.CopyTo(reply[4..]);
        reply[4 + caps.Length] = 0;
        length = 4 + caps.Length + 1;
        return 0;
    }

    private uint DmaMap(ReadOnlySpan<byte> body, out string? reason)
    {
        reason = null;
        if (body.Length != 32) return BadSize("DMA_MAP", body.Length, "32", out reason!);
        if (_fds.Count > 1) { reason = $"DMA_MAP: {_fds.Count} descriptors, at most 1"; return VfioUserWire.EINVAL; }
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(body[4..]);
        ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(body[8..]);
        ulong iova = BinaryPrimitives.ReadUInt64LittleEndian(body[16..]);
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(body[24..]);
        int fd = _fds.Count == 1 ? TakeFd(0) : -1;
        uint err = _memory.Map(iova, size, offset, flags, fd);
        if (err != 0) reason = $"DMA_MAP [0x{iova:X}, +0x{size:X}) flags 0x{flags:X}: errno {err}";
        return err;
    }

    private uint DmaUnmap(ReadOnlySpan<byte> body, Span<byte> reply, out int length, out string? reason)
    {
        length = 0;
        reason = null;
        if (body.Length != 24) return BadSize("DMA_UNMAP", body.Length, "24", out reason!);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(body[4..]);
        ulong iova = BinaryPrimitives.ReadUInt64LittleEndian(body[8..]);
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(body[16..]);
        if ((flags & VfioUserWire.DmaUnmapGetDirtyBitmap) != 0) { reason = "DMA_UNMAP: dirty page tracking is not supported"; return VfioUserWire.ENOTSUP; }
        if ((flags & ~VfioUserWire.DmaUnmapAll) != 0) { reason = $"DMA_UNMAP: unknown flags 0x{flags:X}"; return VfioUserWire.EINVAL; }
        // With ALL the address and size are ignored (QEMU may pass the range it was unmapping).
        bool all = (flags & VfioUserWire.DmaUnmapAll) != 0;
        uint err = _memory.Unmap(iova, size, all);
        if (err != 0) { reason = $"DMA_UNMAP [0x{iova:X}, +0x{size:X}): a region lies partly outside the range, or the range is empty"; return err; }
        body.CopyTo(reply);
        length = 24;
        return 0;
    }

    private uint DeviceInfo(ReadOnlySpan<byte> body, Span<byte> reply, out int length, out string? reason)
    {
        length = 0;
        reason = null;
        if (body.Length != 16) return BadSize("DEVICE_GET_INFO", body.Length, "16", out reason!);
        BinaryPrimitives.WriteUInt32LittleEndian(reply, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[4..], VfioUserWire.DeviceFlagPci | VfioUserWire.DeviceFlagReset);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[8..], VfioUserWire.RegionCount);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[12..], VfioUserWire.IrqCount);
        length = 16;
        return 0;
    }

    /// <summary>(size, flags) of region <paramref name="index"/>.</summary>
    private (ulong Size, uint Flags) Region(int index)
    {
        var f = _view!.Function;
        const uint rw = VfioUserWire.RegionFlagRead | VfioUserWire.RegionFlagWrite;
        if (index == VfioUserWire.RegionConfig) return ((ulong)f.ConfigSize, rw);
        if (index < 6 && f.Bar(index) is { } bar) return (bar.Size, rw);
        return (0, 0);   // absent BARs, the upper half of a 64-bit BAR, no ROM, no VGA
    }

    private uint RegionInfo(ReadOnlySpan<byte> body, Span<byte> reply, out int length, out string? reason)
    {
        length = 0;
        reason = null;
        if (body.Length < 32) return BadSize("GET_REGION_INFO", body.Length, "at least 32", out reason!);
        uint argsz = BinaryPrimitives.ReadUInt32LittleEndian(body);
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(body[8..]);
        if (argsz < 32) { reason = $"GET_REGION_INFO: argsz {argsz} < 32"; return VfioUserWire.EINVAL; }
        if (index >= VfioUserWire.RegionCount) { reason = $"GET_REGION_INFO: region {index} does not exist (0-8)"; return VfioUserWire.EINVAL; }
        var (size, flags) = Region((int)index);
        BinaryPrimitives.WriteUInt32LittleEndian(reply, 32);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[4..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[8..], index);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[12..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(reply[16..], size);
        BinaryPrimitives.WriteUInt64LittleEndian(reply[24..], (ulong)index << 40);
        length = 32;
        return 0;
    }

    private int IrqCount(int index)
    {
        var f = _view!.Function;
        return index switch
        {
            VfioUserWire.IrqIntx => f.InterruptPin != 0 && !f.IsVirtual ? 1 : 0,
            VfioUserWire.IrqMsi => 0,
            VfioUserWire.IrqMsix => f.MsixVectors,
            VfioUserWire.IrqErr => f.PcieOffset != 0 ? 1 : 0,
            VfioUserWire.IrqReq => 1,
            _ => 0,
        };
    }

    private uint IrqInfo(ReadOnlySpan<byte> body, Span<byte> reply, out int length, out string? reason)
    {
        length = 0;
        reason = null;
        if (body.Length != 16) return BadSize("GET_IRQ_INFO", body.Length, "16", out reason!);
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(body[8..]);
        if (index >= VfioUserWire.IrqCount) { reason = $"GET_IRQ_INFO: index {index} does not exist (0-4)"; return VfioUserWire.EINVAL; }
        uint flags = VfioUserWire.IrqInfoEventFd;
        if (index == VfioUserWire.IrqIntx) flags |= VfioUserWire.IrqInfoMaskable | VfioUserWire.IrqInfoAutomasked;
        else if (index is VfioUserWire.IrqMsi or VfioUserWire.IrqMsix) flags |= VfioUserWire.IrqInfoNoResize;
        BinaryPrimitives.WriteUInt32LittleEndian(reply, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[4..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[8..], index);
        BinaryPrimitives.WriteUInt32LittleEndian(reply[12..], (uint)IrqCount((int)index));
        length = 16;
        return 0;
    }

    private uint SetIrqs(ReadOnlySpan<byte> body, out string? reason)
    {
        reason = null;
        if (body.Length < 20) return BadSize("SET_IRQS", body.Length, "at least 20", out reason!);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(body[4..]);
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(body[8..]);
        uint start = BinaryPrimitives.ReadUInt32LittleEndian(body[12..]);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(body[16..]);
        uint data = flags & (VfioUserWire.IrqDataNone | VfioUserWire.IrqDataBool | VfioUserWire.IrqDataEventFd);
        uint action = flags & (VfioUserWire.IrqActionMask | VfioUserWire.IrqActionUnmask | VfioUserWire.IrqActionTrigger);
        if ((flags & ~0x3Fu) != 0 || System.Numerics.BitOperations.PopCount(data) != 1 || System.Numerics.BitOperations.PopCount(action) != 1)
        { reason = $"SET_IRQS: flags 0x{flags:X} must name one data type and one action"; return VfioUserWire.EINVAL; }
        if (index >= VfioUserWire.IrqCount) { reason = $"SET_IRQS: index {index} does not exist (0-4)"; return VfioUserWire.EINVAL; }
        int vectors = IrqCount((int)index);
        bool disableAll = data == VfioUserWire.IrqDataNone && action == VfioUserWire.IrqActionTrigger && count == 0;
        if (!disableAll && ((ulong)start + count > (ulong)vectors || count == 0))
        { reason = $"SET_IRQS: vectors [{start}, +{count}) outside the {vectors} of index {index}"; return VfioUserWire.EINVAL; }
        int expectBody = data == VfioUserWire.IrqDataBool ? 20 + (int)count : 20;
        if (body.Length != expectBody) return BadSize("SET_IRQS", body.Length, expectBody.ToString(System.Globalization.CultureInfo.InvariantCulture), out reason!);
        if (data == VfioUserWire.IrqDataEventFd ? _fds.Count != 0 && _fds.Count != count : _fds.Count != 0)
        { reason = $"SET_IRQS: {_fds.Count} descriptor(s) for {count} vector(s)"; return VfioUserWire.EINVAL; }
        if (_machine.DescribeFunction(_rid) == null) { reason = "SET_IRQS: the function is gone"; return VfioUserWire.ENODEV; }

        if (disableAll)
        {
            _irqs.Clear((int)index);
            if (index != VfioUserWire.IrqMsix) return 0;
            SetMsixEnable(false);
            return ProgramMsix(0, vectors, out reason);
        }
        if (action == VfioUserWire.IrqActionTrigger)
        {
            if (data == VfioUserWire.IrqDataEventFd)
            {
                bool any = _fds.Count > 0;
                for (int i = 0; i < count; i++) _irqs.Set((int)index, (int)start + i, any ? TakeFd(0) : -1);
                if (index != VfioUserWire.IrqMsix) return 0;
                uint err = ProgramMsix((int)start, (int)count, out reason);
                if (err == 0 && any) SetMsixEnable(true);
                return err;
            }
            // Loopback trigger: the client asks for the interrupt to be signalled.
            for (int i = 0; i < count; i++)
                if (data == VfioUserWire.IrqDataNone || body[20 + i] != 0) _irqs.Signal((int)index, (int)start + i);
            return 0;
        }
        // Mask and unmask: INTx is acknowledged by the client (flags 0x11 after each INTx); MSI-X entries are
        // masked or unmasked in the function's own table, through its BAR.
        if (index == VfioUserWire.IrqMsix)
        {
            for (int i = 0; i < count; i++)
            {
                if (data == VfioUserWire.IrqDataBool && body[20 + i] == 0) continue;
                uint err = WriteMsixControl((int)start + i, masked: action == VfioUserWire.IrqActionMask, out reason);
                if (err != 0) return err;
            }
        }
        return 0;
    }

    // Points the function's MSI-X entries [start, +count) at the MSI window with data = vector and unmasks them when
    // the client gave an eventfd, masks them otherwise: a normal memory write path, like a host driver would.
    private uint ProgramMsix(int start, int count, out string? reason)
    {
        reason = null;
        var f = _view!.Function;
        for (int v = start; v < start + count; v++)
        {
            ulong entry = f.MsixTableOffset + 16UL * (ulong)v;
            if (_irqs.IsArmed(VfioUserWire.IrqMsix, v))
            {
                if (_machine.WriteBar(_rid, f.MsixTableBar, entry, 4, Machine.MsiWindowBase) != Core.AddressSpace.CompletionStatus.Successful ||
                    _machine.WriteBar(_rid, f.MsixTableBar, entry + 4, 4, 0) != Core.AddressSpace.CompletionStatus.Successful ||
                    _machine.WriteBar(_rid, f.MsixTableBar, entry + 8, 4, (uint)v) != Core.AddressSpace.CompletionStatus.Successful)
                {
                    reason = $"MSI-X vector {v}: the function's table in BAR{f.MsixTableBar} does not decode (is the BAR placed and memory decoding on? for a VF: VF MSE in the PF)";
                    return VfioUserWire.EIO;
                }
            }
            uint err = WriteMsixControl(v, masked: !_irqs.IsArmed(VfioUserWire.IrqMsix, v), out reason);
            if (err != 0) return err;
        }
        return 0;
    }

    // Like a host's vfio-pci, arming MSI-X vectors turns MSI-X on in the function (the guest's own write of
    // MSI-X Enable normally got there first) and disarming all turns it off, through the config write path.
    private void SetMsixEnable(bool on)
    {
        var f = _view!.Function;
        if (f.MsixOffset == 0) return;
        int control = f.MsixOffset + 2;
        uint v = (uint)_machine.ReadConfig(_rid, control, 2).Value;
        uint n = on ? v | MsixCapability.EnableBit : v & ~(uint)MsixCapability.EnableBit;
        if (n != v) _machine.WriteConfig(_rid, control, 2, n);
    }

    private uint WriteMsixControl(int vector, bool masked, out string? reason)
    {
        reason = null;
        var f = _view!.Function;
        ulong control = f.MsixTableOffset + 16UL * (ulong)vector + 12;
        if (_machine.WriteBar(_rid, f.MsixTableBar, control, 4, masked ? 1u : 0u) == Core.AddressSpace.CompletionStatus.Successful) return 0;
        reason = $"MSI-X vector {vector}: the function's table in BAR{f.MsixTableBar} does not decode";
        return VfioUserWire.EIO;
    }

    private void DisarmMsix()
    {
        if (_view != null && _machine.DescribeFunction(_rid) != null)
        {
            _irqs.Clear(VfioUserWire.IrqMsix);
            ProgramMsix(0, _view.Function.MsixVectors, out _);
        }
        _irqs.Dispose();
    }

    private uint CheckAccess(uint region, ulong offset, uint count, out string? reason)
    {
        reason = null;
        if (count == 0 || count > VfioUserWire.MaxDataTransfer) { reason = $"count {count} must be 1..{VfioUserWire.MaxDataTransfer}"; return VfioUserWire.EINVAL; }
        if (region >= VfioUserWire.RegionCount) { reason = $"region {region} does not exist (0-8)"; return VfioUserWire.EINVAL; }
        var (size, flags) = Region((int)region);
        if (size == 0 || flags == 0) { reason = $"region {region} is not implemented"; return VfioUserWire.EINVAL; }
        if (offset >= size || size - offset < count) { reason = $"[0x{offset:X}, +{count}) is outside region {region} (size 0x{size:X})"; return VfioUserWire.EINVAL; }
        return 0;
    }

    private uint RegionRead(ReadOnlySpan<byte> body, Span<byte> reply, out int length, out string? reason)
    {
        length = 0;
        if (body.Length != 16) return BadSize("REGION_READ", body.Length, "16", out reason!);
        ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(body);
        uint region = BinaryPrimitives.ReadUInt32LittleEndian(body[8..]);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(body[12..]);
        uint err = CheckAccess(region, offset, count, out reason);
        if (err != 0) { reason = "REGION_READ: " + reason; return err; }
        body.CopyTo(reply);
        var data = reply.Slice(16, (int)count);
        if (region == VfioUserWire.RegionConfig) _view!.Read((int)offset, data);
        else ReadBar((int)region, offset, data);
        length = 16 + (int)count;
        return 0;
    }

    private uint RegionWrite(ReadOnlySpan<byte> body, Span<byte> reply, out int length, out string? reason)
    {
        length = 0;
        if (body.Length < 16) return BadSize("REGION_WRITE", body.Length, "at least 16", out reason!);
        ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(body);
        uint region = BinaryPrimitives.ReadUInt32LittleEndian(body[8..]);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(body[12..]);
        if ((ulong)body.Length != 16UL + count) return BadSize("REGION_WRITE", body.Length, $"16 + count ({count})", out reason!);
        uint err = CheckAccess(region, offset, count, out reason);
        if (err != 0) { reason = "REGION_WRITE: " + reason; return err; }
        var data = body.Slice(16, (int)count);
        if (region == VfioUserWire.RegionConfig) _view!.Write((int)offset, data);
        else WriteBar((int)region, offset, data);
        body[..16].CopyTo(reply);
        length = 16;
        return 0;
    }

    // BAR accesses go to the function's real BAR (its window in the machine), split into naturally aligned
    // pieces of up to 8 bytes. With memory decoding off (a VF: the emulated Memory Space Enable) a read
    // returns all ones and a write is dropped, as a master abort would.
    private void ReadBar(int bar, ulong offset, Span<byte> data)
    {
        if (!Decodes(bar)) { data.Fill(0xFF); return; }
        int done = 0;
        while (done < data.Length)
        {
            ulong o = offset + (ulong)done;
            int w = MmioPiece(o, data.Length - done, bar);
            ulong v = _view!.ReadBar(bar, o, w).Value;
            for (int i = 0; i < w; i++) data[done + i] = (byte)(v >> (8 * i));
            done += w;
        }
    }

    private void WriteBar(int bar, ulong offset, ReadOnlySpan<byte> data)
    {
        if (!Decodes(bar)) return;
        int done = 0;
        while (done < data.Length)
        {
            ulong o = offset + (ulong)done;
            int w = MmioPiece(o, data.Length - done, bar);
            ulong v = 0;
            for (int i = 0; i < w; i++) v |= (ulong)data[done + i] << (8 * i);
            _machine.WriteBar(_rid, bar, o, w, v);
            done += w;
        }
    }

    // A memory BAR needs Memory Space Enable as the guest sees it; an I/O BAR is gated by the machine's own
    // I/O decode (a PF's I/O Space Enable, which the guest's Command writes reach).
    private bool Decodes(int bar) => _view!.Function.Bar(bar) is { Kind: BarKind.Io } || _view.MemoryEnabled;

    private int MmioPiece(ulong offset, int count, int bar)
    {
        // Port I/O is at most 4 bytes wide.
        int max = _view!.Function.Bar(bar) is { Kind: BarKind.Io } ? 4 : 8;
        foreach (int w in (ReadOnlySpan<int>)[8, 4, 2])
            if (w <= max && (offset & (ulong)(w - 1)) == 0 && count >= w) return w;
        return 1;
    }

    private uint Reset(ReadOnlySpan<byte> body, out string? reason)
    {
        reason = null;
        if (body.Length != 0) return BadSize("DEVICE_RESET", body.Length, "0", out reason!);
        var f = _machine.DescribeFunction(_rid);
        if (f == null) { reason = "DEVICE_RESET: the function is gone"; return VfioUserWire.ENODEV; }
        if (!f.FlrCapable) { reason = "DEVICE_RESET: the function has no Function Level Reset"; return VfioUserWire.ENOTSUP; }
        // Initiate FLR through the one config write path, as a host's vfio-pci does for a reset.
        int devCtl = f.PcieOffset + PcieCapability.DevCtl;
        uint value = (uint)_machine.ReadConfig(_rid, devCtl, 2).Value;
        _machine.WriteConfig(_rid, devCtl, 2, value | PcieCapability.DevCtlInitiateFlr);
        _view!.OnReset();
        // The host driver restores the interrupt routing after a reset; armed vectors point at their eventfds again.
        ProgramMsix(0, f.MsixVectors, out _);
        return 0;
    }

    public void Dispose()
    {
        _memory.Dispose();
        _socket.Dispose();
    }
}
