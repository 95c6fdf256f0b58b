package pcieemu

import (
	"context"
	"fmt"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// TraceSubscription is the stream of SubscribeTrace.
type TraceSubscription = Stream[*pb.TraceEvent]

// TraceKinds are the names a trace filter accepts in kinds (docs/trace.md).
var TraceKinds = []string{"config", "mmio", "dma", "msi", "iommu", "frame", "lifecycle"}

// SubscribeTrace watches the decoded transactions (docs/trace.md) of the functions in rids and
// of the kinds named in kinds ("config", "mmio", "dma", "msi", "iommu", "frame", "lifecycle"),
// from now on, in the order the machine published them; nil or empty = all. A subscriber that
// falls behind receives one TRACE_KIND_GAP event whose Missed is the count it lost, and the
// stream goes on. A stream: no default deadline; ctx or Close ends it. Opened reports a refused
// filter (INVALID_ARGUMENT naming kinds[i] for an unknown kind).
func (c *Client) SubscribeTrace(ctx context.Context, rids []uint32, kinds []string) (*TraceSubscription, error) {
	filter := &pb.TraceFilter{Kinds: kinds}
	for i, r := range rids {
		if r > 0xffff {
			return nil, fmt.Errorf("rids[%d]: %#x is not a 16-bit routing ID", i, r)
		}
		filter.Rids = append(filter.Rids, FormatBDF(r))
	}
	return c.subscribeTrace(ctx, filter)
}

func (c *Client) subscribeTrace(ctx context.Context, filter *pb.TraceFilter) (*TraceSubscription, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.Trace.Subscribe(ctx, filter)
	if err != nil {
		cancel()
		return nil, err
	}
	return startStream(ctx, cancel, stream, stream.Recv), nil
}
