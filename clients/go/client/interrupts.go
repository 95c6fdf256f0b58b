package pcieemu

import (
	"context"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "pcieemu/gen/pcieemuv1"
)

// InterruptSubscription delivers interrupt events on channel C until Close or a stream error.
type InterruptSubscription struct {
	// C receives events in the order the platform saw them; it is closed when the stream ends.
	C      <-chan *pb.InterruptEvent
	stream pb.InterruptService_SubscribeInterruptsClient
	cancel context.CancelFunc
	err    error
	done   chan struct{}
}

// SubscribeInterrupts watches the functions in rids (none: every function).
func (c *Client) SubscribeInterrupts(ctx context.Context, rids ...uint16) (*InterruptSubscription, error) {
	ctx, cancel := context.WithCancel(ctx)
	req := &pb.SubscribeInterruptsRequest{}
	for _, r := range rids {
		req.Rids = append(req.Rids, uint32(r))
	}
	return c.subscribe(ctx, cancel, req)
}

func (c *Client) subscribe(ctx context.Context, cancel context.CancelFunc, req *pb.SubscribeInterruptsRequest) (*InterruptSubscription, error) {
	stream, err := c.Interrupts.SubscribeInterrupts(ctx, req)
	if err != nil {
		cancel()
		return nil, err
	}
	ch := make(chan *pb.InterruptEvent, 64)
	s := &InterruptSubscription{C: ch, stream: stream, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(ch)
		for {
			ev, err := stream.Recv()
			if err != nil {
				if err != io.EOF && status.Code(err) != codes.Canceled {
					s.err = err
				}
				return
			}
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return s, nil
}

// Opened waits until the server has accepted the subscription (its response headers arrived) and
// returns the stream's error if it refused it (e.g. INVALID_ARGUMENT for a bad rid).
func (s *InterruptSubscription) Opened() (metadata.MD, error) {
	md, err := s.stream.Header()
	if err != nil {
		return nil, err
	}
	if len(md) == 0 {
		// A trailers-only response (no content-type header): the server refused the stream at
		// once. Report its status.
		<-s.done
		return nil, s.err
	}
	return md, nil
}

// Err is the error that ended the stream (nil after Close or a clean end).
func (s *InterruptSubscription) Err() error {
	<-s.done
	return s.err
}

// Close cancels the subscription.
func (s *InterruptSubscription) Close() {
	s.cancel()
	<-s.done
}
