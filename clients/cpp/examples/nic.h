/* The example driver's NIC step. */
#ifndef PCIEEMU_EXAMPLE_NIC_H
#define PCIEEMU_EXAMPLE_NIC_H
#include <stdint.h>

#include "pcieemu/pcieemu.h"

/* Enables 2 VFs on pf, programs the PF for VMDq loopback, sends one 64-byte frame from VF0's TX
 * queue 0 to VF1's MAC and checks VF1's RX queue 0 received the same bytes; then sends a frame to
 * an unknown unicast MAC and checks it on the wire (CaptureFrames, port 0). Prints a line per
 * step; returns 0, or 1 after printing what failed. */
int vf_to_vf(pcieemu_t* emu, uint32_t pf);

#endif
