package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
	pcieemu "github.com/pcieemu/pcieemu/clients/go/pcieemu"
)

// RAM layout of the NIC step, as offsets from the RAM base.
const (
	ringEntries = 8 // TDLEN/RDLEN: 8 x 16 = 128 bytes (the required multiple of 128)
	txRingOff   = 0x100000
	rxRingOff   = 0x101000
	txBufOff    = 0x102000
	rxBufOff    = 0x103000 // ringEntries buffers of 2 KiB
	bufSize     = 2048
)

// vfMAC is the locally administered MAC the driver gives VF i.
func vfMAC(i int) []byte { return []byte{0x02, 0x00, 0x00, 0x00, 0x10, byte(i)} }

// testFrame builds a 64-byte IPv4-typed frame with a counting payload.
func testFrame(dst, src []byte, fill byte) []byte {
	f := make([]byte, 64)
	copy(f, dst)
	copy(f[6:], src)
	f[12], f[13] = 0x08, 0x00
	for i := 14; i < len(f); i++ {
		f[i] = fill + byte(i)
	}
	return f
}

type nic struct {
	c   *pcieemu.Client
	ram *pcieemu.RAM
}

func (n *nic) write(ctx context.Context, addr uint64, v uint32) error {
	st, err := n.c.WriteMmio(ctx, addr, 4, uint64(v))
	if err == nil && st != pb.CompletionStatus_COMPLETION_STATUS_SUCCESSFUL {
		err = fmt.Errorf("MMIO write %#x: %s", addr, st)
	}
	return err
}

func (n *nic) read(ctx context.Context, addr uint64) (uint32, error) {
	st, v, err := n.c.ReadMmio(ctx, addr, 4)
	if err == nil && st != pb.CompletionStatus_COMPLETION_STATUS_SUCCESSFUL {
		err = fmt.Errorf("MMIO read %#x: %s", addr, st)
	}
	return uint32(v), err
}

// writes does a list of (register, value) MMIO writes relative to base, stopping at the first error.
func (n *nic) writes(ctx context.Context, base uint64, regs ...uint32) error {
	for i := 0; i+1 < len(regs); i += 2 {
		if err := n.write(ctx, base+uint64(regs[i]), regs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// bar0 finds the BAR0 address of a function in the ListFunctions answer.
func bar0(fns []*pb.Function, rid uint32) (uint64, error) {
	for _, f := range fns {
		if f.Rid == uint32(rid) {
			for _, b := range f.Bars {
				if b.Index == 0 && b.Address != 0 {
					return b.Address, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("%s has no assigned BAR0", pcieemu.FormatBDF(rid))
}

// setRAR programs receive address entry idx with a MAC and pool select bits.
func (n *nic) setRAR(ctx context.Context, pf uint64, idx int, mac []byte, pools uint32) error {
	lo := binary.LittleEndian.Uint32(mac)
	hi := uint32(binary.LittleEndian.Uint16(mac[4:])) | pools<<pcieemu.IgbRahPoolShift | pcieemu.IgbRahAv
	ral := uint32(pcieemu.IgbRal0 + 8*idx)
	return n.writes(ctx, pf, ral, lo, ral+4, hi)
}

// vfToVf enables 2 VFs on pf, sets PF0 up for VMDq loopback, sends one 64-byte frame from VF0's
// TX queue 0 to VF1's MAC, and checks VF1's RX queue 0 received the same bytes. Then it sends a
// frame to an unknown unicast MAC and checks it left on the wire (CaptureFrames on port 0).
func vfToVf(ctx context.Context, c *pcieemu.Client, pf uint32) error {
	vfs, err := c.EnableSRIOV(ctx, pf, 2, pcieemu.SRIOVOptions{})
	if err != nil {
		return err
	}
	defer c.DisableSRIOV(ctx, pf, 0)
	ram, err := c.OpenRAM(ctx, false)
	if err != nil {
		return err
	}
	defer ram.Close()
	n := &nic{c, ram}
	fns, err := c.ListFunctions(ctx)
	if err != nil {
		return err
	}
	pfBar, err := bar0(fns, pf)
	if err != nil {
		return err
	}
	vfBar := make([]uint64, 2)
	for i := range vfBar {
		if vfBar[i], err = bar0(fns, vfs[i]); err != nil {
			return err
		}
		// Memory Space (VFs decode through VF MSE) and Bus Master Enable for the VF's DMA.
		if _, err := c.WriteConfig16(ctx, vfs[i], pcieemu.RegCommand, 0x4); err != nil {
			return err
		}
	}
	cmd, err := c.ReadConfig16(ctx, pf, pcieemu.RegCommand)
	if err != nil {
		return err
	}
	if _, err := c.WriteConfig16(ctx, pf, pcieemu.RegCommand, cmd|0x6); err != nil {
		return err
	}

	// PF driver: VMDq with loopback, pools 0 and 1 (the VFs) enabled and accepting untagged
	// frames, RAR1/RAR2 = the VFs' MACs steering to their pools.
	pools := uint32(0b11)
	if err := n.writes(ctx, pfBar,
		pcieemu.IgbCtrlExt, pcieemu.IgbCtrlExtPfrstd,
		pcieemu.IgbMrqc, pcieemu.IgbMrqcVmdq,
		pcieemu.IgbDtxswc, pcieemu.IgbDtxswcLoopback,
		pcieemu.IgbRctl, pcieemu.IgbRctlEn|pcieemu.IgbRctlBam|pcieemu.IgbRctlSecrc,
		pcieemu.IgbTctl, pcieemu.IgbTctlEn,
		pcieemu.IgbVmolr0+0, pcieemu.IgbVmolrAupe|pcieemu.IgbVmolrBam,
		pcieemu.IgbVmolr0+4, pcieemu.IgbVmolrAupe|pcieemu.IgbVmolrBam,
		pcieemu.IgbVfre, pools,
		pcieemu.IgbVfte, pools); err != nil {
		return err
	}
	for i := 0; i < 2; i++ {
		if err := n.setRAR(ctx, pfBar, i+1, vfMAC(i), 1<<i); err != nil {
			return err
		}
	}

	base := ram.Base()
	// VF1 RX queue 0: advanced one-buffer descriptors, 2 KiB buffers, all but one posted.
	desc := make([]byte, pcieemu.IgbDescriptorBytes)
	for i := 0; i < ringEntries; i++ {
		binary.LittleEndian.PutUint64(desc, base+rxBufOff+uint64(i)*bufSize)
		binary.LittleEndian.PutUint64(desc[8:], 0)
		if err := ram.WriteAt(ctx, desc, base+rxRingOff+uint64(i)*pcieemu.IgbDescriptorBytes); err != nil {
			return err
		}
	}
	rx := vfBar[1] + pcieemu.IgbVfRxQueue0
	if err := n.writes(ctx, rx,
		pcieemu.IgbRdbal, uint32(base+rxRingOff), pcieemu.IgbRdbah, uint32((base+rxRingOff)>>32),
		pcieemu.IgbRdlen, ringEntries*pcieemu.IgbDescriptorBytes,
		pcieemu.IgbSrrctl, pcieemu.IgbSrrctlBsize2K|pcieemu.IgbSrrctlAdvOneBuffer,
		pcieemu.IgbRdh, 0, pcieemu.IgbRdt, 0,
		pcieemu.IgbRxdctl, pcieemu.IgbQueueEnable,
		pcieemu.IgbRdt, ringEntries-1); err != nil {
		return err
	}
	// VF0 TX queue 0.
	tx := vfBar[0] + pcieemu.IgbVfTxQueue0
	if err := n.writes(ctx, tx,
		pcieemu.IgbTdbal, uint32(base+txRingOff), pcieemu.IgbTdbah, uint32((base+txRingOff)>>32),
		pcieemu.IgbTdlen, ringEntries*pcieemu.IgbDescriptorBytes,
		pcieemu.IgbTdh, 0, pcieemu.IgbTdt, 0,
		pcieemu.IgbTxdctl, pcieemu.IgbQueueEnable); err != nil {
		return err
	}

	// send posts frame in TX descriptor slot and writes TDT = slot+1.
	send := func(slot int, frame []byte) error {
		buf := base + txBufOff + uint64(slot)*bufSize
		if err := ram.WriteAt(ctx, frame, buf); err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(desc, buf)
		binary.LittleEndian.PutUint32(desc[8:], uint32(len(frame))|pcieemu.IgbTxdDtypData|
			pcieemu.IgbTxdCmdEop|pcieemu.IgbTxdCmdIfcs|pcieemu.IgbTxdCmdRs|pcieemu.IgbTxdCmdDext)
		binary.LittleEndian.PutUint32(desc[12:], uint32(len(frame))<<pcieemu.IgbTxdPaylenShift)
		if err := ram.WriteAt(ctx, desc, base+txRingOff+uint64(slot)*pcieemu.IgbDescriptorBytes); err != nil {
			return err
		}
		return n.write(ctx, tx+pcieemu.IgbTdt, uint32(slot+1))
	}
	// dd polls dword dw of a descriptor until bit 0 (DD) is set.
	dd := func(addr uint64, dw int) ([]byte, error) {
		d := make([]byte, pcieemu.IgbDescriptorBytes)
		for try := 0; try < 500; try++ {
			if err := ram.ReadAt(ctx, d, addr); err != nil {
				return nil, err
			}
			if binary.LittleEndian.Uint32(d[4*dw:])&1 != 0 {
				return d, nil
			}
			time.Sleep(2 * time.Millisecond)
		}
		return nil, fmt.Errorf("descriptor at %#x: no DD after 1 s", addr)
	}

	frame := testFrame(vfMAC(1), vfMAC(0), 0xA5)
	if err := send(0, frame); err != nil {
		return err
	}
	if _, err := dd(base+txRingOff, 3); err != nil {
		return fmt.Errorf("VF0 TX: %v", err)
	}
	wb, err := dd(base+rxRingOff, 2)
	if err != nil {
		return fmt.Errorf("VF1 RX: %v", err)
	}
	status := binary.LittleEndian.Uint32(wb[8:])
	length := int(binary.LittleEndian.Uint16(wb[12:]))
	got := make([]byte, length)
	if err := ram.ReadAt(ctx, got, base+rxBufOff); err != nil {
		return err
	}
	if status&pcieemu.IgbRxdStatEop == 0 || !bytes.Equal(got, frame) {
		return fmt.Errorf("VF1 received %d bytes (status %#x) % x, sent % x", length, status, got, frame)
	}
	fmt.Printf("VF0 -> VF1 loopback: %d-byte frame received intact (RX status %#x)\n", length, status)

	// A frame to an unknown unicast MAC leaves on the wire; the loopback frame above did not.
	capture, err := c.CaptureFrames(ctx, 0)
	if err != nil {
		return err
	}
	defer capture.Close()
	if _, err := capture.Opened(); err != nil { // subscribed
		return err
	}
	wire := testFrame([]byte{0x02, 0x00, 0x00, 0x00, 0x20, 0x00}, vfMAC(0), 0x5A)
	if err := send(1, wire); err != nil {
		return err
	}
	var seen *pb.CapturedFrame
	select {
	case seen = <-capture.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	if seen == nil {
		return fmt.Errorf("capture ended: %v", capture.Err())
	}
	if !bytes.Equal(seen.Data, wire) {
		return fmt.Errorf("wire frame % x, sent % x", seen.Data, wire)
	}
	fmt.Printf("VF0 -> wire: %d-byte frame captured on port %d\n", len(seen.Data), seen.Port)
	return nil
}
