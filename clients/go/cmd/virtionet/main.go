// Command virtionet is the example virtio-net driver (virtio 1.2, modern PCI transport, split
// virtqueues): find the 1AF4:1041 function, enable it, find its common/notify/ISR/device
// structures through the vendor capabilities, reset, negotiate VERSION_1 and MAC, set up
// receiveq0 and transmitq0 in RAM, DRIVER_OK, send one frame (seen on CaptureFrames) and receive
// one injected with InjectFrame, polling the used rings. The same steps, in the same order and
// with the same names, as the Python, C++ and TypeScript examples. Needs a machine with a
// virtio-net device:
//
//	pcie-emu serve --machine docs/machines/virtio-net.json
//	virtionet
//
// On TCP the token comes from $PCIEEMU_TOKEN, else the server's default token file.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"time"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
	pcieemu "github.com/pcieemu/pcieemu/clients/go/pcieemu"
)

// Identity and register layout, from the virtio 1.2 specification (section numbers in comments).
const (
	virtioVendor    = 0x1AF4
	virtioNetDevice = 0x1041 // §4.1.2: 0x1040 + device ID 1
	capVendor       = 0x09
	// virtio_pci_cap.cfg_type (§4.1.4)
	commonCfg, notifyCfg, isrCfg, deviceCfg = 1, 2, 3, 4
	// virtio_pci_common_cfg field offsets (§4.1.4.3)
	deviceFeatureSelect, deviceFeature, driverFeatureSelect, driverFeature = 0x00, 0x04, 0x08, 0x0C
	numQueues, deviceStatus, queueSelect, queueSize                        = 0x12, 0x14, 0x16, 0x18
	queueMsixVector, queueEnable, queueNotifyOff                           = 0x1A, 0x1C, 0x1E
	queueDesc, queueDriver, queueDevice                                    = 0x20, 0x28, 0x30
	// device status (§2.1)
	acknowledge, driver, driverOK, featuresOK, needsReset, failed = 1, 2, 4, 8, 64, 128
	// feature bits (§5.1.3, §6)
	fMAC                = uint64(1) << 5
	fVersion1           = uint64(1) << 32
	noVector            = 0xFFFF
	descFWrite          = 2    // §2.7.5
	netHdrLen           = 12   // virtio_net_hdr with VERSION_1 (§5.1.6)
	receiveq, transmitq = 0, 1 // receiveq1, transmitq1 (§5.1.2)
	queueEntries        = 8
	bufSize             = 2048
	ramOffset           = 0x200000 // where the driver puts its rings and buffers, from the RAM base
)

var peerMAC = []byte{0x02, 0x00, 0x00, 0x00, 0x99, 0x99} // a station on the wire

// ethernetFrame is dst, src, EtherType 0x88B5 (local experimental), payload; padded to 60 bytes.
func ethernetFrame(dst, src, payload []byte) []byte {
	f := append(append(append(append([]byte{}, dst...), src...), 0x88, 0xb5), payload...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

type virtqueue struct {
	desc, avail, used, buf, notify uint64
	lastUsed, nextAvail            uint16
}

// virtioNetDriver is the driver's state: the function, its BAR4 structures, the two split virtqueues.
type virtioNetDriver struct {
	c                           *pcieemu.Client
	rid, port                   uint32
	ram                         *pcieemu.RAM
	common, notify, isr, device uint64
	notifyMultiplier            uint32
	features                    uint64
	queues                      map[int]*virtqueue
}

// findVirtioNet (step 1) is the first 1AF4:1041 function (ListFunctions) and its Ethernet port (GetPlatform).
func findVirtioNet(ctx context.Context, c *pcieemu.Client) (*virtioNetDriver, error) {
	fns, err := c.ListFunctions(ctx)
	if err != nil {
		return nil, err
	}
	var fn *pb.Function
	for _, f := range fns {
		if f.VendorId == virtioVendor && f.DeviceId == virtioNetDevice {
			fn = f
			break
		}
	}
	if fn == nil {
		return nil, fmt.Errorf("no virtio-net function (1af4:1041): start the server with a --machine description that has a virtio-net device (docs/machines/virtio-net.json)")
	}
	plat, err := c.GetPlatform(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range plat.Devices {
		for _, p := range d.EthernetPorts {
			if p.FunctionRid == fn.Rid {
				ram, err := c.OpenRAM(ctx, false)
				if err != nil {
					return nil, err
				}
				return &virtioNetDriver{c: c, rid: fn.Rid, port: p.Number, ram: ram, queues: map[int]*virtqueue{}}, nil
			}
		}
	}
	return nil, fmt.Errorf("GetPlatform lists no Ethernet port for %s", pcieemu.FormatBDF(fn.Rid))
}

// enable (step 2) turns on memory decoding and bus mastering.
func (d *virtioNetDriver) enable(ctx context.Context) error {
	cmd, err := d.c.ReadConfig16(ctx, d.rid, pcieemu.RegCommand)
	if err != nil {
		return err
	}
	_, err = d.c.WriteConfig16(ctx, d.rid, pcieemu.RegCommand, cmd|0x6) // Memory Space, Bus Master
	return err
}

// barAddress is the address programmed in BAR index (64-bit BARs combined).
func (d *virtioNetDriver) barAddress(ctx context.Context, index int) (uint64, error) {
	lo, err := d.c.ReadConfig32(ctx, d.rid, 0x10+4*index)
	if err != nil {
		return 0, err
	}
	addr := uint64(lo &^ 0xF)
	if lo&0x6 == 0x4 { // 64-bit memory BAR
		hi, err := d.c.ReadConfig32(ctx, d.rid, 0x10+4*index+4)
		if err != nil {
			return 0, err
		}
		addr |= uint64(hi) << 32
	}
	return addr, nil
}

// findStructures (step 3) walks the vendor capabilities (virtio_pci_cap, §4.1.4).
func (d *virtioNetDriver) findStructures(ctx context.Context) error {
	caps, err := d.c.Capabilities(ctx, d.rid)
	if err != nil {
		return err
	}
	found := map[uint8]uint64{}
	for _, cp := range caps {
		if cp.ID != capVendor {
			continue
		}
		cfgType, err := d.c.ReadConfig8(ctx, d.rid, cp.Offset+3)
		if err != nil {
			return err
		}
		if _, dup := found[cfgType]; dup || cfgType < commonCfg || cfgType > deviceCfg {
			continue // the first of each type is the one to use (§4.1.4.1); PCI_CFG is not used here
		}
		bar, err := d.c.ReadConfig8(ctx, d.rid, cp.Offset+4)
		if err != nil {
			return err
		}
		offset, err := d.c.ReadConfig32(ctx, d.rid, cp.Offset+8)
		if err != nil {
			return err
		}
		base, err := d.barAddress(ctx, int(bar))
		if err != nil {
			return err
		}
		found[cfgType] = base + uint64(offset)
		if cfgType == notifyCfg {
			if d.notifyMultiplier, err = d.c.ReadConfig32(ctx, d.rid, cp.Offset+16); err != nil {
				return err
			}
		}
	}
	for t, name := range map[uint8]string{commonCfg: "common", notifyCfg: "notify", isrCfg: "isr", deviceCfg: "device"} {
		if _, ok := found[t]; !ok {
			return fmt.Errorf("virtio capability missing: %s", name)
		}
	}
	d.common, d.notify, d.isr, d.device = found[commonCfg], found[notifyCfg], found[isrCfg], found[deviceCfg]
	return nil
}

// ccRead and ccWrite access the common configuration, each field at its own width.
func (d *virtioNetDriver) ccRead(ctx context.Context, off uint64, width int) (uint64, error) {
	st, v, err := d.c.ReadMmio(ctx, d.common+off, width)
	if err == nil && st != pb.CompletionStatus_COMPLETION_STATUS_SUCCESSFUL {
		err = fmt.Errorf("MMIO read 0x%x: %s", d.common+off, st)
	}
	return v, err
}

func (d *virtioNetDriver) ccWrite(ctx context.Context, off uint64, width int, value uint64) error {
	st, err := d.c.WriteMmio(ctx, d.common+off, width, value)
	if err == nil && st != pb.CompletionStatus_COMPLETION_STATUS_SUCCESSFUL {
		err = fmt.Errorf("MMIO write 0x%x: %s", d.common+off, st)
	}
	return err
}

func (d *virtioNetDriver) status(ctx context.Context) (uint64, error) {
	return d.ccRead(ctx, deviceStatus, 1)
}

// reset (step 4): write 0, wait for 0, then ACKNOWLEDGE | DRIVER (§3.1.1).
func (d *virtioNetDriver) reset(ctx context.Context) error {
	if err := d.ccWrite(ctx, deviceStatus, 1, 0); err != nil {
		return err
	}
	if st, err := d.status(ctx); err != nil || st != 0 {
		return fmt.Errorf("device_status did not read 0 after reset (0x%x, %v)", st, err)
	}
	if err := d.ccWrite(ctx, deviceStatus, 1, acknowledge); err != nil {
		return err
	}
	return d.ccWrite(ctx, deviceStatus, 1, acknowledge|driver)
}

// negotiate (step 5): features, FEATURES_OK and re-read it.
func (d *virtioNetDriver) negotiate(ctx context.Context, wanted uint64) (uint64, error) {
	var offered uint64
	for sel := uint64(0); sel < 2; sel++ {
		if err := d.ccWrite(ctx, deviceFeatureSelect, 4, sel); err != nil {
			return 0, err
		}
		v, err := d.ccRead(ctx, deviceFeature, 4)
		if err != nil {
			return 0, err
		}
		offered |= v << (32 * sel)
	}
	if offered&fVersion1 == 0 {
		return 0, fmt.Errorf("device does not offer VERSION_1 (features 0x%x)", offered)
	}
	d.features = offered & wanted
	for sel := uint64(0); sel < 2; sel++ {
		if err := d.ccWrite(ctx, driverFeatureSelect, 4, sel); err != nil {
			return 0, err
		}
		if err := d.ccWrite(ctx, driverFeature, 4, (d.features>>(32*sel))&0xFFFFFFFF); err != nil {
			return 0, err
		}
	}
	if err := d.ccWrite(ctx, deviceStatus, 1, acknowledge|driver|featuresOK); err != nil {
		return 0, err
	}
	st, err := d.status(ctx)
	if err != nil {
		return 0, err
	}
	if st&featuresOK == 0 {
		_ = d.ccWrite(ctx, deviceStatus, 1, acknowledge|driver|failed)
		return 0, fmt.Errorf("device refused FEATURES_OK for features 0x%x", d.features)
	}
	return d.features, nil
}

// mac is the device config `mac` (§5.1.4), present with VIRTIO_NET_F_MAC.
func (d *virtioNetDriver) mac(ctx context.Context) ([]byte, error) {
	m := make([]byte, 6)
	for i := range m {
		_, v, err := d.c.ReadMmio(ctx, d.device+uint64(i), 1)
		if err != nil {
			return nil, err
		}
		m[i] = byte(v)
	}
	return m, nil
}

// setupQueue (step 6) places a split virtqueue (§2.7) in RAM and enables it.
func (d *virtioNetDriver) setupQueue(ctx context.Context, index int) error {
	if err := d.ccWrite(ctx, queueSelect, 2, uint64(index)); err != nil {
		return err
	}
	maxSize, err := d.ccRead(ctx, queueSize, 2)
	if err != nil {
		return err
	}
	if maxSize < queueEntries {
		return fmt.Errorf("queue %d: queue_size %d < %d", index, maxSize, queueEntries)
	}
	base := d.ram.Base() + ramOffset + uint64(index)*0x10000
	q := &virtqueue{desc: base, avail: base + 0x1000, used: base + 0x2000, buf: base + 0x4000}
	if err := d.ram.WriteAt(ctx, make([]byte, 0x4000+queueEntries*bufSize), base); err != nil { // rings and buffers zeroed
		return err
	}
	if err := d.ccWrite(ctx, queueSize, 2, queueEntries); err != nil {
		return err
	}
	if err := d.ccWrite(ctx, queueMsixVector, 2, noVector); err != nil { // polled: no interrupt
		return err
	}
	for _, f := range []struct{ off, addr uint64 }{{queueDesc, q.desc}, {queueDriver, q.avail}, {queueDevice, q.used}} {
		if err := d.ccWrite(ctx, f.off, 4, f.addr&0xFFFFFFFF); err != nil { // 64-bit fields as two halves
			return err
		}
		if err := d.ccWrite(ctx, f.off+4, 4, f.addr>>32); err != nil {
			return err
		}
	}
	notifyOff, err := d.ccRead(ctx, queueNotifyOff, 2)
	if err != nil {
		return err
	}
	q.notify = d.notify + notifyOff*uint64(d.notifyMultiplier)
	if err := d.ccWrite(ctx, queueEnable, 2, 1); err != nil {
		return err
	}
	if en, err := d.ccRead(ctx, queueEnable, 2); err != nil || en != 1 {
		return fmt.Errorf("queue %d: queue_enable refused (%v)", index, err)
	}
	d.queues[index] = q
	return nil
}

// driverOK (step 7) sets DRIVER_OK.
func (d *virtioNetDriver) driverOK(ctx context.Context) error {
	if err := d.ccWrite(ctx, deviceStatus, 1, acknowledge|driver|featuresOK|driverOK); err != nil {
		return err
	}
	st, err := d.status(ctx)
	if err != nil {
		return err
	}
	if st&(needsReset|driverOK) != driverOK {
		return fmt.Errorf("DRIVER_OK not taken (device_status 0x%x)", st)
	}
	return nil
}

// post puts one buffer (one descriptor) on the available ring and notifies the device.
func (d *virtioNetDriver) post(ctx context.Context, index int, data []byte, writable bool) error {
	q := d.queues[index]
	slot := uint64(q.nextAvail % queueEntries)
	addr := q.buf + slot*bufSize
	length, flags := uint32(len(data)), uint16(0)
	if writable {
		length, flags = bufSize, descFWrite
	} else if err := d.ram.WriteAt(ctx, data, addr); err != nil {
		return err
	}
	desc := make([]byte, 16)
	binary.LittleEndian.PutUint64(desc, addr)
	binary.LittleEndian.PutUint32(desc[8:], length)
	binary.LittleEndian.PutUint16(desc[12:], flags)
	if err := d.ram.WriteAt(ctx, desc, q.desc+16*slot); err != nil {
		return err
	}
	if err := d.ram.WriteAt(ctx, binary.LittleEndian.AppendUint16(nil, uint16(slot)), q.avail+4+2*slot); err != nil {
		return err
	}
	q.nextAvail++
	if err := d.ram.WriteAt(ctx, binary.LittleEndian.AppendUint16(nil, q.nextAvail), q.avail+2); err != nil { // avail.idx after the entry
		return err
	}
	st, err := d.c.WriteMmio(ctx, q.notify, 2, uint64(index))
	if err == nil && st != pb.CompletionStatus_COMPLETION_STATUS_SUCCESSFUL {
		err = fmt.Errorf("notify queue %d: %s", index, st)
	}
	return err
}

// waitUsed polls used.idx and returns (id, len) of the next used element.
func (d *virtioNetDriver) waitUsed(ctx context.Context, index int, timeout time.Duration) (uint32, uint32, error) {
	q := d.queues[index]
	deadline := time.Now().Add(timeout)
	b := make([]byte, 8)
	for {
		if err := d.ram.ReadAt(ctx, b[:2], q.used+2); err != nil {
			return 0, 0, err
		}
		if binary.LittleEndian.Uint16(b) != q.lastUsed {
			break
		}
		if time.Now().After(deadline) {
			st, _ := d.status(ctx)
			return 0, 0, fmt.Errorf("queue %d: nothing used after %s (device_status 0x%x)", index, timeout, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
	pos := uint64(q.lastUsed % queueEntries)
	q.lastUsed++
	if err := d.ram.ReadAt(ctx, b, q.used+4+8*pos); err != nil {
		return 0, 0, err
	}
	return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]), nil
}

// send (step 8) transmits one frame behind a zeroed virtio_net_hdr; returns the used length.
func (d *virtioNetDriver) send(ctx context.Context, frame []byte) (uint32, error) {
	if err := d.post(ctx, transmitq, append(make([]byte, netHdrLen), frame...), false); err != nil {
		return 0, err
	}
	_, n, err := d.waitUsed(ctx, transmitq, 5*time.Second)
	return n, err
}

// postReceiveBuffer and receive (step 9) hand the device one receive buffer and take the frame back.
func (d *virtioNetDriver) postReceiveBuffer(ctx context.Context) error {
	return d.post(ctx, receiveq, nil, true)
}

func (d *virtioNetDriver) receive(ctx context.Context, timeout time.Duration) ([]byte, error) {
	id, n, err := d.waitUsed(ctx, receiveq, timeout)
	if err != nil {
		return nil, err
	}
	if n < netHdrLen || n > bufSize {
		return nil, fmt.Errorf("receive: used len %d", n)
	}
	got := make([]byte, n-netHdrLen)
	err = d.ram.ReadAt(ctx, got, d.queues[receiveq].buf+uint64(id)*bufSize+netHdrLen)
	return got, err
}

func (d *virtioNetDriver) close() { _ = d.ram.Close() }

func same(a, b []byte) string {
	if bytes.Equal(a, b) {
		return "identical"
	}
	return "DIFFERENT"
}

func run(target string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pcieemu.Dial(ctx, target)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.ResetPlatform(ctx); err != nil {
		return err
	}
	d, err := findVirtioNet(ctx, c)
	if err != nil {
		return err
	}
	defer d.close()
	fmt.Printf("virtio-net %s (1af4:1041) on Ethernet port %d\n", pcieemu.FormatBDF(d.rid), d.port)
	if err := d.enable(ctx); err != nil {
		return err
	}
	if err := d.findStructures(ctx); err != nil {
		return err
	}
	fmt.Printf("BAR4 structures: common 0x%x, notify 0x%x (multiplier %d), isr 0x%x, device 0x%x\n",
		d.common, d.notify, d.notifyMultiplier, d.isr, d.device)
	if err := d.reset(ctx); err != nil {
		return err
	}
	features, err := d.negotiate(ctx, fVersion1|fMAC)
	if err != nil {
		return err
	}
	mac, err := d.mac(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("features 0x%x accepted (FEATURES_OK); mac %02x:%02x:%02x:%02x:%02x:%02x\n", features, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5])
	for _, q := range []int{receiveq, transmitq} {
		if err := d.setupQueue(ctx, q); err != nil {
			return err
		}
	}
	if err := d.driverOK(ctx); err != nil {
		return err
	}
	st, _ := d.status(ctx)
	nq, _ := d.ccRead(ctx, numQueues, 2)
	fmt.Printf("DRIVER_OK: device_status 0x%x, %d queues, RAM %s\n", st, nq, map[bool]string{true: "mapped", false: "through Read/WriteMemory"}[d.ram.Mapped()])

	frame := ethernetFrame(peerMAC, mac, []byte("hello from the virtio-net driver"))
	capture, err := c.CaptureFrames(ctx, d.port)
	if err != nil {
		return err
	}
	defer capture.Close()
	if _, err := capture.Opened(); err != nil {
		return err
	}
	usedLen, err := d.send(ctx, frame)
	if err != nil {
		return err
	}
	select {
	case seen, ok := <-capture.C:
		if !ok {
			return fmt.Errorf("capture ended: %v", capture.Err())
		}
		fmt.Printf("TX: used len %d, CaptureFrames saw %d bytes on port %d, %s\n", usedLen, len(seen.Data), seen.Port, same(seen.Data, frame))
	case <-time.After(10 * time.Second):
		return fmt.Errorf("no frame on CaptureFrames within 10 s")
	}

	if err := d.postReceiveBuffer(ctx); err != nil {
		return err
	}
	back := ethernetFrame(mac, peerMAC, []byte("hello from the wire"))
	r, err := c.InjectFrame(ctx, d.port, back)
	if err != nil {
		return err
	}
	got, err := d.receive(ctx, 5*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("RX: InjectFrame accepted=%t, received %d bytes, %s\n", r.Accepted, len(got), same(got, back))
	return nil
}

func main() {
	target := ""
	if len(os.Args) > 1 {
		target = os.Args[1]
	}
	if err := run(target); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
