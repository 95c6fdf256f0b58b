package pcieemu

import (
	"context"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// SubscribeInterrupts watches the functions in rids (none: every function).
func (c *Client) SubscribeInterrupts(ctx context.Context, rids ...uint32) (*InterruptSubscription, error) {
	ctx, cancel := context.WithCancel(ctx)
	return c.subscribe(ctx, cancel, &pb.SubscribeInterruptsRequest{Rids: rids})
}

func (c *Client) subscribe(ctx context.Context, cancel context.CancelFunc, req *pb.SubscribeInterruptsRequest) (*InterruptSubscription, error) {
	stream, err := c.Interrupts.SubscribeInterrupts(ctx, req)
	if err != nil {
		cancel()
		return nil, err
	}
	return startStream(ctx, cancel, stream, stream.Recv), nil
}
