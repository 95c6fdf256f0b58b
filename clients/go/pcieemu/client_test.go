package pcieemu

import (
	"bytes"
	"context"
	"io/ioutil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

const (
	ok  = pb.CompletionStatus_COMPLETION_STATUS_SUCCESSFUL
	ur  = pb.CompletionStatus_COMPLETION_STATUS_UNSUPPORTED_REQUEST
	pf0 = uint32(0x0100)
	rp  = uint32(0x0008)
)

// setup connects and cold-resets the machine; every call is bounded by a 30 s context.
func setup(t *testing.T) (*Client, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, err := dialTest(ctx, testTCP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.ResetPlatform(ctx); err != nil {
		t.Fatal(err)
	}
	return c, ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestBDF(t *testing.T) {
	if FormatBDF(0x0280) != "02:10.0" || MustParseBDF("0000:01:00.1") != 0x0101 || AriRID(1, 0x80) != 0x0180 {
		t.Fatal("BDF round trip")
	}
	if _, err := ParseBDF("01:20.0"); err == nil || !strings.Contains(err.Error(), "device") {
		t.Fatalf("01:20.0: %v", err)
	}
	if _, err := ParseBDF("x"); err == nil {
		t.Fatal("x parsed")
	}
}

func TestEnumerate(t *testing.T) {
	c, ctx := setup(t)
	fns, err := c.ListFunctions(ctx)
	must(t, err)
	by := map[string]*pb.Function{}
	for _, f := range fns {
		by[f.Bdf] = f
	}
	for _, b := range []string{"00:00.0", "00:01.0", "01:00.0", "01:00.1"} {
		if by[b] == nil {
			t.Fatalf("missing %s in %v", b, fns)
		}
	}
	f := by["01:00.0"]
	if f.Rid != uint32(pf0) || f.VendorId != 0x8086 || f.DeviceId != 0x10c9 || f.ClassCode != 0x020000 || f.IsVirtual || len(f.Bars) == 0 {
		t.Fatalf("PF0: %v", f)
	}
	p, err := c.GetPlatform(ctx)
	must(t, err)
	if p.RootPorts[0].Rid != uint32(rp) || p.RootPorts[0].SecondaryBus != 1 {
		t.Fatalf("root port: %v", p.RootPorts[0])
	}
}

func TestUnixSocket(t *testing.T) {
	if testUnix == "" {
		t.Skip("no Unix socket target")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, testUnix)
	must(t, err)
	defer c.Close()
	v, err := c.ReadConfig32(ctx, pf0, 0)
	must(t, err)
	if v != 0x10c98086 {
		t.Fatalf("ID over the Unix socket = %#x", v)
	}
}

func TestDefaultTargetFindsUnixSocket(t *testing.T) {
	if testUnix == "" {
		t.Skip("no Unix socket target")
	}
	dir, err := ioutil.TempDir("", "pcieemu-xdg-")
	must(t, err)
	defer os.RemoveAll(dir)
	must(t, os.Mkdir(filepath.Join(dir, "pcie-emu"), 0o700))
	sock := filepath.Join(dir, "pcie-emu", "pcie-emu.sock")
	must(t, os.Symlink(strings.TrimPrefix(testUnix, "unix://"), sock))
	t.Setenv("XDG_RUNTIME_DIR", dir)
	t.Setenv("PCIEEMU_TARGET", "")
	if got := DefaultTargetNow(); got != "unix://"+sock {
		t.Fatalf("DefaultTargetNow() = %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, "")
	must(t, err)
	defer c.Close()
	if v, err := c.ReadConfig32(ctx, pf0, 0); err != nil || v != 0x10c98086 {
		t.Fatalf("ID over the default socket = %#x, %v", v, err)
	}
}

func TestConfigWidths(t *testing.T) {
	c, ctx := setup(t)
	r, err := c.ReadConfig(ctx, pf0, 0, 4)
	must(t, err)
	if r != (ConfigRead{ok, 0x10c98086}) {
		t.Fatalf("dword 0: %+v", r)
	}
	v16, _ := c.ReadConfig16(ctx, pf0, 2)
	v8, _ := c.ReadConfig8(ctx, pf0, 1)
	cls, _ := c.ReadConfig8(ctx, pf0, 0x0b)
	if v16 != 0x10c9 || v8 != 0x80 || cls != 0x02 {
		t.Fatalf("word 2 %#x byte 1 %#x byte 0xb %#x", v16, v8, cls)
	}
	st, err := c.WriteConfig8(ctx, pf0, 0x3c, 0x5a) // Interrupt Line: read/write
	must(t, err)
	if v, _ := c.ReadConfig32(ctx, pf0, 0x3c); st != ok || v&0xff != 0x5a {
		t.Fatalf("interrupt line: %v %#x", st, v)
	}
	_, _ = c.WriteConfig16(ctx, pf0, 0, 0x1234) // Vendor ID is read-only
	if v, _ := c.ReadConfig16(ctx, pf0, 0); v != 0x8086 {
		t.Fatalf("vendor after write: %#x", v)
	}
}

func TestUnsupportedRequestReadsAllOnes(t *testing.T) {
	c, ctx := setup(t)
	for _, tc := range []struct {
		rid           uint32
		offset, width int
		want          uint32
	}{{0x0108, 0, 4, 0xffffffff}, {0x0900, 0, 2, 0xffff}, {0x0900, 3, 1, 0xff}} {
		r, err := c.ReadConfig(ctx, tc.rid, tc.offset, tc.width)
		must(t, err)
		if r != (ConfigRead{ur, tc.want}) {
			t.Fatalf("%s+%#x/%d: %+v", FormatBDF(tc.rid), tc.offset, tc.width, r)
		}
	}
	if st, _ := c.WriteConfig8(ctx, 0x0900, 0x3c, 1); st != ur {
		t.Fatalf("write to nothing: %v", st)
	}
}

func TestCapabilityWalk(t *testing.T) {
	c, ctx := setup(t)
	caps, err := c.Capabilities(ctx, pf0)
	must(t, err)
	want := []Capability{{CapIDPM, 0x40}, {CapIDMSI, 0x50}, {CapIDMSIX, 0x70}, {CapIDPCIe, 0xa0}}
	if len(caps) != len(want) {
		t.Fatalf("caps %v", caps)
	}
	for i := range want {
		if caps[i] != want[i] {
			t.Fatalf("caps %v", caps)
		}
	}
	ext, err := c.ExtendedCapabilities(ctx, pf0)
	must(t, err)
	wantExt := [][2]int{{ExtCapIDAER, 0x100}, {ExtCapIDDSN, 0x140}, {ExtCapIDARI, 0x150}, {ExtCapIDSRIOV, 0x160}}
	if len(ext) != len(wantExt) {
		t.Fatalf("ext %v", ext)
	}
	for i, w := range wantExt {
		if int(ext[i].ID) != w[0] || ext[i].Offset != w[1] {
			t.Fatalf("ext %v", ext)
		}
	}
	if off, _ := c.FindCapability(ctx, rp, CapIDPCIe); off != 0x40 {
		t.Fatalf("root port PCIe cap at %#x", off)
	}
	if none, _ := c.Capabilities(ctx, 0x0900); len(none) != 0 {
		t.Fatalf("absent function has caps %v", none)
	}
}

func checkVF(t *testing.T, c *Client, ctx context.Context, vf uint32) {
	t.Helper()
	r, err := c.ReadConfig(ctx, vf, RegClassRevision, 4)
	must(t, err)
	if r.Status != ok || r.Value>>8 != 0x020000 {
		t.Fatalf("VF %s class: %+v", FormatBDF(vf), r)
	}
}

func TestSRIOVWithoutARI(t *testing.T) {
	c, ctx := setup(t)
	vfs, err := c.EnableSRIOV(ctx, pf0, 2, SRIOVOptions{ARI: ARIOff})
	must(t, err)
	if len(vfs) != 2 || FormatBDF(vfs[0]) != "02:10.0" || FormatBDF(vfs[1]) != "02:10.2" {
		t.Fatalf("VFs %v", vfs)
	}
	checkVF(t, c, ctx, MustParseBDF("02:10.0"))
	if r, _ := c.ReadConfig(ctx, MustParseBDF("01:10.0"), 0, 4); r.Status != ur {
		t.Fatalf("01:10.0 without ARI: %+v", r)
	}
	fns, err := c.ListFunctions(ctx)
	must(t, err)
	found := false
	for _, f := range fns {
		if f.Rid == 0x0280 {
			found = f.IsVirtual && f.PhysicalFunctionRid == uint32(pf0) && f.DeviceId == 0x10ca
		}
	}
	if !found {
		t.Fatalf("VF 02:10.0 not listed as PF0's VF: %v", fns)
	}
	must(t, c.DisableSRIOV(ctx, pf0, 0))
	if r, _ := c.ReadConfig(ctx, 0x0280, 8, 4); r.Status != ur {
		t.Fatalf("VF still answers after disable: %+v", r)
	}
	if n, _ := c.ReadConfig16(ctx, pf0, 0x160+SriovNumVFs); n != 0 {
		t.Fatalf("NumVFs after disable = %d", n)
	}
}

func TestSRIOVWithARI(t *testing.T) {
	c, ctx := setup(t)
	vfs, err := c.EnableSRIOV(ctx, pf0, 2, SRIOVOptions{})
	must(t, err)
	if len(vfs) != 2 || vfs[0] != AriRID(1, 0x80) || FormatBDF(vfs[1]) != "01:10.2" {
		t.Fatalf("VFs %v", vfs)
	}
	checkVF(t, c, ctx, MustParseBDF("01:10.0"))
	if v, _ := c.ReadConfig16(ctx, rp, 0x40+PCIeDevCtl2); v&AriForwarding == 0 {
		t.Fatalf("ARI Forwarding Enable clear: DevCtl2 %#x", v)
	}
	want := uint16(SriovCtrlVFE | SriovCtrlMSE | SriovCtrlARI)
	if v, _ := c.ReadConfig16(ctx, pf0, 0x160+SriovCtrl); v&want != want {
		t.Fatalf("SR-IOV Control %#x", v)
	}
	if r, _ := c.ReadConfig(ctx, 0x0280, 0, 4); r.Status != ur {
		t.Fatalf("02:10.0 with ARI: %+v", r)
	}
	must(t, c.DisableSRIOV(ctx, pf0, 0))
	if r, _ := c.ReadConfig(ctx, 0x0180, 8, 4); r.Status != ur {
		t.Fatalf("VF still answers after disable: %+v", r)
	}
	if _, err := c.EnableSRIOV(ctx, pf0, 99, SRIOVOptions{}); err == nil || !strings.Contains(err.Error(), "1..8") {
		t.Fatalf("99 VFs: %v", err)
	}
}

func TestMemoryMappedAndRPC(t *testing.T) {
	c, ctx := setup(t)
	mapped, err := c.OpenRAM(ctx, false)
	must(t, err)
	defer mapped.Close()
	rpc, err := c.OpenRAM(ctx, true)
	must(t, err)
	if !mapped.Mapped() || rpc.Mapped() {
		t.Fatalf("mapped=%v rpc=%v: the server runs on this host, the RAM file should map", mapped.Mapped(), rpc.Mapped())
	}
	a := mapped.Base() + 0x10000
	copy(mapped.Bytes()[a-mapped.Base():], []byte{1, 2, 3, 4, 5})
	got := make([]byte, 5)
	must(t, rpc.ReadAt(ctx, got, a))
	if !bytes.Equal(got, []byte{1, 2, 3, 4, 5}) {
		t.Fatalf("RPC sees %v", got)
	}
	must(t, rpc.WriteAt(ctx, []byte("hello"), a+8))
	must(t, mapped.ReadAt(ctx, got, a+8))
	if string(got) != "hello" {
		t.Fatalf("mapping sees %q", got)
	}
	if st, v, err := c.ReadMmio(ctx, a, 4); err != nil || st != ok || v != 0x04030201 {
		t.Fatalf("ReadMmio %v %#x %v", st, v, err)
	}
	if err := mapped.ReadAt(ctx, got, mapped.Base()+mapped.Size()); err == nil {
		t.Fatal("read past RAM accepted")
	}
	if _, err := c.ReadMemory(ctx, mapped.Base()+mapped.Size(), 16); status.Code(err) != codes.OutOfRange {
		t.Fatalf("ReadMemory past RAM: %v", err)
	}
}

func TestSessionOrderingWithPostedWrites(t *testing.T) {
	c, ctx := setup(t)
	s, err := c.OpenSession(ctx)
	must(t, err)
	var cfg, mem []*Pending
	for i := 0; i < 200; i++ {
		must(t, s.ConfigWrite(pf0, 0x3c, 1, uint32(i&0xff)))
		p, err := s.ConfigRead(pf0, 0x3c, 1)
		must(t, err)
		cfg = append(cfg, p)
		must(t, s.MmioWrite(0x2000, 4, uint64(i*7)))
		p, err = s.MmioRead(0x2000, 4)
		must(t, err)
		mem = append(mem, p)
	}
	for i := range cfg {
		a, err := cfg[i].Wait(ctx)
		must(t, err)
		b, err := mem[i].Wait(ctx)
		must(t, err)
		if a.Value != uint64(i&0xff) || b.Value != uint64(i*7) || a.Status != ok {
			t.Fatalf("pair %d: config %+v mmio %+v", i, a, b)
		}
	}
	must(t, s.ConfigWrite(0x0900, 0x3c, 1, 1)) // to nothing: reported by tag
	ack, err := s.ConfigWriteAck(pf0, 0x3c, 1, 0x11)
	must(t, err)
	if a, err := ack.Wait(ctx); err != nil || a.Status != ok {
		t.Fatalf("ack %+v %v", a, err)
	}
	if pe := s.PostedErrors(); len(pe) != 1 || pe[0].Status != ur {
		t.Fatalf("posted errors %+v", pe)
	}
	mr, err := s.MemoryRead(0x2000, 4)
	must(t, err)
	if m, err := mr.Wait(ctx); err != nil || !bytes.Equal(m.Data, []byte{199 * 7 & 0xff, 199 * 7 >> 8, 0, 0}) {
		t.Fatalf("memory read %+v %v", m, err)
	}
	must(t, s.Close())
}

func TestSessionMalformedEndsStream(t *testing.T) {
	c, ctx := setup(t)
	s, err := c.OpenSession(ctx)
	must(t, err)
	p, err := s.ConfigRead(pf0, 0, 3)
	must(t, err)
	_, err = p.Wait(ctx)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "width") {
		t.Fatalf("width 3 in a session: %v", err)
	}
	s.Cancel()
}

func TestInterruptStreamOpens(t *testing.T) {
	c, ctx := setup(t)
	sub, err := c.SubscribeInterrupts(ctx, pf0)
	must(t, err)
	if _, err := sub.Opened(); err != nil {
		t.Fatalf("subscription refused: %v", err)
	}
	sub.Close()
	if err := sub.Err(); err != nil {
		t.Fatalf("after close: %v", err)
	}
	// A rid over 0xFFFF cannot be expressed through the typed API: send the raw request.
	bctx, cancel := context.WithCancel(ctx)
	bad, err := c.subscribe(bctx, cancel, &pb.SubscribeInterruptsRequest{Rids: []uint32{0x10000}})
	must(t, err)
	defer bad.Close()
	if _, err := bad.Opened(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("rid 0x10000: %v", err)
	}
}

func TestInvalidArgument(t *testing.T) {
	c, ctx := setup(t)
	_, err := c.ReadConfig(ctx, pf0, 0, 3)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "width") {
		t.Fatalf("width 3: %v", err)
	}
	_, err = c.ReadConfig(ctx, pf0, 4096, 4)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "offset") {
		t.Fatalf("offset 4096: %v", err)
	}
	if v, err := c.ReadConfig16(ctx, pf0, 0); err != nil || v != 0x8086 {
		t.Fatalf("server after bad requests: %#x %v", v, err)
	}
}

// raiseMsix makes the 82576 PF0 send MSI-X vector 0 (address 0xFEE00000, data 0x41): Memory
// Space + Bus Master, MSI-X table entry 0 programmed and unmasked, MSI-X enabled, GPIE
// multiple-MSI-X mode, EIMS bit 0, then EICS bit 0 sets the cause.
func raiseMsix(t *testing.T, c *Client, ctx context.Context) {
	t.Helper()
	fns, err := c.ListFunctions(ctx)
	must(t, err)
	bars := map[uint32]uint64{}
	for _, f := range fns {
		if f.Rid == uint32(pf0) {
			for _, b := range f.Bars {
				bars[b.Index] = b.Address
			}
		}
	}
	table, err := c.ReadConfig32(ctx, pf0, 0x70+4)
	must(t, err)
	entry := bars[table&7] + uint64(table&^7)
	cmd, _ := c.ReadConfig16(ctx, pf0, RegCommand)
	_, err = c.WriteConfig16(ctx, pf0, RegCommand, cmd|0x6)
	must(t, err)
	for _, w := range [][2]uint64{{0, 0xfee00000}, {4, 0}, {8, 0x41}, {12, 0}} {
		st, err := c.WriteMmio(ctx, entry+w[0], 4, w[1])
		must(t, err)
		if st != ok {
			t.Fatalf("MSI-X table write at %#x: %v", entry+w[0], st)
		}
	}
	mc, _ := c.ReadConfig16(ctx, pf0, 0x72)
	_, err = c.WriteConfig16(ctx, pf0, 0x72, (mc|0x8000)&^0x4000)
	must(t, err)
	for _, w := range [][2]uint64{{0x1514, 1 << 4}, {0x1524, 1}, {0x1520, 1}} { // GPIE, EIMS, EICS
		_, err := c.WriteMmio(ctx, bars[0]+w[0], 4, w[1])
		must(t, err)
	}
}

func TestInterruptDelivered(t *testing.T) {
	c, ctx := setup(t)
	sub, err := c.SubscribeInterrupts(ctx, pf0)
	must(t, err)
	defer sub.Close()
	if _, err := sub.Opened(); err != nil {
		t.Fatal(err)
	}
	raiseMsix(t, c, ctx)
	select {
	case ev, open := <-sub.C:
		if !open {
			t.Fatalf("stream ended: %v", sub.Err())
		}
		if ev.Rid != uint32(pf0) || ev.Kind != pb.InterruptKind_INTERRUPT_KIND_MSIX || ev.Address != 0xfee00000 || ev.Data != 0x41 || ev.Vector != 0 {
			t.Fatalf("event %v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no interrupt event within 10 s")
	}
}

func TestExampleDriver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// Builds and runs ../cmd/driver (this module) against the test server; offline, test.sh sets
	// GOWORK to the workspace offline.sh wrote.
	cmd := exec.CommandContext(ctx, "go", "run", "../cmd/driver", testTCP)
	cmd.Env = os.Environ()
	if testTokenFile != "" { // the driver finds the TCP token in $PCIEEMU_TOKEN
		cmd.Env = append(cmd.Env, TokenVariable+"="+testToken(t))
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("driver: %v\n%s", err, out)
	}
	for _, want := range []string{
		"01:00.0 8086:10c9 class 020000",
		"ARI off: VFs at 02:10.0, 02:10.2\n  02:10.0 class/rev = 0x020000",
		"ARI on : VFs at 01:10.0, 01:10.2\n  01:10.0 class/rev = 0x020000",
		"(COMPLETION_STATUS_SUCCESSFUL)",
		"VF0 -> VF1 loopback: 64-byte frame received intact (RX status 0x3)",
		"VF0 -> wire: 64-byte frame captured on port 0",
	} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("driver output lacks %q:\n%s", want, out)
		}
	}
}
