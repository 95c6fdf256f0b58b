package pcieemu

import (
	"context"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// Stream delivers the items of a server stream (interrupt events, captured frames, trace events) on channel C
// until Close, the caller's context ends, or a stream error (Err). Streams have no deadline.
type Stream[T any] struct {
	// C receives the items in the order the server sent them; it is closed when the stream ends.
	C      <-chan T
	stream grpc.ClientStream
	cancel context.CancelFunc
	err    error
	done   chan struct{}
}

// InterruptSubscription is the stream of SubscribeInterrupts.
type InterruptSubscription = Stream[*pb.InterruptEvent]

// FrameCapture is the stream of CaptureFrames.
type FrameCapture = Stream[*pb.CapturedFrame]

// startStream pumps recv into the channel of a new Stream until the stream or ctx ends.
func startStream[T any](ctx context.Context, cancel context.CancelFunc, stream grpc.ClientStream, recv func() (T, error)) *Stream[T] {
	ch := make(chan T, 64)
	s := &Stream[T]{C: ch, stream: stream, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(ch)
		for {
			item, err := recv()
			if err != nil {
				if err != io.EOF && status.Code(err) != codes.Canceled {
					s.err = err
				}
				return
			}
			select {
			case ch <- item:
			case <-ctx.Done():
				return
			}
		}
	}()
	return s
}

// Opened waits until the server has accepted the stream (its response headers arrived), so an
// event that happens after it returns is delivered, and returns the stream's error if the server
// refused it (e.g. INVALID_ARGUMENT for a bad rid or port).
func (s *Stream[T]) Opened() (metadata.MD, error) {
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
func (s *Stream[T]) Err() error {
	<-s.done
	return s.err
}

// Close ends the stream.
func (s *Stream[T]) Close() {
	s.cancel()
	<-s.done
}
