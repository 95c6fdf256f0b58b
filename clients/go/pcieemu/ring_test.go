package pcieemu

import (
	"bytes"
	"strings"
	"testing"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRingOrderingStatusesAndRejectedEntries(t *testing.T) {
	c, ctx := setup(t)
	r, err := c.OpenRing(ctx, nil)
	must(t, err)
	defer r.Close()
	for i := 0; i < 600; i++ { // more than the ring's 256 slots
		must(t, r.ConfigWrite(pf0, 0x3c, 1, uint32(i&0xff)))
		must(t, r.MmioWrite(0x2000, 4, uint64(i*7)))
		if i%50 == 49 {
			a, err := r.ConfigRead(pf0, 0x3c, 1)
			must(t, err)
			b, err := r.MmioRead(0x2000, 4)
			must(t, err)
			if a.Status != uint16(ok) || a.Value != uint64(i&0xff) || b.Value != uint64(i*7) {
				t.Fatalf("after write %d: config %+v mmio %+v", i, a, b)
			}
		}
	}
	must(t, r.ConfigWrite(0x0900, 0x3c, 1, 1)) // to nothing: a posted error
	ack, err := r.ConfigWriteAck(pf0, 0x3c, 1, 0x11)
	must(t, err)
	if ack.Status != uint16(ok) || ack.Kind != 2 {
		t.Fatalf("acked write: %+v", ack)
	}
	if pe := r.PostedErrors(); len(pe) != 1 || pe[0].Status != uint16(pb.CompletionStatus_COMPLETION_STATUS_UNSUPPORTED_REQUEST) {
		t.Fatalf("posted errors: %+v", pe)
	}
	block := bytes.Repeat([]byte{1, 2, 3, 4, 5}, 20)
	for k := 0; k < 200; k++ { // 200 x 100 B > the 64 KiB data area once rounded: it is reused
		must(t, r.MemoryWrite(0x10000+uint64(k)*128, block))
	}
	got := make([]byte, len(block))
	m, err := r.MemoryRead(0x10000+199*128, got)
	must(t, err)
	if m.Status != uint16(ok) || m.Length != 100 || !bytes.Equal(got, block) {
		t.Fatalf("memory read: %+v %v", m, got)
	}
	bad, err := r.ConfigRead(pf0, 3, 2) // crosses a dword
	must(t, err)
	if bad.Status != RingInvalidArgument || bad.Field != 4 {
		t.Fatalf("dword-crossing read: %+v", bad)
	}
	id, err := r.ConfigRead(pf0, 0, 4)
	must(t, err)
	if id.Value != 0x10C98086 || r.Closed() {
		t.Fatalf("after a rejected entry: %+v closed %v", id, r.Closed())
	}
	_, err = c.OpenRing(ctx, &pb.OpenRingRequest{SubmissionEntries: 3})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "submission_entries") {
		t.Fatalf("3 entries: %v", err)
	}
}
