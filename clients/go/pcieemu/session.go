package pcieemu

import (
	"context"
	"errors"
	"io"
	"sync"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// Completion is one completion from a Session.
type Completion struct {
	Tag    uint64
	Status pb.CompletionStatus
	Value  uint64
	Data   []byte
	Kind   pb.TransactionKind
}

// Pending is a transaction that will complete: Wait for it.
type Pending struct {
	s  *Session
	ch chan Completion
}

// Wait sends anything still queued and waits for the completion.
func (p *Pending) Wait(ctx context.Context) (Completion, error) {
	if err := p.s.Flush(); err != nil {
		return Completion{}, err
	}
	select {
	case c, ok := <-p.ch:
		if !ok {
			return Completion{}, p.s.Err()
		}
		return c, nil
	case <-ctx.Done():
		return Completion{}, ctx.Err()
	}
}

// Session is the ordered transaction stream. Transactions execute in the order they are issued.
// Writes are posted: they are queued and reported only when they fail (PostedErrors) unless an
// ack is asked for. Reads return a Pending and see every earlier write. Queued transactions go out
// in one message (up to MaxPerMessage) on Flush, on Wait, or when the queue is full.
// A Session may be used from several goroutines; order is the order of the calls.
type Session struct {
	stream pb.SessionService_TransactClient
	cancel context.CancelFunc
	// MaxPerMessage caps the transactions of one TransactRequest (DefaultBatch, 256, the same
	// in every PcieEmu client; the server accepts up to 1024).
	MaxPerMessage int

	mu      sync.Mutex
	sendMu  sync.Mutex
	queue   []*pb.Transaction
	nextTag uint64
	pending map[uint64]chan Completion
	posted  []Completion
	err     error
	done    chan struct{}
}

// DefaultBatch is a Session's default MaxPerMessage.
const DefaultBatch = 256

// OpenSession opens a transaction stream; it lives until Close or ctx ends.
func (c *Client) OpenSession(ctx context.Context) (*Session, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.Sessions.Transact(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &Session{stream: stream, cancel: cancel, MaxPerMessage: DefaultBatch, nextTag: 1,
		pending: map[uint64]chan Completion{}, done: make(chan struct{})}
	go s.receive()
	return s, nil
}

func (s *Session) receive() {
	defer close(s.done)
	for {
		r, err := s.stream.Recv()
		if err != nil {
			s.mu.Lock()
			if s.err == nil {
				if err == io.EOF {
					s.err = errors.New("session stream ended")
				} else {
					s.err = err
				}
			}
			for t, ch := range s.pending {
				close(ch)
				delete(s.pending, t)
			}
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		s.complete(Completion{r.Tag, r.Status, r.Value, r.Data, r.Kind})
		for _, m := range r.More {
			s.complete(Completion{m.Tag, m.Status, m.Value, m.Data, m.Kind})
		}
		s.mu.Unlock()
	}
}

func (s *Session) complete(c Completion) {
	if ch, ok := s.pending[c.Tag]; ok {
		delete(s.pending, c.Tag)
		ch <- c
		return
	}
	// An unsolicited completion is a posted write that failed.
	s.posted = append(s.posted, c)
}

// Err is the error that ended the stream, if it has ended.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// PostedErrors returns the completions of posted writes that did not succeed so far.
func (s *Session) PostedErrors() []Completion {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Completion(nil), s.posted...)
}

func (s *Session) issue(t *pb.Transaction, wants bool) (*Pending, error) {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return nil, err
	}
	t.Tag = s.nextTag
	s.nextTag++
	s.queue = append(s.queue, t)
	var p *Pending
	if wants {
		p = &Pending{s: s, ch: make(chan Completion, 1)}
		s.pending[t.Tag] = p.ch
	}
	full := len(s.queue) >= s.MaxPerMessage
	s.mu.Unlock()
	if full {
		return p, s.Flush()
	}
	return p, nil
}

// Flush sends queued transactions.
func (s *Session) Flush() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	for {
		s.mu.Lock()
		n := len(s.queue)
		if n == 0 {
			s.mu.Unlock()
			return nil
		}
		if n > s.MaxPerMessage {
			n = s.MaxPerMessage
		}
		chunk := s.queue[:n]
		s.queue = append([]*pb.Transaction(nil), s.queue[n:]...)
		s.mu.Unlock()
		req := &pb.TransactRequest{Tag: chunk[0].Tag, Batch: chunk[1:]}
		switch op := chunk[0].Op.(type) {
		case *pb.Transaction_ConfigRead:
			req.Op = &pb.TransactRequest_ConfigRead{ConfigRead: op.ConfigRead}
		case *pb.Transaction_ConfigWrite:
			req.Op = &pb.TransactRequest_ConfigWrite{ConfigWrite: op.ConfigWrite}
		case *pb.Transaction_MmioRead:
			req.Op = &pb.TransactRequest_MmioRead{MmioRead: op.MmioRead}
		case *pb.Transaction_MmioWrite:
			req.Op = &pb.TransactRequest_MmioWrite{MmioWrite: op.MmioWrite}
		case *pb.Transaction_MemoryRead:
			req.Op = &pb.TransactRequest_MemoryRead{MemoryRead: op.MemoryRead}
		case *pb.Transaction_MemoryWrite:
			req.Op = &pb.TransactRequest_MemoryWrite{MemoryWrite: op.MemoryWrite}
		}
		if err := s.stream.Send(req); err != nil {
			if err == io.EOF { // the server ended the stream: the real status comes from Recv
				<-s.done
				return s.Err()
			}
			return err
		}
	}
}

// ConfigRead queues a config read.
func (s *Session) ConfigRead(rid uint32, offset, width int) (*Pending, error) {
	return s.issue(&pb.Transaction{Op: &pb.Transaction_ConfigRead{ConfigRead: &pb.ConfigReadOp{Rid: uint32(rid), Offset: uint32(offset), Width: uint32(width)}}}, true)
}

// ConfigWrite queues a posted config write.
func (s *Session) ConfigWrite(rid uint32, offset, width int, value uint32) error {
	_, err := s.issue(&pb.Transaction{Op: &pb.Transaction_ConfigWrite{ConfigWrite: &pb.ConfigWriteOp{Rid: uint32(rid), Offset: uint32(offset), Width: uint32(width), Value: value}}}, false)
	return err
}

// ConfigWriteAck queues a config write that completes (a fence the caller can wait on).
func (s *Session) ConfigWriteAck(rid uint32, offset, width int, value uint32) (*Pending, error) {
	return s.issue(&pb.Transaction{Op: &pb.Transaction_ConfigWrite{ConfigWrite: &pb.ConfigWriteOp{Rid: uint32(rid), Offset: uint32(offset), Width: uint32(width), Value: value, Ack: true}}}, true)
}

// MmioRead queues a memory-space read.
func (s *Session) MmioRead(address uint64, width int) (*Pending, error) {
	return s.issue(&pb.Transaction{Op: &pb.Transaction_MmioRead{MmioRead: &pb.MmioReadOp{Address: address, Width: uint32(width)}}}, true)
}

// MmioWrite queues a posted memory-space write.
func (s *Session) MmioWrite(address uint64, width int, value uint64) error {
	_, err := s.issue(&pb.Transaction{Op: &pb.Transaction_MmioWrite{MmioWrite: &pb.MmioWriteOp{Address: address, Width: uint32(width), Value: value}}}, false)
	return err
}

// MemoryRead queues a RAM block read.
func (s *Session) MemoryRead(address uint64, length int) (*Pending, error) {
	return s.issue(&pb.Transaction{Op: &pb.Transaction_MemoryRead{MemoryRead: &pb.MemoryReadOp{Address: address, Length: uint32(length)}}}, true)
}

// MemoryWrite queues a posted RAM block write.
func (s *Session) MemoryWrite(address uint64, data []byte) error {
	_, err := s.issue(&pb.Transaction{Op: &pb.Transaction_MemoryWrite{MemoryWrite: &pb.MemoryWriteOp{Address: address, Data: data}}}, false)
	return err
}

// Close flushes, half-closes the stream and waits until the server has completed everything. It
// returns the stream's error if it ended with one.
func (s *Session) Close() error {
	ferr := s.Flush()
	s.sendMu.Lock()
	_ = s.stream.CloseSend()
	s.sendMu.Unlock()
	<-s.done
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil && s.err.Error() != "session stream ended" {
		return s.err
	}
	return ferr
}

// Cancel abandons the stream.
func (s *Session) Cancel() {
	s.cancel()
	<-s.done
}
