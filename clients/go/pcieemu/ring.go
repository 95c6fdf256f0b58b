package pcieemu

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// Ring layout version 1 (docs/protocol.md, "Shared-memory ring"): header offsets and sizes.
const (
	ringMagic          = 0x474E495245494350 // "PCIERING"
	ringState          = 0x24
	ringSqTail         = 0x40
	ringServerSleeping = 0x44
	ringSqHead         = 0x80
	ringCqTail         = 0xC0
	ringClientSleeping = 0xC4
	ringCqHead         = 0x100
	ringSqEntrySize    = 64
	ringCqEntrySize    = 32
	ringFlagAck        = 1

	// RingInvalidArgument and RingOutOfRange are the statuses of a rejected entry (nothing ran);
	// RingCompletion.Field then names the field (1 op ... 10 reserved).
	RingInvalidArgument = 0x100
	RingOutOfRange      = 0x101
)

// RingCompletion is one completion read from a ring.
type RingCompletion struct {
	Tag    uint64
	Kind   uint8  // the entry's op: 1 config_read ... 6 memory_write (TransactionKind numbers)
	Status uint16 // 1-4: CompletionStatus; RingInvalidArgument / RingOutOfRange: rejected
	Field  uint8  // for a rejected entry, the field at fault
	Value  uint64 // config and MMIO reads (all ones on UR)
	Length uint32 // bytes a memory read returned
}

// Ring is a shared-memory ring (SessionService.OpenRing; same host only): single accesses
// without a socket round trip, with the Session stream's ordering (entries execute in order,
// writes are posted and reported only on failure, a read sees every earlier write). Not safe
// for concurrent use: one goroutine drives a ring. Reads block (poll ClientSpin, then sleep on
// the shared futex) until their completion.
type Ring struct {
	Layout     *pb.OpenRingResponse
	ClientSpin time.Duration // how long a wait polls before it sleeps (20 µs by default)
	stream     pb.SessionService_OpenRingClient
	cancel     context.CancelFunc
	mem        []byte
	sqTail     uint32
	cqHead     uint32
	dataUsed   uint32
	dataMark   uint32
	nextTag    uint64
	posted     []RingCompletion
}

// OpenRing asks the server for a ring (req may be nil for the defaults) and maps its file.
func (c *Client) OpenRing(ctx context.Context, req *pb.OpenRingRequest) (*Ring, error) {
	if req == nil {
		req = &pb.OpenRingRequest{}
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.Sessions.OpenRing(ctx, req)
	if err != nil {
		cancel()
		return nil, err
	}
	layout, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, err
	}
	fail := func(e error) (*Ring, error) { cancel(); return nil, e }
	if layout.Version != 1 || layout.SubmissionEntrySize != ringSqEntrySize || layout.CompletionEntrySize != ringCqEntrySize {
		return fail(fmt.Errorf("OpenRing: ring layout version %d is not 1", layout.Version))
	}
	f, err := os.OpenFile(layout.Path, os.O_RDWR, 0)
	if err != nil {
		return fail(fmt.Errorf("OpenRing: %w", err))
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(layout.Size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	f.Close()
	if err != nil {
		return fail(fmt.Errorf("OpenRing: mmap %s: %w", layout.Path, err))
	}
	if binary.LittleEndian.Uint64(mem) != ringMagic {
		syscall.Munmap(mem)
		return fail(fmt.Errorf("OpenRing: %s is not a ring file", layout.Path))
	}
	return &Ring{Layout: layout, ClientSpin: 20 * time.Microsecond, stream: stream, cancel: cancel, mem: mem, nextTag: 1}, nil
}

func (r *Ring) word(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.mem[off])) }

// Closed reports whether the server closed the ring (it stopped, or the ring broke).
func (r *Ring) Closed() bool { return r.mem == nil || atomic.LoadUint32(r.word(ringState)) != 0 }

// Close cancels the OpenRing call (the server closes the ring and deletes its file) and unmaps it.
func (r *Ring) Close() {
	if r.mem == nil {
		return
	}
	r.cancel()
	syscall.Munmap(r.mem)
	r.mem = nil
}

func (r *Ring) closedError() error {
	// The server ends the call right after closing the ring: its status says why.
	if _, err := r.stream.Recv(); err != nil {
		return fmt.Errorf("the server closed the ring: %w", err)
	}
	return errors.New("the server closed the ring")
}

// backoff polls cheaply a few times, then yields the processor so the other side can run.
type backoff int

func (b *backoff) pause() {
	*b++
	if *b > 32 {
		syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
	}
}

func futexWait(addr *uint32, expected uint32, timeout time.Duration) {
	ts := syscall.NsecToTimespec(int64(timeout))
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), 0 /* FUTEX_WAIT, shared */, uintptr(expected),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
}

func futexWake(addr *uint32) {
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), 1 /* FUTEX_WAKE */, 1<<31-1, 0, 0, 0)
}

func (r *Ring) submit(op, flags uint8, rid, offset uint16, width uint8, address, value uint64, dataOffset, length uint32) (uint64, error) {
	if r.mem == nil {
		return 0, errors.New("ring closed")
	}
	n := r.Layout.SubmissionEntries
	var b backoff
	for r.sqTail-atomic.LoadUint32(r.word(ringSqHead)) >= n {
		if r.Closed() {
			return 0, r.closedError()
		}
		b.pause()
	}
	tag := r.nextTag
	r.nextTag++
	e := r.mem[int(r.Layout.SubmissionOffset)+int(r.sqTail&(n-1))*ringSqEntrySize:][:ringSqEntrySize]
	for i := range e {
		e[i] = 0
	}
	binary.LittleEndian.PutUint64(e[0:], tag)
	e[8], e[9] = op, flags
	binary.LittleEndian.PutUint16(e[10:], rid)
	binary.LittleEndian.PutUint16(e[12:], offset)
	e[14] = width
	binary.LittleEndian.PutUint64(e[16:], address)
	binary.LittleEndian.PutUint64(e[24:], value)
	binary.LittleEndian.PutUint32(e[32:], dataOffset)
	binary.LittleEndian.PutUint32(e[36:], length)
	r.sqTail++
	// Go's atomics are sequentially consistent: the tail is visible before we read the sleeping flag.
	atomic.StoreUint32(r.word(ringSqTail), r.sqTail)
	if atomic.LoadUint32(r.word(ringServerSleeping)) != 0 {
		futexWake(r.word(ringSqTail))
	}
	return tag, nil
}

func (r *Ring) wait(tag uint64, err error) (RingCompletion, error) {
	if err != nil {
		return RingCompletion{}, err
	}
	n := r.Layout.CompletionEntries
	for {
		start := time.Now()
		var b backoff
		for atomic.LoadUint32(r.word(ringCqTail)) == r.cqHead {
			if time.Since(start) < r.ClientSpin {
				b.pause()
				continue
			}
			if r.Closed() {
				return RingCompletion{}, r.closedError()
			}
			atomic.StoreUint32(r.word(ringClientSleeping), 1)
			if atomic.LoadUint32(r.word(ringCqTail)) == r.cqHead && !r.Closed() {
				futexWait(r.word(ringCqTail), r.cqHead, 100*time.Millisecond)
			}
			atomic.StoreUint32(r.word(ringClientSleeping), 0)
		}
		e := r.mem[int(r.Layout.CompletionOffset)+int(r.cqHead&(n-1))*ringCqEntrySize:][:ringCqEntrySize]
		c := RingCompletion{Tag: binary.LittleEndian.Uint64(e[0:]), Value: binary.LittleEndian.Uint64(e[8:]), Kind: e[16],
			Field: e[17], Status: binary.LittleEndian.Uint16(e[18:]), Length: binary.LittleEndian.Uint32(e[20:])}
		r.cqHead++
		atomic.StoreUint32(r.word(ringCqHead), r.cqHead)
		if c.Tag == tag {
			return c, nil
		}
		r.posted = append(r.posted, c)
	}
}

func ringArgs(rid uint32, offset, width int) (uint16, uint16, uint8, error) {
	if rid > 0xFFFF {
		return 0, 0, 0, fmt.Errorf("rid: routing ID 0x%X is over 0xFFFF", rid)
	}
	if offset < 0 || offset >= 4096 {
		return 0, 0, 0, fmt.Errorf("offset: must be in [0, 4096) (was %d)", offset)
	}
	if width != 1 && width != 2 && width != 4 && width != 8 {
		return 0, 0, 0, fmt.Errorf("width: must be 1, 2, 4 or 8 (was %d)", width)
	}
	return uint16(rid), uint16(offset), uint8(width), nil
}

// ConfigRead reads config space and waits for the completion.
func (r *Ring) ConfigRead(rid uint32, offset, width int) (RingCompletion, error) {
	id, off, w, err := ringArgs(rid, offset, width)
	if err != nil {
		return RingCompletion{}, err
	}
	return r.wait(r.submit(1, 0, id, off, w, 0, 0, 0, 0))
}

// ConfigWrite posts a config write (a failure shows up in PostedErrors).
func (r *Ring) ConfigWrite(rid uint32, offset, width int, value uint32) error {
	id, off, w, err := ringArgs(rid, offset, width)
	if err != nil {
		return err
	}
	_, err = r.submit(2, 0, id, off, w, 0, uint64(value), 0, 0)
	return err
}

// ConfigWriteAck writes config space and waits for the write's completion.
func (r *Ring) ConfigWriteAck(rid uint32, offset, width int, value uint32) (RingCompletion, error) {
	id, off, w, err := ringArgs(rid, offset, width)
	if err != nil {
		return RingCompletion{}, err
	}
	return r.wait(r.submit(2, ringFlagAck, id, off, w, 0, uint64(value), 0, 0))
}

// MmioRead reads memory space (MMIO or RAM) and waits for the completion.
func (r *Ring) MmioRead(address uint64, width int) (RingCompletion, error) {
	_, _, w, err := ringArgs(0, 0, width)
	if err != nil {
		return RingCompletion{}, err
	}
	return r.wait(r.submit(3, 0, 0, 0, w, address, 0, 0, 0))
}

// MmioWrite posts a memory-space write.
func (r *Ring) MmioWrite(address uint64, width int, value uint64) error {
	_, _, w, err := ringArgs(0, 0, width)
	if err != nil {
		return err
	}
	_, err = r.submit(4, 0, 0, 0, w, address, value, 0, 0)
	return err
}

// reserve places one memory entry's bytes in the data area, reusing it once the server has
// consumed every entry whose data lies there.
func (r *Ring) reserve(length int) (uint32, error) {
	size := r.Layout.DataSize
	if length < 0 || uint32(length) > size {
		return 0, fmt.Errorf("length: at most %d bytes (the ring's data area) per memory entry (was %d)", size, length)
	}
	if r.dataUsed+uint32(length) > size {
		var b backoff
		for int32(atomic.LoadUint32(r.word(ringSqHead))-r.dataMark) < 0 {
			if r.Closed() {
				return 0, r.closedError()
			}
			b.pause()
		}
		r.dataUsed = 0
	}
	at := r.dataUsed
	r.dataUsed += (uint32(length) + 63) &^ 63
	r.dataMark = r.sqTail + 1
	return at, nil
}

// MemoryRead reads len(dst) bytes of RAM into dst and returns the completion.
func (r *Ring) MemoryRead(address uint64, dst []byte) (RingCompletion, error) {
	at, err := r.reserve(len(dst))
	if err != nil {
		return RingCompletion{}, err
	}
	c, err := r.wait(r.submit(5, 0, 0, 0, 0, address, 0, at, uint32(len(dst))))
	if err == nil && c.Status == uint16(pb.CompletionStatus_COMPLETION_STATUS_SUCCESSFUL) {
		copy(dst, r.mem[int(r.Layout.DataOffset)+int(at):][:len(dst)])
	}
	return c, err
}

// MemoryWrite posts a RAM write of data (copied into the data area first).
func (r *Ring) MemoryWrite(address uint64, data []byte) error {
	at, err := r.reserve(len(data))
	if err != nil {
		return err
	}
	copy(r.mem[int(r.Layout.DataOffset)+int(at):], data)
	_, err = r.submit(6, 0, 0, 0, 0, address, 0, at, uint32(len(data)))
	return err
}

// PostedErrors returns (and forgets) the completions nobody waited for: posted writes that failed.
func (r *Ring) PostedErrors() []RingCompletion {
	p := r.posted
	r.posted = nil
	return p
}
