package pcieemu

import (
	"context"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// InjectFrame delivers an Ethernet frame (destination MAC first) to the receive side of the NIC's
// port as if the link partner sent it; the NIC filters it and DMAs it into the queues that accept
// it. Accepted: at least one receive queue took it; Queues: how many did.
func (c *Client) InjectFrame(ctx context.Context, port uint32, frame []byte) (*pb.InjectFrameResponse, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	return c.Ethernet.InjectFrame(ctx, &pb.InjectFrameRequest{Port: port, Data: frame})
}

// CaptureFrames watches the frames the NIC's port sends to the wire from now on (frames looped
// back inside the NIC by VMDq are not on the wire). A stream: no default deadline; ctx or
// Close ends it.
func (c *Client) CaptureFrames(ctx context.Context, port uint32) (*FrameCapture, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.Ethernet.CaptureFrames(ctx, &pb.CaptureFramesRequest{Port: port})
	if err != nil {
		cancel()
		return nil, err
	}
	return startStream(ctx, cancel, stream, stream.Recv), nil
}
