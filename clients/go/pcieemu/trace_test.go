package pcieemu

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

func pf0Bar0(t *testing.T, c *Client, ctx context.Context) uint64 {
	t.Helper()
	fns, err := c.ListFunctions(ctx)
	must(t, err)
	for _, f := range fns {
		if f.Rid == pf0 {
			for _, b := range f.Bars {
				if b.Index == 0 {
					return b.Address
				}
			}
		}
	}
	t.Fatal("PF0 has no BAR0")
	return 0
}

// TestTraceSubscription: a rid filter, a config write and an MMIO write to that function (and one
// to another function, filtered out), then a marker read: exactly those events, in order, decoded.
func TestTraceSubscription(t *testing.T) {
	c, ctx := setup(t)
	bar0 := pf0Bar0(t, c, ctx)
	c.Timeout = 500 * time.Millisecond // the unary default deadline: the stream must not inherit it
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := c.SubscribeTrace(sctx, []uint32{pf0}, nil)
	must(t, err)
	defer sub.Close()
	if _, err := sub.Opened(); err != nil {
		t.Fatalf("subscription refused: %v", err)
	}
	time.Sleep(time.Second)
	for _, w := range []struct {
		rid uint32
		v   uint16
	}{{0x0101, 6}, {pf0, 6}} {
		_, err := c.WriteConfig16(ctx, w.rid, RegCommand, w.v)
		must(t, err)
	}
	_, err = c.WriteMmio(ctx, bar0+0x1524, 4, 1) // EIMS
	must(t, err)
	_, err = c.ReadConfig16(ctx, pf0, 0)
	must(t, err)
	want := []struct {
		kind        pb.TraceKind
		token, text string
	}{
		{pb.TraceKind_TRACE_KIND_CONFIG, "CFG", "W  Command [0x004] = 0x0006: I/O Space 1->0"},
		{pb.TraceKind_TRACE_KIND_MMIO, "MMIO", "W  PF0 BAR0 EIMS = 0x00000001  (was 0x00000000)"},
		{pb.TraceKind_TRACE_KIND_CONFIG, "CFG", "R  Vendor ID [0x000] -> 0x8086"},
	}
	var last uint64
	for i, w := range want {
		select {
		case ev, open := <-sub.C:
			if !open {
				t.Fatalf("stream ended after %d events: %v", i, sub.Err())
			}
			if ev.Kind != w.kind || ev.Token != w.token || ev.Text != w.text || ev.Rid != pf0 || ev.Sequence <= last {
				t.Fatalf("event %d: got %v %q %q rid %#x seq %d, want %v %q %q", i, ev.Kind, ev.Token, ev.Text, ev.Rid, ev.Sequence, w.kind, w.token, w.text)
			}
			last = ev.Sequence
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d not received within 10 s", i)
		}
	}
	sub.Close() // cancelling ends the stream cleanly
	if err := sub.Err(); err != nil {
		t.Fatalf("after close: %v", err)
	}
	if _, open := <-sub.C; open {
		t.Fatal("an event after the marker")
	}
}

func TestTraceBadKind(t *testing.T) {
	c, ctx := setup(t)
	sub, err := c.SubscribeTrace(ctx, []uint32{pf0}, []string{"bogus"})
	must(t, err)
	defer sub.Close()
	_, err = sub.Opened()
	if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), "kinds[0]:") {
		t.Fatalf("kind bogus: %v", err)
	}
	if _, err := c.SubscribeTrace(ctx, []uint32{0x10000}, nil); err == nil || !strings.Contains(err.Error(), "rids[0]") {
		t.Fatalf("rid 0x10000: %v", err)
	}
	if v, err := c.ReadConfig16(ctx, pf0, 0); err != nil || v != 0x8086 {
		t.Fatalf("server after a bad filter: %#x %v", v, err)
	}
}
