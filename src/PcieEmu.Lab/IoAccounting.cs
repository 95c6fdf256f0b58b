using PcieEmu.Core.Events;
using PcieEmu.Core.Platform;

namespace PcieEmu.Lab;

/// <summary>
/// The lab's accounting, defined once (docs/iomodels.md, "Accounting"). It subscribes to the
/// machine's event path for MMIO and interrupt messages (only those: each subscribed kind costs an event object per
/// transaction, which would tax the models unequally), and counts:
/// <list type="bullet">
/// <item><b>trap</b>: an MMIO transaction whose target the VMM emulates (<see cref="TrapFunctions"/>:
/// the emulated NICs, the virtio-net function) — each is a VM exit; plus every interrupt message
/// from a function assigned to a guest (<see cref="AssignedFunctions"/>): without posted
/// interrupts (the seed's hardware) the VMM takes the interrupt and injects it.</item>
/// <item><b>guest interrupt</b>: an interrupt message from a function assigned to a guest or emulated by
/// the VMM (virtio-net); the emulated NIC's are the VMM's injections (counted by the VMM: no message
/// exists for them). <b>host interrupt</b>: an interrupt message from a function the host owns.</item>
/// </list>
/// Bytes copied by software are the VMM's (its Copy and Deliver): a CPU copy is not a machine transaction.
/// </summary>
public sealed class IoAccounting : IDisposable
{
    private readonly EventSubscription<MachineEvent> _sub;

    /// <summary>Subscribes to <paramref name="machine"/>'s event path; counting starts now.</summary>
    public IoAccounting(Machine machine)
    {
        _sub = machine.Events.Subscribe(EventKinds.Mmio | EventKinds.Msi, capacity: 1 << 16);
    }

    /// <summary>RIDs of the functions the VMM emulates: MMIO to them is a trap.</summary>
    public HashSet<ushort> TrapFunctions { get; } = [];
    /// <summary>RIDs of the functions assigned to guests: their interrupt messages are interrupt exits.</summary>
    public HashSet<ushort> AssignedFunctions { get; } = [];

    /// <summary>MMIO transactions to <see cref="TrapFunctions"/>.</summary>
    public long MmioTraps { get; private set; }
    /// <summary>Interrupt messages from <see cref="AssignedFunctions"/>.</summary>
    public long InterruptExits { get; private set; }
    /// <summary>All VM exits counted: <see cref="MmioTraps"/> + <see cref="InterruptExits"/>.</summary>
    public long Traps => MmioTraps + InterruptExits;
    /// <summary>Interrupt messages from functions neither assigned nor emulated (the host's).</summary>
    public long HostInterrupts { get; private set; }
    /// <summary>Interrupt messages from assigned or emulated functions.</summary>
    public long GuestInterrupts { get; private set; }
    /// <summary>MMIO transactions that reached a device with no VMM involved (guest to its assigned function, host to its own).</summary>
    public long UntrappedMmio { get; private set; }

    /// <summary>Counts everything published so far; throws if the subscription lost any (the counts must be exact).</summary>
    public void Drain()
    {
        while (_sub.Reader.TryRead(out var e))
        {
            switch (e)
            {
                case MmioAccessEvent m:
                    if (TrapFunctions.Contains(m.Rid)) MmioTraps++; else UntrappedMmio++;
                    break;
                case InterruptMessageEvent i:
                    if (AssignedFunctions.Contains(i.Rid)) { InterruptExits++; GuestInterrupts++; }
                    else if (TrapFunctions.Contains(i.Rid)) GuestInterrupts++;
                    else HostInterrupts++;
                    break;
                case GapEvent g:
                    throw new InvalidOperationException($"the accounting lost {g.Missed} events; drain more often");
            }
        }
    }

    /// <summary>Zeroes the counters (the measurement starts).</summary>
    public void Reset() => (MmioTraps, InterruptExits, HostInterrupts, GuestInterrupts, UntrappedMmio) = (0, 0, 0, 0, 0);

    /// <summary>Ends the subscription.</summary>
    public void Dispose() => _sub.Dispose();
}
