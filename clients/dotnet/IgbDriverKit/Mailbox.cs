namespace PcieEmu.Drivers;

/// <summary>
/// The VF side of the PF/VF mailbox, as igbvf uses it: take the buffer (VFU), write the message,
/// set REQ, wait for the PF's ACK; to receive, wait for PFSTS, take VFU, read, answer with ACK.
/// PFSTS, PFACK and RSTD clear on read, so every read's bits are remembered until consumed.
/// </summary>
public sealed class VfMailbox(RegisterBar bar, TimeSpan timeout)
{
    private uint _seen;

    private async Task<uint> ReadAsync(CancellationToken ct)
    {
        uint v = await bar.ReadAsync(Regs.VfMailbox, ct);
        _seen |= v & (Regs.VfmbPfsts | Regs.VfmbPfack | Regs.VfmbRstd);
        return v;
    }

    /// <summary>True (and consumed) when the bit was seen since it was last consumed.</summary>
    private async Task<bool> TakeAsync(uint bit, CancellationToken ct)
    {
        if ((_seen & bit) == 0) await ReadAsync(ct);
        if ((_seen & bit) == 0) return false;
        _seen &= ~bit;
        return true;
    }

    private async Task WaitBitAsync(uint bit, string what, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await TakeAsync(bit, ct))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"VF mailbox: timed out waiting for {what}");
            await Task.Delay(1, ct);
        }
    }

    /// <summary>After CTRL.RST: waits until the PF has finished its reset (RSTI clear) and the VF reset is done (RSTD).</summary>
    public async Task WaitResetDoneAsync(CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            uint v = await ReadAsync(ct);
            if ((v & Regs.VfmbRsti) == 0 && (_seen & Regs.VfmbRstd) != 0) { _seen &= ~Regs.VfmbRstd; return; }
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"VF mailbox: reset not done (VFMAILBOX 0x{v:X2}; RSTI set means the PF driver has not set CTRL_EXT.PFRSTD)");
            await Task.Delay(1, ct);
        }
    }

    private async Task LockAsync(CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            await bar.WriteAsync(Regs.VfMailbox, Regs.VfmbVfu, ct);
            uint v = await ReadAsync(ct);
            if ((v & Regs.VfmbVfu) != 0) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException("VF mailbox: could not take the buffer (PF holds PFU)");
            await Task.Delay(1, ct);
        }
    }

    /// <summary>Sends a message and waits for the PF's ACK (write_posted).</summary>
    public async Task SendAsync(ReadOnlyMemory<uint> words, CancellationToken ct)
    {
        if (words.Length is 0 or > MbxMsg.Words) throw new ArgumentOutOfRangeException(nameof(words), "1-16 words");
        await LockAsync(ct);
        // A stale ACK or STS from an earlier exchange must not be taken for this one's.
        _seen &= ~(Regs.VfmbPfack | Regs.VfmbPfsts);
        for (int i = 0; i < words.Length; i++) await bar.WriteAsync(Regs.VfVmbmem + 4u * (uint)i, words.Span[i], ct);
        await bar.WriteAsync(Regs.VfMailbox, Regs.VfmbReq, ct);   // REQ; VFU released (written 0)
        await WaitBitAsync(Regs.VfmbPfack, "the PF's ACK", ct);
    }

    /// <summary>Waits for a message from the PF (PFSTS), reads <paramref name="count"/> words and acknowledges it.</summary>
    public async Task<uint[]> ReceiveAsync(int count, CancellationToken ct)
    {
        await WaitBitAsync(Regs.VfmbPfsts, "a message from the PF", ct);
        await LockAsync(ct);
        var words = new uint[count];
        for (int i = 0; i < count; i++) words[i] = await bar.ReadAsync(Regs.VfVmbmem + 4u * (uint)i, ct);
        await bar.WriteAsync(Regs.VfMailbox, Regs.VfmbAck, ct);   // ACK; VFU released
        return words;
    }

    /// <summary>Sends a request and reads the reply, whatever it says (write_posted, then read_posted).</summary>
    public async Task<uint[]> ExchangeAsync(uint[] words, int replyWords, CancellationToken ct)
    {
        await SendAsync(words, ct);
        return await ReceiveAsync(replyWords, ct);
    }

    /// <summary>Sends a request and reads the reply; throws when the PF NACKs it or answers another type.</summary>
    public async Task<uint[]> RequestAsync(uint[] words, int replyWords, CancellationToken ct)
    {
        var reply = await ExchangeAsync(words, replyWords, ct);
        if ((reply[0] & MbxMsg.TypeMask) != (words[0] & MbxMsg.TypeMask))
            throw new InvalidOperationException($"mailbox: reply 0x{reply[0]:X8} to request 0x{words[0]:X8}");
        if ((reply[0] & MbxMsg.Nack) != 0) throw new InvalidOperationException($"mailbox: the PF refused request 0x{words[0]:X8} (NACK)");
        if ((reply[0] & MbxMsg.Ack) == 0) throw new InvalidOperationException($"mailbox: reply 0x{reply[0]:X8} has neither ACK nor NACK");
        return reply;
    }
}

/// <summary>
/// The PF side of VF <c>n</c>'s mailbox, as igb uses it: take the buffer (PFU), read the request,
/// answer with ACK; replies are written under PFU and announced with STS.
/// </summary>
public sealed class PfMailbox(RegisterBar bar, int vf, TimeSpan timeout)
{
    private uint Ctl => Regs.P2vMailbox + 4u * (uint)vf;
    private uint Mem => Regs.Vmbmem + 64u * (uint)vf;

    private async Task LockAsync(CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            await bar.WriteAsync(Ctl, Regs.P2vPfu, ct);
            if ((await bar.ReadAsync(Ctl, ct) & Regs.P2vPfu) != 0) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"PF mailbox {vf}: could not take the buffer (VF holds VFU)");
            await Task.Delay(1, ct);
        }
    }

    /// <summary>Reads a request the VF posted (its MBVFICR REQ bit was set) and ACKs it.</summary>
    public async Task<uint[]> ReadRequestAsync(int count, CancellationToken ct)
    {
        await LockAsync(ct);
        var words = new uint[count];
        for (int i = 0; i < count; i++) words[i] = await bar.ReadAsync(Mem + 4u * (uint)i, ct);
        await bar.WriteAsync(Ctl, Regs.P2vAck, ct);   // ACK to the VF; PFU released
        return words;
    }

    /// <summary>Writes a message to the VF and announces it with STS.</summary>
    public async Task SendAsync(ReadOnlyMemory<uint> words, CancellationToken ct)
    {
        await LockAsync(ct);
        for (int i = 0; i < words.Length; i++) await bar.WriteAsync(Mem + 4u * (uint)i, words.Span[i], ct);
        await bar.WriteAsync(Ctl, Regs.P2vSts, ct);   // STS to the VF; PFU released
    }
}
