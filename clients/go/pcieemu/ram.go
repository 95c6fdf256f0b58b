package pcieemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
)

// RAM is host RAM by physical address: the shared file mapped into this process when the
// server is on this host, otherwise the Read/WriteMemory RPCs.
type RAM struct {
	c     *Client
	base  uint64
	size  uint64
	bytes []byte // the mapping, or nil
}

// OpenRAM maps the RAM file named by GetPlatform (ram_regions[0].shared_file_path). When the
// file cannot be opened here (another host, no permission) or preferRPC is set, the RAM falls
// back to the Read/WriteMemory RPCs.
func (c *Client) OpenRAM(ctx context.Context, preferRPC bool) (*RAM, error) {
	p, err := c.GetPlatform(ctx)
	if err != nil {
		return nil, err
	}
	if len(p.RamRegions) == 0 {
		return nil, errors.New("the server reports no RAM region")
	}
	reg := p.RamRegions[0]
	r := &RAM{c: c, base: reg.Base, size: reg.Size}
	if preferRPC || reg.SharedFilePath == "" {
		return r, nil
	}
	f, err := os.OpenFile(reg.SharedFilePath, os.O_RDWR, 0)
	if err != nil {
		return r, nil // not on this host: RPC fallback
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || uint64(st.Size()) < reg.Size {
		return r, nil
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(reg.Size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return r, nil
	}
	r.bytes = b
	return r, nil
}

// Mapped reports whether the RAM is mapped into this process.
func (r *RAM) Mapped() bool { return r.bytes != nil }

// Base is the physical address of the first byte.
func (r *RAM) Base() uint64 { return r.base }

// Size is the RAM size in bytes.
func (r *RAM) Size() uint64 { return r.size }

// Bytes is the mapping itself (index = physical address - Base), or nil when not mapped.
func (r *RAM) Bytes() []byte { return r.bytes }

func (r *RAM) check(address uint64, n int) (uint64, error) {
	if address < r.base || address-r.base+uint64(n) > r.size {
		return 0, fmt.Errorf("[%#x, +%d) is outside RAM", address, n)
	}
	return address - r.base, nil
}

// ReadAt reads len(p) bytes at a physical address.
func (r *RAM) ReadAt(ctx context.Context, p []byte, address uint64) error {
	off, err := r.check(address, len(p))
	if err != nil {
		return err
	}
	if r.bytes != nil {
		copy(p, r.bytes[off:])
		return nil
	}
	d, err := r.c.ReadMemory(ctx, address, len(p))
	copy(p, d)
	return err
}

// WriteAt writes p at a physical address.
func (r *RAM) WriteAt(ctx context.Context, p []byte, address uint64) error {
	off, err := r.check(address, len(p))
	if err != nil {
		return err
	}
	if r.bytes != nil {
		copy(r.bytes[off:], p)
		return nil
	}
	return r.c.WriteMemory(ctx, address, p)
}

// Close unmaps the RAM.
func (r *RAM) Close() error {
	if r.bytes == nil {
		return nil
	}
	b := r.bytes
	r.bytes = nil
	return syscall.Munmap(b)
}
